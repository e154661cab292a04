//! Stream history: the streams a scheduler knows of, written to its history folder so that a
//! restarted scheduler lists them again, as it lists its jobs (`ember_scheduler::history`).
//!
//! One file per stream, `<stream id>.json` (a [`StreamDetail`]: the summary and the recent
//! batches, state as last reported), rewritten whole by a background task at most every
//! flush interval when the stream reported; the file of a stream the registry forgets is
//! deleted. A stream that was `running` comes back running and is shown `lost` unless its
//! driver reports again within the stream timeout (a live driver keeps its id and reports
//! every heartbeat, so its batch count goes on).

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use ember_core::api::StreamDetail;
use ember_core::storage::Dir;

use super::StreamRegistry;

/// Whether `id` can name a file (driver ids are UUIDs; anything else is kept in memory only).
fn file_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The streams' folder of a history.
#[derive(Debug, Clone)]
pub struct StreamHistory {
    dir: Dir,
}

impl StreamHistory {
    /// The stream history in `dir` (e.g. `<history>/streams`).
    pub fn new(dir: Dir) -> Self {
        Self { dir }
    }

    /// Every stream found; files that cannot be read are named in the log and skipped.
    pub async fn load(&self) -> Vec<StreamDetail> {
        let names = match self.dir.list("").await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "stream history not read");
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for name in names {
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let detail = match self.dir.get(&name).await {
                Ok(Some(bytes)) => serde_json::from_slice::<StreamDetail>(&bytes).ok(),
                _ => None,
            };
            match detail {
                Some(d) if d.summary.id == id => found.push(d),
                _ => tracing::warn!(
                    file = %format!("{}/{name}", self.dir.url()),
                    "stream history: not a stream's record; left in place"
                ),
            }
        }
        found
    }

    /// Writes what changed in `registry` now.
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] naming the file.
    pub async fn flush(&self, registry: &StreamRegistry) -> ember_core::Result<()> {
        let (updated, removed) = registry.take_changes();
        for detail in updated {
            if !file_safe(&detail.summary.id) {
                continue;
            }
            let json = serde_json::to_vec(&detail).map_err(|e| {
                ember_core::Error::storage(
                    self.dir.url(),
                    format!("stream {}: {e}", detail.summary.id),
                )
            })?;
            self.dir
                .put(&format!("{}.json", detail.summary.id), Bytes::from(json))
                .await?;
        }
        for id in removed.iter().filter(|id| file_safe(id)) {
            self.dir.delete(&format!("{id}.json")).await?;
        }
        Ok(())
    }

    /// Flushes `registry` every `every` until it is dropped.
    pub fn spawn_flusher(
        self,
        registry: &Arc<StreamRegistry>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let registry: Weak<StreamRegistry> = Arc::downgrade(registry);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                match self.flush(&registry).await {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "stream history not written");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::object_store::DefaultObjectStoreRegistry;
    use ember_core::api::StreamState;

    use super::super::streams::test_update as update;
    use super::*;

    #[tokio::test]
    async fn streams_come_back_as_reported_and_a_running_one_runs_on_if_it_reports() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open(
            &tmp.path().display().to_string(),
            &DefaultObjectStoreRegistry::new(),
        )
        .expect("dir");
        let history = StreamHistory::new(dir);
        let before = StreamRegistry::with_timeout(Duration::from_millis(300));
        let running = "0b7e1c6a-0000-4000-8000-000000000001";
        let stopped = "0b7e1c6a-0000-4000-8000-000000000002";
        for b in 0..3 {
            before
                .update(running, update(StreamState::Running, Some(b)))
                .expect("running");
        }
        before
            .update(stopped, update(StreamState::Running, Some(0)))
            .expect("stopped");
        before
            .update(stopped, update(StreamState::Stopped, None))
            .expect("stopped");
        before
            .update("../escape", update(StreamState::Running, None))
            .expect("odd id");
        history.flush(&before).await.expect("flush");
        let mut files: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [format!("{running}.json"), format!("{stopped}.json")]
        );
        // Nothing changed: nothing written again.
        assert_eq!(before.take_changes().0.len(), 0);

        let after = StreamRegistry::with_timeout(Duration::from_millis(300));
        after.restore(history.load().await);
        let state = |id: &str| after.detail(id).expect("known").summary.state;
        assert_eq!(state(stopped), StreamState::Stopped);
        assert_eq!(state(running), StreamState::Running);
        assert_eq!(after.detail(running).expect("running").summary.batches, 3);
        assert_eq!(after.detail(running).expect("running").recent.len(), 3);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(state(running), StreamState::Lost);
        after
            .update(running, update(StreamState::Running, Some(3)))
            .expect("reports again");
        assert_eq!(state(running), StreamState::Running);
        assert_eq!(after.detail(running).expect("running").summary.batches, 4);
    }
}
