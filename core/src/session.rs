//! The DataFusion session every Ember role builds the same way (client, scheduler, executors,
//! embedded), so that a plan made in one place runs in another: Ember's functions and plan
//! nodes are known everywhere, their codecs travel in the session config, and SQL spans are
//! collected for `file:line:column` errors.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

use ballista_core::extension::SessionConfigExt;

use crate::codec::{EmberLogicalCodec, EmberPhysicalCodec};
use crate::sink::EmberQueryPlanner;
use crate::udf;

/// Applies Ember's settings to a session config (one Ballista builds, or a plain one):
/// - `datafusion.sql_parser.collect_spans = true`, so planning errors carry line and column;
/// - `datafusion.sql_parser.enable_ident_normalization = false`: identifiers match columns as
///   written (`InvoiceNo` is the CSV header's `InvoiceNo`), the way Spark users write them;
///   DataFusion's default would fold unquoted names to lower case;
/// - `target_partitions` = `parallelism` (≥ 1): how many partitions a scan and an aggregation
///   use, i.e. the tasks per stage;
/// - Ember's plan codecs ([`EmberLogicalCodec`], [`EmberPhysicalCodec`]) as Ballista's codecs,
///   so Ember's plan nodes travel to the scheduler and executors;
/// - Ballista's adaptive query planner (AQE, on by default in Ballista 55) off: the static
///   distributed planner. In Ballista 55 AQE re-plans a job forever when one of its stages
///   fails, or after an executor is wrongly marked lost under load (seen in Ember's cluster
///   tests: the stage count grows without bound and the job never ends).
pub fn configure(config: SessionConfig, parallelism: usize) -> SessionConfig {
    let mut config = config
        .with_target_partitions(parallelism.max(1))
        .with_ballista_adaptive_query_planner(false)
        .with_ballista_logical_extension_codec(Arc::new(EmberLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(EmberPhysicalCodec::default()));
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config
}

/// Registers Ember's functions on a context whose state lost them: Ballista 55's
/// `upgrade_for_ballista` (used by `standalone_with_state` and `remote_with_state`) replaces
/// the client's scalar functions with Ballista's defaults. The scheduler and executors keep the
/// state they were given, so only the client needs this.
pub fn register_functions(ctx: &SessionContext) {
    for f in udf::scalar_functions() {
        ctx.register_udf((*f).clone());
    }
}

/// Builds a session state from `config` and `runtime` with DataFusion's default functions plus
/// Ember's ([`udf::scalar_functions`]), and Ember's query planner ([`EmberQueryPlanner`]).
pub fn session_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_query_planner(Arc::new(EmberQueryPlanner))
        // `with_scalar_functions` replaces the list and `with_default_features` extends it:
        // Ember's functions first, DataFusion's added after.
        .with_scalar_functions(udf::scalar_functions())
        .with_default_features()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identifiers_keep_their_case_and_functions_do_not_care() -> datafusion::error::Result<()>
    {
        let config = configure(SessionConfig::new(), 2);
        let ctx =
            SessionContext::new_with_state(session_state(config, Arc::new(RuntimeEnv::default())));
        let batches = ctx
            .sql("SELECT SUM(\"Qty\") AS s, Max(Qty) AS m, try_to_timestamp('2011-01-02') IS NOT NULL AND TO_TIMESTAMP('2011-01-02') IS NOT NULL AS t FROM (VALUES (1), (2)) v(Qty)")
            .await?
            .collect()
            .await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        assert!(text.contains("| 3 | 2 | true |"), "{text}");
        Ok(())
    }
}
