//! Reading Parquet outputs back in tests, with a plain DataFusion context that has Ember's
//! object stores (so `hdfs://` works), independent of the job's own session.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember_core::config::StorageSettings;
use ember_core::storage::EmberObjectStoreRegistry;

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
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(EmberObjectStoreRegistry::new(
            &StorageSettings::default(),
        )))
        .build_arc()
        .map_err(|e| e.to_string())?;
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    let options = ParquetReadOptions::default().table_partition_cols(
        partition_cols
            .iter()
            .map(|c| ((*c).to_string(), DataType::Utf8))
            .collect(),
    );
    ctx.register_parquet("t", location, options)
        .await
        .map_err(|e| e.to_string())?;
    let batches = ctx
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
