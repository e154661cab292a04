//! Ember's job service on the scheduler: runs submitted jobs, keeps their state, answers the
//! REST API. A job runs here through a client session connected to this very scheduler, so
//! its distributed steps are Ballista jobs on the executors and its commit happens here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ember_batch::committer::Committer;
use ember_core::api::{JobDetail, JobState, JobSummary, StepDetail};
// A job's error as the user reads it (REST, UI, history): one line, no Java stack frames.
use ember_core::error::tidy;
use ember_core::error::{Classify, ErrorKind};
use ember_core::manifest::Job;
use ember_core::session::SessionBuilder;
use ember_serving::flight_sql::FlightSqlEndpoint;

use crate::ballista_api::BallistaApi;
use crate::history::{History, JobEvent, JobRecord, Retention};

/// What the service knows of one job: what the history keeps of it, the events logged so far
/// (while it runs), and its runner.
struct Record {
    saved: JobRecord,
    events: Vec<JobEvent>,
    task: Option<tokio::task::AbortHandle>,
    /// The job's steps as last seen while it ran: Ballista forgets a finished step after
    /// `--job-state-retention`, a long job keeps it here.
    steps_seen: Vec<StepDetail>,
}

/// How often a running job's steps are read from Ballista (see `Record::steps_seen`): well
/// below the shortest `--job-state-retention` (10 s), so no finished step is forgotten unseen.
const STEPS_SEEN_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The error of a job that was queued or running when the scheduler stopped (found in the
/// history when it starts again).
pub const INTERRUPTED: &str = "scheduler restarted: the job was running when the scheduler stopped; its staging folder was removed and nothing of it was committed; submit it again";

/// Why a job cannot be cancelled.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelError {
    /// No job has this id.
    NotFound,
    /// The job already ended, in this state.
    Finished(JobState),
}

/// Runs and tracks submitted jobs.
pub struct JobManager {
    sessions: SessionBuilder,
    scheduler_url: String,
    tables: std::sync::OnceLock<FlightSqlEndpoint>,
    ballista: BallistaApi,
    jobs: Mutex<BTreeMap<String, Record>>,
    executors: Mutex<ExecutorBook>,
    history: Option<(History, Retention)>,
    /// History files [`JobManager::restore`] could not read.
    unreadable_history: std::sync::atomic::AtomicUsize,
}

/// What the scheduler remembers of executors beyond Ballista's registry: every executor seen
/// (so that one that left is shown as lost), and each one's last status report.
#[derive(Default)]
struct ExecutorBook {
    seen: BTreeMap<String, ember_core::api::ExecutorSummary>,
    status: BTreeMap<String, ember_core::api::ExecutorStatus>,
}

/// Executors remembered at most; the oldest lost ones are forgotten first.
const EXECUTORS_KEPT: usize = 500;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl JobManager {
    /// A service whose jobs connect to the scheduler at `scheduler_url` (`df://host:port`) with
    /// sessions made by `sessions`.
    pub fn new(sessions: SessionBuilder, scheduler_url: String, ballista: BallistaApi) -> Self {
        Self {
            sessions,
            scheduler_url,
            tables: std::sync::OnceLock::new(),
            ballista,
            jobs: Mutex::new(BTreeMap::new()),
            executors: Mutex::new(ExecutorBook::default()),
            history: None,
            unreadable_history: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Keeps every job's history in `history` (see [`crate::history`]), forgetting ended jobs
    /// past `retention`; [`JobManager::restore`] reads it back.
    #[must_use]
    pub fn with_history(mut self, history: History, retention: Retention) -> Self {
        self.history = Some((history, retention));
        self
    }

    /// Reads the history back (when the scheduler starts): ended jobs are listed as they
    /// ended; a job that was queued or running when the scheduler stopped is failed with
    /// [`INTERRUPTED`] and its staging folder removed. Succeeded jobs' outputs are served over
    /// Flight SQL again. Returns how many jobs came back.
    pub async fn restore(&self) -> usize {
        let Some((history, _)) = &self.history else {
            return 0;
        };
        let loaded = match history.load().await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(history = history.url(), error = %e, "job history not read; old jobs are not listed");
                return 0;
            }
        };
        self.unreadable_history.store(
            loaded.unreadable.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for file in &loaded.unreadable {
            tracing::warn!(
                file,
                "job history: a file that is not a job's record; left in place"
            );
        }
        let mut records = loaded.records;
        records.sort_by(|a, b| (a.submitted_at, &a.id).cmp(&(b.submitted_at, &b.id)));
        let count = records.len();
        for mut record in records {
            if !record.state.is_final() {
                let ended = self.end_interrupted(&record).await;
                record.apply(&ended);
                if let Err(e) = history.compact(&record).await {
                    tracing::warn!(job_id = %record.id, error = %e, "job history not written");
                }
            }
            if record.state == JobState::Succeeded {
                self.serve_output(&record.id, &record.job).await;
            }
            self.jobs().insert(
                record.id.clone(),
                Record {
                    saved: record,
                    events: Vec::new(),
                    task: None,
                    steps_seen: Vec::new(),
                },
            );
        }
        self.retain().await;
        tracing::info!(jobs = count, history = history.url(), "job history read");
        count
    }

    /// Ends a job that was queued or running when the scheduler stopped, as the next run of
    /// its output would ([`ember_batch::end_interrupted`]): a commit it had begun is finished
    /// (the job then succeeded, without its report), otherwise its staging folder is removed
    /// and it failed with [`INTERRUPTED`].
    async fn end_interrupted(&self, record: &JobRecord) -> JobEvent {
        let ended = match self.sessions.local() {
            Ok(ctx) => ember_batch::end_interrupted(&ctx, &record.job, &record.id)
                .await
                .map_err(|e| tidy(&e.to_string())),
            Err(e) => Err(tidy(&e.to_string())),
        };
        let (state, error) = match ended {
            Ok(true) => {
                tracing::warn!(job_id = %record.id, "job interrupted by a scheduler restart during its commit: the commit was finished");
                (JobState::Succeeded, None)
            }
            Ok(false) => {
                tracing::warn!(job_id = %record.id, "job interrupted by a scheduler restart: failed");
                (JobState::Failed, Some(INTERRUPTED.to_string()))
            }
            Err(e) => {
                tracing::warn!(job_id = %record.id, error = %e, "job interrupted by a scheduler restart: its staging folder was not removed");
                (
                    JobState::Failed,
                    Some(format!(
                        "scheduler restarted: the job was running when the scheduler stopped; its staging folder could not be removed ({e}); submit it again"
                    )),
                )
            }
        };
        JobEvent::Ended {
            at: Utc::now(),
            error_kind: error.as_ref().map(|_| ErrorKind::External),
            state,
            error,
            report: None,
            steps: Vec::new(),
        }
    }

    /// Serves succeeded job `id`'s output over Flight SQL as a table named after the job
    /// (when [`JobManager::serve_tables`] was called); a failure is logged.
    async fn serve_output(&self, id: &str, job: &Job) {
        if let Some(endpoint) = self.tables.get()
            && let Err(e) = endpoint
                .register(&job.name, &job.output.path, "parquet")
                .await
        {
            tracing::warn!(job_id = %id, error = %e, "the job's output is not served over Flight SQL");
        }
    }

    /// Logs `event` of job `id` (applied to its record) to the history.
    async fn log(&self, id: &str, event: JobEvent) {
        let events = {
            let mut jobs = self.jobs();
            let Some(record) = jobs.get_mut(id) else {
                return;
            };
            if record.saved.state.is_final() {
                // Cancelled meanwhile.
                return;
            }
            record.saved.apply(&event);
            record.events.push(event);
            record.events.clone()
        };
        if let Some((history, _)) = &self.history
            && let Err(e) = history.log(id, &events).await
        {
            tracing::warn!(job_id = %id, error = %e, "job history not written");
        }
    }

    /// Ends job `id` with `event` (a [`JobEvent::Ended`]): applies it, writes the job's
    /// record to the history, and applies the retention.
    async fn end(&self, id: &str, event: JobEvent) {
        let saved = {
            let mut jobs = self.jobs();
            let Some(record) = jobs.get_mut(id) else {
                return;
            };
            // The first end wins; a cancel marks the job cancelled before it ends it, so the
            // runner it aborted cannot end it otherwise.
            let cancelling = matches!(
                event,
                JobEvent::Ended {
                    state: JobState::Cancelled,
                    ..
                }
            );
            if record.saved.finished_at.is_some()
                || (record.saved.state == JobState::Cancelled && !cancelling)
            {
                return;
            }
            record.saved.apply(&event);
            record.events.clear();
            record.task = None;
            // The ended record holds its steps now.
            record.steps_seen = Vec::new();
            record.saved.clone()
        };
        if let Some((history, _)) = &self.history {
            if let Err(e) = history.compact(&saved).await {
                tracing::warn!(job_id = %id, error = %e, "job history not written");
            }
            self.retain().await;
        }
    }

    /// Forgets ended jobs past the retention, here and in the history.
    async fn retain(&self) {
        let Some((history, retention)) = &self.history else {
            return;
        };
        let expired = {
            let mut jobs = self.jobs();
            let ended: Vec<(String, DateTime<Utc>)> = jobs
                .iter()
                .filter_map(|(id, r)| r.saved.finished_at.map(|at| (id.clone(), at)))
                .collect();
            let expired = retention.expired(&ended, Utc::now());
            for id in &expired {
                jobs.remove(id);
            }
            expired
        };
        for id in expired {
            if let Err(e) = history.forget(&id).await {
                tracing::warn!(job_id = %id, error = %e, "job history: an expired job not deleted");
            }
        }
    }

    /// The job's distributed steps: as Ballista knows them now, and those it has forgotten
    /// since (after `--job-state-retention`) as they were last seen, oldest first.
    async fn live_steps(&self, id: &str) -> Vec<StepDetail> {
        let mut now = Vec::new();
        for job in self.ballista.jobs_of(id).await {
            now.push(self.ballista.step(&job).await);
        }
        let mut jobs = self.jobs();
        let Some(record) = jobs.get_mut(id) else {
            return now;
        };
        for step in now {
            let seen = record
                .steps_seen
                .iter_mut()
                .find(|s| s.ballista_job_id == step.ballista_job_id);
            match seen {
                Some(seen) => *seen = step,
                None => record.steps_seen.push(step),
            }
        }
        record.steps_seen.clone()
    }

    /// Removes job `id`'s staging folder under `output` (cancelled or interrupted jobs).
    async fn remove_staging(&self, id: &str, output: &str) {
        let removed = self
            .sessions
            .local()
            .map_err(|e| e.to_string())
            .and_then(|ctx| Committer::new(&ctx, output, id).map_err(|e| e.to_string()));
        let result = match removed {
            Ok(committer) => committer.cleanup().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(job_id = %id, error = %e, "staging folder not removed");
        }
    }

    fn jobs(&self) -> MutexGuard<'_, BTreeMap<String, Record>> {
        // A panic while holding the lock leaves consistent records (every update is one
        // assignment), so a poisoned lock is still usable.
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The executors: those registered with the scheduler (`alive`, with their last status
    /// report), then those seen before that are no longer registered (`lost`).
    pub async fn executors(&self) -> Vec<ember_core::api::ExecutorSummary> {
        let alive = self.ballista.executors().await;
        let mut book = self
            .executors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all = Vec::with_capacity(alive.len());
        for mut e in alive {
            if let Some(status) = book.status.get(&e.id) {
                e.tasks_running = Some(status.tasks_running);
                e.tasks_succeeded = Some(status.tasks_succeeded);
                e.tasks_failed = Some(status.tasks_failed);
                e.memory_bytes = e.memory_bytes.or(Some(status.memory_bytes));
            }
            book.seen.insert(e.id.clone(), e.clone());
            all.push(e);
        }
        let lost: Vec<String> = book
            .seen
            .keys()
            .filter(|id| !all.iter().any(|e| &e.id == *id))
            .cloned()
            .collect();
        for id in lost {
            if let Some(e) = book.seen.get_mut(&id) {
                e.state = "lost".to_string();
                e.tasks_running = Some(0);
                all.push(e.clone());
            }
        }
        // A status report of an executor the scheduler does not know (any more) is dropped.
        let ExecutorBook { seen, status } = &mut *book;
        status.retain(|id, _| seen.contains_key(id));
        while book.seen.len() > EXECUTORS_KEPT {
            let Some(id) = book
                .seen
                .iter()
                .filter(|(_, e)| e.state == "lost")
                .min_by(|a, b| a.1.last_heartbeat.cmp(&b.1.last_heartbeat))
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            book.seen.remove(&id);
            book.status.remove(&id);
        }
        all
    }

    /// Records an executor's status report (`POST /api/v1/executors/{id}/status`).
    pub fn executor_status(&self, id: &str, status: ember_core::api::ExecutorStatus) {
        self.executors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .status
            .insert(id.to_string(), status);
    }

    /// Checks a job received over the REST API as `ember submit` checks a manifest
    /// ([`Job::validate`]), and its paths: absolute (relative paths would resolve against the
    /// scheduler's working folder, not the user's; `ember submit` makes them absolute) and
    /// inside `[security] allowed_paths`.
    ///
    /// # Errors
    /// The first rule the job breaks, one line.
    pub fn check(&self, job: &Job) -> ember_core::Result<()> {
        job.validate()?;
        for (what, path) in job.paths() {
            if !path.starts_with('/') && !path.contains("://") {
                return Err(ember_core::Error::InvalidJob {
                    path: job.manifest_path.clone(),
                    message: format!(
                        "{what} path `{path}` is relative; submit absolute paths or URLs"
                    ),
                });
            }
            self.sessions.security().paths.check(&what, path)?;
        }
        Ok(())
    }

    /// Accepts `job` (checked with [`JobManager::check`]) and starts running it; returns its
    /// id.
    pub fn submit(self: &Arc<Self>, job: Job) -> String {
        let id = ember_batch::new_run_id();
        let at = Utc::now();
        self.jobs().insert(
            id.clone(),
            Record {
                saved: JobRecord::queued(&id, job.clone(), at),
                events: vec![JobEvent::Submitted {
                    job: Box::new(job.clone()),
                    at,
                }],
                task: None,
                steps_seen: Vec::new(),
            },
        );
        let this = Arc::clone(self);
        let run_id = id.clone();
        let task = tokio::spawn(async move { this.execute(run_id, job).await });
        if let Some(record) = self.jobs().get_mut(&id) {
            record.task = Some(task.abort_handle());
        }
        tracing::info!(job_id = %id, "job submitted");
        id
    }

    /// Registers each succeeded job's output on `endpoint` as a table named after the job.
    pub fn serve_tables(&self, endpoint: FlightSqlEndpoint) {
        let _ = self.tables.set(endpoint);
    }

    async fn execute(&self, id: String, job: Job) {
        self.log(&id, JobEvent::Started { at: Utc::now() }).await;
        // A session that runs the job's distributed steps on this scheduler's executors.
        let result = match self.sessions.remote(&self.scheduler_url).await {
            Ok(ctx) => {
                let run = ember_batch::run_with_id(&ctx, &job, "ballista-cluster", &id);
                tokio::pin!(run);
                let mut every = tokio::time::interval(STEPS_SEEN_EVERY);
                loop {
                    tokio::select! {
                        result = &mut run => break result.map_err(|e| (tidy(&e.to_string()), e.kind())),
                        _ = every.tick() => {
                            self.live_steps(&id).await;
                        }
                    }
                }
            }
            Err(e) => Err((tidy(&e.to_string()), e.kind())),
        };
        if result.is_ok() {
            self.serve_output(&id, &job).await;
        }
        let steps = self.live_steps(&id).await;
        let ended = match result {
            Ok(report) => {
                tracing::info!(job_id = %id, rows = report.rows.written, "job succeeded");
                JobEvent::Ended {
                    at: Utc::now(),
                    state: JobState::Succeeded,
                    error: None,
                    error_kind: None,
                    report: Some(Box::new(report)),
                    steps,
                }
            }
            Err((error, kind)) => {
                tracing::warn!(job_id = %id, %error, kind = kind.as_str(), "job failed");
                JobEvent::Ended {
                    at: Utc::now(),
                    state: JobState::Failed,
                    error: Some(error),
                    error_kind: Some(kind),
                    report: None,
                    steps,
                }
            }
        };
        self.end(&id, ended).await;
    }

    fn summary(&self, id: &str, record: &JobRecord) -> JobSummary {
        let end = record.finished_at.unwrap_or_else(Utc::now);
        JobSummary {
            id: id.to_string(),
            name: record.job.name.clone(),
            state: record.state,
            submitted_at: rfc3339(record.submitted_at),
            started_at: record.started_at.map(rfc3339),
            finished_at: record.finished_at.map(rfc3339),
            duration_ms: record
                .started_at
                .map(|s| u64::try_from((end - s).num_milliseconds()).unwrap_or(0)),
            stages_done: record.steps.iter().map(|s| s.stages_done).sum(),
            stages_total: record.steps.iter().map(|s| s.stages_total).sum(),
            rows_written: record.report.as_ref().map(|r| r.rows.written),
            error: record.error.clone(),
            error_kind: record.error_kind,
        }
    }

    /// The summary with the stages Ballista knows now (a job without its ended steps).
    async fn with_stages(&self, mut summary: JobSummary) -> JobSummary {
        if summary.stages_total > 0 {
            return summary;
        }
        for job in self.ballista.jobs_of(&summary.id).await {
            summary.stages_done += job.stages_done;
            summary.stages_total += job.stages_total;
        }
        summary
    }

    /// All jobs, newest first; only those in `state` when given.
    pub async fn list(&self, state: Option<JobState>) -> Vec<JobSummary> {
        let summaries: Vec<JobSummary> = {
            let jobs = self.jobs();
            let mut records: Vec<(&String, &Record)> = jobs
                .iter()
                .filter(|(_, r)| state.is_none_or(|s| r.saved.state == s))
                .collect();
            // Ids sort by second only; the submit instant orders jobs of the same second.
            records
                .sort_by(|a, b| (b.1.saved.submitted_at, b.0).cmp(&(a.1.saved.submitted_at, a.0)));
            records
                .into_iter()
                .map(|(id, r)| self.summary(id, &r.saved))
                .collect()
        };
        let mut out = Vec::with_capacity(summaries.len());
        for summary in summaries {
            out.push(self.with_stages(summary).await);
        }
        out
    }

    /// One job with its steps, stages and tasks.
    pub async fn detail(&self, id: &str) -> Option<JobDetail> {
        let (summary, output, report, ended_steps) = {
            let jobs = self.jobs();
            let record = &jobs.get(id)?.saved;
            (
                self.summary(id, record),
                record.job.output.path.clone(),
                record.report.clone(),
                record.steps.clone(),
            )
        };
        let summary = self.with_stages(summary).await;
        let steps = if ended_steps.is_empty() {
            self.live_steps(id).await
        } else {
            ended_steps
        };
        Some(JobDetail {
            summary,
            output,
            report,
            steps,
        })
    }

    /// Cancels a queued or running job: stops its runner, cancels its running distributed
    /// steps, and removes its staging folder. Nothing is committed.
    ///
    /// # Errors
    /// [`CancelError`] when there is no such job or it already ended.
    pub async fn cancel(&self, id: &str) -> Result<JobSummary, CancelError> {
        let output = {
            let mut jobs = self.jobs();
            let record = jobs.get_mut(id).ok_or(CancelError::NotFound)?;
            if record.saved.state.is_final() {
                return Err(CancelError::Finished(record.saved.state));
            }
            if let Some(task) = record.task.take() {
                task.abort();
            }
            // Final at once, so that the aborted runner's last event cannot change it.
            record.saved.state = JobState::Cancelled;
            record.saved.job.output.path.clone()
        };
        for job in self.ballista.jobs_of(id).await {
            if matches!(job.state.as_str(), "Queued" | "Running") {
                self.ballista.cancel(&job.id).await;
            }
        }
        self.remove_staging(id, &output).await;
        let steps = self.live_steps(id).await;
        self.end(
            id,
            JobEvent::Ended {
                at: Utc::now(),
                state: JobState::Cancelled,
                error: Some("cancelled".to_string()),
                error_kind: None,
                report: None,
                steps,
            },
        )
        .await;
        tracing::info!(job_id = %id, "job cancelled");
        let jobs = self.jobs();
        let record = jobs.get(id).ok_or(CancelError::NotFound)?;
        Ok(self.summary(id, &record.saved))
    }

    /// Waits until no job is queued or running, for at most `grace` (graceful shutdown).
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self
                .jobs()
                .values()
                .filter(|r| !r.saved.state.is_final())
                .count();
            if running == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    running,
                    "shutdown: jobs still running after the grace period are abandoned; their staging folders stay"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[async_trait::async_trait]
impl ember_serving::Cluster for JobManager {
    async fn jobs(&self, state: Option<JobState>) -> Vec<JobSummary> {
        self.list(state).await
    }

    async fn executors(&self) -> Vec<ember_core::api::ExecutorSummary> {
        JobManager::executors(self).await
    }

    fn unreadable_history_files(&self) -> usize {
        self.unreadable_history
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
