//! The streams the scheduler knows of: each stream driver (`ember submit` of a streaming job)
//! reports its state and every committed micro-batch (`POST /api/v1/streams/{id}`), as Spark's
//! `StreamingQueryListener` feeds its Structured Streaming tab. Kept in memory: the last
//! [`RECENT`] batches per stream, and at most [`KEPT`] streams.
//!
//! A running driver also reports every few seconds between batches (its heartbeat). A stream
//! shown `running` whose driver has been silent for longer than the registry's timeout is
//! shown `lost` (as Ballista shows a silent executor); it is `running` again if it reports.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use ember_core::api::{StreamDetail, StreamProgress, StreamState, StreamSummary, StreamUpdate};

/// Batches kept per stream (at a 5 s trigger, 10 minutes).
pub const RECENT: usize = 120;

/// Streams kept; the oldest stopped ones go first.
pub const KEPT: usize = 200;

/// How long a running stream's driver may be silent before the stream is shown `lost`, when
/// no timeout is given: six of the driver's default 5 s heartbeats.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

struct Entry {
    summary: StreamSummary,
    recent: VecDeque<StreamProgress>,
    /// When its driver last reported.
    seen: Instant,
}

/// The streams reported to this server.
pub struct StreamRegistry {
    streams: Mutex<BTreeMap<String, Entry>>,
    timeout: Duration,
    /// What changed since [`StreamRegistry::take_changes`] last asked (for the stream
    /// history, `super::stream_history`).
    changes: Mutex<Changes>,
}

/// Streams updated and streams forgotten.
#[derive(Default)]
struct Changes {
    updated: BTreeSet<String>,
    removed: BTreeSet<String>,
}

impl Default for StreamRegistry {
    fn default() -> Self {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }
}

impl std::fmt::Debug for StreamRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRegistry").finish_non_exhaustive()
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl StreamRegistry {
    /// A registry that shows a running stream `lost` after `timeout` without a report.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            streams: Mutex::default(),
            timeout,
            changes: Mutex::default(),
        }
    }

    /// The summary as shown: `lost` for a running stream silent for longer than the timeout.
    fn shown(&self, entry: &Entry) -> StreamSummary {
        let mut summary = entry.summary.clone();
        if summary.state == StreamState::Running && entry.seen.elapsed() > self.timeout {
            summary.state = StreamState::Lost;
        }
        summary
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // Every update is a few assignments: a poisoned lock still holds usable entries.
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `update` of stream `id`. Returns whether the stream is new.
    ///
    /// # Errors
    /// [`ember_core::Error::Refused`] when the stream was first reported with another name or
    /// output: a report can only refer to what the stream started with (so a driver cannot
    /// point the scheduler at a foreign path after the fact).
    pub fn update(&self, id: &str, update: StreamUpdate) -> ember_core::Result<bool> {
        let mut streams = self.streams();
        if let Some(known) = streams.get(id).map(|e| &e.summary)
            && (known.name != update.name || known.output != update.output)
        {
            return Err(ember_core::Error::Refused(format!(
                "stream {id} started as {} writing {}; a report cannot change that to {} writing {}",
                known.name, known.output, update.name, update.output
            )));
        }
        let new = !streams.contains_key(id);
        if new && streams.len() >= KEPT {
            let oldest = streams
                .iter()
                .filter(|(_, e)| self.shown(e).state != StreamState::Running)
                .min_by(|a, b| a.1.summary.updated_at.cmp(&b.1.summary.updated_at))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                streams.remove(&k);
                self.changed().removed.insert(k);
            }
        }
        let entry = streams.entry(id.to_string()).or_insert_with(|| Entry {
            summary: StreamSummary {
                id: id.to_string(),
                name: update.name.clone(),
                output: update.output.clone(),
                state: update.state,
                started_at: now(),
                updated_at: now(),
                batches: 0,
                last: None,
                error: None,
            },
            recent: VecDeque::new(),
            seen: Instant::now(),
        });
        entry.seen = Instant::now();
        let summary = &mut entry.summary;
        // `lost` is the registry's view, not a driver's report.
        summary.state = match update.state {
            StreamState::Lost => StreamState::Running,
            state => state,
        };
        summary.updated_at = now();
        if update.error.is_some() {
            summary.error = update.error;
        }
        if let Some(progress) = update.progress {
            summary.batches += 1;
            summary.last = Some(progress.clone());
            if entry.recent.len() == RECENT {
                entry.recent.pop_front();
            }
            entry.recent.push_back(progress);
        }
        let mut changes = self.changed();
        changes.removed.remove(id);
        changes.updated.insert(id.to_string());
        Ok(new)
    }

    fn changed(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The streams updated since the last call, as reported (a `lost` stream as `running`),
    /// and the ids of those forgotten since.
    pub fn take_changes(&self) -> (Vec<StreamDetail>, Vec<String>) {
        let changes = std::mem::take(&mut *self.changed());
        let streams = self.streams();
        let updated = changes
            .updated
            .iter()
            .filter_map(|id| streams.get(id))
            .map(|e| StreamDetail {
                summary: e.summary.clone(),
                recent: e.recent.iter().cloned().collect(),
            })
            .collect();
        (updated, changes.removed.into_iter().collect())
    }

    /// Puts back streams a previous run of this server knew (its stream history). A stream
    /// that was running gets the timeout to report again before it is shown `lost`.
    pub fn restore(&self, details: Vec<StreamDetail>) {
        let mut streams = self.streams();
        for detail in details {
            if streams.len() >= KEPT {
                break;
            }
            let mut recent: VecDeque<StreamProgress> = detail.recent.into();
            while recent.len() > RECENT {
                recent.pop_front();
            }
            streams
                .entry(detail.summary.id.clone())
                .or_insert_with(|| Entry {
                    summary: detail.summary,
                    recent,
                    seen: Instant::now(),
                });
        }
    }

    /// All streams, the most recently started first.
    pub fn list(&self) -> Vec<StreamSummary> {
        let mut list: Vec<StreamSummary> = self.streams().values().map(|e| self.shown(e)).collect();
        list.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        list
    }

    /// One stream with its recent batches.
    pub fn detail(&self, id: &str) -> Option<StreamDetail> {
        self.streams().get(id).map(|e| StreamDetail {
            summary: self.shown(e),
            recent: e.recent.iter().cloned().collect(),
        })
    }
}

/// A driver's report of stream `s` writing `/out`, with batch `batch` (tests).
#[cfg(test)]
pub(crate) fn test_update(state: StreamState, batch: Option<u64>) -> StreamUpdate {
    StreamUpdate {
        name: "s".into(),
        output: "/out".into(),
        state,
        progress: batch.map(|batch_id| StreamProgress {
            batch_id,
            ..StreamProgress::default()
        }),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_update as update;
    use super::*;

    #[test]
    fn keeps_the_last_batches_and_the_state() {
        let registry = StreamRegistry::default();
        assert!(
            registry
                .update("a", update(StreamState::Running, None))
                .expect("new")
        );
        for b in 0..(RECENT as u64 + 5) {
            assert!(
                !registry
                    .update("a", update(StreamState::Running, Some(b)))
                    .expect("same stream")
            );
        }
        registry
            .update("a", update(StreamState::Stopped, None))
            .expect("same stream");
        let detail = registry.detail("a").expect("stream a");
        assert_eq!(detail.summary.state, StreamState::Stopped);
        assert_eq!(detail.summary.batches, RECENT as u64 + 5);
        assert_eq!(detail.recent.len(), RECENT);
        assert_eq!(detail.recent[0].batch_id, 5);
        assert_eq!(
            detail.summary.last.map(|p| p.batch_id),
            Some(RECENT as u64 + 4)
        );
        assert!(registry.detail("b").is_none());
        // A later report cannot point the stream somewhere else.
        let elsewhere = StreamUpdate {
            output: "/etc".into(),
            ..update(StreamState::Running, None)
        };
        let err = registry.update("a", elsewhere).expect_err("refused");
        assert!(err.to_string().contains("cannot change that"), "{err}");
    }

    #[test]
    fn a_running_stream_silent_past_the_timeout_is_lost_until_it_reports_again() {
        let registry = StreamRegistry::with_timeout(Duration::from_millis(200));
        registry
            .update("run", update(StreamState::Running, Some(0)))
            .expect("run");
        registry
            .update("stop", update(StreamState::Running, None))
            .expect("stop");
        registry
            .update("stop", update(StreamState::Stopped, None))
            .expect("stop");
        let state = |id: &str| registry.detail(id).expect("known").summary.state;
        assert_eq!(state("run"), StreamState::Running);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(state("run"), StreamState::Lost);
        let listed: Vec<(String, StreamState)> = registry
            .list()
            .into_iter()
            .map(|s| (s.id, s.state))
            .collect();
        assert!(
            listed.contains(&("run".into(), StreamState::Lost)),
            "{listed:?}"
        );
        // A stream that ended is not lost, however long ago it ended.
        assert_eq!(state("stop"), StreamState::Stopped);
        // A report (a heartbeat) brings it back; a driver cannot report `lost`.
        registry
            .update("run", update(StreamState::Lost, None))
            .expect("heartbeat");
        assert_eq!(state("run"), StreamState::Running);
        assert_eq!(registry.detail("run").expect("run").summary.batches, 1);
    }
}
