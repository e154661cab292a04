//! Embedded mode: a Ballista scheduler and one executor in this process, reached through
//! Ballista's standalone context (`SessionContext::standalone_with_state`), so a job runs
//! through the same distributed planner, task serialization and shuffle files as on a cluster.
//! [`local_context`] builds the same session on plain DataFusion (no Ballista), for comparisons.

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::error::Result;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use ember_executor::runtime::{RuntimeOptions, runtime_env};

/// Settings of an embedded scheduler + executor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Task slots of the in-process executor, and partitions per stage. `0`: the number of
    /// CPU cores.
    pub parallelism: usize,
    /// The executor's memory and spill settings.
    pub runtime: RuntimeOptions,
}

impl EmbeddedOptions {
    fn parallelism(&self) -> usize {
        if self.parallelism > 0 {
            self.parallelism
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}

fn state(config: SessionConfig, options: &EmbeddedOptions) -> Result<SessionState> {
    let config = ember_core::session::configure(config, options.parallelism());
    Ok(ember_core::session::session_state(
        config,
        runtime_env(&options.runtime, options.parallelism())?,
    ))
}

/// Starts an in-process Ballista scheduler and executor (on free ports of localhost) and
/// returns a client context connected to them. They live as long as the process.
///
/// # Errors
/// DataFusion's, when the runtime cannot be built or the scheduler does not start.
pub async fn context(options: &EmbeddedOptions) -> Result<SessionContext> {
    let config = SessionConfig::new_with_ballista()
        .with_ballista_standalone_parallelism(options.parallelism());
    let ctx = SessionContext::standalone_with_state(state(config, options)?).await?;
    ember_core::session::register_functions(&ctx);
    Ok(ctx)
}

/// [`context`] with Ember's tables in `ember.public`, for the Flight SQL endpoint of
/// `ember serve`.
///
/// # Errors
/// As [`context`].
pub async fn flight_sql_context(options: &EmbeddedOptions) -> Result<SessionContext> {
    let (catalog, schema) = crate::flight_sql::CATALOG;
    let config = SessionConfig::new_with_ballista()
        .with_ballista_standalone_parallelism(options.parallelism());
    let config = ember_core::session::configure(config, options.parallelism())
        .with_default_catalog_and_schema(catalog, schema)
        .with_create_default_catalog_and_schema(true);
    let state = ember_core::session::session_state(
        config,
        runtime_env(&options.runtime, options.parallelism())?,
    );
    let ctx = SessionContext::standalone_with_state(state).await?;
    ember_core::session::register_functions(&ctx);
    Ok(ctx)
}

/// The same session on plain single-process DataFusion, without Ballista.
///
/// # Errors
/// DataFusion's, when the runtime cannot be built.
pub fn local_context(options: &EmbeddedOptions) -> Result<SessionContext> {
    Ok(SessionContext::new_with_state(state(
        SessionConfig::new(),
        options,
    )?))
}
