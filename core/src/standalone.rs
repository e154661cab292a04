//! The embedded scheduler and executor of `ember run` and `ember serve`: Ballista's standalone
//! mode (an in-process scheduler on a loopback port and an executor pulling its tasks), set up
//! as Ballista's `SessionContext::standalone_with_state` does, but with Ember's retention of
//! finished jobs.
//!
//! Ballista's standalone scheduler keeps a finished job's execution graph (stages, tasks, their
//! metrics, the plan's file lists) for its default hour. An embedded stream runs one or two
//! jobs per micro-batch, and `ember serve` one per Flight SQL or dashboard query: at a 1 s
//! trigger that is thousands of graphs held at once. Here they are kept for
//! [`EMBEDDED_JOB_STATE_RETENTION`], as the cluster's scheduler keeps them for its
//! `--job-state-retention` (BENCHMARKS.md, "Soak").

use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_scheduler::cluster::{BallistaCluster, JobState};
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::metrics::default_metrics_collector;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

/// How long the embedded scheduler keeps a finished job's state (Ballista's default is an
/// hour).
pub const EMBEDDED_JOB_STATE_RETENTION: Duration = Duration::from_secs(120);

/// Bound on waiting for the in-process scheduler to accept connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An in-process scheduler and executor for `state`'s sessions, finished jobs kept
/// `retention` (at least 1 s). Returns the scheduler's URL (`df://localhost:PORT`, for
/// `SessionContext::remote_with_state`) and its job state (what it keeps of each job).
///
/// # Errors
/// The port cannot be bound, the scheduler does not answer within 30 s, the executor cannot
/// start.
pub async fn start(
    state: &SessionState,
    retention: Duration,
) -> Result<(String, Arc<dyn JobState>)> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        DataFusionError::Configuration(format!("embedded {what}: {e}"))
    };
    let codec = BallistaCodec::<LogicalPlanNode, PhysicalPlanNode>::new(
        state.config().ballista_logical_extension_codec(),
        state.config().ballista_physical_extension_codec(),
    );
    let session_config = state.config().clone();
    let max_message = session_config.ballista_grpc_client_max_message_size();
    let vcores = session_config.ballista_standalone_parallelism();
    let builder_state = state.clone();
    let cluster = BallistaCluster::new_memory(
        "localhost:50050",
        Arc::new(move |_: SessionConfig| Ok(builder_state.clone())),
        Arc::new(move || session_config.clone()),
    );
    let jobs = cluster.job_state();
    let config = SchedulerConfig::default()
        .with_scheduler_policy(ballista_core::config::TaskSchedulingPolicy::PullStaged)
        .with_finished_job_state_clean_up_interval_seconds(retention.as_secs().max(1));
    let metrics = default_metrics_collector().map_err(|e| failed("scheduler", &e))?;
    let mut scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> = SchedulerServer::new(
        "localhost:50050".to_owned(),
        cluster,
        codec,
        Arc::new(config),
        metrics,
    );
    scheduler
        .init()
        .await
        .map_err(|e| failed("scheduler", &e))?;
    let service = SchedulerGrpcServer::new(scheduler)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let listener = tokio::net::TcpListener::bind("localhost:0")
        .await
        .map_err(|e| failed("scheduler", &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| failed("scheduler", &e))?
        .port();
    tokio::spawn(
        create_grpc_server(&GrpcServerConfig::default())
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let url = format!("http://localhost:{port}");
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let client = loop {
        match SchedulerGrpcClient::connect(url.clone()).await {
            Ok(client) => break client,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(failed("scheduler", &e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    ballista_executor::new_standalone_executor_from_state(client, vcores, state)
        .await
        .map_err(|e| failed("executor", &e))?;
    Ok((format!("df://localhost:{port}"), jobs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista::prelude::SessionContextExt;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    /// A query runs on the embedded scheduler and executor, and its finished job is forgotten
    /// after the retention.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_jobs_are_forgotten_after_the_retention() {
        let config = SessionConfig::new_with_ballista().with_ballista_standalone_parallelism(1);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let (url, jobs) = start(&state, Duration::from_secs(1))
            .await
            .expect("embedded scheduler");
        let ctx = SessionContext::remote_with_state(&url, state)
            .await
            .expect("a session");
        let rows = ctx
            .sql("SELECT 40 + 2 AS answer")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        assert_eq!(rows[0].num_rows(), 1);
        assert_eq!(jobs.get_all_jobs().await.expect("jobs").len(), 1);
        let clock = std::time::Instant::now();
        while !jobs.get_all_jobs().await.expect("jobs").is_empty() {
            assert!(
                clock.elapsed() < Duration::from_secs(20),
                "the finished job is still kept"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
