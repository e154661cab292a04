//! Writing a query's rows through Ember's distributed Parquet sink, and collecting what its
//! tasks reported.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::prelude::{DataFrame, SessionContext};
use ember_core::manifest::OutputFormat;
use ember_core::sink::ParquetSinkNode;

/// What the tasks of a write reported.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Rows written.
    pub(crate) rows: u64,
    /// Files written by the successful task attempts, relative to the staging area; for a
    /// Delta sink, their `add` actions (JSON).
    pub(crate) paths: Vec<String>,
}

/// Writes `df` through Ember's distributed Parquet sink: every task of the last stage writes its
/// own files under `url` (see `ember_core::sink`) and reports them.
pub(crate) async fn write(
    ctx: &SessionContext,
    df: DataFrame,
    url: &str,
    partition_by: Vec<String>,
    format: OutputFormat,
) -> datafusion::error::Result<Written> {
    let (_, plan) = df.into_parts();
    let sink = ParquetSinkNode::try_new(plan, url.to_string(), partition_by, format)?;
    let plan = LogicalPlan::Extension(Extension {
        node: Arc::new(sink),
    });
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    let mut written = Written::default();
    for batch in &batches {
        let (Some(counts), Some(paths)) = (
            batch
                .column_by_name("count")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
            batch
                .column_by_name("paths")
                .and_then(|c| c.as_list_opt::<i32>()),
        ) else {
            return datafusion::common::internal_err!(
                "the Parquet sink returned {}",
                batch.schema()
            );
        };
        written.rows += counts.iter().flatten().sum::<u64>();
        for list in paths.iter().flatten() {
            let list = list.as_string::<i32>();
            written
                .paths
                .extend(list.iter().flatten().map(str::to_string));
        }
    }
    Ok(written)
}
