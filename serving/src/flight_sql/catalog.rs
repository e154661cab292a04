//! The tables Flight SQL serves: job outputs and tables from the configuration, registered in
//! the endpoint's session as listing tables over their folders.
//!
//! Hive-style folders (`order_date=2011-12-09/`) become partition columns, as Spark's
//! partition discovery makes them, with Spark's type inference: a column whose every value is a
//! date (`YYYY-MM-DD`) is a Date32, every value an integer an Int64, anything else (including
//! Hive's `__HIVE_DEFAULT_PARTITION__` for NULL) Utf8. A filter on a partition column prunes
//! the folders that cannot match: `WHERE order_date BETWEEN DATE '2011-12-01' AND
//! DATE '2011-12-09'` reads nine folders. Folders and files whose name starts with `_` or `.`
//! (`_quarantine/`, `_checkpoint/`, `_SUCCESS`) are not part of the table. A folder with a sink
//! log (a stream's output) serves only the batches the log committed ([`ember_core::table::sink_log`]).
//! A plain Parquet folder without a sink log is served only once a run committed it (its
//! `_SUCCESS` exists). A Delta table (a folder with `_delta_log/`) is read through its log
//! ([`DeltaLogTable`]): the latest committed version at each query, no folder listing, files
//! pruned on partition values and column statistics.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionContext;
use ember_core::table::delta;
use ember_core::table::delta_scan::DeltaLogTable;
use ember_core::table::sink_log;
use object_store::ObjectStoreExt;

/// The file a committed batch run leaves in its output folder (Spark's and Ember's).
const SUCCESS_FILE: &str = "_SUCCESS";
use futures::TryStreamExt;

/// A registered table: name, location, partition columns with their inferred types.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The table's name in SQL.
    pub name: String,
    /// Its folder URL.
    pub location: String,
    /// Partition columns, in folder order.
    pub partitions: Vec<(String, DataType)>,
    /// How the table's files are found.
    pub read_through: ReadThrough,
}

/// How a served table's files are found at each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadThrough {
    /// Listing the folder (a batch job's plain Parquet output, once `_SUCCESS` exists; a file).
    Listing,
    /// The files of a sink log's committed batches (a stream's plain Parquet output, see
    /// [`ember_core::table::sink_log`]).
    SinkLog,
    /// The files of the Delta log's latest version ([`DeltaLogTable`]).
    DeltaLog,
}

impl ReadThrough {
    /// How it reads, for the lines `ember serve` prints (empty for a listing).
    pub fn describe(self) -> &'static str {
        match self {
            ReadThrough::Listing => "",
            ReadThrough::SinkLog => " (a stream's output: its committed batches)",
            ReadThrough::DeltaLog => " (a Delta table: its latest committed version)",
        }
    }
}

/// The type Spark's partition discovery gives `values`.
pub fn infer_partition_type<'a>(values: impl IntoIterator<Item = &'a str>) -> DataType {
    let values: Vec<&str> = values.into_iter().collect();
    if values.is_empty() {
        return DataType::Utf8;
    }
    let date = |v: &str| v.len() == 10 && NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok();
    if values.iter().all(|v| date(v)) {
        DataType::Date32
    } else if values.iter().all(|v| v.parse::<i64>().is_ok()) {
        DataType::Int64
    } else {
        DataType::Utf8
    }
}

fn location(path: &str) -> String {
    let absolute = if path.contains("://") || path.starts_with('/') {
        path.to_string()
    } else {
        std::path::absolute(path).map_or_else(|_| path.to_string(), |p| p.display().to_string())
    };
    if absolute.ends_with('/') || absolute.ends_with(".parquet") || absolute.ends_with(".csv") {
        absolute
    } else {
        format!("{absolute}/")
    }
}

/// Registers (or replaces) table `name` over `path` (a folder or file; local path or URL) in
/// `format` (`parquet` or `csv` with a header row).
///
/// # Errors
/// DataFusion's, when the path cannot be listed or holds no readable file.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    format: &str,
) -> Result<Registered> {
    let location = location(path);
    let url = ListingTableUrl::parse(&location)?;
    let state = ctx.state();
    // A Delta table: read through its log (committed versions only, no listing per query).
    if format != "csv"
        && location.ends_with('/')
        && delta::exists(state.runtime_env(), &location)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
    {
        let table = DeltaLogTable::try_new(state.runtime_env(), &location, None).await?;
        let partitions: Vec<(String, DataType)> = table
            .partition_columns()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let _ = ctx.deregister_table(name)?;
        ctx.register_table(name, Arc::new(table))?;
        tracing::info!(
            table = name,
            location,
            "Flight SQL table registered (Delta)"
        );
        return Ok(Registered {
            name: name.to_string(),
            location,
            partitions,
            read_through: ReadThrough::DeltaLog,
        });
    }
    let (format, extension): (Arc<dyn FileFormat>, &str) = match format {
        "csv" => (Arc::new(CsvFormat::default().with_has_header(true)), ".csv"),
        _ => (Arc::new(ParquetFormat::default()), ".parquet"),
    };
    let options = ListingOptions::new(format).with_file_extension(extension);
    // Partition keys and their values, from the files' folders.
    let store = state.runtime_env().object_store(&url)?;
    let files: Vec<_> = url
        .list_all_files(&state, store.as_ref(), extension)
        .await?
        .try_collect()
        .await?;
    if files.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "table {name}: no {extension} file under {location}"
        )));
    }
    let mut keys: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let Some(parts) = url.strip_prefix(&file.location) else {
            continue;
        };
        let parts: Vec<&str> = parts.collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if let Some((k, v)) = part.split_once('=') {
                if !keys.iter().any(|x| x == k) {
                    keys.push(k.to_string());
                }
                values.entry(k.to_string()).or_default().push(v.to_string());
            }
        }
    }
    let partitions: Vec<(String, DataType)> = keys
        .iter()
        .map(|k| {
            let vs = values.get(k).map(Vec::as_slice).unwrap_or_default();
            (
                k.clone(),
                infer_partition_type(vs.iter().map(String::as_str)),
            )
        })
        .collect();
    let options = options.with_table_partition_cols(partitions.clone());
    let schema = options.infer_schema(&state, &url).await?;
    // A stream's output: only what its sink log committed.
    let committed_only =
        extension == ".parquet" && sink_log::has_log(store.as_ref(), url.prefix()).await?;
    // A batch job's folder: only once a run committed it (Spark's `_SUCCESS` rule).
    if extension == ".parquet" && location.ends_with('/') && !committed_only {
        let success = url.prefix().clone().join(SUCCESS_FILE);
        if store.head(&success).await.is_err() {
            return Err(DataFusionError::Plan(format!(
                "table {name}: {location} has no {SUCCESS_FILE}: no run has committed it yet (or a commit is in progress)"
            )));
        }
    }
    let table: Arc<dyn datafusion::datasource::TableProvider> = if committed_only {
        Arc::new(sink_log::SinkLogTable::try_new(
            &location,
            schema,
            partitions.clone(),
        )?)
    } else {
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        Arc::new(ListingTable::try_new(config)?)
    };
    let _ = ctx.deregister_table(name)?;
    ctx.register_table(name, table)?;
    tracing::info!(table = name, location, partitions = ?partitions, committed_only, "Flight SQL table registered");
    Ok(Registered {
        name: name.to_string(),
        location,
        partitions,
        read_through: if committed_only {
            ReadThrough::SinkLog
        } else {
            ReadThrough::Listing
        },
    })
}

/// What a served table has committed now, as a token that changes with every commit, for
/// answers kept until their table changes (the dashboard's, [`crate::web::answers`]):
/// - a stream's output ([`ReadThrough::SinkLog`]): the files its sink log committed
///   ([`sink_log::log_state`]; the log's compactions change nothing);
/// - a Delta table ([`ReadThrough::DeltaLog`]): its latest version (`v12`; `none` before its
///   first commit), or the pinned one;
/// - a folder ([`ReadThrough::Listing`]): its `_SUCCESS` file's size, time and e-tag, which
///   every committed run rewrites; a folder without one (CSV), or a single file: the size and
///   time of each file.
///
/// `None` for any other table (a view, a table a Flight SQL client created). Costs what a
/// query's planning reads of the log, or a `HEAD`, never a read of the data.
///
/// # Errors
/// The store's, when the log, the `_SUCCESS` file or the files cannot be listed.
pub async fn committed_state(
    runtime: &RuntimeEnv,
    table: &dyn datafusion::datasource::TableProvider,
) -> Result<Option<String>> {
    if let Some(t) = table.downcast_ref::<sink_log::SinkLogTable>() {
        return t.log_state(runtime).await.map(Some);
    }
    if let Some(t) = table.downcast_ref::<DeltaLogTable>() {
        let version = match t.version() {
            Some(v) => Some(v),
            None => delta::read_version(runtime, t.location())
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        };
        return Ok(Some(
            version.map_or_else(|| "none".into(), |v| format!("v{v}")),
        ));
    }
    let Some(t) = table.downcast_ref::<ListingTable>() else {
        return Ok(None);
    };
    let mut state = Vec::new();
    for url in t.table_paths() {
        let store = runtime.object_store(url)?;
        let stamp = |m: &object_store::ObjectMeta| {
            let tag = m.e_tag.as_deref().unwrap_or_default();
            format!(
                "{}:{}:{}:{tag}",
                m.location,
                m.size,
                m.last_modified.timestamp_millis()
            )
        };
        if !url.is_collection() {
            state.push(stamp(&store.head(url.prefix()).await?));
            continue;
        }
        let success = url.prefix().clone().join(SUCCESS_FILE);
        match store.head(&success).await {
            Ok(meta) => {
                state.push(stamp(&meta));
                continue;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut files: Vec<String> = store
            .list(Some(url.prefix()))
            .map_ok(|m| stamp(&m))
            .try_collect()
            .await?;
        files.sort();
        state.extend(files);
    }
    Ok(Some(state.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_types_as_spark_infers_them() {
        assert_eq!(
            infer_partition_type(["2011-12-09", "2011-01-31"]),
            DataType::Date32
        );
        assert_eq!(infer_partition_type(["00", "23"]), DataType::Int64);
        assert_eq!(
            infer_partition_type(["2011-12-09", "__HIVE_DEFAULT_PARTITION__"]),
            DataType::Utf8
        );
        assert_eq!(infer_partition_type(["2011-13-09"]), DataType::Utf8);
        assert_eq!(infer_partition_type([]), DataType::Utf8);
    }

    #[tokio::test]
    async fn a_hive_folder_becomes_a_table_with_typed_partitions() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ctx = SessionContext::new();
        for (day, n) in [("2011-12-08", 1), ("2011-12-09", 2)] {
            ctx.sql(&format!("COPY (SELECT 'A' AS product_id, {n} AS units) TO '{}/order_date={day}/part-0.parquet'", dir.path().display()))
                .await?
                .collect()
                .await?;
        }
        std::fs::create_dir_all(dir.path().join("_quarantine"))?;
        ctx.sql(&format!(
            "COPY (SELECT 'bad' AS reason) TO '{}/_quarantine/q.parquet'",
            dir.path().display()
        ))
        .await?
        .collect()
        .await?;
        // Not committed yet: not served.
        let refused = register(&ctx, "daily", &dir.path().display().to_string(), "parquet")
            .await
            .expect_err("a folder without _SUCCESS");
        assert!(refused.to_string().contains("has no _SUCCESS"), "{refused}");
        std::fs::write(dir.path().join("_SUCCESS"), "{}")?;
        let t = register(&ctx, "daily", &dir.path().display().to_string(), "parquet").await?;
        assert_eq!(t.partitions, [("order_date".to_string(), DataType::Date32)]);
        let rows = ctx
            .sql("SELECT SUM(units) AS u, COUNT(*) AS n FROM daily WHERE order_date >= DATE '2011-12-09'")
            .await?
            .collect()
            .await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)?.to_string();
        assert!(text.contains("| 2 | 1 |"), "{text}");
        Ok(())
    }

    /// The committed state of table `name` in `ctx`.
    async fn state(ctx: &SessionContext, name: &str) -> Option<String> {
        let table = ctx.table_provider(name).await.expect("a table");
        committed_state(ctx.runtime_env().as_ref(), table.as_ref())
            .await
            .expect("a state")
    }

    #[tokio::test]
    async fn the_committed_state_changes_with_a_commit_not_with_a_file_written() -> Result<()> {
        let ctx = SessionContext::new_with_config_rt(
            datafusion::prelude::SessionConfig::new(),
            ember_core::runtime::runtime_env(&Default::default(), 1)?,
        );
        // A batch job's folder: its _SUCCESS, which every committed run rewrites.
        let dir = tempfile::tempdir()?;
        let copy = |n: i64, file: &str| {
            format!(
                "COPY (SELECT {n} AS n) TO '{}/{file}'",
                dir.path().display()
            )
        };
        ctx.sql(&copy(1, "day=1/a.parquet"))
            .await?
            .collect()
            .await?;
        std::fs::write(dir.path().join("_SUCCESS"), "{}")?;
        register(&ctx, "daily", &dir.path().display().to_string(), "parquet").await?;
        let first = state(&ctx, "daily").await;
        assert!(first.is_some());
        ctx.sql(&copy(2, "day=2/b.parquet"))
            .await?
            .collect()
            .await?;
        assert_eq!(
            state(&ctx, "daily").await,
            first,
            "a file of a run in progress"
        );
        std::fs::write(dir.path().join("_SUCCESS"), r#"{"run": 2}"#)?;
        assert_ne!(state(&ctx, "daily").await, first);

        // A Delta table: its latest version.
        let delta_dir = tempfile::tempdir()?;
        let location = delta_dir.path().display().to_string();
        let runtime = ctx.runtime_env();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("n", DataType::Int64, true),
        ]));
        let mut read_version = None;
        for _ in 0..2 {
            let batch = datafusion::arrow::array::RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                    1,
                ]))],
            )?;
            let external = |e: ember_core::Error| DataFusionError::External(Box::new(e));
            let adds = delta::write_batches(&runtime, &location, &[], &[batch])
                .await
                .map_err(external)?;
            let commit = delta::Commit {
                schema: Arc::clone(&schema),
                partition_by: Vec::new(),
                adds,
                mode: delta::WriteMode::ReplacePartitions,
                info: BTreeMap::new(),
                read_version,
                loaded: None,
            };
            let committed = delta::commit(&runtime, &location, commit)
                .await
                .map_err(external)?;
            if read_version.is_none() {
                register(&ctx, "delta", &location, "parquet").await?;
            }
            assert_ne!(Some(committed.version), read_version);
            let want = format!("v{}", committed.version);
            assert_eq!(state(&ctx, "delta").await, Some(want));
            read_version = Some(committed.version);
        }
        Ok(())
    }
}
