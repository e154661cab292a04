//! Reading Parquet outputs back in tests, with a plain DataFusion context that has Ember's
//! object stores (so `hdfs://` works), independent of the job's own session.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember_core::config::StorageSettings;
use ember_core::storage::EmberObjectStoreRegistry;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

/// Rows of `sql` over table `t`: the Parquet files under `location` (local folder or URL with a
/// trailing `/`), with `order_date` taken from the folder names. Each row is `a|b|c`; rows are
/// sorted.
///
/// # Errors
/// DataFusion's message.
pub async fn parquet_rows(location: &str, sql: &str) -> Result<Vec<String>, String> {
    parquet_rows_with(location, &["order_date"], sql).await
}

/// [`parquet_rows`] with other hive partition columns (Utf8), e.g. a stream's
/// `window_date`, `window_hour`. Files under folders starting with `_` are not read.
///
/// # Errors
/// DataFusion's message.
pub async fn parquet_rows_with(
    location: &str,
    partition_cols: &[&str],
    sql: &str,
) -> Result<Vec<String>, String> {
    let ctx = context()?;
    let options = ParquetReadOptions::default().table_partition_cols(
        partition_cols
            .iter()
            .map(|c| ((*c).to_string(), DataType::Utf8))
            .collect(),
    );
    ctx.register_parquet("t", location, options)
        .await
        .map_err(|e| e.to_string())?;
    rows_of(&ctx, sql).await
}

/// A plain DataFusion context with Ember's object stores.
fn context() -> Result<SessionContext, String> {
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(EmberObjectStoreRegistry::new(
            &StorageSettings::default(),
        )))
        .build_arc()
        .map_err(|e| e.to_string())?;
    Ok(SessionContext::new_with_config_rt(
        SessionConfig::new(),
        runtime,
    ))
}

/// Rows of `sql` in `ctx`, each `a|b|c`, sorted.
async fn rows_of(ctx: &SessionContext, sql: &str) -> Result<Vec<String>, String> {
    let batches: Vec<RecordBatch> = ctx
        .sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let cells: Result<Vec<String>, _> = (0..batch.num_columns())
                .map(|c| array_value_to_string(batch.column(c), row))
                .collect();
            rows.push(cells.map_err(|e| e.to_string())?.join("|"));
        }
    }
    rows.sort();
    Ok(rows)
}

/// The data files of a Delta table's latest version, found by replaying its
/// `_delta_log/<version>.json` files by hand (each line an action; `add` adds a path, `remove`
/// removes it), without delta-rs: what any reader of the protocol sees. Returns the latest
/// version and the files as URLs.
///
/// # Errors
/// The store's, or a log line that is not JSON.
pub async fn delta_log_files(location: &str) -> Result<(u64, BTreeSet<String>), String> {
    let ctx = context()?;
    let url = ListingTableUrl::parse(location).map_err(|e| e.to_string())?;
    let store = ctx
        .runtime_env()
        .object_store(url.object_store())
        .map_err(|e| e.to_string())?;
    let log = url.prefix().clone().join("_delta_log");
    let mut commits: Vec<(u64, object_store::path::Path)> = store
        .list(Some(&log))
        .map_err(|e| e.to_string())
        .try_filter_map(|meta| async move {
            let name = meta.location.filename().unwrap_or_default().to_string();
            Ok(name
                .strip_suffix(".json")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| (v, meta.location)))
        })
        .try_collect()
        .await?;
    commits.sort();
    let mut files = BTreeSet::new();
    let base = url.as_str().trim_end_matches('/').to_string();
    for (_, path) in &commits {
        let bytes = store
            .get(path)
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let action: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{path}: {e}: {line}"))?;
            let file = |kind: &str| action[kind]["path"].as_str().map(|p| format!("{base}/{p}"));
            if let Some(added) = file("add") {
                files.insert(added);
            }
            if let Some(removed) = file("remove") {
                files.remove(&removed);
            }
        }
    }
    let version = commits.last().map_or(0, |(v, _)| *v);
    Ok((version, files))
}

/// Rows of `sql` over table `t`: exactly the Parquet `files` (URLs), without partition columns.
///
/// # Errors
/// DataFusion's message.
pub async fn files_rows(files: &BTreeSet<String>, sql: &str) -> Result<Vec<String>, String> {
    let ctx = context()?;
    let df = ctx
        .read_parquet(
            files.iter().cloned().collect::<Vec<_>>(),
            ParquetReadOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    ctx.register_table("t", df.into_view())
        .map_err(|e| e.to_string())?;
    rows_of(&ctx, sql).await
}

/// Rows of `sql` over table `t`: the Delta table at `location` read through Ember's own
/// reader (`DeltaLogTable`, what Flight SQL serves), at `version` or the latest.
///
/// # Errors
/// The table's or DataFusion's message.
pub async fn delta_rows(
    location: &str,
    version: Option<u64>,
    sql: &str,
) -> Result<Vec<String>, String> {
    let ctx = context()?;
    let table = ember_core::table::delta_scan::DeltaLogTable::try_new(
        &ctx.runtime_env(),
        location,
        version,
    )
    .await
    .map_err(|e| e.to_string())?;
    ctx.register_table("t", Arc::new(table))
        .map_err(|e| e.to_string())?;
    rows_of(&ctx, sql).await
}
