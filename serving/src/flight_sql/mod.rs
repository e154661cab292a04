//! The Arrow Flight SQL endpoint: BI tools, notebooks and ADBC/JDBC clients query Ember's
//! tables. Served by `ember scheduler` (queries run on the executors) and by `ember serve`
//! (embedded: an in-process scheduler and executor), on its own port (default 32010; the
//! scheduler's port already serves Ballista's Flight service).
//!
//! - [`service`]: statements, prepared statements with `$n` parameters, and the metadata calls
//!   (GetSqlInfo, GetCatalogs, GetDbSchemas, GetTables with schemas, GetTableTypes);
//! - [`catalog`]: job outputs and configured tables as listing tables with typed partition
//!   columns;
//! - [`auth`]: the basic handshake, bearer tokens, static tokens.
//!
//! Read-only by default: DDL, DML and COPY get `PERMISSION_DENIED`.

pub mod auth;
pub mod catalog;
pub mod service;
pub mod versions;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::prelude::SessionContext;
use ember_core::config::ViewFile;
use ember_core::security::{PathPolicy, SecuritySettings};

use crate::config::FlightSqlSettings;
use crate::error::{Error, Result};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use self::auth::{Auth, AuthLayer};
use self::service::EmberFlightSql;

/// Catalog and schema of Ember's tables: `ember.public.<table>`.
pub const CATALOG: (&str, &str) = ("ember", "public");

/// A running endpoint.
#[derive(Clone)]
pub struct FlightSqlEndpoint {
    /// Where it listens.
    pub address: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    ctx: SessionContext,
    views: Arc<Vec<ViewFile>>,
    auth: Arc<Auth>,
    paths: PathPolicy,
    /// The tables registered here and the location each serves.
    served: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
}

impl std::fmt::Debug for FlightSqlEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlEndpoint")
            .field("address", &self.address)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl FlightSqlEndpoint {
    /// The session Flight SQL queries run in (tables in `ember.public`); the web UI's
    /// dashboard queries run in it too.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The users and tokens of the endpoint, which the web UI and REST API accept too.
    pub fn auth(&self) -> Arc<Auth> {
        Arc::clone(&self.auth)
    }

    /// The allowed paths of tables.
    pub fn paths(&self) -> &PathPolicy {
        &self.paths
    }

    /// The location table `name` is served from, if it is registered here.
    pub fn served(&self, name: &str) -> Option<String> {
        self.served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Registers (or replaces) table `name` over `path` (see [`catalog::register`]).
    ///
    /// # Errors
    /// [`ember_core::Error::PathNotAllowed`] for a path outside `[security] allowed_paths`;
    /// DataFusion's, when the path cannot be listed or holds no readable file.
    pub async fn register(
        &self,
        name: &str,
        path: &str,
        format: &str,
    ) -> Result<catalog::Registered> {
        self.paths
            .check(&format!("Flight SQL table `{name}`"), path)?;
        let registered = catalog::register(&self.ctx, name, path, format)
            .await
            .map_err(|e| ember_core::Error::datafusion(format!("table {name} ({path})"), e))?;
        self.served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), registered.location.clone());
        let _ = self.create_views().await;
        Ok(registered)
    }

    /// Creates (or replaces) the configured views whose tables all exist; a view that cannot
    /// be planned yet waits for the next table. Returns the views not created, with why.
    pub async fn create_views(&self) -> Vec<(String, String)> {
        let mut waiting = Vec::new();
        for view in self.views.iter() {
            let sql = format!("CREATE OR REPLACE VIEW {} AS {}", view.name, view.sql);
            match self.ctx.sql(&sql).await {
                Ok(_) => tracing::info!(view = %view.name, "Flight SQL view created"),
                Err(e) => {
                    let why = e.to_string().replace('\n', " ");
                    tracing::info!(view = %view.name, error = %why, "Flight SQL view not created (yet)");
                    waiting.push((view.name.clone(), why));
                }
            }
        }
        waiting
    }
}

/// Binds `bind_host:settings.port`, registers the configured tables, and serves Flight SQL over
/// `ctx` in a background task until `shutdown` resolves.
///
/// # Errors
/// [`ember_core::Error::Bind`] when the port cannot be bound, [`Error::Tls`] when the TLS files cannot be
/// read or used.
pub async fn serve(
    settings: &FlightSqlSettings,
    security: &SecuritySettings,
    bind_host: &str,
    ctx: SessionContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<FlightSqlEndpoint> {
    const SERVICE: &str = "Flight SQL";
    let bind = |e| ember_core::Error::bind(SERVICE, bind_host, settings.port, e);
    let listener = tokio::net::TcpListener::bind((bind_host, settings.port))
        .await
        .map_err(bind)?;
    let address = listener.local_addr().map_err(bind)?;
    let mut builder = Server::builder();
    // Its own certificate (--flight-sql-tls-cert), else the cluster's [tls].
    let tls = match &settings.tls {
        Some((cert, key)) => {
            let read = |p: &std::path::PathBuf| {
                std::fs::read(p).map_err(|e| Error::Tls {
                    service: SERVICE,
                    message: format!("{}: {e}", p.display()),
                })
            };
            Some(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)))
        }
        None => security
            .tls
            .as_ref()
            .map(|t| t.tonic_server())
            .transpose()?,
    };
    let tls_on = tls.is_some();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|e| Error::Tls {
            service: SERVICE,
            message: e.to_string(),
        })?;
    }
    versions::install(&ctx)
        .map_err(|e| ember_core::Error::datafusion("the Flight SQL catalog", e))?;
    let auth = Arc::new(Auth::new(settings, security.cluster_secret.clone()));
    let service = EmberFlightSql::new(
        ctx.clone(),
        Arc::clone(&auth),
        settings.allow_writes,
        security.paths.clone(),
    );
    let router = builder
        .layer(AuthLayer::new(Arc::clone(&auth)))
        .add_service(FlightServiceServer::new(service));
    let incoming = TcpIncoming::from(listener);
    tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(error = %e, "Flight SQL endpoint stopped");
        }
    });
    let endpoint = FlightSqlEndpoint {
        address,
        tls: tls_on,
        ctx,
        views: Arc::new(settings.views.clone()),
        auth,
        paths: security.paths.clone(),
        served: Arc::default(),
    };
    for table in &settings.tables {
        if let Err(e) = endpoint
            .register(&table.name, &table.path, &table.format)
            .await
        {
            tracing::warn!(table = %table.name, path = %table.path, error = %e, "configured table not registered");
        }
    }
    let _ = endpoint.create_views().await;
    Ok(endpoint)
}
