//! JSON bodies of the scheduler's REST API (`/api/v1/*`), shared by the scheduler (server) and
//! the `ember` commands (client). Times are RFC 3339 UTC strings; durations in milliseconds.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /api/v1/jobs` | [`SubmitJob`] | 202 [`Submitted`] |
//! | `GET /api/v1/jobs` | | 200 `[`[`JobSummary`]`]`, newest first |
//! | `GET /api/v1/jobs/{id}` | | 200 [`JobDetail`], 404 |
//! | `POST /api/v1/jobs/{id}/cancel` | | 200 [`JobSummary`], 404, 409 when already finished |
//! | `GET /api/v1/executors` | | 200 `[`[`ExecutorSummary`]`]` |
//!
//! Errors are [`ApiError`] with the HTTP status.

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
    /// Task slots.
    pub task_slots: u32,
    /// Time of its last heartbeat (RFC 3339), if any.
    pub last_heartbeat: Option<String>,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, one line.
    pub error: String,
}
