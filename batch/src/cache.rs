//! Views computed once per run (`cache = true` in `job.toml`, as Spark's
//! `persist(DISK_ONLY)`): the view's rows are written by the distributed Parquet sink to
//! `<output>/_temporary/<run_id>/cache/<view>/`, and the view's name then reads those files.
//! The checked view of the daily job (every input row, typed, with its `reason`) is read by the
//! quarantine, the output and the counts: cached, the CSV is parsed and typed once per run
//! instead of once per query. Also how a database input's imported rows are registered.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::view::ViewTable;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use ember_core::manifest::OutputFormat;
use ember_core::sink::Written;
use ember_core::sql_file::SqlFile;

use crate::committer::{Area, Committer};
use crate::error::{Error, Result};

/// How cached rows are written (Parquet writer settings over the session's, carried by the
/// plan to the executors): they are read once or twice in the same run, so writing speed
/// matters more than size. LZ4 instead of the session's zstd; dictionaries stay on (without
/// them the files were larger and the 10 M-row daily job took 22.2 s instead of 19.9-20.7 s).
const CACHE_WRITE_OPTIONS: [(&str, &str); 2] =
    [("compression", "lz4_raw"), ("dictionary_enabled", "true")];

/// What caching a view did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedView {
    /// Rows written (the view's row count).
    pub rows: u64,
    /// The table whose every row is one row of the view, if the view's plan shows it (only
    /// projections, aliases and window functions over one table scan): its row count is then
    /// `rows` too, so the run does not read it again to count it.
    pub one_row_per_row_of: Option<String>,
}

/// Computes the view `sql` (planned as `plan`) into the run's staging folder and registers its
/// files under the view's name.
///
/// # Errors
/// [`Error::Execution`] when computing or writing the rows fails.
pub(crate) async fn cache_view(
    ctx: &SessionContext,
    committer: &Committer,
    sql: &SqlFile,
    plan: LogicalPlan,
) -> Result<CachedView> {
    let one_row_per_row_of = one_row_per_row(&plan);
    let df = ctx
        .execute_logical_plan(plan.clone())
        .await
        .map_err(|e| sql.error(e))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let url = format!("{}{}/", committer.staging_url(Area::Cache), sql.name);
    let context = || format!("caching view `{}`", sql.name);
    let settings = CACHE_WRITE_OPTIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let written =
        ember_core::sink::write_with(ctx, df, &url, Vec::new(), OutputFormat::Parquet, settings)
            .await
            .map_err(|e| Error::writing(context(), &url, e))?;
    if written.paths.is_empty() {
        // No row: the view stays a view (nothing to read twice).
        ctx.register_table(sql.name.as_str(), Arc::new(ViewTable::new(plan, None)))
            .map_err(|e| Error::execution(context(), e))?;
    } else {
        // Filters on the cache (the quarantine's `reason IS NOT NULL`) are applied while
        // decoding: the other columns of rows they drop are not decoded.
        let mut options = TableParquetOptions::default();
        options.global.pushdown_filters = true;
        options.global.reorder_filters = true;
        let format = ParquetFormat::default().with_options(options);
        register_written(ctx, &sql.name, &url, &written, schema, format)
            .map_err(|e| Error::execution(context(), e))?;
    }
    Ok(CachedView {
        rows: written.rows,
        one_row_per_row_of,
    })
}

/// Registers the Parquet files a write reported (`written.paths`, relative to `url`) as table
/// `name` of `schema`, read with `format`.
///
/// # Errors
/// A DataFusion error when a URL does not parse or the table cannot be registered.
pub(crate) fn register_written(
    ctx: &SessionContext,
    name: &str,
    url: &str,
    written: &Written,
    schema: SchemaRef,
    format: ParquetFormat,
) -> datafusion::error::Result<()> {
    let urls = written
        .paths
        .iter()
        .map(|p| ListingTableUrl::parse(format!("{url}{p}")))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(format)).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config)?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(table)).map(|_| ())
}

/// The table a plan reads one row of output per row of, if the plan shows it: only
/// projections, aliases and window functions down to a scan of one table with no filter and
/// no limit. Any other node (filter, join, aggregate, union, limit, …) gives `None`.
fn one_row_per_row(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::Projection(p) => one_row_per_row(&p.input),
        LogicalPlan::SubqueryAlias(a) => one_row_per_row(&a.input),
        LogicalPlan::Window(w) => one_row_per_row(&w.input),
        LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
            Some(scan.table_name.table().to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn plan(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        ctx.state().create_logical_plan(sql).await.expect("plan")
    }

    #[tokio::test]
    async fn only_row_for_row_plans_name_their_table() {
        use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
        let ctx = SessionContext::new();
        let text = |values: &[&str]| -> ArrayRef { Arc::new(StringArray::from(values.to_vec())) };
        let raw = RecordBatch::try_from_iter([
            ("column1", text(&["a", "b"])),
            ("column2", text(&["1", "x"])),
        ])
        .expect("batch");
        ctx.register_batch("raw", raw).expect("raw");
        let other = RecordBatch::try_from_iter([("column1", text(&["a"]))]).expect("batch");
        ctx.register_batch("other", other).expect("other");
        let kept = [
            "SELECT column1 AS id, try_cast(column2 AS BIGINT) AS n FROM raw",
            "WITH t AS (SELECT column1 AS id FROM raw) SELECT *, upper(id) AS u FROM t",
            "SELECT column1, row_number() OVER (ORDER BY column1) AS r FROM raw",
        ];
        for sql in kept {
            assert_eq!(
                one_row_per_row(&plan(&ctx, sql).await).as_deref(),
                Some("raw"),
                "{sql}"
            );
        }
        let changed = [
            "SELECT * FROM raw WHERE column2 = '1'",
            "SELECT column1, count(*) FROM raw GROUP BY column1",
            "SELECT * FROM raw LIMIT 1",
            "SELECT r.column1 FROM raw r JOIN other o ON r.column1 = o.column1",
            "SELECT column1 FROM raw UNION ALL SELECT column1 FROM other",
            "SELECT DISTINCT column1 FROM raw",
        ];
        for sql in changed {
            assert_eq!(one_row_per_row(&plan(&ctx, sql).await), None, "{sql}");
        }
    }
}
