//! Ember's REST API on the scheduler (`/api/v1/*`); bodies are [`ember_core::api`]'s.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ember_core::api::{API_PREFIX, ApiError, ExecutorStatus, JobState, SubmitJob, Submitted};
use serde::Deserialize;

use ember_core::ErrorKind;

use crate::jobs::{CancelError, JobManager};

/// An error answer; every error this API gives is the caller's (4xx, [`ErrorKind::User`]).
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ApiError::new(ErrorKind::User, message))).into_response()
}

/// The routes, with the job service as state.
pub fn routes(jobs: Arc<JobManager>) -> axum::Router {
    axum::Router::new()
        .route(&format!("{API_PREFIX}/jobs"), get(list).post(submit))
        .route(&format!("{API_PREFIX}/jobs/{{id}}"), get(detail))
        .route(&format!("{API_PREFIX}/jobs/{{id}}/cancel"), post(cancel))
        .route(&format!("{API_PREFIX}/executors"), get(executors))
        .route(
            &format!("{API_PREFIX}/executors/{{id}}/status"),
            post(executor_status),
        )
        .with_state(jobs)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<JobState>,
}

async fn list(
    State(jobs): State<Arc<JobManager>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => Json(jobs.list(q.state).await).into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("{e} (state is one of queued, running, succeeded, failed, cancelled)"),
        ),
    }
}

async fn submit(
    State(jobs): State<Arc<JobManager>>,
    body: Result<Json<SubmitJob>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(body)) => match jobs.check(&body.job) {
            Ok(()) => (
                StatusCode::ACCEPTED,
                Json(Submitted {
                    id: jobs.submit(body.job),
                }),
            )
                .into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("bad job submission: {}", e.body_text()),
        ),
    }
}

async fn detail(State(jobs): State<Arc<JobManager>>, Path(id): Path<String>) -> Response {
    match jobs.detail(&id).await {
        Some(detail) => Json(detail).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
    }
}

async fn cancel(State(jobs): State<Arc<JobManager>>, Path(id): Path<String>) -> Response {
    match jobs.cancel(&id).await {
        Ok(summary) => Json(summary).into_response(),
        Err(CancelError::NotFound) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(CancelError::Finished(state)) => error(
            StatusCode::CONFLICT,
            format!("job {id} already ended ({})", state.as_str()),
        ),
    }
}

async fn executors(State(jobs): State<Arc<JobManager>>) -> Response {
    Json(jobs.executors().await).into_response()
}

async fn executor_status(
    State(jobs): State<Arc<JobManager>>,
    Path(id): Path<String>,
    body: Result<Json<ExecutorStatus>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(status)) => {
            jobs.executor_status(&id, status);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("bad executor status: {}", e.body_text()),
        ),
    }
}
