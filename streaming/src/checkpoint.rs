//! The checkpoint of a stream, Spark's layout (`offsets/`, `commits/`, `state/`) on the
//! output's storage:
//!
//! | file | written | content |
//! |---|---|---|
//! | `metadata` | once, by the first run | JSON `{"id": …}`: the stream's id (Spark's query id), the `txn.appId` of its Delta commits |
//! | `_ember_lock` | while a driver runs | the lease of the one driver that may advance the checkpoint (`ember_core::storage::lease`) |
//! | `offsets/<batch id>` | before the batch reads anything (write-ahead), created only if absent | JSON [`BatchPlan`]: offset range `[start, end)` per partition (a `files` source: each file's name and size), the watermark before the batch, the processing time the batch uses |
//! | `state/<batch id>.parquet` | after the output | the events of windows still open (the `events` schema), for the outputs whose aggregates need every event |
//! | `state/<batch id>-<output>/*.parquet`, `state/<batch id>-<output>.json` | after the output | output number `<output>`'s partial aggregates, one row per open (window, key) (`crate::partial`), in shards written by the merge's tasks, and their manifest |
//! | `commits/<batch id>` | last | JSON [`BatchCommit`]: the watermark after the batch and its counts |
//!
//! On restart: the newest `offsets/N` without `commits/N` is run again with exactly its plan
//! (same offsets, same watermark, same processing time), so it writes the same files. A stream
//! whose newest plan is committed goes on with batch N+1 from the ends of plan N. Files of
//! batches older than [`KEEP_BATCHES`] are deleted, so the checkpoint stays small. Two drivers
//! on one checkpoint cannot both run: the second is refused the lease at once, and a plan is
//! never overwritten (create-if-absent), whichever process wrote it.

use std::collections::BTreeMap;

use bytes::Bytes;

use ember_core::api::BatchCounts;
use ember_core::storage::Dir;

use crate::error::{Error, Result};
use crate::watermark::Watermark;

/// How many batches' checkpoint files are kept.
pub const KEEP_BATCHES: u64 = 10;

/// The offsets `[start, end)` a batch reads from one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffsetRange {
    /// Kafka partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// First offset not read.
    pub end: i64,
}

/// The write-ahead record of one micro-batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchPlan {
    /// Batch id, from 0.
    pub batch_id: u64,
    /// The topic.
    pub topic: String,
    /// What the batch reads, one range per partition (empty ranges included).
    pub ranges: Vec<OffsetRange>,
    /// The watermark state before the batch.
    pub watermark: Watermark,
    /// Processing time of the batch, ms since the epoch (idle-partition decisions use it).
    pub now_ms: i64,
    /// Offsets skipped before this batch because the checkpoint's next offset was no longer in
    /// the topic (`on_offsets_lost` = `earliest` or `latest`).
    #[serde(default)]
    pub offsets_lost: i64,
    /// A `files` source's batch: the files it reads, with their sizes (`ranges` is then
    /// empty and `topic` is the folder's URL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::spool::PlannedFile>,
}

impl BatchPlan {
    /// Where a record of this batch came from, for the quarantine's `topic` column: the topic,
    /// or for a `files` source the file (the record's partition is its place in `files`).
    pub fn source_of(&self, origin: &crate::event::Origin) -> &str {
        usize::try_from(origin.partition)
            .ok()
            .and_then(|i| self.files.get(i))
            .map_or(&self.topic, |f| &f.name)
    }

    /// Messages the batch reads.
    pub fn records(&self) -> i64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// End offset per partition.
    pub fn ends(&self) -> BTreeMap<i32, i64> {
        self.ranges.iter().map(|r| (r.partition, r.end)).collect()
    }
}

/// The commit mark of one micro-batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchCommit {
    /// Batch id.
    pub batch_id: u64,
    /// Watermark state after the batch.
    pub watermark: Watermark,
    /// What the batch read, rejected and wrote (flattened in the JSON file).
    #[serde(flatten)]
    pub counts: BatchCounts,
    /// Wall time of the batch, ms.
    pub duration_ms: u64,
    /// Wall time per phase, ms: `read` (Kafka) and `parse` in this process, or `scan` (read and
    /// parse on the executors), then `query` (windows), `write` (output, quarantine and sink
    /// log), `state` (as Spark's `durationMs`).
    #[serde(default)]
    pub phases_ms: BTreeMap<String, u64>,
}

/// Where a stream resumes.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// No batch yet.
    Fresh,
    /// Plan `plan` was written but not committed: run it again.
    Replay {
        /// The plan to run again.
        plan: BatchPlan,
    },
    /// Everything up to `last` is committed.
    Continue {
        /// The last commit (boxed: it carries the batch's counts).
        last: Box<BatchCommit>,
        /// Its plan (the ends are the next starts).
        plan: BatchPlan,
    },
}

/// A stream's checkpoint folder.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: Dir,
}

fn ids(names: &[String]) -> Vec<u64> {
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".parquet").unwrap_or(n).parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

impl Checkpoint {
    /// The checkpoint in `dir`.
    pub fn new(dir: Dir) -> Self {
        Self { dir }
    }

    /// Its folder's URL.
    pub fn url(&self) -> &str {
        self.dir.url()
    }

    async fn read_json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<T> {
        let bytes = self.dir.get(rel).await?.ok_or_else(|| Error::Checkpoint {
            path: format!("{}/{rel}", self.dir.url()),
            message: "missing".into(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
            path: format!("{}/{rel}", self.dir.url()),
            message: format!("unreadable: {e}"),
        })
    }

    async fn write_json<T: serde::Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Checkpoint {
            path: format!("{}/{rel}", self.dir.url()),
            message: e.to_string(),
        })?;
        Ok(self.dir.put(rel, Bytes::from(json)).await?)
    }

    /// Where to resume.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when files are unreadable or a commit has no plan.
    pub async fn resume(&self) -> Result<Resume> {
        let planned = ids(&self.dir.list("offsets").await?);
        let committed = ids(&self.dir.list("commits").await?);
        let Some(&last_plan) = planned.last() else {
            return Ok(Resume::Fresh);
        };
        let plan: BatchPlan = self.read_json(&format!("offsets/{last_plan}")).await?;
        match committed.last() {
            Some(&c) if c == last_plan => Ok(Resume::Continue {
                last: Box::new(self.read_json(&format!("commits/{c}")).await?),
                plan,
            }),
            Some(&c) if c + 1 == last_plan => Ok(Resume::Replay { plan }),
            None if last_plan == 0 => Ok(Resume::Replay { plan }),
            other => Err(Error::Checkpoint {
                path: self.dir.url().to_string(),
                message: format!(
                    "newest plan is batch {last_plan} but newest commit is {other:?}: the checkpoint was edited or mixed with another stream's"
                ),
            }),
        }
    }

    /// Writes the plan of a batch (before it reads), only if there is none.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when a plan of that batch exists (another driver planned it);
    /// storage errors.
    pub async fn plan(&self, plan: &BatchPlan) -> Result<()> {
        let rel = format!("offsets/{}", plan.batch_id);
        let json = serde_json::to_vec_pretty(plan).map_err(|e| Error::Checkpoint {
            path: format!("{}/{rel}", self.dir.url()),
            message: e.to_string(),
        })?;
        if self.dir.put_new(&rel, Bytes::from(json)).await? {
            Ok(())
        } else {
            Err(Error::Checkpoint {
                path: format!("{}/{rel}", self.dir.url()),
                message: "another driver planned this batch: two drivers run on one checkpoint"
                    .into(),
            })
        }
    }

    /// The stream's id, made (a random UUID, in `metadata`) by its first run and read by every
    /// later one, as Spark's checkpoint keeps its query id.
    ///
    /// # Errors
    /// Storage errors, and an unreadable `metadata`.
    pub async fn stream_id(&self) -> Result<String> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Metadata {
            id: String,
        }
        let fresh = Metadata {
            id: uuid::Uuid::new_v4().to_string(),
        };
        let json = serde_json::to_vec(&fresh).unwrap_or_default();
        if self.dir.put_new("metadata", Bytes::from(json)).await? {
            return Ok(fresh.id);
        }
        let existing: Metadata = self.read_json("metadata").await?;
        Ok(existing.id)
    }

    /// Takes the checkpoint's lease for the driver of `job` (stream `stream_id`).
    ///
    /// # Errors
    /// [`ember_core::Error::Locked`] naming the driver that holds it.
    pub async fn lease(
        &self,
        job: &str,
        stream_id: &str,
    ) -> Result<ember_core::storage::lease::Lease> {
        let what = format!("stream checkpoint {}", self.dir.url());
        let url = format!(
            "{}/{}",
            self.dir.url().trim_end_matches('/'),
            ember_core::storage::lease::LOCK_FILE
        );
        Ok(self
            .dir
            .lease(ember_core::storage::lease::Holder {
                what: &what,
                url: &url,
                kind: "stream driver",
                id: stream_id,
                job,
                hint: "one driver at a time runs a stream; stop the other first",
            })
            .await?)
    }

    /// The folder of this checkpoint.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Writes the events of the open windows after batch `batch_id` (`state/<id>.parquet`).
    ///
    /// # Errors
    /// [`Error::Storage`] when it cannot be written.
    pub async fn save_state(&self, batch_id: u64, parquet: Bytes) -> Result<()> {
        Ok(self
            .dir
            .put(&format!("state/{batch_id}.parquet"), parquet)
            .await?)
    }

    /// The events file of the state after batch `batch_id`, with its path; `None` when there
    /// is none.
    ///
    /// # Errors
    /// [`Error::Storage`] for read failures.
    pub async fn load_state(&self, batch_id: u64) -> Result<(String, Option<Bytes>)> {
        let rel = format!("state/{batch_id}.parquet");
        let bytes = self.dir.get(&rel).await?;
        Ok((format!("{}/{rel}", self.dir.url()), bytes))
    }

    /// The folder (relative to the checkpoint) of output `output`'s partial-aggregate files
    /// after batch `batch_id` (`state/<batch id>-<output>`): Ember's footer caches do not keep
    /// the footers of its files, which are read once ([`ember_core::footer_cache`]).
    pub fn shard_folder(batch_id: u64, output: usize) -> String {
        ember_core::footer_cache::state_shard_folder(batch_id, output)
    }

    /// Deletes every file under `rel` (a batch run again rewrites its shards).
    ///
    /// # Errors
    /// [`Error::Storage`] when listing or deleting fails.
    pub async fn clear(&self, rel: &str) -> Result<()> {
        for file in self.dir.list_all(rel).await? {
            self.dir.delete(&file).await?;
        }
        Ok(())
    }

    /// Writes the manifest of output `output`'s partial-aggregate shards after batch
    /// `batch_id` (`state/<id>-<output>.json`).
    ///
    /// # Errors
    /// [`Error::Storage`] when it cannot be written.
    pub async fn save_shards<T: serde::Serialize>(
        &self,
        batch_id: u64,
        output: usize,
        shards: &T,
    ) -> Result<()> {
        self.write_json(&format!("state/{batch_id}-{output}.json"), shards)
            .await
    }

    /// The manifest [`Checkpoint::save_shards`] wrote, with its path; `None` when there is
    /// none.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when it is unreadable; storage errors.
    pub async fn load_shards<T: serde::de::DeserializeOwned>(
        &self,
        batch_id: u64,
        output: usize,
    ) -> Result<(String, Option<T>)> {
        let rel = format!("state/{batch_id}-{output}.json");
        let path = format!("{}/{rel}", self.dir.url());
        if self.dir.get(&rel).await?.is_none() {
            return Ok((path, None));
        }
        Ok((path, Some(self.read_json(&rel).await?)))
    }

    /// Marks a batch committed, then deletes the files of batches older than
    /// [`KEEP_BATCHES`].
    ///
    /// # Errors
    /// [`Error::Storage`] when the mark cannot be written (old files that cannot be deleted
    /// are left and logged).
    pub async fn commit(&self, commit: &BatchCommit) -> Result<()> {
        self.write_json(&format!("commits/{}", commit.batch_id), commit)
            .await?;
        if let Some(old) = commit.batch_id.checked_sub(KEEP_BATCHES) {
            let mut old_files = vec![format!("offsets/{old}"), format!("commits/{old}")];
            // The state's files of batches up to `old` (events, shard manifests and shards).
            match self.dir.list_all("state").await {
                Ok(names) => old_files.extend(names.into_iter().filter(|n| {
                    n.trim_start_matches("state/")
                        .split(['.', '-', '/'])
                        .next()
                        .and_then(|id| id.parse::<u64>().ok())
                        .is_some_and(|id| id <= old)
                })),
                Err(e) => tracing::warn!(error = %e, "cannot list the old state files"),
            }
            let mut folders = std::collections::BTreeSet::new();
            for rel in old_files {
                if let Err(e) = self.dir.delete(&rel).await {
                    tracing::warn!(error = %e, "cannot delete an old checkpoint file");
                }
                if let Some((folder, _)) = rel
                    .rsplit_once('/')
                    .filter(|(f, _)| f.starts_with("state/"))
                {
                    folders.insert(folder.to_string());
                }
            }
            // A shard folder (`state/<id>-<k>/`) emptied above.
            for folder in folders {
                self.dir.remove_folder_if_empty(&folder).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Committing batch N deletes the offsets, commits and state files of batches up to
    /// N − [`KEEP_BATCHES`], and the shard folders they leave empty (one per batch would
    /// otherwise pile up on the local file system and HDFS).
    #[tokio::test]
    async fn a_commit_deletes_old_batches_and_their_empty_shard_folders() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let registry = datafusion::execution::object_store::DefaultObjectStoreRegistry::new();
        let dir = Dir::open(&tmp.path().display().to_string(), &registry).expect("dir");
        let checkpoint = Checkpoint::new(dir.clone());
        for id in 0..=15u64 {
            for rel in [
                format!("offsets/{id}"),
                format!("commits/{id}"),
                format!("state/{id}-0/part-00000.parquet"),
                format!("state/{id}-0.json"),
            ] {
                dir.put(&rel, bytes::Bytes::from_static(b"{}"))
                    .await
                    .expect("put");
            }
        }
        let commit = BatchCommit {
            batch_id: 16,
            watermark: Watermark::new(0, 0),
            counts: BatchCounts::default(),
            duration_ms: 0,
            phases_ms: BTreeMap::new(),
        };
        checkpoint.commit(&commit).await.expect("commit");
        let state = tmp.path().join("state");
        let mut left: Vec<String> = std::fs::read_dir(&state)
            .expect("state folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        let mut want: Vec<String> = (7..=15u64)
            .flat_map(|id| [format!("{id}-0"), format!("{id}-0.json")])
            .collect();
        want.sort();
        assert_eq!(left, want, "batches up to 6 are gone, folders included");
        assert!(!tmp.path().join("offsets/6").exists());
        assert!(tmp.path().join("offsets/7").exists());
        assert!(tmp.path().join("commits/16").exists());
    }
}
