//! The executor process (`ember executor`): a Ballista executor that knows Ember's plan nodes
//! (codecs), functions, session config and object stores. It registers with the scheduler,
//! heartbeats, pulls tasks, and stops gracefully on SIGTERM or Ctrl-C (Ballista's own signal
//! handling: it stops taking tasks and tells the scheduler).

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista_core::RuntimeProducer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::prelude::SessionConfig;
use ember_core::codec::Codecs;
use ember_core::runtime::RuntimeOptions;
use ember_core::session::SessionBuilder;

use ember_core::security::SecuritySettings;
use ember_core::security::grpc::{ClusterGuardLayer, endpoint_override};

use crate::config::ExecutorSettings;
use crate::error::{Error, Result};
use crate::tasks::{CountingEngine, TaskCounters};

/// Waits until the scheduler accepts TCP connections, for at most `timeout`.
///
/// # Errors
/// [`Error::SchedulerUnreachable`]: the address, how long Ember waited and the last connection
/// error.
pub async fn wait_for_scheduler(host: &str, port: u16, timeout: Duration) -> Result<()> {
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
            return Err(Error::SchedulerUnreachable {
                address,
                seconds: timeout.as_secs(),
                last_error: error,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ballista's executor configuration for Ember's settings and codecs; tasks are counted in
/// `counters` and the executor registers as `id`.
///
/// # Errors
/// The session's (an option DataFusion refuses).
pub fn process_config(
    settings: &ExecutorSettings,
    codecs: &Codecs,
    id: &str,
    counters: Arc<TaskCounters>,
) -> Result<ExecutorProcessConfig> {
    let slots = settings.task_slots;
    // The tasks' runtime: Ember's object stores, spill files in the work folder. Ballista adds
    // the memory pool on top of it (its memory_pool_size), so the runtime has none.
    let runtime = RuntimeOptions {
        storage: settings.storage.clone(),
        memory_limit: Some(0),
        spill_dir: settings.work_dir.clone(),
        metadata_cache_limit: settings.metadata_cache_limit,
    };
    let session = SessionBuilder::new(codecs.clone())
        .with_parallelism(slots)
        .with_runtime(runtime)
        .with_security(settings.security.clone());
    let config = session.ballista_config()?;
    let config_producer = Arc::new(move || config.clone());
    let for_tasks = session.clone();
    let runtime_producer: RuntimeProducer = Arc::new(move |_config: &SessionConfig| {
        for_tasks
            .runtime_env()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    });
    let state = session.state(
        session.ballista_config()?,
        Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default()),
    );
    let memory = RuntimeOptions {
        memory_limit: settings.memory_limit,
        ..Default::default()
    };
    let security = &settings.security;
    Ok(ExecutorProcessConfig {
        executor_id: id.to_string(),
        override_execution_engine: Some(Arc::new(CountingEngine::new(
            counters,
            security.paths.clone(),
        ))),
        // Calls to the scheduler and to other executors carry the cluster token (and TLS).
        override_create_grpc_client_endpoint: Some(endpoint_override(
            security.cluster_secret.clone(),
            security.tls.clone(),
        )),
        override_arrow_flight_service: Some(flight_server(security)?),
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
        override_logical_codec: Some(codecs.logical()),
        override_physical_codec: Some(codecs.physical()),
        ..Default::default()
    })
}

/// The executor's Arrow Flight server (shuffle reads, results): Ballista's Flight service
/// behind the cluster guard (every call needs the cluster token), over TLS with `[tls]`.
fn flight_server(
    security: &SecuritySettings,
) -> Result<Arc<ballista_executor::ArrowFlightServerProvider>> {
    let secret = security.cluster_secret.clone();
    let tls = security
        .tls
        .as_ref()
        .map(|t| t.tonic_server())
        .transpose()?;
    let defaults = ExecutorProcessConfig::default();
    let (decoding, encoding) = (
        defaults.grpc_max_decoding_message_size as usize,
        defaults.grpc_max_encoding_message_size as usize,
    );
    Ok(Arc::new(move |work_dir, address, mut shutdown, grpc| {
        let secret = secret.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = arrow_flight::flight_service_server::FlightServiceServer::new(
                ballista_executor::flight_service::BallistaFlightService::new(work_dir),
            )
            .max_decoding_message_size(decoding)
            .max_encoding_message_size(encoding);
            let mut server = ballista_core::utils::create_grpc_server(&grpc);
            if let Some(tls) = &tls {
                server = server
                    .tls_config(tls.clone())
                    .map_err(ballista_core::error::BallistaError::TonicError)?;
            }
            let guard = secret.map(|s| ClusterGuardLayer::new(s, "executor's Flight port"));
            server
                .layer(tower::util::option_layer(guard))
                .add_service(service)
                .serve_with_shutdown(address, shutdown.recv())
                .await
                .map_err(ballista_core::error::BallistaError::TonicError)
        })
    }))
}

/// Runs the executor with `codecs` until it is stopped (SIGTERM, Ctrl-C, or the scheduler).
///
/// # Errors
/// The scheduler cannot be reached, a port is taken, the work folder cannot be made, …
pub async fn run(settings: ExecutorSettings, codecs: Codecs) -> Result<()> {
    wait_for_scheduler(
        &settings.scheduler_host,
        settings.scheduler_port,
        settings.scheduler_connect_timeout,
    )
    .await?;
    if let Some(dir) = &settings.work_dir {
        std::fs::create_dir_all(dir).map_err(|source| ember_core::Error::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let counters = Arc::new(TaskCounters::default());
    let config = process_config(&settings, &codecs, &id, Arc::clone(&counters))?;
    let snapshot = crate::http::Snapshot {
        id: id.clone(),
        slots: u32::try_from(config.vcores).unwrap_or(u32::MAX),
        counters,
    };
    let metrics = crate::http::serve_metrics(
        &settings.bind_host,
        settings.metrics_port,
        settings.security.tls.clone(),
        snapshot.clone(),
    )
    .await?;
    tracing::info!(executor_id = %id, metrics = %format!("{}://{metrics}/metrics", settings.security.http_scheme()), "executor metrics served");
    let scheduler = ember_core::rest::Client::new(
        "--scheduler / EMBER_EXECUTOR_SCHEDULER",
        &format!("{}:{}", settings.scheduler_host, settings.scheduler_port),
        None,
        &settings.security,
    )?;
    tokio::spawn(crate::http::report_status(
        scheduler,
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
        .map_err(|e| Error::Stopped(ember_core::error::one_line(&e.to_string())))
}
