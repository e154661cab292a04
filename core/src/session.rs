//! The one recipe for an Ember session, used by every role (client, scheduler, executors,
//! embedded mode, the stream driver, Flight SQL), so that a plan made in one place runs in
//! another: Ember's functions and plan nodes are known everywhere, their codecs travel in the
//! session config, and SQL spans are collected for `file:line:column` errors.
//!
//! A [`SessionBuilder`] holds what differs between roles (codecs, parallelism, runtime, default
//! catalog, extra options) and makes the session three ways:
//! - [`SessionBuilder::local`]: plain single-process DataFusion (comparisons, the stream
//!   driver's window query, `.slt` suites);
//! - [`SessionBuilder::standalone`]: an in-process Ballista scheduler and executor (embedded
//!   mode: `ember run`, `ember serve`), so a job runs through the same distributed planner,
//!   task serialization and shuffle files as on a cluster;
//! - [`SessionBuilder::remote`]: a client of a Ballista scheduler (`df://HOST:PORT`).
//!
//! The scheduler and executor processes take [`SessionBuilder::ballista_config`] and
//! [`SessionBuilder::state`] as Ballista's config producer and session builder.

use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::codec::Codecs;
use crate::error::{Error, Result};
use crate::runtime::{RuntimeOptions, runtime_env};
use crate::security::SecuritySettings;
use crate::sink::EmberQueryPlanner;
use crate::udf;

/// How to build a role's session; see the module documentation.
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    codecs: Codecs,
    parallelism: usize,
    runtime: RuntimeOptions,
    catalog: Option<(String, String)>,
    options: Vec<(String, String)>,
    security: SecuritySettings,
}

impl SessionBuilder {
    /// A builder with `codecs`, as many partitions per stage as CPU cores, and the default
    /// runtime (local and HDFS stores, 512 MiB of memory per partition before operators spill).
    pub fn new(codecs: Codecs) -> Self {
        Self {
            codecs,
            parallelism: 0,
            runtime: RuntimeOptions::default(),
            catalog: None,
            options: Vec::new(),
            security: SecuritySettings::default(),
        }
    }

    /// The cluster's security: sessions that talk to a cluster (`remote`, the scheduler's and
    /// executors' configs) present the cluster token on every gRPC call and use TLS when it is
    /// configured.
    pub fn with_security(mut self, security: SecuritySettings) -> Self {
        self.security = security;
        self
    }

    /// The security settings.
    pub fn security(&self) -> &SecuritySettings {
        &self.security
    }

    /// Partitions per stage (tasks per stage; the embedded executor's task slots). `0`: the
    /// number of CPU cores.
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// The runtime: storage, memory limit, spill folder.
    pub fn with_runtime(mut self, runtime: RuntimeOptions) -> Self {
        self.runtime = runtime;
        self
    }

    /// Tables without a qualifier live in `catalog.schema` (created when missing), e.g.
    /// `ember.public` for Flight SQL.
    pub fn with_default_catalog(mut self, catalog: &str, schema: &str) -> Self {
        self.catalog = Some((catalog.to_string(), schema.to_string()));
        self
    }

    /// Sets a DataFusion or Ballista option (`SET key = value`) in every session made.
    pub fn with_option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// The codecs sessions carry.
    pub fn codecs(&self) -> &Codecs {
        &self.codecs
    }

    /// The runtime settings.
    pub fn runtime(&self) -> &RuntimeOptions {
        &self.runtime
    }

    /// Partitions per stage, `0` resolved to the number of CPU cores.
    pub fn parallelism(&self) -> usize {
        if self.parallelism > 0 {
            self.parallelism
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }

    /// Ember's settings on `config` (one Ballista builds, or a plain one):
    /// - `datafusion.sql_parser.collect_spans = true`, so planning errors carry line and column;
    /// - `datafusion.sql_parser.enable_ident_normalization = false`: identifiers match columns
    ///   as written (`InvoiceNo` is the CSV header's `InvoiceNo`), the way Spark users write
    ///   them; DataFusion's default would fold unquoted names to lower case;
    /// - `target_partitions` = [`SessionBuilder::parallelism`]: how many partitions a scan and
    ///   an aggregation use, i.e. the tasks per stage;
    /// - the [`Codecs`] as Ballista's codecs, so Ember's plan nodes travel to the scheduler and
    ///   executors;
    /// - Ballista's adaptive query planner (AQE, on by default in Ballista 55) off: the static
    ///   distributed planner. In Ballista 55 AQE re-plans a job forever when one of its stages
    ///   fails, or after an executor is wrongly marked lost under load (seen in Ember's cluster
    ///   tests: the stage count grows without bound and the job never ends);
    /// - the default catalog and the options given to the builder;
    /// - for a session that talks to a cluster (`cluster`): the cluster token on every gRPC call
    ///   and TLS, through Ballista's endpoint override (`ember_core::security::grpc`).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for an option DataFusion does not know.
    fn configure(&self, config: SessionConfig, cluster: bool) -> Result<SessionConfig> {
        let mut config = config
            .with_target_partitions(self.parallelism())
            .with_ballista_adaptive_query_planner(false)
            .with_ballista_logical_extension_codec(self.codecs.logical())
            .with_ballista_physical_extension_codec(self.codecs.physical());
        let security = &self.security;
        if cluster && (security.cluster_secret.is_some() || security.tls.is_some()) {
            config = config
                .with_ballista_override_create_grpc_client_endpoint(
                    crate::security::grpc::endpoint_override(
                        security.cluster_secret.clone(),
                        security.tls.clone(),
                    ),
                )
                .with_ballista_use_tls(security.tls.is_some());
        }
        if let Some((catalog, schema)) = &self.catalog {
            config = config
                .with_default_catalog_and_schema(catalog, schema)
                .with_create_default_catalog_and_schema(true);
        }
        let options = config.options_mut();
        options.sql_parser.collect_spans = true;
        options.sql_parser.enable_ident_normalization = false;
        for (key, value) in &self.options {
            options.set(key, value).map_err(|e| Error::InvalidSetting {
                setting: key.clone(),
                message: crate::error::one_line(&e.strip_backtrace()),
            })?;
        }
        Ok(config)
    }

    /// Ember's settings over Ballista's default config, for a cluster: what the scheduler and
    /// executors give every session (their config producer).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for an option DataFusion does not know.
    pub fn ballista_config(&self) -> Result<SessionConfig> {
        self.configure(SessionConfig::new_with_ballista(), true)
    }

    /// A session state from `config` and `runtime` with DataFusion's default functions plus
    /// Ember's ([`udf::scalar_functions`], [`udf::aggregate_functions`]), and Ember's query planner ([`EmberQueryPlanner`]).
    pub fn state(&self, config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
        SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_query_planner(Arc::new(EmberQueryPlanner))
            // `with_scalar_functions` replaces the list and `with_default_features` extends it:
            // Ember's functions first, DataFusion's added after.
            .with_scalar_functions(udf::scalar_functions())
            .with_aggregate_functions(udf::aggregate_functions())
            .with_default_features()
            .build()
    }

    /// The runtime environment of the builder's runtime settings, for
    /// [`SessionBuilder::parallelism`] task slots.
    ///
    /// # Errors
    /// DataFusion's, if the spill folder cannot be used.
    pub fn runtime_env(&self) -> Result<Arc<RuntimeEnv>> {
        runtime_env(&self.runtime, self.parallelism()).map_err(|e| {
            let what = match &self.runtime.spill_dir {
                Some(dir) => format!(
                    "building the session's runtime (spill folder {})",
                    dir.display()
                ),
                None => "building the session's runtime".to_string(),
            };
            Error::datafusion(what, e)
        })
    }

    /// A plain DataFusion session in this process (no Ballista).
    ///
    /// # Errors
    /// An option DataFusion does not know, and [`SessionBuilder::runtime_env`]'s.
    pub fn local(&self) -> Result<SessionContext> {
        let config = self.configure(SessionConfig::new(), false)?;
        Ok(SessionContext::new_with_state(
            self.state(config, self.runtime_env()?),
        ))
    }

    /// Starts an in-process Ballista scheduler and executor (on free ports of localhost, with
    /// [`SessionBuilder::parallelism`] task slots) and returns a client session connected to
    /// them. They live as long as the process; finished jobs are kept
    /// [`crate::standalone::EMBEDDED_JOB_STATE_RETENTION`], shuffle files in a work folder in
    /// the spill folder ([`RuntimeOptions::spill_dir`]) until
    /// [`crate::standalone::remove_work_folders`].
    ///
    /// # Errors
    /// As [`SessionBuilder::local`], and when the in-process scheduler does not start.
    pub async fn standalone(&self) -> Result<SessionContext> {
        let config = self.configure(
            SessionConfig::new_with_ballista()
                .with_ballista_standalone_parallelism(self.parallelism()),
            false,
        )?;
        let state = self.state(config, self.runtime_env()?);
        let starting = |e| Error::datafusion("starting the embedded scheduler and executor", e);
        let (url, _) = crate::standalone::start(
            &state,
            crate::standalone::EMBEDDED_JOB_STATE_RETENTION,
            self.runtime.spill_dir.as_deref(),
        )
        .await
        .map_err(starting)?;
        let ctx = SessionContext::remote_with_state(&url, state)
            .await
            .map_err(starting)?;
        register_functions(&ctx);
        Ok(ctx)
    }

    /// A client session of the Ballista scheduler at `url` (`df://HOST:PORT`). Ballista connects
    /// when the first query runs.
    ///
    /// # Errors
    /// As [`SessionBuilder::local`], and a URL Ballista cannot parse.
    pub async fn remote(&self, url: &str) -> Result<SessionContext> {
        let config = self.ballista_config()?;
        let state = self.state(config, self.runtime_env()?);
        let ctx = SessionContext::remote_with_state(url, state)
            .await
            .map_err(|e| Error::datafusion(format!("a session on the scheduler at {url}"), e))?;
        register_functions(&ctx);
        Ok(ctx)
    }
}

/// Registers Ember's functions on a context whose state lost them: Ballista 55's
/// `upgrade_for_ballista` (used by `standalone_with_state` and `remote_with_state`) replaces
/// the client's scalar functions with Ballista's defaults. The scheduler and executors keep the
/// state they were given, so only the client needs this.
fn register_functions(ctx: &SessionContext) {
    for f in udf::scalar_functions() {
        ctx.register_udf((*f).clone());
    }
    for f in udf::aggregate_functions() {
        ctx.register_udaf((*f).clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identifiers_keep_their_case_and_functions_do_not_care() -> datafusion::error::Result<()>
    {
        let ctx = SessionBuilder::new(Codecs::ember())
            .with_parallelism(2)
            .local()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let batches = ctx
            .sql("SELECT SUM(\"Qty\") AS s, Max(Qty) AS m, try_to_timestamp('2011-01-02') IS NOT NULL AND TO_TIMESTAMP('2011-01-02') IS NOT NULL AS t FROM (VALUES (1), (2)) v(Qty)")
            .await?
            .collect()
            .await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        assert!(text.contains("| 3 | 2 | true |"), "{text}");
        Ok(())
    }

    #[test]
    fn an_unknown_option_names_itself() {
        let Err(err) = SessionBuilder::new(Codecs::ember())
            .with_option("datafusion.optimizer.no_such_thing", "1")
            .local()
        else {
            panic!("an unknown option was accepted");
        };
        assert!(
            err.to_string()
                .starts_with("datafusion.optimizer.no_such_thing: "),
            "{err}"
        );
    }
}
