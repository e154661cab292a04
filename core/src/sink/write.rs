//! Writing a query's rows through Ember's distributed Parquet sink, and collecting what its
//! tasks reported.

use std::sync::Arc;

use super::ParquetSinkNode;
use crate::manifest::OutputFormat;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::prelude::{DataFrame, SessionContext};

/// What the tasks of a write reported.
#[derive(Debug, Default)]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// Bytes written (the files' sizes).
    pub bytes: u64,
    /// Files written by the successful task attempts, relative to the staging area; for a
    /// Delta sink, their `add` actions (JSON).
    pub paths: Vec<String>,
}

/// Writes `df` through Ember's distributed Parquet sink: every task of the last stage writes its
/// own files under `url` (the module [`crate::sink`]) and reports them. Used by the batch job's
/// outputs and by a stream's state shards.
///
/// # Errors
/// The plan's or a task's error; an internal error when the sink reports another schema.
pub async fn write(
    ctx: &SessionContext,
    df: DataFrame,
    url: &str,
    partition_by: Vec<String>,
    format: OutputFormat,
) -> datafusion::error::Result<Written> {
    write_with(ctx, df, url, partition_by, format, Vec::new()).await
}

/// [`write`] with Parquet writer settings over the session's, as (key, value) of
/// `datafusion.execution.parquet` without the prefix (`("compression", "lz4_raw")`); they
/// travel with the plan to the executors.
///
/// # Errors
/// As [`write`]; a setting DataFusion does not know fails the tasks.
pub async fn write_with(
    ctx: &SessionContext,
    df: DataFrame,
    url: &str,
    partition_by: Vec<String>,
    format: OutputFormat,
    parquet: Vec<(String, String)>,
) -> datafusion::error::Result<Written> {
    let (_, plan) = df.into_parts();
    let sink = ParquetSinkNode::try_new(plan, url.to_string(), partition_by, format)?
        .with_parquet(parquet);
    let plan = LogicalPlan::Extension(Extension {
        node: Arc::new(sink),
    });
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    let mut written = Written::default();
    for batch in &batches {
        let (Some(counts), Some(bytes), Some(paths)) = (
            batch
                .column_by_name("count")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
            batch
                .column_by_name("bytes")
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
        written.bytes += bytes.iter().flatten().sum::<u64>();
        for list in paths.iter().flatten() {
            let list = list.as_string::<i32>();
            written
                .paths
                .extend(list.iter().flatten().map(str::to_string));
        }
    }
    Ok(written)
}
