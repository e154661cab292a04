//! What Ember's REST API needs from Ballista's scheduler: its jobs, their stages and tasks, job
//! cancellation, and executors. Stage details come from Ballista's own REST API (its routes,
//! called in-process, no network), so Ember reuses Ballista's summaries instead of re-deriving
//! them from crate-private state.

use ballista_api_types::dto::{QueryStagesResponse, TaskStatus};
use ballista_core::serde::protobuf::executor_metric::Metric;
use ballista_core::serde::protobuf::job_status;
use chrono::{DateTime, SecondsFormat, Utc};
use ember_core::api::{ExecutorSummary, StageDetail, StepDetail};
use http::{Method, Request, StatusCode};
use tower::ServiceExt;

use super::BallistaScheduler;

/// One Ballista job of an Ember run, before its stages are fetched.
#[derive(Debug, Clone)]
pub struct BallistaJob {
    /// Ballista's job id.
    pub id: String,
    /// The step, from the job name `<job> <run_id> <step>`.
    pub step: String,
    /// `Queued`, `Running`, `Successful` or `Failed`.
    pub state: String,
    /// Ballista's start time (ms since the epoch), to order steps.
    pub start_time: u64,
    /// Stages planned.
    pub stages_total: usize,
    /// Stages finished.
    pub stages_done: usize,
}

/// Access to Ballista's scheduler state and REST routes.
#[derive(Clone)]
pub struct BallistaApi {
    scheduler: BallistaScheduler,
    rest: axum::Router,
}

impl BallistaApi {
    /// Wraps the scheduler and its REST router.
    pub fn new(scheduler: BallistaScheduler, rest: axum::Router) -> Self {
        Self { scheduler, rest }
    }

    /// Ballista jobs whose name carries `run_id`, oldest first.
    pub async fn jobs_of(&self, run_id: &str) -> Vec<BallistaJob> {
        let jobs = self
            .scheduler
            .state
            .task_manager
            .get_all_jobs()
            .await
            .unwrap_or_default();
        let mut found: Vec<BallistaJob> = jobs
            .into_iter()
            .filter_map(|job| {
                let (_, step) = job.job_name.split_once(&format!(" {run_id} "))?;
                let state = match job.status.status {
                    Some(job_status::Status::Queued(_)) | None => "Queued",
                    Some(job_status::Status::Running(_)) => "Running",
                    Some(job_status::Status::Failed(_)) => "Failed",
                    Some(job_status::Status::Successful(_)) => "Successful",
                };
                Some(BallistaJob {
                    id: job.job_id.to_string(),
                    step: step.to_string(),
                    state: state.to_string(),
                    start_time: job.start_time,
                    stages_total: job.num_stages,
                    stages_done: job.completed_stages,
                })
            })
            .collect();
        found.sort_by_key(|j| j.start_time);
        found
    }

    async fn call(&self, method: Method, path: &str) -> Option<(StatusCode, bytes::Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .ok()?;
        let response = self.rest.clone().oneshot(request).await.ok()?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .ok()?;
        Some((status, body))
    }

    /// A step with its stages and task counts (Ballista's `/api/job/{id}/stages`).
    pub async fn step(&self, job: &BallistaJob) -> StepDetail {
        let stages = match self
            .call(Method::GET, &format!("/api/job/{}/stages", job.id))
            .await
        {
            Some((StatusCode::OK, body)) => {
                let mut stages: Vec<StageDetail> =
                    serde_json::from_slice::<QueryStagesResponse>(&body)
                        .map(|r| r.stages.into_iter().map(stage_detail).collect())
                        .unwrap_or_default();
                stages.sort_by_key(|s| s.stage_id.parse::<usize>().unwrap_or(usize::MAX));
                stages
            }
            _ => Vec::new(),
        };
        StepDetail {
            step: job.step.clone(),
            ballista_job_id: job.id.clone(),
            state: job.state.clone(),
            stages_total: job.stages_total,
            stages_done: job.stages_done,
            stages,
        }
    }

    /// Cancels a Ballista job that is queued or running (Ballista's `PATCH /api/job/{id}`).
    pub async fn cancel(&self, job_id: &str) {
        let _ = self
            .call(Method::PATCH, &format!("/api/job/{job_id}"))
            .await;
    }

    /// The executors registered with the scheduler (all `alive`; memory from their last
    /// heartbeat).
    pub async fn executors(&self) -> Vec<ExecutorSummary> {
        let state = self
            .scheduler
            .state
            .executor_manager
            .get_executors_state()
            .await
            .unwrap_or_default();
        state
            .into_iter()
            .map(|(meta, heartbeat, metrics)| ExecutorSummary {
                id: meta.id,
                host: meta.host,
                port: meta.port,
                state: "alive".to_string(),
                task_slots: meta.specification.vcores,
                tasks_running: None,
                tasks_succeeded: None,
                tasks_failed: None,
                memory_bytes: metrics.iter().find_map(|m| match m.metric {
                    Some(Metric::ProcPhysicalMemory(bytes)) => Some(bytes),
                    _ => None,
                }),
                last_heartbeat: heartbeat.and_then(|d| {
                    DateTime::<Utc>::from_timestamp(i64::try_from(d.as_secs()).ok()?, 0)
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                }),
            })
            .collect()
    }
}

fn stage_detail(stage: ballista_api_types::dto::QueryStageSummary) -> StageDetail {
    let mut detail = StageDetail {
        stage_id: stage.stage_id,
        state: stage.stage_status,
        tasks: stage.tasks.len(),
        input_rows: stage.input_rows,
        output_rows: stage.output_rows,
        plan: stage.stage_plan,
        ..StageDetail::default()
    };
    for task in stage.tasks.iter().flatten() {
        match task.status {
            TaskStatus::Running => detail.tasks_running += 1,
            TaskStatus::Successful => detail.tasks_done += 1,
            TaskStatus::Failed { .. } => detail.tasks_failed += 1,
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    detail
}
