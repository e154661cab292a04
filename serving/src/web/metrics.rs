//! `/metrics` of the scheduler (or of `ember serve`), in Prometheus text: jobs by state, the
//! executors with their task slots and the tasks they ran (as each reports), and each stream's
//! last micro-batch: rates, duration, watermark and Kafka lag per partition. Collected when
//! scraped. Executors serve their own `/metrics` too (`ember_executor::http`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ember_info` | gauge (1) | `mode`, `version` |
//! | `ember_metadata_cache_bytes` | gauge, Parquet footers this process keeps, bytes | |
//! | `ember_dashboard_answers_total` | counter, dashboard calls answered | `from` (`cache`, `query`) |
//! | `ember_jobs` | gauge | `state` |
//! | `ember_job_rows_written_total` | counter | |
//! | `ember_history_unreadable_files` | gauge | |
//! | `ember_executors` | gauge | `state` (`alive`, `lost`) |
//! | `ember_executor_task_slots`, `ember_executor_tasks_running`, `ember_executor_memory_bytes` | gauge | `executor` |
//! | `ember_executor_tasks_succeeded_total`, `ember_executor_tasks_failed_total` | counter | `executor` |
//! | `ember_stream_running` | gauge (1/0) | `stream`, `id` |
//! | `ember_stream_batches_total` | counter | `stream`, `id` |
//! | `ember_stream_input_rows_per_second`, `ember_stream_processed_rows_per_second` | gauge, events/s | `stream`, `id` |
//! | `ember_stream_batch_duration_seconds`, `ember_stream_watermark_seconds` (Unix time) | gauge | `stream`, `id` |
//! | `ember_stream_lag_messages` | gauge | `stream`, `id`, `topic`, `partition` |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ember_core::api::{JobState, StreamState};
use ember_core::metrics::{CONTENT_TYPE, Exposition};

use super::Web;

/// The handler of `GET /metrics`.
pub async fn scheduler(State(web): State<Arc<Web>>) -> Response {
    let mut m = Exposition::default();
    m.gauge(
        "ember_info",
        "Ember server: mode and version",
        &[("mode", web.mode), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let footers = ember_core::runtime::metadata_cache_bytes();
    #[allow(clippy::cast_precision_loss)]
    m.gauge(
        "ember_metadata_cache_bytes",
        "Parquet footers this process keeps across queries (its footer cache), bytes",
        &[],
        footers as f64,
    );
    let (cached, queried) = web.answers.counts();
    for (from, n) in [("cache", cached), ("query", queried)] {
        m.counter(
            "ember_dashboard_answers",
            "Dashboard calls answered: from an answer kept since the table's last commit, or by its query",
            &[("from", from)],
            n,
        );
    }
    if let Some(cluster) = &web.cluster {
        let list = cluster.jobs(None).await;
        let mut by_state: BTreeMap<&str, u32> = [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for job in &list {
            *by_state.entry(job.state.as_str()).or_default() += 1;
        }
        for (state, n) in by_state {
            m.gauge(
                "ember_jobs",
                "Submitted jobs by state",
                &[("state", state)],
                f64::from(n),
            );
        }
        m.counter(
            "ember_job_rows_written",
            "Rows written by succeeded jobs",
            &[],
            list.iter().filter_map(|j| j.rows_written).sum(),
        );
        #[allow(clippy::cast_precision_loss)]
        m.gauge(
            "ember_history_unreadable_files",
            "Job history files the scheduler could not read when it started (left in place)",
            &[],
            cluster.unreadable_history_files() as f64,
        );
        let executors = cluster.executors().await;
        for state in ["alive", "lost"] {
            let n = executors.iter().filter(|e| e.state == state).count();
            #[allow(clippy::cast_precision_loss)]
            m.gauge(
                "ember_executors",
                "Executors by state",
                &[("state", state)],
                n as f64,
            );
        }
        for e in executors.iter().filter(|e| e.state == "alive") {
            let l = [("executor", e.id.as_str())];
            m.gauge(
                "ember_executor_task_slots",
                "Task slots of the executor",
                &l,
                f64::from(e.task_slots),
            );
            if let Some(n) = e.tasks_running {
                m.gauge(
                    "ember_executor_tasks_running",
                    "Tasks running on the executor",
                    &l,
                    f64::from(n),
                );
            }
            if let Some(n) = e.tasks_succeeded {
                m.counter(
                    "ember_executor_tasks_succeeded",
                    "Tasks the executor finished successfully",
                    &l,
                    n,
                );
            }
            if let Some(n) = e.tasks_failed {
                m.counter(
                    "ember_executor_tasks_failed",
                    "Tasks that failed on the executor",
                    &l,
                    n,
                );
            }
            if let Some(n) = e.memory_bytes {
                #[allow(clippy::cast_precision_loss)]
                m.gauge(
                    "ember_executor_memory_bytes",
                    "Resident memory of the executor process, bytes",
                    &l,
                    n as f64,
                );
            }
        }
    }
    for s in web.streams.list() {
        let l = [("stream", s.name.as_str()), ("id", s.id.as_str())];
        let running = if s.state == StreamState::Running {
            1.0
        } else {
            0.0
        };
        m.gauge(
            "ember_stream_running",
            "Whether the stream runs (1) or stopped (0)",
            &l,
            running,
        );
        m.gauge(
            "ember_stream_lost",
            "Whether the stream's driver has been silent for longer than the stream timeout (1)",
            &l,
            if s.state == StreamState::Lost {
                1.0
            } else {
                0.0
            },
        );
        m.counter(
            "ember_stream_batches",
            "Micro-batches committed",
            &l,
            s.batches,
        );
        let Some(p) = &s.last else { continue };
        m.gauge(
            "ember_stream_input_rows_per_second",
            "Messages read per second since the previous batch started, events/s",
            &l,
            p.input_rows_per_second,
        );
        m.gauge(
            "ember_stream_processed_rows_per_second",
            "Messages processed per second of batch time, events/s",
            &l,
            p.processed_rows_per_second,
        );
        #[allow(clippy::cast_precision_loss)]
        m.gauge(
            "ember_stream_batch_duration_seconds",
            "Wall time of the last batch, seconds",
            &l,
            p.duration_ms as f64 / 1000.0,
        );
        if let Some(w) = p
            .watermark
            .as_deref()
            .and_then(|w| chrono::DateTime::parse_from_rfc3339(w).ok())
        {
            #[allow(clippy::cast_precision_loss)]
            m.gauge(
                "ember_stream_watermark_seconds",
                "Event-time watermark, Unix time in seconds",
                &l,
                w.timestamp_micros() as f64 / 1e6,
            );
        }
        for part in &p.partitions {
            let partition = part.partition.to_string();
            #[allow(clippy::cast_precision_loss)]
            m.gauge(
                "ember_stream_lag_messages",
                "Messages of the partition not read yet when the last batch was planned",
                &[
                    l[0],
                    l[1],
                    ("topic", p.topic.as_str()),
                    ("partition", partition.as_str()),
                ],
                part.lag as f64,
            );
        }
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.encode()).into_response()
}
