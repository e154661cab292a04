//! The executor's own HTTP side: Prometheus `/metrics` on its metrics port, and a status
//! report to the scheduler every heartbeat interval (`POST /api/v1/executors/{id}/status`,
//! [`ember_core::api::ExecutorStatus`]) for the scheduler's Executors page and `/metrics`.
//!
//! | metric | type |
//! |---|---|
//! | `ember_executor_task_slots` | gauge |
//! | `ember_executor_tasks_running` | gauge |
//! | `ember_executor_tasks_succeeded_total`, `ember_executor_tasks_failed_total` | counter |
//! | `ember_executor_memory_bytes` | gauge, resident memory in bytes |
//! | `ember_executor_metadata_cache_bytes` | gauge, Parquet footers the process keeps, bytes |
//!
//! Each carries the label `executor` (the executor's id).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use ember_core::api::ExecutorStatus;
use ember_core::metrics::{CONTENT_TYPE, Exposition, resident_memory_bytes};

use crate::tasks::TaskCounters;

/// What the executor reports of itself.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The executor's id.
    pub id: String,
    /// Task slots.
    pub slots: u32,
    /// Its task counts.
    pub counters: Arc<TaskCounters>,
}

impl Snapshot {
    /// The status now.
    pub fn status(&self) -> ExecutorStatus {
        ExecutorStatus {
            task_slots: self.slots,
            tasks_running: u32::try_from(self.counters.running()).unwrap_or(u32::MAX),
            tasks_succeeded: self.counters.succeeded(),
            tasks_failed: self.counters.failed(),
            memory_bytes: resident_memory_bytes(),
        }
    }

    /// The status in Prometheus text.
    pub fn metrics(&self) -> String {
        let s = self.status();
        let l = [("executor", self.id.as_str())];
        let mut m = Exposition::default();
        m.gauge(
            "ember_executor_task_slots",
            "Task slots of the executor",
            &l,
            f64::from(s.task_slots),
        );
        m.gauge(
            "ember_executor_tasks_running",
            "Tasks running on the executor",
            &l,
            f64::from(s.tasks_running),
        );
        m.counter(
            "ember_executor_tasks_succeeded",
            "Tasks the executor finished successfully",
            &l,
            s.tasks_succeeded,
        );
        m.counter(
            "ember_executor_tasks_failed",
            "Tasks that failed on the executor",
            &l,
            s.tasks_failed,
        );
        #[allow(clippy::cast_precision_loss)]
        m.gauge(
            "ember_executor_memory_bytes",
            "Resident memory of the executor process, bytes",
            &l,
            s.memory_bytes as f64,
        );
        let footers = ember_core::runtime::metadata_cache_bytes();
        #[allow(clippy::cast_precision_loss)]
        m.gauge(
            "ember_executor_metadata_cache_bytes",
            "Parquet footers the executor process keeps across tasks (its footer cache), bytes",
            &l,
            footers as f64,
        );
        m.encode()
    }
}

/// Binds `host:port` and serves `/metrics` (over TLS with `tls`) in a background task;
/// returns the bound address.
///
/// # Errors
/// [`ember_core::Error::Bind`] when the port cannot be bound.
pub async fn serve_metrics(
    host: &str,
    port: u16,
    tls: Option<Arc<ember_core::security::Tls>>,
    snapshot: Snapshot,
) -> ember_core::Result<SocketAddr> {
    let bind = |e| ember_core::Error::bind("executor metrics", host, port, e);
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(bind)?;
    let address = listener.local_addr().map_err(bind)?;
    let router =
        axum::Router::new().route(
            "/metrics",
            get(move || {
                let snapshot = snapshot.clone();
                async move {
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], snapshot.metrics()).into_response()
                }
            }),
        );
    tokio::spawn(async move {
        let served = ember_core::serve::http(
            "executor metrics",
            listener,
            router,
            tls.as_ref(),
            std::future::pending(),
        )
        .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "executor metrics endpoint stopped");
        }
    });
    Ok(address)
}

/// Posts the executor's status to the scheduler through `scheduler` (which presents the
/// cluster token) every `every`, forever (run it as a task). A failed post is logged once until
/// posts succeed again.
pub async fn report_status(
    scheduler: ember_core::rest::Client,
    every: Duration,
    snapshot: Snapshot,
) {
    let path = format!("/executors/{}/status", snapshot.id);
    let mut failing = false;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match scheduler.send(&path, &snapshot.status()).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot report the executor's status to the scheduler");
            }
            Err(_) => {}
        }
    }
}
