//! JSON bodies of the scheduler's REST API (`/api/v1/*`), shared by the scheduler (server) and
//! the `ember` commands (client). Times are RFC 3339 UTC strings; durations in milliseconds.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /api/v1/jobs` | [`SubmitJob`] | 202 [`Submitted`] |
//! | `GET /api/v1/jobs` | | 200 `[`[`JobSummary`]`]`, newest first |
//! | `GET /api/v1/jobs/{id}` | | 200 [`JobDetail`], 404 |
//! | `POST /api/v1/jobs/{id}/cancel` | | 200 [`JobSummary`], 404, 409 when already finished |
//! | `GET /api/v1/executors` | | 200 `[`[`ExecutorSummary`]`]`, lost ones included |
//! | `POST /api/v1/executors/{id}/status` | [`ExecutorStatus`] | 204 (sent by executors) |
//! | `GET /api/v1/streams` | | 200 `[`[`StreamSummary`]`]`, newest first |
//! | `GET /api/v1/streams/{id}` | | 200 [`StreamDetail`], 404 |
//! | `POST /api/v1/streams/{id}` | [`StreamUpdate`] | 204 (sent by stream drivers) |
//! | `GET /api/v1/dashboard/daily?from=&to=` | | 200 rows: `order_date`, `net_revenue`, … |
//! | `GET /api/v1/dashboard/top-products?from=&to=&limit=` | | 200 rows |
//! | `GET /api/v1/dashboard/windows?limit=` | | 200 rows: the latest windows |
//! | `GET /api/v1/info` | | 200 [`ServerInfo`] |
//! | `GET /metrics` | | 200 Prometheus text |
//!
//! Errors are [`ApiError`] with the HTTP status: the message, its [`crate::ErrorKind`] and
//! whether a retry may succeed.

use serde::{Deserialize, Serialize};

use crate::manifest::Job;
use crate::report::RunReport;

/// Path prefix of Ember's REST API.
pub const API_PREFIX: &str = "/api/v1";

/// A job to run: resolved on the client (parameters applied, SQL read), so that errors in the
/// manifest or the SQL files reach the user before anything is sent. Local relative paths
/// are made absolute by the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitJob {
    /// The job.
    pub job: Job,
}

/// The answer to a submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    /// The job's id (also its run id and its staging folder's name).
    pub id: String,
}

/// Life cycle of a submitted job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, not started.
    Queued,
    /// Running its steps.
    Running,
    /// Committed its output.
    Succeeded,
    /// Stopped by an error; nothing was committed.
    Failed,
    /// Stopped by `ember cancel`; nothing was committed.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The state's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One line of `ember jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSummary {
    /// Job id.
    pub id: String,
    /// The job's name (`[job] name`).
    pub name: String,
    /// State.
    pub state: JobState,
    /// When the scheduler accepted it.
    pub submitted_at: String,
    /// When it started running.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Run time so far (running) or in all (finished), in milliseconds.
    pub duration_ms: Option<u64>,
    /// Stages finished, over all of the job's distributed steps so far.
    pub stages_done: usize,
    /// Stages planned, over all of the job's distributed steps so far.
    pub stages_total: usize,
    /// Rows written to the output (succeeded jobs).
    pub rows_written: Option<u64>,
    /// Why it failed, one line.
    pub error: Option<String>,
    /// Who has to act on the failure (`user`, `external`, `internal`); `ember submit --wait`
    /// exits with its code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<crate::ErrorKind>,
}

/// Tasks of one stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageDetail {
    /// Stage id within its distributed step.
    pub stage_id: String,
    /// `UnResolved`, `Resolved`, `Running`, `Successful`, `Failed` (Ballista's names).
    pub state: String,
    /// Tasks known (one per partition once the stage started).
    pub tasks: usize,
    /// Tasks finished successfully.
    pub tasks_done: usize,
    /// Tasks running.
    pub tasks_running: usize,
    /// Tasks failed (a failed task may run again).
    pub tasks_failed: usize,
    /// Rows read by the stage.
    pub input_rows: usize,
    /// Rows produced by the stage.
    pub output_rows: usize,
    /// The stage's physical plan, indented.
    pub plan: Option<String>,
}

/// One distributed step of a job (one Ballista job: writing the output, counting rows, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDetail {
    /// What the step does (`output`, `quarantine`, `count raw_sales`, …).
    pub step: String,
    /// The Ballista job id.
    pub ballista_job_id: String,
    /// Ballista's state of the step: `Queued`, `Running`, `Successful`, `Failed`.
    pub state: String,
    /// Stages planned.
    pub stages_total: usize,
    /// Stages finished.
    pub stages_done: usize,
    /// The stages, with their tasks (while the scheduler keeps them).
    pub stages: Vec<StageDetail>,
}

/// What `ember status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// The output folder (URL).
    pub output: String,
    /// The run's report (succeeded jobs): rows read, quarantined, written, partitions.
    pub report: Option<RunReport>,
    /// Distributed steps, in order.
    pub steps: Vec<StepDetail>,
}

/// One executor, as the scheduler sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutorSummary {
    /// Executor id.
    pub id: String,
    /// Host other executors fetch shuffle output from.
    pub host: String,
    /// Arrow Flight port.
    pub port: u16,
    /// `alive` (registered with the scheduler) or `lost` (was registered, no longer is:
    /// stopped, or its heartbeats stopped for longer than the executor timeout).
    pub state: String,
    /// Task slots.
    pub task_slots: u32,
    /// Tasks running now, from the executor's last status report (`None` before the first).
    pub tasks_running: Option<u32>,
    /// Tasks finished successfully since the executor started, from its last status report.
    pub tasks_succeeded: Option<u64>,
    /// Tasks failed since the executor started, from its last status report.
    pub tasks_failed: Option<u64>,
    /// Resident memory of the executor process, bytes (its heartbeat or status report).
    pub memory_bytes: Option<u64>,
    /// Time of its last heartbeat (RFC 3339), if any.
    pub last_heartbeat: Option<String>,
}

/// What an executor reports of itself every heartbeat interval
/// (`POST /api/v1/executors/{id}/status`), for the UI's slots and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecutorStatus {
    /// Task slots.
    pub task_slots: u32,
    /// Tasks running now.
    pub tasks_running: u32,
    /// Tasks finished successfully since the executor started.
    pub tasks_succeeded: u64,
    /// Tasks failed since the executor started.
    pub tasks_failed: u64,
    /// Resident memory of the executor process, bytes.
    pub memory_bytes: u64,
}

/// Life cycle of a stream, as its driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Running micro-batches.
    Running,
    /// Stopped by its trigger (available-now) or by the user; everything read is committed.
    Stopped,
    /// Stopped by an error.
    Failed,
    /// Its driver stopped reporting: nothing heard for longer than the stream timeout while
    /// it was running (a killed driver, a lost machine, a network split). Shown, never
    /// reported: a driver that reports again is running again.
    Lost,
}

impl StreamState {
    /// The state's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }
}

/// One Kafka partition of a micro-batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Kafka partition.
    pub partition: i32,
    /// First offset the batch read.
    pub start_offset: i64,
    /// Offset after the last one it read.
    pub end_offset: i64,
    /// The partition's end (high watermark) when the batch was planned.
    pub latest_offset: i64,
    /// Messages behind: `latest_offset - end_offset`.
    pub lag: i64,
}

/// What micro-batches read, rejected and wrote: one batch's counts in its checkpoint commit
/// mark and its progress report, a driver run's totals in the stream's report. One type, so
/// the three never disagree about what a counter means.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchCounts {
    /// Messages read (Spark's `numInputRows`).
    pub records: i64,
    /// Planned offsets that held no message (removed by retention or compaction, or
    /// transaction markers).
    #[serde(default)]
    pub offsets_skipped: i64,
    /// Offsets the stream jumped over because its checkpoint's next offset was no longer in
    /// the topic (retention, or the topic created again) and `on_offsets_lost` said go on.
    #[serde(default)]
    pub offsets_lost: i64,
    /// Valid events (not late).
    pub events: u64,
    /// Quarantined messages by reason (`late` included).
    pub quarantined: std::collections::BTreeMap<String, u64>,
    /// Output rows written (windows).
    pub rows_written: u64,
    /// Events kept in the state for windows still open (after the batch; of a run's totals,
    /// after its last batch).
    pub state_events: u64,
    /// Open (window, key) groups kept as partial aggregates, all outputs whose aggregates
    /// merge (after the batch, as `state_events`).
    #[serde(default)]
    pub state_groups: u64,
    /// Bytes of the state's checkpoint files (Parquet, zstd) after the batch.
    #[serde(default)]
    pub state_bytes: u64,
    /// Output rows written, by output name (a stream with several `[[output]]`s).
    #[serde(default)]
    pub rows_by_output: std::collections::BTreeMap<String, u64>,
    /// Valid events whose key has no row in a lookup table, by lookup name (lookups with a
    /// declared `key` only): an INNER JOIN drops them, a LEFT JOIN keeps them.
    #[serde(default)]
    pub unmatched: std::collections::BTreeMap<String, u64>,
}

impl BatchCounts {
    /// Adds `batch` to these totals; the state is `batch`'s (the state after it).
    pub fn add(&mut self, batch: &BatchCounts) {
        self.records += batch.records;
        self.offsets_skipped += batch.offsets_skipped;
        self.offsets_lost += batch.offsets_lost;
        self.events += batch.events;
        for (reason, n) in &batch.quarantined {
            *self.quarantined.entry(reason.clone()).or_default() += n;
        }
        self.rows_written += batch.rows_written;
        self.state_events = batch.state_events;
        self.state_groups = batch.state_groups;
        self.state_bytes = batch.state_bytes;
        for (name, n) in &batch.rows_by_output {
            *self.rows_by_output.entry(name.clone()).or_default() += n;
        }
        for (name, n) in &batch.unmatched {
            *self.unmatched.entry(name.clone()).or_default() += n;
        }
    }

    /// Quarantined messages, all reasons.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

/// One committed micro-batch, as Spark's `StreamingQueryProgress`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamProgress {
    /// Batch id.
    pub batch_id: u64,
    /// When the batch committed (RFC 3339 UTC).
    pub timestamp: String,
    /// Kafka topic.
    pub topic: String,
    /// What the batch read, rejected and wrote (flattened: `records`, `events`, `quarantined`
    /// by reason, …).
    #[serde(flatten)]
    pub counts: BatchCounts,
    /// Messages read per second since the previous batch started (Spark's
    /// `inputRowsPerSecond`), events/s.
    pub input_rows_per_second: f64,
    /// Messages read per second of this batch's processing (Spark's
    /// `processedRowsPerSecond`), events/s.
    pub processed_rows_per_second: f64,
    /// Wall time of the batch, ms.
    pub duration_ms: u64,
    /// Wall time per phase, ms (`read`, `parse` or `scan`, `query`, `write`, `state`).
    pub phases_ms: std::collections::BTreeMap<String, u64>,
    /// The event-time watermark after the batch (RFC 3339), `None` before the first event.
    pub watermark: Option<String>,
    /// Per partition: offsets read and lag.
    pub partitions: Vec<PartitionProgress>,
}

/// What a stream driver sends the scheduler (`POST /api/v1/streams/{id}`): at start, after
/// each batch, and when it stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamUpdate {
    /// The job's name.
    pub name: String,
    /// The output folder (URL); the scheduler serves it as a Flight SQL table named after the
    /// job once a batch committed.
    pub output: String,
    /// State now.
    pub state: StreamState,
    /// The batch just committed, if this update is for one.
    pub progress: Option<StreamProgress>,
    /// Why it failed, one line.
    pub error: Option<String>,
}

/// One line of the streams list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamSummary {
    /// Stream run id (one per driver start).
    pub id: String,
    /// The job's name.
    pub name: String,
    /// The output folder (URL).
    pub output: String,
    /// State.
    pub state: StreamState,
    /// When the driver first reported (RFC 3339).
    pub started_at: String,
    /// When it last reported (RFC 3339).
    pub updated_at: String,
    /// Batches reported.
    pub batches: u64,
    /// The last batch, if any.
    pub last: Option<StreamProgress>,
    /// Why it failed, one line.
    pub error: Option<String>,
}

/// A stream with its recent batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: StreamSummary,
    /// The last batches (at most 120), oldest first.
    pub recent: Vec<StreamProgress>,
}

/// What the server serving the UI is: `scheduler` (jobs, executors, streams, dashboard) or
/// `serve` (embedded: streams and dashboard).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `scheduler` or `serve`.
    pub mode: String,
    /// Ember's version.
    pub version: String,
    /// The table the dashboard's daily revenue and top products read.
    pub daily_table: String,
    /// The table the dashboard's live windows read.
    pub windows_table: String,
}

/// An error answer: `{"error": "no job x", "kind": "user", "retryable": false}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, one line.
    pub error: String,
    /// Who has to act: `user` (a bad request, an unknown id: 4xx), `external` (something the
    /// server depends on failed), `internal` (a bug).
    #[serde(default = "user_kind")]
    pub kind: crate::ErrorKind,
    /// Whether the same request may succeed later.
    #[serde(default)]
    pub retryable: bool,
}

fn user_kind() -> crate::ErrorKind {
    crate::ErrorKind::User
}

impl ApiError {
    /// An answer for `error` of `kind`.
    pub fn new(kind: crate::ErrorKind, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            kind,
            retryable: kind.retryable(),
        }
    }
}
