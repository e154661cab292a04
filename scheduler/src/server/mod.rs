//! The scheduler process (`ember scheduler`): Ballista's scheduler with Ember's session
//! (functions, plan nodes, codecs, object stores), plus Ember's job service and REST API.
//!
//! One port serves everything, as Ballista's own scheduler does:
//! - gRPC: Ballista's scheduler service (executors register and pull tasks; clients submit
//!   queries);
//! - `/api/*`: Ballista's REST API (its jobs, stages, executors);
//! - `/api/v1/*`: Ember's REST API (Ember jobs: submit, list, status, cancel; executors;
//!   streams; the dashboard's data), see [`ember_core::api`];
//! - `/` and `/ui/*`: the web UI, and `/metrics` (Prometheus), see [`crate::web`].
//!
//! The Arrow Flight SQL endpoint ([`crate::flight_sql`]) has a port of its own. Its queries go
//! to this scheduler like any client's, and each job that succeeds becomes a table named after
//! the job.
//!
//! A submitted job runs inside this process, as Spark's driver does in cluster mode: its
//! client-side steps (input listing, planning, commit) run here, and its distributed steps run
//! on the executors. The output commit therefore happens on the scheduler side, once every
//! task has succeeded.

mod api;
mod ballista_api;
mod jobs;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::flight_proxy_service::BallistaFlightProxyService;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use ember_core::codec::{EmberLogicalCodec, EmberPhysicalCodec};
use ember_core::config::SchedulerSettings;

use crate::flight_sql::FlightSqlEndpoint;
use ember_executor::runtime::{RuntimeOptions, runtime_env};

pub use jobs::JobManager;

/// Ballista's scheduler server with Ember's plan formats.
pub type BallistaScheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// The runtime of the scheduler's own sessions (planning, job drivers, Flight SQL): Ember's
/// object stores, since planning lists files and drivers commit them; no memory limit, since no
/// task runs in the scheduler.
///
/// # Errors
/// The runtime's, in one line.
pub(crate) fn client_runtime(
    storage: &ember_core::config::StorageSettings,
) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>, String> {
    let options = RuntimeOptions {
        storage: storage.clone(),
        memory_limit: Some(0),
        spill_dir: None,
    };
    runtime_env(&options, 1).map_err(|e| e.to_string())
}

/// Ballista's scheduler configuration for Ember's settings, listening on `port`.
///
/// # Errors
/// When the runtime for planning cannot be built.
pub fn ballista_config(settings: &SchedulerSettings, port: u16) -> Result<SchedulerConfig, String> {
    let partitions = settings.partitions;
    let runtime = client_runtime(&settings.storage)?;
    let session_builder = Arc::new(move |config: SessionConfig| {
        Ok(ember_core::session::session_state(
            config,
            Arc::clone(&runtime),
        ))
    });
    let config_producer = Arc::new(move || {
        ember_core::session::configure(
            <SessionConfig as ballista_core::extension::SessionConfigExt>::new_with_ballista(),
            partitions,
        )
    });
    let timeout = settings.executor_timeout.as_secs().max(1);
    Ok(SchedulerConfig {
        bind_host: settings.bind_host.clone(),
        bind_port: port,
        external_host: settings.external_host.clone(),
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: timeout,
        // Check for silent executors often enough to notice one within the timeout.
        expire_dead_executor_interval_seconds: (timeout / 2).clamp(1, 15),
        override_session_builder: Some(session_builder),
        override_config_producer: Some(config_producer),
        override_logical_codec: Some(Arc::new(EmberLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(EmberPhysicalCodec::default())),
        // `/` is Ember's web UI; Ballista's text page moves aside.
        web_tui_route: "/ballista".into(),
        ..SchedulerConfig::default()
    })
}

/// The gRPC side of the port: Ballista's scheduler service, and its Flight proxy (so clients
/// that cannot reach executors can fetch results through the scheduler).
fn grpc_routes(scheduler: &BallistaScheduler) -> axum::Router {
    let config = scheduler.state.config.clone();
    let max_decoding = config.grpc_server_max_decoding_message_size as usize;
    let max_encoding = config.grpc_server_max_encoding_message_size as usize;
    let grpc = SchedulerGrpcServer::new(scheduler.clone())
        .max_encoding_message_size(max_encoding)
        .max_decoding_message_size(max_decoding);
    let flight_proxy =
        BallistaFlightProxyService::new(max_decoding, max_encoding, config.use_tls, None);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(grpc);
    routes.add_service(
        arrow_flight::flight_service_server::FlightServiceServer::new(flight_proxy)
            .max_decoding_message_size(max_decoding)
            .max_encoding_message_size(max_encoding),
    );
    routes.routes().into_axum_router()
}

/// A running scheduler.
pub struct Started {
    /// The address it listens on (the actual port when 0 was asked for).
    pub address: SocketAddr,
    /// Ember's job service.
    pub jobs: Arc<JobManager>,
    /// The Flight SQL endpoint.
    pub flight_sql: FlightSqlEndpoint,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A session on the scheduler at `url` (`df://HOST:PORT`) for Flight SQL queries: Ember's
/// settings, tables in `ember.public`.
///
/// # Errors
/// The runtime's or Ballista's, in one line.
pub async fn flight_sql_context(
    settings: &SchedulerSettings,
    url: &str,
) -> Result<datafusion::prelude::SessionContext, String> {
    use ballista::prelude::SessionContextExt;
    let (catalog, schema) = crate::flight_sql::CATALOG;
    let config = ember_core::session::configure(
        <SessionConfig as ballista_core::extension::SessionConfigExt>::new_with_ballista(),
        settings.partitions,
    )
    .with_default_catalog_and_schema(catalog, schema)
    .with_create_default_catalog_and_schema(true);
    let state = ember_core::session::session_state(config, client_runtime(&settings.storage)?);
    let ctx = datafusion::prelude::SessionContext::remote_with_state(url, state)
        .await
        .map_err(|e| format!("Flight SQL session on {url}: {e}"))?;
    ember_core::session::register_functions(&ctx);
    Ok(ctx)
}

/// Binds the port and builds the scheduler (nothing is served until [`Started::serve`]).
///
/// # Errors
/// One line: the port cannot be bound, the configuration is invalid, …
pub async fn start(settings: SchedulerSettings) -> Result<Started, String> {
    let listener = tokio::net::TcpListener::bind((settings.bind_host.as_str(), settings.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}:{}: {e}",
                settings.bind_host, settings.port
            )
        })?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let config = ballista_config(&settings, address.port())?;
    config.validate().map_err(|e| e.to_string())?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    let scheduler: BallistaScheduler = create_scheduler(cluster, Arc::new(config))
        .await
        .map_err(|e| e.to_string())?;
    let ballista_rest = ballista_scheduler::api::get_routes(Arc::new(scheduler.clone()));
    // Submitted jobs connect to this very scheduler over loopback.
    let own_host = if settings.bind_host == "0.0.0.0" {
        "127.0.0.1".to_string()
    } else {
        settings.bind_host.clone()
    };
    let own_url = format!("df://{own_host}:{}", address.port());
    let jobs = Arc::new(JobManager::new(
        settings.clone(),
        own_url.clone(),
        ballista_api::BallistaApi::new(scheduler.clone(), ballista_rest.clone()),
    ));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let flight_sql = crate::flight_sql::serve(
        &settings.flight_sql,
        &settings.bind_host,
        flight_sql_context(&settings, &own_url).await?,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await?;
    jobs.serve_tables(flight_sql.clone());
    // HTTP: Ballista's REST API, Ember's, and the web UI, all behind Flight SQL's users and
    // tokens when it has some; gRPC (executors, Ballista clients) is not.
    let web = Arc::new(crate::web::Web {
        jobs: Some(Arc::clone(&jobs)),
        streams: Arc::default(),
        flight_sql: flight_sql.clone(),
        mode: "scheduler",
    });
    let http = crate::web::auth::guard(
        ballista_rest.merge(api::routes(Arc::clone(&jobs))),
        flight_sql.auth(),
    );
    let router = grpc_routes(&scheduler)
        .merge(http)
        .merge(crate::web::routes(web));
    Ok(Started {
        address,
        jobs,
        flight_sql,
        listener,
        router,
        stop,
    })
}

impl Started {
    /// Serves until `shutdown` resolves, then stops taking connections, lets running jobs
    /// finish for up to `grace`, and returns.
    ///
    /// # Errors
    /// One line when serving fails.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: std::time::Duration,
    ) -> Result<(), String> {
        let jobs = Arc::clone(&self.jobs);
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("scheduler stopped: {e}"));
        let _ = self.stop.send(true);
        served?;
        jobs.drain(grace).await;
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::warn!("shutdown requested: finishing running jobs");
}
