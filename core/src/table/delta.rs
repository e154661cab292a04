//! Delta Lake tables, through delta-rs (`deltalake` 1.1, on Ember's datafusion 55 / arrow 59 /
//! object_store 0.13). Ember does not keep a transaction log of its own: a table is a folder of
//! hive-partitioned Parquet files plus `_delta_log/`, and what a reader sees is what the log's
//! last version references.
//!
//! Ember hands delta-rs the object store its session already has for the table's URL (local
//! disk, HDFS with Ember's client options), so a table is read and written with the same
//! storage settings as every other path.
//!
//! Writing (what [`commit`] does with the files tasks wrote, see `crate::sink`):
//! - [`WriteMode::ReplacePartitions`], a batch run: one commit with the `add` actions of the
//!   successful task attempts and `remove` actions of every file in the partitions the run
//!   produced (Spark's dynamic partition overwrite, Delta's `replaceWhere` on those partition
//!   values); an unpartitioned output replaces the whole table. The commit's read predicate
//!   is those partitions, so delta-rs's optimistic concurrency lets two runs on disjoint
//!   partitions both commit and fails the second of two overlapping runs with a conflict.
//! - [`WriteMode::Append`], a stream's micro-batch: one commit with the batch's `add` actions
//!   and a `txn` action (appId = the stream, version = the batch id), as Spark's Delta
//!   streaming sink writes; a batch whose id the table already has is skipped, never added
//!   twice.
//!
//! The first commit of a table that does not exist yet creates it (version 0: protocol and
//! metadata, the schema of the rows written) and then commits the data (version 1). A commit
//! is made on top of the version its writer read when it started ([`Commit::read_version`]):
//! what was committed since is checked for conflicts, never silently overwritten. Every
//! commit's `commitInfo` carries Ember's [`CommitInfo`] fields (run id, job).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
/// A Delta `add` action: a data file a commit adds (path relative to the table, size,
/// partition values, statistics JSON).
pub use deltalake::kernel::Add;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, StructType, Transaction};
use deltalake::logstore::{StorageConfig, default_logstore};
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use serde_json::Value;
use url::Url;

use crate::error::{Error, Result};

/// The folder of a Delta table's log, below the table's folder.
pub const DELTA_LOG: &str = "_delta_log";

/// How a commit changes the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// A batch run: the partitions the new files fill replace those partitions' files (all of
    /// the table's files when it is unpartitioned).
    ReplacePartitions,
    /// A stream's micro-batch: the files are added, once per (`app_id`, `version`).
    Append {
        /// The stream (Delta's `txn.appId`).
        app_id: String,
        /// The micro-batch id (Delta's `txn.version`).
        version: i64,
    },
}

/// What a commit writes.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The rows' schema, partition columns included: the table's schema when it is created,
    /// and checked against the table's when it exists.
    pub schema: SchemaRef,
    /// The partition columns, in folder order.
    pub partition_by: Vec<String>,
    /// The `add` actions the tasks reported.
    pub adds: Vec<Add>,
    /// Replace partitions or append.
    pub mode: WriteMode,
    /// Written into the commit's `commitInfo` (e.g. `ember.run_id`, `ember.job`).
    pub info: BTreeMap<String, Value>,
    /// [`WriteMode::ReplacePartitions`]: the table version the writer read when it started
    /// ([`read_version`]; `None`: there was no table). Commits made since are checked for
    /// conflicts with this one, as Spark's Delta writer checks everything committed after the
    /// version its job started from. An append reads nothing: it commits on the latest version.
    pub read_version: Option<u64>,
    /// The table as the writer loaded it last (from [`transaction_version`]), so an append
    /// reads the log once per micro-batch; `None`: loaded (or created) by [`commit`].
    pub loaded: Option<DeltaTable>,
}

/// The table version a writer starts from: the latest, or `None` when there is no table yet.
///
/// # Errors
/// [`Error::Storage`] when the location cannot be read.
pub async fn read_version(runtime: &RuntimeEnv, location: &str) -> Result<Option<u64>> {
    if !exists(runtime, location).await? {
        return Ok(None);
    }
    let table = open(runtime, location)?;
    table
        .get_latest_version()
        .await
        .map(Some)
        .map_err(|e| Error::storage(location, e))
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The table version the commit made (or, when `skipped`, the version that has it).
    pub version: u64,
    /// Files the commit removed (the replaced partitions' files).
    pub removed: usize,
    /// Partitions of the commit that held files before it.
    pub replaced: usize,
    /// The micro-batch was committed before ([`WriteMode::Append`] only): nothing was written.
    pub skipped: bool,
}

/// A failed commit's error: a conflict as [`table_error`]; a storage failure names the log
/// write (delta-rs words every object store error "Failed to read delta log object").
pub(crate) fn commit_error(location: &str, e: DeltaTableError) -> Error {
    match e {
        DeltaTableError::ObjectStore { source } => Error::storage(
            format!("{}_delta_log/", with_slash(location)),
            format!("writing the commit: {source}"),
        ),
        other => table_error(location, other),
    }
}

/// `location` ending with one `/`.
fn with_slash(location: &str) -> String {
    format!("{}/", location.trim_end_matches('/'))
}

fn table_error(location: &str, e: DeltaTableError) -> Error {
    match e {
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(conflict),
        } => Error::TableConflict {
            table: location.to_string(),
            // delta-rs's first line; its second advises on isolation levels Ember does not expose.
            message: conflict
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("Commit failed: ")
                .to_string(),
        },
        other => Error::storage(location, other),
    }
}

/// The table at `location` (a local path or URL), over the object store `runtime` has for it;
/// not loaded.
///
/// # Errors
/// [`Error::Storage`] for a location that is not a URL or has no object store.
pub fn open(runtime: &RuntimeEnv, location: &str) -> Result<DeltaTable> {
    let Stores { root, table, url } = stores(runtime, location)?;
    let log_store = default_logstore(table, root, &url, &StorageConfig::default());
    Ok(DeltaTable::new(log_store))
}

/// Where a table lives: the object store of its location, the same store rooted at the
/// table's folder, and the table's URL (with a trailing `/`).
struct Stores {
    root: Arc<dyn ObjectStore>,
    table: Arc<dyn ObjectStore>,
    url: Url,
}

/// The [`Stores`] of the table at `location`.
fn stores(runtime: &RuntimeEnv, location: &str) -> Result<Stores> {
    let url = ListingTableUrl::parse(location)
        .map_err(|e| Error::storage(location, e.strip_backtrace()))?;
    let root: Arc<dyn ObjectStore> = runtime
        .object_store(url.object_store())
        .map_err(|e| Error::storage(location, e.strip_backtrace()))?;
    let mut table_url: Url = url.get_url().clone();
    if !table_url.path().ends_with('/') {
        let with_slash = format!("{}/", table_url.path());
        table_url.set_path(&with_slash);
    }
    let prefixed: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(Arc::clone(&root), url.prefix().clone()));
    Ok(Stores {
        root,
        table: prefixed,
        url: table_url,
    })
}

/// Writes `batches` (one schema, partition columns included) as data files of the Delta table
/// at `location`, hive-partitioned by `partition_by`, with delta-rs's data file writer (zstd,
/// column statistics); returns their `add` actions, which nothing references until a
/// [`commit`] does. For rows held in memory (a stream's micro-batch); a batch job's tasks
/// write through `crate::sink`.
///
/// # Errors
/// [`Error::Storage`] when a file cannot be written.
pub async fn write_batches(
    runtime: &RuntimeEnv,
    location: &str,
    partition_by: &[String],
    batches: &[datafusion::arrow::array::RecordBatch],
) -> Result<Vec<Add>> {
    let Some(first) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    let Stores { table, .. } = stores(runtime, location)?;
    let properties = datafusion::parquet::file::properties::WriterProperties::builder()
        .set_compression(datafusion::parquet::basic::Compression::ZSTD(
            datafusion::parquet::basic::ZstdLevel::default(),
        ))
        .build();
    let config = deltalake::datafile::writer::WriterConfig::new(
        first.schema(),
        partition_by.to_vec(),
        Some(properties),
        None,
        None,
        Default::default(),
        None,
    );
    let mut writer = deltalake::datafile::writer::DeltaWriter::new(table, config);
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        writer
            .write(batch)
            .await
            .map_err(|e| Error::storage(location, e))?;
    }
    writer
        .close()
        .await
        .map_err(|e| Error::storage(location, e))
}

/// The last micro-batch (`txn.version`) application `app_id` committed to the table at
/// `location` (`None` when it committed none), and the table as loaded to find it (`None` when
/// there is no table), to pass on as [`Commit::loaded`].
///
/// # Errors
/// [`Error::Storage`] when the log cannot be read.
pub async fn transaction_version(
    runtime: &RuntimeEnv,
    location: &str,
    app_id: &str,
) -> Result<(Option<i64>, Option<DeltaTable>)> {
    if !exists(runtime, location).await? {
        return Ok((None, None));
    }
    let table = load(runtime, location, None).await?;
    let state = table.snapshot().map_err(|e| Error::storage(location, e))?;
    let version = state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::storage(location, e))?;
    Ok((version, Some(table)))
}

/// Whether `location` holds a Delta table (its `_delta_log/` has a commit).
///
/// # Errors
/// [`Error::Storage`] when the location cannot be read.
pub async fn exists(runtime: &RuntimeEnv, location: &str) -> Result<bool> {
    open(runtime, location)?
        .verify_deltatable_existence()
        .await
        .map_err(|e| Error::storage(location, e))
}

/// The table at `location`, loaded at `version` (the latest when `None`).
///
/// # Errors
/// [`Error::InvalidTable`] for a version after the latest; [`Error::Storage`] when it is not a
/// Delta table or the version's log is gone (`VACUUM` and log retention remove old ones).
pub async fn load(
    runtime: &RuntimeEnv,
    location: &str,
    version: Option<u64>,
) -> Result<DeltaTable> {
    let mut table = open(runtime, location)?;
    table
        .load()
        .await
        .map_err(|e| Error::storage(location, e))?;
    if let Some(v) = version {
        let latest = table.version().unwrap_or(0);
        if v > latest {
            return Err(Error::InvalidTable {
                table: location.to_string(),
                message: format!("has no version {v}: its versions are 0 to {latest}"),
            });
        }
        if v < latest {
            table
                .load_version(v)
                .await
                .map_err(|e| Error::storage(location, e))?;
        }
    }
    Ok(table)
}

/// The partition values of the files a commit adds, as delta-rs spells them (`None` = NULL).
pub(crate) fn partition_values(add: &Add, partition_by: &[String]) -> Vec<Option<String>> {
    partition_by
        .iter()
        .map(|c| add.partition_values.get(c).cloned().flatten())
        .collect()
}

/// The SQL type of a partition column, for the commit's predicate.
fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "INT".into(),
        DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => "BIGINT".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Float32 | DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Timestamp(_, _) => "TIMESTAMP".into(),
        _ => "VARCHAR".into(),
    }
}

/// The predicate of the partitions `values` (one tuple per partition, in `partition_by`
/// order), in SQL: `("order_date" = CAST('2011-12-09' AS DATE)) OR …`; `true` for an
/// unpartitioned table (the whole table).
pub(crate) fn partitions_predicate(
    schema: &SchemaRef,
    partition_by: &[String],
    values: &BTreeSet<Vec<Option<String>>>,
) -> String {
    if partition_by.is_empty() {
        return "true".into();
    }
    let quote = |s: &str| s.replace('\'', "''");
    let terms: Vec<String> = values
        .iter()
        .map(|tuple| {
            let parts: Vec<String> = partition_by
                .iter()
                .zip(tuple)
                .map(|(column, value)| {
                    let name = format!("\"{}\"", column.replace('"', "\"\""));
                    match value {
                        None => format!("{name} IS NULL"),
                        Some(v) => {
                            let t = schema
                                .field_with_name(column)
                                .map(|f| sql_type(f.data_type()))
                                .unwrap_or_else(|_| "VARCHAR".into());
                            format!("{name} = CAST('{}' AS {t})", quote(v))
                        }
                    }
                })
                .collect();
            format!("({})", parts.join(" AND "))
        })
        .collect();
    if terms.is_empty() {
        // No file, no partition: nothing read, nothing to conflict with.
        "false".into()
    } else {
        terms.join(" OR ")
    }
}

/// The table's schema as Delta types, from the rows' Arrow schema.
fn delta_schema(location: &str, schema: &SchemaRef) -> Result<StructType> {
    schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| Error::InvalidTable {
            table: location.to_string(),
            message: format!("the output's columns have no Delta type: {e}"),
        })
}

/// The table at `location`, created (version 0, no files) with `schema` and `partition_by`
/// when there is none; checked to have that schema and those partition columns otherwise.
async fn create_or_check(
    runtime: &RuntimeEnv,
    location: &str,
    schema: &SchemaRef,
    partition_by: &[String],
    info: &BTreeMap<String, Value>,
    loaded: Option<DeltaTable>,
) -> Result<DeltaTable> {
    let ours = delta_schema(location, schema)?;
    let reload = loaded.is_none();
    let mut table = match loaded {
        Some(table) => table,
        None => open(runtime, location)?,
    };
    if reload
        && !table
            .verify_deltatable_existence()
            .await
            .map_err(|e| Error::storage(location, e))?
    {
        let created = table
            .create()
            .with_columns(ours.fields().cloned())
            .with_partition_columns(partition_by.to_vec())
            .with_save_mode(SaveMode::Ignore)
            // No retry: a creation that lost version 0 must not commit a second creation on
            // top of the winner's (delta-rs 1.1 retries it, and the second metadata commit then
            // conflicts with every writer that started from version 0, both of them).
            .with_commit_properties(
                CommitProperties::default()
                    .with_metadata(info.clone())
                    .with_max_retries(0),
            )
            .await;
        match created {
            Ok(t) => table = t,
            // Another writer created it at the same moment: use theirs (checked below).
            Err(
                DeltaTableError::VersionAlreadyExists(_)
                | DeltaTableError::Transaction {
                    source:
                        TransactionError::VersionAlreadyExists(_)
                        | TransactionError::MaxCommitAttempts(_),
                },
            ) => {}
            Err(e) => return Err(table_error(location, e)),
        }
    }
    if reload {
        table
            .load()
            .await
            .map_err(|e| Error::storage(location, e))?;
    }
    let state = table.snapshot().map_err(|e| Error::storage(location, e))?;
    let theirs = state.schema();
    let describe = |s: &StructType| {
        s.fields()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = theirs.fields().count() == ours.fields().count()
        && theirs
            .fields()
            .zip(ours.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(Error::InvalidTable {
            table: location.to_string(),
            message: format!(
                "the output's columns ({}) differ from the table's ({})",
                describe(&ours),
                describe(theirs.as_ref())
            ),
        });
    }
    let table_partitions = state.metadata().partition_columns();
    if !table_partitions
        .iter()
        .map(|c| c.as_ref() as &str)
        .eq(partition_by.iter().map(String::as_str))
    {
        return Err(Error::InvalidTable {
            table: location.to_string(),
            message: format!(
                "the output is partitioned by [{}], the table by [{}]",
                partition_by.join(", "),
                table_partitions.join(", ")
            ),
        });
    }
    Ok(table)
}

/// Commits `commit` to the Delta table at `location` (created when missing) in one commit.
///
/// # Errors
/// [`Error::TableConflict`] when a concurrent commit touched the same partitions (or the same
/// stream); [`Error::InvalidTable`] when the rows do not fit the table's schema or partition
/// columns; [`Error::Storage`] when the log cannot be read or written.
pub async fn commit(runtime: &RuntimeEnv, location: &str, commit: Commit) -> Result<Committed> {
    let table = create_or_check(
        runtime,
        location,
        &commit.schema,
        &commit.partition_by,
        &commit.info,
        commit.loaded,
    )
    .await?;
    // Commit on top of the version the writer started from (version 0, the table's creation,
    // when there was no table): delta-rs then checks every commit made since for conflicts.
    let mut table = table;
    let latest = table.version().unwrap_or(0);
    let base = match commit.mode {
        WriteMode::ReplacePartitions => commit.read_version.unwrap_or(0),
        WriteMode::Append { .. } => latest,
    };
    if latest > base {
        table
            .load_version(base)
            .await
            .map_err(|e| Error::storage(location, e))?;
    }
    let state = table.snapshot().map_err(|e| Error::storage(location, e))?;
    let log_store = table.log_store();
    let mut properties = CommitProperties::default();
    let mut removes = Vec::new();
    let mut replaced = 0;
    let operation = match &commit.mode {
        WriteMode::ReplacePartitions => {
            let produced: BTreeSet<Vec<Option<String>>> = commit
                .adds
                .iter()
                .map(|a| partition_values(a, &commit.partition_by))
                .collect();
            let mut touched = BTreeSet::new();
            for file in state.log_data().iter() {
                let values = file.partition_values_map();
                let key: Vec<Option<String>> = commit
                    .partition_by
                    .iter()
                    .map(|c| values.get(c).cloned().flatten())
                    .collect();
                if produced.contains(&key) {
                    touched.insert(key);
                    removes.push(file.remove_action(true));
                }
            }
            replaced = touched.len();
            DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: (!commit.partition_by.is_empty())
                    .then(|| commit.partition_by.clone()),
                predicate: Some(partitions_predicate(
                    &commit.schema,
                    &commit.partition_by,
                    &produced,
                )),
            }
        }
        WriteMode::Append { app_id, version } => {
            let seen = state
                .transaction_version(log_store.as_ref(), app_id)
                .await
                .map_err(|e| Error::storage(location, e))?;
            if seen.is_some_and(|v| v >= *version) {
                return Ok(Committed {
                    version: state.version(),
                    skipped: true,
                    ..Committed::default()
                });
            }
            properties =
                properties.with_application_transaction(Transaction::new(app_id, *version));
            DeltaOperation::StreamingUpdate {
                output_mode: OutputMode::Append,
                query_id: app_id.clone(),
                epoch_id: *version,
            }
        }
    };
    let removed = removes.len();
    let rows_added: u64 = commit.adds.iter().filter_map(rows_of).sum();
    let mut info = commit.info.clone();
    info.insert("ember.files_added".into(), Value::from(commit.adds.len()));
    info.insert("ember.files_removed".into(), Value::from(removed));
    info.insert("ember.rows_added".into(), Value::from(rows_added));
    properties = properties.with_metadata(info);
    let actions: Vec<Action> = commit
        .adds
        .into_iter()
        .map(Action::Add)
        .chain(removes.into_iter().map(Action::Remove))
        .collect();
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(state), log_store, operation)
        .await
        .map_err(|e| commit_error(location, e))?;
    Ok(Committed {
        version: finalized.version(),
        removed,
        replaced,
        skipped: false,
    })
}

/// The rows of the file an `add` action adds, from its statistics (`numRecords`).
fn rows_of(add: &Add) -> Option<u64> {
    let stats: Value = serde_json::from_str(add.stats.as_deref()?).ok()?;
    stats.get("numRecords")?.as_u64()
}

/// `add` actions from the JSON the sink's tasks reported.
///
/// # Errors
/// [`Error::Internal`]-kind storage error naming the bad entry (a task wrote something that is
/// not an `add` action).
pub fn parse_adds(location: &str, reported: &[String]) -> Result<Vec<Add>> {
    reported
        .iter()
        .map(|json| {
            serde_json::from_str::<Add>(json).map_err(|e| Error::InvalidTable {
                table: location.to_string(),
                message: format!("a task reported a bad add action ({e}): {json}"),
            })
        })
        .collect()
}

/// The partition folders (`order_date=2011-12-09`, `""` when unpartitioned) of `adds`, sorted
/// and distinct: what a run's report lists.
pub fn partition_folders(adds: &[Add]) -> Vec<String> {
    let folders: BTreeSet<String> = adds
        .iter()
        .map(|a| {
            a.path
                .rsplit_once('/')
                .map_or("", |(dir, _)| dir)
                .to_string()
        })
        .collect();
    folders.into_iter().collect()
}

/// Metadata of a commit made by Ember, in its `commitInfo`.
pub fn info(entries: impl IntoIterator<Item = (&'static str, Value)>) -> BTreeMap<String, Value> {
    entries
        .into_iter()
        .map(|(k, v)| (format!("ember.{k}"), v))
        .collect::<HashMap<_, _>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn the_predicate_names_each_partition_with_its_type() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("order_date", DataType::Date32, true),
            Field::new("store", DataType::Utf8, true),
            Field::new("units", DataType::Int64, true),
        ]));
        let by = vec!["order_date".to_string(), "store".to_string()];
        let values: BTreeSet<Vec<Option<String>>> = [
            vec![Some("2011-12-09".into()), Some("O'Hare".into())],
            vec![Some("2011-12-10".into()), None],
        ]
        .into_iter()
        .collect();
        assert_eq!(
            partitions_predicate(&schema, &by, &values),
            "(\"order_date\" = CAST('2011-12-09' AS DATE) AND \"store\" = CAST('O''Hare' AS VARCHAR)) OR (\"order_date\" = CAST('2011-12-10' AS DATE) AND \"store\" IS NULL)"
        );
        assert_eq!(partitions_predicate(&schema, &[], &values), "true");
        assert_eq!(
            partitions_predicate(&schema, &by, &BTreeSet::new()),
            "false"
        );
    }
}
