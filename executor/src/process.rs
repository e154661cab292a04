//! The executor process (`ember executor`): a Ballista executor that knows Ember's plan nodes
//! (codecs), functions, session config and object stores. It registers with the scheduler,
//! heartbeats, pulls tasks, and stops gracefully on SIGTERM or Ctrl-C (Ballista's own signal
//! handling: it stops taking tasks and tells the scheduler).

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista_core::RuntimeProducer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::SessionConfigExt;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use ember_core::codec::{EmberLogicalCodec, EmberPhysicalCodec};
use ember_core::config::ExecutorSettings;
use ember_core::storage::EmberObjectStoreRegistry;

use crate::runtime::RuntimeOptions;
use crate::tasks::{CountingEngine, TaskCounters};

/// Waits until the scheduler accepts TCP connections, for at most `timeout`.
///
/// # Errors
/// One line naming the address, how long Ember waited and the last connection error.
pub async fn wait_for_scheduler(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let address = format!("{host}:{port}");
    loop {
        let error = match address.to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(addr) => match tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer within 2 s".to_string(),
                },
                None => "the name resolves to no address".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= timeout {
            return Err(format!(
                "cannot reach the scheduler at {address} after {} s ({error}); check --scheduler / EMBER_EXECUTOR_SCHEDULER",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ballista's executor configuration for Ember's settings; tasks are counted in `counters`
/// and the executor registers as `id`.
pub fn process_config(
    settings: &ExecutorSettings,
    id: &str,
    counters: Arc<TaskCounters>,
) -> ExecutorProcessConfig {
    let slots = settings.task_slots;
    let storage = settings.storage.clone();
    let work_dir = settings.work_dir.clone();
    let config_producer =
        Arc::new(move || ember_core::session::configure(SessionConfig::new_with_ballista(), slots));
    // Ballista adds the memory pool on top of this runtime (its memory_pool_size).
    let runtime_producer: RuntimeProducer = Arc::new(move |_config: &SessionConfig| {
        let mut builder = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(EmberObjectStoreRegistry::new(&storage)));
        if let Some(dir) = &work_dir {
            builder = builder.with_temp_file_path(dir.clone());
        }
        builder.build_arc()
    });
    let state = ember_core::session::session_state(
        ember_core::session::configure(SessionConfig::new_with_ballista(), slots),
        Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default()),
    );
    let memory = RuntimeOptions {
        memory_limit: settings.memory_limit,
        ..Default::default()
    };
    ExecutorProcessConfig {
        executor_id: id.to_string(),
        override_execution_engine: Some(Arc::new(CountingEngine::new(counters))),
        bind_host: settings.bind_host.clone(),
        external_host: Some(settings.external_host.clone()),
        port: settings.port,
        grpc_port: settings.grpc_port,
        scheduler_host: settings.scheduler_host.clone(),
        scheduler_port: settings.scheduler_port,
        // Ember waits for the scheduler itself ([`wait_for_scheduler`]); Ballista 55's own
        // bounded wait never times out.
        scheduler_connect_timeout_seconds: 0,
        vcores: slots,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: settings.work_dir.as_ref().map(|d| d.display().to_string()),
        executor_heartbeat_interval_seconds: settings.heartbeat_interval.as_secs().max(1),
        memory_pool_size: Some(memory.memory_pool_bytes(slots).unwrap_or(0)),
        print_thread_info: false,
        override_function_registry: Some(Arc::new((&state).into())),
        override_runtime_producer: Some(runtime_producer),
        override_config_producer: Some(config_producer),
        override_logical_codec: Some(Arc::new(EmberLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(EmberPhysicalCodec::default())),
        ..Default::default()
    }
}

/// Runs the executor until it is stopped (SIGTERM, Ctrl-C, or the scheduler).
///
/// # Errors
/// One line: the scheduler cannot be reached, a port is taken, …
pub async fn run(settings: ExecutorSettings) -> Result<(), String> {
    wait_for_scheduler(
        &settings.scheduler_host,
        settings.scheduler_port,
        settings.scheduler_connect_timeout,
    )
    .await?;
    if let Some(dir) = &settings.work_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("work dir {}: {e}", dir.display()))?;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let counters = Arc::new(TaskCounters::default());
    let config = process_config(&settings, &id, Arc::clone(&counters));
    let snapshot = crate::http::Snapshot {
        id: id.clone(),
        slots: u32::try_from(config.vcores).unwrap_or(u32::MAX),
        counters,
    };
    let metrics =
        crate::http::serve_metrics(&settings.bind_host, settings.metrics_port, snapshot.clone())
            .await?;
    tracing::info!(executor_id = %id, metrics = %format!("http://{metrics}/metrics"), "executor metrics served");
    tokio::spawn(crate::http::report_status(
        format!("{}:{}", settings.scheduler_host, settings.scheduler_port),
        settings.token.clone(),
        settings.heartbeat_interval,
        snapshot,
    ));
    tracing::info!(
        scheduler = %format!("{}:{}", settings.scheduler_host, settings.scheduler_port),
        flight = %format!("{}:{}", settings.bind_host, settings.port),
        slots = settings.task_slots,
        "ember executor starting"
    );
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ember_core::error::one_line(&format!("executor stopped: {e}")))
}
