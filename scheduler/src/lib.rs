//! Ember's scheduler process (`ember scheduler`): Ballista's scheduler with Ember's session
//! (functions, plan nodes, codecs, object stores), plus Ember's job service and REST API.
//!
//! One port serves everything, as Ballista's own scheduler does:
//! - gRPC: Ballista's scheduler service (executors register and pull tasks; clients submit
//!   queries);
//! - `/api/*`: Ballista's REST API (its jobs, stages, executors);
//! - `/api/v1/*`: Ember's REST API (Ember jobs: submit, list, status, cancel; executors;
//!   streams; the dashboard's data), see [`ember_core::api`];
//! - `/` and `/ui/*`: the web UI, and `/metrics` (Prometheus), see [`ember_serving::web`].
//!
//! The Arrow Flight SQL endpoint ([`ember_serving::flight_sql`]) has a port of its own. Its queries go
//! to this scheduler like any client's, and each job that succeeds becomes a table named after
//! the job.
//!
//! A submitted job runs inside this process, as Spark's driver does in cluster mode: its
//! client-side steps (input listing, planning, commit) run here, and its distributed steps run
//! on the executors. The output commit therefore happens on the scheduler side, once every
//! task has succeeded.

#![warn(missing_docs)]

mod api;
mod ballista_api;
pub mod config;
pub mod error;
pub mod history;
mod jobs;
mod serving_jobs;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::BallistaConfigGrpcEndpoint;
use ballista_core::flight_proxy_service::BallistaFlightProxyService;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use ember_core::codec::Codecs;
use ember_core::runtime::RuntimeOptions;
use ember_core::security::SecuritySettings;
use ember_core::security::grpc::{ClusterGuardLayer, endpoint_override};
use ember_core::session::SessionBuilder;
use ember_serving::flight_sql::{self, FlightSqlEndpoint};

use crate::config::SchedulerSettings;
pub use crate::error::{Error, Result};
pub use jobs::JobManager;

/// Ballista's scheduler server with Ember's plan formats.
pub type BallistaScheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// The session recipe of the scheduler's own sessions (planning, job drivers, Flight SQL):
/// Ember's object stores, since planning lists files and drivers commit them; no memory limit,
/// since no task runs in the scheduler; the settings' partitions per stage.
pub(crate) fn session(settings: &SchedulerSettings, codecs: &Codecs) -> SessionBuilder {
    SessionBuilder::new(codecs.clone())
        .with_parallelism(settings.partitions)
        .with_runtime(RuntimeOptions {
            storage: settings.storage.clone(),
            memory_limit: Some(0),
            spill_dir: None,
            metadata_cache_limit: settings.metadata_cache_limit,
        })
        .with_security(settings.security.clone())
}

/// Ballista's scheduler configuration for Ember's settings and codecs, listening on `port`.
///
/// # Errors
/// When the runtime for planning cannot be built.
pub fn ballista_config(
    settings: &SchedulerSettings,
    codecs: &Codecs,
    port: u16,
) -> Result<SchedulerConfig> {
    let builder = session(settings, codecs);
    let runtime = builder.runtime_env()?;
    let config = builder.ballista_config()?;
    let for_sessions = builder.clone();
    let session_builder =
        Arc::new(move |config: SessionConfig| Ok(for_sessions.state(config, Arc::clone(&runtime))));
    let config_producer = Arc::new(move || config.clone());
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
        override_logical_codec: Some(codecs.logical()),
        override_physical_codec: Some(codecs.physical()),
        // The scheduler's calls to executors carry the cluster token (and TLS).
        override_create_grpc_client_endpoint: Some(endpoint_override(
            settings.security.cluster_secret.clone(),
            settings.security.tls.clone(),
        )),
        // Finished jobs' state (stages, tasks, plans) is kept this long, then dropped: a stream's
        // micro-batches would otherwise pile up an hour of it (Ballista's default, 3600 s).
        // The job manager keeps each Ember job's steps as it last saw them.
        finished_job_state_clean_up_interval_seconds: settings.job_state_retention.as_secs().max(1),
        // `/` is Ember's web UI; Ballista's text page moves aside.
        web_tui_route: "/ballista".into(),
        ..SchedulerConfig::default()
    })
}

/// The gRPC side of the port: Ballista's scheduler service, and its Flight proxy (so clients
/// that cannot reach executors can fetch results through the scheduler).
///
/// Every call needs the cluster token (`ember_core::security::grpc`); the proxy's calls to
/// executors carry it.
fn grpc_routes(scheduler: &BallistaScheduler, security: &SecuritySettings) -> axum::Router {
    let config = scheduler.state.config.clone();
    let max_decoding = config.grpc_server_max_decoding_message_size as usize;
    let max_encoding = config.grpc_server_max_encoding_message_size as usize;
    let grpc = SchedulerGrpcServer::new(scheduler.clone())
        .max_encoding_message_size(max_encoding)
        .max_decoding_message_size(max_decoding);
    let to_executors = BallistaConfigGrpcEndpoint::new(endpoint_override(
        security.cluster_secret.clone(),
        security.tls.clone(),
    ));
    let flight_proxy = BallistaFlightProxyService::new(
        max_decoding,
        max_encoding,
        security.tls.is_some(),
        Some(Arc::new(to_executors)),
    );
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(grpc);
    routes.add_service(
        arrow_flight::flight_service_server::FlightServiceServer::new(flight_proxy)
            .max_decoding_message_size(max_decoding)
            .max_encoding_message_size(max_encoding),
    );
    let router = routes.routes().into_axum_router();
    match &security.cluster_secret {
        Some(secret) => router.layer(ClusterGuardLayer::new(
            Arc::clone(secret),
            "scheduler's port",
        )),
        None => router,
    }
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
    tls: Option<Arc<ember_core::security::Tls>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Binds the port and builds the scheduler with `codecs` (nothing is served until
/// [`Started::serve`]).
///
/// # Errors
/// The port cannot be bound, the configuration is invalid, the Flight SQL endpoint cannot
/// start, …
pub async fn start(settings: SchedulerSettings, codecs: Codecs) -> Result<Started> {
    let bind = |e| ember_core::Error::bind("scheduler", &settings.bind_host, settings.port, e);
    let listener = tokio::net::TcpListener::bind((settings.bind_host.as_str(), settings.port))
        .await
        .map_err(bind)?;
    let address = listener.local_addr().map_err(bind)?;
    let config = ballista_config(&settings, &codecs, address.port())?;
    config
        .validate()
        .map_err(|e| Error::InvalidConfig(e.to_string()))?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| Error::Ballista(e.to_string()))?;
    let ballista_jobs = cluster.job_state();
    let scheduler: BallistaScheduler = create_scheduler(cluster, Arc::new(config))
        .await
        .map_err(|e| Error::Ballista(e.to_string()))?;
    let ballista_rest = ballista_scheduler::api::get_routes(Arc::new(scheduler.clone()));
    // Submitted jobs connect to this very scheduler: over loopback, or with TLS by the name
    // its certificate carries (the external host).
    let own_host = if settings.security.tls.is_some() {
        settings.external_host.clone()
    } else if settings.bind_host == "0.0.0.0" {
        "127.0.0.1".to_string()
    } else {
        settings.bind_host.clone()
    };
    let own_url = format!("df://{own_host}:{}", address.port());
    let sessions = session(&settings, &codecs);
    let history = {
        let ctx = sessions.local()?;
        history::History::open(
            &settings.history_dir,
            ctx.runtime_env().object_store_registry.as_ref(),
        )?
    };
    // Streams: shown lost after the stream timeout; kept in the history's `streams/`.
    let streams = Arc::new(ember_serving::web::StreamRegistry::with_timeout(
        settings.stream_timeout,
    ));
    let stream_history = ember_serving::web::StreamHistory::new(history.dir().sub("streams"));
    streams.restore(stream_history.load().await);
    stream_history.spawn_flusher(&streams, std::time::Duration::from_millis(500));
    let jobs = Arc::new(
        JobManager::new(
            sessions.clone(),
            own_url.clone(),
            ballista_api::BallistaApi::new(scheduler.clone(), ballista_rest.clone()),
        )
        .with_history(history, settings.history_retention),
    );
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    // Flight SQL queries run on this scheduler; tables live in `ember.public`.
    let (catalog, schema) = flight_sql::CATALOG;
    let flight_sql_ctx = sessions
        .clone()
        .with_default_catalog(catalog, schema)
        .remote(&own_url)
        .await?;
    serving_jobs::name_serving_queries(&flight_sql_ctx);
    serving_jobs::spawn_sweeper(ballista_jobs, stopped.clone());
    let flight_sql = flight_sql::serve(
        &settings.flight_sql,
        &settings.security,
        &settings.bind_host,
        flight_sql_ctx,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await?;
    jobs.serve_tables(flight_sql.clone());
    jobs.restore().await;
    // HTTP: Ballista's REST API, Ember's, and the web UI, all behind Flight SQL's users and
    // tokens and their roles; gRPC (executors, Ballista clients) behind the cluster token.
    let web = Arc::new(ember_serving::web::Web {
        cluster: Some(Arc::clone(&jobs) as Arc<dyn ember_serving::Cluster>),
        streams,
        flight_sql: flight_sql.clone(),
        mode: "scheduler",
        answers: ember_serving::web::answers::Answers::default(),
    });
    let http = ember_serving::web::auth::guard(
        ballista_rest.merge(api::routes(Arc::clone(&jobs))),
        flight_sql.auth(),
    );
    let router = grpc_routes(&scheduler, &settings.security)
        .merge(http)
        .merge(ember_serving::web::routes(web));
    Ok(Started {
        address,
        jobs,
        flight_sql,
        listener,
        router,
        tls: settings.security.tls.clone(),
        stop,
    })
}

impl Started {
    /// Serves until `shutdown` resolves, then stops taking connections, lets running jobs
    /// finish for up to `grace`, and returns.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: std::time::Duration,
    ) -> Result<()> {
        let jobs = Arc::clone(&self.jobs);
        let served = ember_core::serve::http(
            "scheduler",
            self.listener,
            self.router,
            self.tls.as_ref(),
            shutdown,
        )
        .await;
        let _ = self.stop.send(true);
        served?;
        jobs.drain(grace).await;
        Ok(())
    }
}
