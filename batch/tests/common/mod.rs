//! Helpers for running the real `jobs/daily_revenue_by_product` job in embedded mode and
//! reading its output back with a plain DataFusion context (not the job's own session).

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};

use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember_core::codec::Codecs;
use ember_core::manifest::JobManifest;
use ember_core::params::Params;
use ember_core::report::RunReport;
use ember_core::session::SessionBuilder;

/// The repository's job folder.
pub fn job_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/daily_revenue_by_product")
}

/// Runs the daily revenue job with `settings` (name, value) in embedded Ballista.
pub async fn run_daily_revenue(settings: &[(&str, String)]) -> ember_batch::Result<RunReport> {
    run_daily_revenue_with(settings, 2).await
}

/// [`run_daily_revenue`] with `parallelism` tasks per stage (and as many byte ranges per CSV
/// input).
pub async fn run_daily_revenue_with(
    settings: &[(&str, String)],
    parallelism: usize,
) -> ember_batch::Result<RunReport> {
    run_daily_revenue_partitioned(settings, parallelism, &[]).await
}

/// [`run_daily_revenue_with`] whose sales input (a folder) has `partition_columns`.
pub async fn run_daily_revenue_partitioned(
    settings: &[(&str, String)],
    parallelism: usize,
    partition_columns: &[&str],
) -> ember_batch::Result<RunReport> {
    let manifest = JobManifest::load(job_dir())?;
    let mut params: Params = manifest.params();
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    params.apply(&settings)?;
    let mut job = manifest.resolve(params)?;
    if let Some(sales) = job.inputs.iter_mut().find(|i| i.name == "raw_sales") {
        sales.partition_columns = partition_columns.iter().map(|c| c.to_string()).collect();
    }
    let ctx = SessionBuilder::new(Codecs::ember())
        .with_parallelism(parallelism)
        .standalone()
        .await?;
    ember_batch::run(&ctx, &job, "ballista-embedded").await
}

/// Rows of `sql` over table `t` (the Parquet files of `dir`, with `order_date` from the
/// folder names), each row as `a|b|c`, sorted.
pub async fn query_parquet(dir: &Path, sql: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    let options = ParquetReadOptions::default().table_partition_cols(vec![(
        "order_date".to_string(),
        datafusion::arrow::datatypes::DataType::Utf8,
    )]);
    ctx.register_parquet("t", dir.to_str().expect("utf-8 path"), options)
        .await
        .expect("register output");
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("collect");
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = (0..batch.num_columns())
                .map(|c| array_value_to_string(batch.column(c), row).expect("display"))
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

/// Every file under `dir` with its size, relative and sorted (to compare output trees).
pub fn tree(dir: &Path) -> Vec<(String, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path
                    .strip_prefix(base)
                    .expect("under base")
                    .display()
                    .to_string();
                out.push((rel, entry.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
