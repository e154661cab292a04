//! The web side of a scheduler (`ember scheduler`) or of `ember serve`, on the same HTTP port
//! as the REST API: the web UI ([`ui`]: jobs, executors, streaming, revenue dashboard), the
//! streams' progress ([`streams`]), the dashboard's queries ([`dashboard`]), Prometheus
//! `/metrics` ([`metrics`]), and the authentication every page and API call goes through when
//! Flight SQL has users or tokens ([`auth`]).

pub mod answers;
pub mod auth;
pub mod dashboard;
pub mod metrics;
pub mod stream_history;
pub mod streams;
pub mod ui;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ember_core::ErrorKind;
use ember_core::api::{API_PREFIX, ApiError, ServerInfo, StreamUpdate};

use crate::Cluster;
use crate::flight_sql::FlightSqlEndpoint;

pub use stream_history::StreamHistory;
pub use streams::StreamRegistry;

/// The table the dashboard's daily revenue and top products read: the batch job's output,
/// served under the job's name.
pub const DAILY_TABLE: &str = "daily_revenue_by_product";
/// The table the dashboard's live windows read: the streaming job's output.
pub const WINDOWS_TABLE: &str = "hourly_product_revenue";

/// What the web routes share.
pub struct Web {
    /// The scheduler's jobs and executors (`None` in `ember serve`, which runs no submitted
    /// jobs).
    pub cluster: Option<Arc<dyn Cluster>>,
    /// The streams reported here.
    pub streams: Arc<StreamRegistry>,
    /// The Flight SQL endpoint: its session runs the dashboard's queries, its users and tokens
    /// guard the web side, and a reported stream's output is registered on it.
    pub flight_sql: FlightSqlEndpoint,
    /// `scheduler` or `serve`.
    pub mode: &'static str,
    /// The dashboard's answers, kept until their table commits again.
    pub answers: answers::Answers,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// An [`ApiError`] answer: 4xx are the caller's errors, 5xx the server's (its query engine
/// or storage failed).
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_server_error() {
        ErrorKind::External
    } else {
        ErrorKind::User
    };
    (status, Json(ApiError::new(kind, message))).into_response()
}

/// The web routes: UI pages and assets, `/metrics`, streams, dashboard, info; all behind
/// [`auth::require`] but `/api/v1/health`.
pub fn routes(web: Arc<Web>) -> axum::Router {
    let guarded = axum::Router::new()
        .merge(ui::routes())
        .route("/metrics", get(metrics::scheduler))
        .route(&format!("{API_PREFIX}/info"), get(info))
        .route(&format!("{API_PREFIX}/streams"), get(list_streams))
        .route(
            &format!("{API_PREFIX}/streams/{{id}}"),
            get(stream_detail).post(stream_update),
        )
        .merge(dashboard::routes())
        .with_state(Arc::clone(&web));
    auth::guard(guarded, web.flight_sql.auth())
        .route(&format!("{API_PREFIX}/health"), get(|| async { "ok\n" }))
}

async fn info(State(web): State<Arc<Web>>) -> Json<ServerInfo> {
    Json(ServerInfo {
        mode: web.mode.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        daily_table: DAILY_TABLE.to_string(),
        windows_table: WINDOWS_TABLE.to_string(),
    })
}

async fn list_streams(State(web): State<Arc<Web>>) -> Response {
    Json(web.streams.list()).into_response()
}

async fn stream_detail(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    match web.streams.detail(&id) {
        Some(d) => Json(d).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no stream {id}")),
    }
}

async fn stream_update(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    body: Result<Json<StreamUpdate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let update = match body {
        Ok(Json(u)) => u,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad stream update: {}", e.body_text()),
            );
        }
    };
    let committed = update
        .progress
        .as_ref()
        .is_some_and(|p| p.counts.rows_written > 0);
    let (name, output) = (update.name.clone(), update.output.clone());
    // A report names the stream's output, which becomes a table: it must be an allowed path,
    // stay the one the stream started with, and not take over a table served from elsewhere.
    if let Err(e) = web
        .flight_sql
        .paths()
        .check(&format!("stream {name}'s output"), &output)
    {
        return error(StatusCode::FORBIDDEN, e.to_string());
    }
    if let Some(location) = web.flight_sql.served(&name)
        && location.trim_end_matches('/') != output.trim_end_matches('/')
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "table {name} is served from {location}; stream {id} cannot take it over with {output}"
            ),
        );
    }
    if let Err(e) = web.streams.update(&id, update) {
        return error(StatusCode::CONFLICT, e.to_string());
    }
    // Serve the stream's output once a batch wrote windows (its sink log exists by then).
    if committed
        && web.flight_sql.served(&name).is_none()
        && let Err(e) = web.flight_sql.register(&name, &output, "parquet").await
    {
        tracing::warn!(stream = %name, output = %output, error = %e, "stream output not served");
    }
    StatusCode::NO_CONTENT.into_response()
}
