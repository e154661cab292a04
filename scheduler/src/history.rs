//! Job history: what the scheduler remembers of every job across restarts, as Spark's event
//! logs and history server do.
//!
//! One file per job in the history folder (a local path or a URL such as `hdfs://…`; by
//! default `history/` under the scheduler's working directory):
//! - `<job id>.inprogress`: the job's [`JobEvent`]s, one JSON document per line, while the job
//!   is queued or running. Object stores cannot append, so the file is written whole at each
//!   event (a few events per job);
//! - `<job id>.json`: the job as it ended (one [`JobRecord`]), written when it ends; the
//!   `.inprogress` file is then deleted (the log is *compacted*).
//!
//! When the scheduler starts it reads the folder ([`History::load`]): ended jobs come back as
//! they ended; a job that has only an `.inprogress` file was queued or running when the
//! scheduler stopped, and comes back not ended (the caller fails it, see
//! `JobManager::restore`). When both files exist (a crash between the two writes) the
//! `.json` wins. Retention ([`Retention`]) bounds the ended jobs kept, by count and by age.
//! The folder `streams/` in it holds the stream history (`ember_serving::web::StreamHistory`).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::execution::object_store::ObjectStoreRegistry;
use ember_core::api::{JobState, StepDetail};
use ember_core::error::ErrorKind;
use ember_core::manifest::Job;
use ember_core::report::RunReport;
use ember_core::storage::Dir;
use serde::{Deserialize, Serialize};

/// Suffix of a job's event log while it runs.
const IN_PROGRESS: &str = ".inprogress";
/// Suffix of an ended job's compacted record.
const ENDED: &str = ".json";

/// One event of a job's life, as written to its `.inprogress` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// The scheduler accepted the job.
    Submitted {
        /// The job as submitted (parameters applied).
        job: Box<Job>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The job started running its steps.
    Started {
        /// When.
        at: DateTime<Utc>,
    },
    /// The job ended.
    Ended {
        /// When.
        at: DateTime<Utc>,
        /// `succeeded`, `failed` or `cancelled`.
        state: JobState,
        /// Why it failed, one line.
        error: Option<String>,
        /// Who has to act on the failure.
        error_kind: Option<ErrorKind>,
        /// The run's report (succeeded jobs): rows read, quarantined, written, files, the
        /// committed table version.
        report: Option<Box<RunReport>>,
        /// The job's distributed steps with their stages and tasks, as they ended.
        steps: Vec<StepDetail>,
    },
}

/// What the scheduler keeps of one job: what `ember jobs`, `ember status`, the REST API and
/// the web UI show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id (its run id).
    pub id: String,
    /// The job as submitted.
    pub job: Job,
    /// Its state.
    pub state: JobState,
    /// When the scheduler accepted it.
    pub submitted_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, one line.
    pub error: Option<String>,
    /// Who has to act on the failure.
    pub error_kind: Option<ErrorKind>,
    /// The run's report (succeeded jobs).
    pub report: Option<RunReport>,
    /// The distributed steps as they ended; empty while the job runs (Ballista's live view is
    /// shown then).
    #[serde(default)]
    pub steps: Vec<StepDetail>,
}

impl JobRecord {
    /// A queued job.
    pub fn queued(id: &str, job: Job, at: DateTime<Utc>) -> Self {
        Self {
            id: id.to_string(),
            job,
            state: JobState::Queued,
            submitted_at: at,
            started_at: None,
            finished_at: None,
            error: None,
            error_kind: None,
            report: None,
            steps: Vec::new(),
        }
    }

    /// Applies `event`.
    pub fn apply(&mut self, event: &JobEvent) {
        match event {
            JobEvent::Submitted { job, at } => {
                *self = Self::queued(&self.id, (**job).clone(), *at);
            }
            JobEvent::Started { at } => {
                self.state = JobState::Running;
                self.started_at = Some(*at);
            }
            JobEvent::Ended {
                at,
                state,
                error,
                error_kind,
                report,
                steps,
            } => {
                self.state = *state;
                self.finished_at = Some(*at);
                self.error.clone_from(error);
                self.error_kind = *error_kind;
                self.report = report.as_deref().cloned();
                self.steps.clone_from(steps);
            }
        }
    }

    /// The record an event log gives (what a restarted scheduler reads from `<id>.inprogress`);
    /// `None` unless its first event is `submitted`.
    pub fn replay(id: &str, events: &[JobEvent]) -> Option<Self> {
        let JobEvent::Submitted { job, at } = events.first()? else {
            return None;
        };
        let mut record = Self::queued(id, (**job).clone(), *at);
        for event in &events[1..] {
            record.apply(event);
        }
        Some(record)
    }
}

/// How many ended jobs the history keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Ended jobs kept at most; the oldest (by end time) are forgotten first.
    pub max_jobs: usize,
    /// Ended jobs older than this (by end time) are forgotten.
    pub max_age: std::time::Duration,
}

impl Retention {
    /// The ids of `ended` (id, end time) to forget at `now`.
    pub fn expired(&self, ended: &[(String, DateTime<Utc>)], now: DateTime<Utc>) -> Vec<String> {
        let max_age = chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX);
        let mut newest_first: Vec<&(String, DateTime<Utc>)> = ended.iter().collect();
        newest_first.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
        newest_first
            .into_iter()
            .enumerate()
            .filter(|(i, (_, at))| *i >= self.max_jobs || now.signed_duration_since(*at) > max_age)
            .map(|(_, (id, _))| id.clone())
            .collect()
    }
}

/// What [`History::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every job found, ended or not.
    pub records: Vec<JobRecord>,
    /// Files that could not be read as a job (named in the scheduler's log, left in place).
    pub unreadable: Vec<String>,
}

/// The history folder.
#[derive(Debug, Clone)]
pub struct History {
    dir: Dir,
    /// One write at a time: a job's last event and its compaction must not cross.
    writes: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl History {
    /// The history at `location` (a local path, relative to the working directory, or a URL).
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] when the location has no object store.
    pub fn open(location: &str, registry: &dyn ObjectStoreRegistry) -> ember_core::Result<Self> {
        let location = if location.contains("://") || location.starts_with('/') {
            location.to_string()
        } else {
            let cwd = std::env::current_dir()
                .map_err(|e| ember_core::Error::storage(location, e.to_string()))?;
            cwd.join(location).display().to_string()
        };
        Ok(Self {
            dir: Dir::open(&location, registry)?,
            writes: std::sync::Arc::default(),
        })
    }

    /// The folder's URL (for messages).
    pub fn url(&self) -> &str {
        self.dir.url()
    }

    /// The folder.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Writes job `id`'s event log (all its events so far).
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] naming the file.
    pub async fn log(&self, id: &str, events: &[JobEvent]) -> ember_core::Result<()> {
        let mut text = String::new();
        for event in events {
            text.push_str(
                &serde_json::to_string(event).map_err(|e| {
                    ember_core::Error::storage(self.url(), format!("job {id}: {e}"))
                })?,
            );
            text.push('\n');
        }
        let _one = self.writes.lock().await;
        if self.dir.get(&format!("{id}{ENDED}")).await?.is_some() {
            // Already compacted (a cancel ended it while this event was on its way).
            return Ok(());
        }
        self.dir
            .put(&format!("{id}{IN_PROGRESS}"), Bytes::from(text))
            .await
    }

    /// Writes the ended job's record and deletes its event log.
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] naming the file.
    pub async fn compact(&self, record: &JobRecord) -> ember_core::Result<()> {
        let json = serde_json::to_vec_pretty(record).map_err(|e| {
            ember_core::Error::storage(self.url(), format!("job {}: {e}", record.id))
        })?;
        let _one = self.writes.lock().await;
        self.dir
            .put(&format!("{}{ENDED}", record.id), Bytes::from(json))
            .await?;
        self.dir
            .delete(&format!("{}{IN_PROGRESS}", record.id))
            .await?;
        Ok(())
    }

    /// Deletes the files of job `id` (retention).
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] naming the file.
    pub async fn forget(&self, id: &str) -> ember_core::Result<()> {
        let _one = self.writes.lock().await;
        self.dir.delete(&format!("{id}{ENDED}")).await?;
        self.dir.delete(&format!("{id}{IN_PROGRESS}")).await?;
        Ok(())
    }

    /// Reads every job of the folder (an absent folder is an empty history).
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] when the folder cannot be listed.
    pub async fn load(&self) -> ember_core::Result<Loaded> {
        let files = self.dir.list("").await?;
        let mut loaded = Loaded::default();
        for name in &files {
            let record = if let Some(id) = name.strip_suffix(ENDED) {
                self.read_ended(id).await
            } else if let Some(id) = name.strip_suffix(IN_PROGRESS) {
                if files.contains(&format!("{id}{ENDED}")) {
                    // Compacted, but the log's deletion did not happen.
                    self.dir.delete(name).await?;
                    continue;
                }
                self.read_log(id).await
            } else {
                continue;
            };
            match record {
                Some(record) => loaded.records.push(record),
                None => loaded.unreadable.push(format!("{}/{name}", self.url())),
            }
        }
        Ok(loaded)
    }

    async fn read_ended(&self, id: &str) -> Option<JobRecord> {
        let bytes = self.dir.get(&format!("{id}{ENDED}")).await.ok()??;
        serde_json::from_slice::<JobRecord>(&bytes)
            .ok()
            .filter(|r| r.id == id)
    }

    async fn read_log(&self, id: &str) -> Option<JobRecord> {
        let bytes = self.dir.get(&format!("{id}{IN_PROGRESS}")).await.ok()??;
        let text = String::from_utf8_lossy(&bytes);
        // A line cut short by a crash during the write ends the log.
        let events: Vec<JobEvent> = text
            .lines()
            .map_while(|line| serde_json::from_str(line).ok())
            .collect();
        JobRecord::replay(id, &events)
    }
}

// Tests: scheduler/tests/history.rs.
