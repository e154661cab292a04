//! The stream sink log: which data files of a stream's output belong to committed
//! micro-batches. Spark's FileStreamSink keeps the same log in `_spark_metadata/`. This module
//! owns the whole contract, so the writer (the stream's sink) and the readers (Flight SQL, the
//! web UI) cannot drift apart:
//! - the format: one JSON file per batch, `<output>/_ember_sink/<batch id, 8 digits>.json`,
//!   holding a [`SinkLogEntry`] (`{"batch_id": 42, "files": ["window_date=…/…parquet"]}`, the
//!   batch's data files relative to the output folder);
//! - the writer: [`log_batch`], called once every file of the batch is written; a batch with
//!   no file writes no entry (and removes one a first attempt wrote); every [`COMPACT_EVERY`]
//!   batches the entries so far (if any since the last compaction) are compacted into one
//!   file, `<batch id>.compact.json` (all files of the batches up to it), as Spark's
//!   FileStreamSink compacts `_spark_metadata` every 10 batches, and the entries and compact
//!   file older than the previous compaction are deleted, so a reader reads at most one
//!   compact file and fewer than [`COMPACT_EVERY`] entries;
//! - the reader: [`committed_files`], and [`SinkLogTable`], a Parquet listing table over the
//!   output folder whose scan keeps only the files some entry lists, read when the query is
//!   planned. A query sees each batch's rows all at once or not at all; files of a batch in
//!   flight, or of a batch a crash interrupted, are left out until the batch's entry is written.
//!
//! The table travels to the scheduler in the logical plan (Ember's codecs, tag
//! `CodecTag::SinkLogTable`, through [`SinkLogTable::encode`]); its scan is an ordinary file
//! scan for the executors.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::storage::Dir;

/// Folder of the sink log, below a stream's output.
pub const SINK_LOG: &str = "_ember_sink";

/// One batch's entry in the sink log: `{"batch_id": 42, "files": ["window_date=…/…parquet"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkLogEntry {
    /// The micro-batch.
    pub batch_id: u64,
    /// Its data files, relative to the output folder (`/`-separated).
    pub files: Vec<String>,
}

/// Batches between two compactions of the log.
pub const COMPACT_EVERY: u64 = 10;

/// The entry's file name in the log: the batch id with 8 digits, `.json`.
pub fn entry_name(batch_id: u64) -> String {
    format!("{batch_id:08}.json")
}

/// The name of the compaction written at batch `batch_id`: `<8 digits>.compact.json`.
pub fn compact_name(batch_id: u64) -> String {
    format!("{batch_id:08}.compact.json")
}

/// What a log file name says: (batch id, whether it is a compaction).
fn parse_name(name: &str) -> Option<(u64, bool)> {
    if let Some(id) = name.strip_suffix(".compact.json") {
        return id.parse().ok().map(|id| (id, true));
    }
    name.strip_suffix(".json")?
        .parse()
        .ok()
        .map(|id| (id, false))
}

/// The log files to read: the newest compaction (if any) and the entries after it, and the
/// files older than the compaction before it (which nobody needs to read any more).
fn plan_read(names: &[String]) -> (Vec<String>, Vec<String>) {
    let mut files: Vec<(u64, bool, &String)> = names
        .iter()
        .filter_map(|n| parse_name(n).map(|(id, compact)| (id, compact, n)))
        .collect();
    files.sort();
    let compacts: Vec<u64> = files.iter().filter(|f| f.1).map(|f| f.0).collect();
    let newest = compacts.last().copied();
    let previous = compacts.len().checked_sub(2).map(|i| compacts[i]);
    let read = files
        .iter()
        .filter(|(id, compact, _)| match newest {
            Some(c) => (*compact && *id == c) || (!*compact && *id > c),
            None => !*compact,
        })
        .map(|f| f.2.clone())
        .collect();
    let obsolete = files
        .iter()
        .filter(|(id, compact, _)| previous.is_some_and(|p| *id < p || (*id == p && !*compact)))
        .map(|f| f.2.clone())
        .collect();
    (read, obsolete)
}

/// Writes batch `batch_id`'s entry under `output` (a replay writes the same entry again); no
/// entry when the batch wrote no file. Every [`COMPACT_EVERY`] batches, compacts the log.
/// The object store writes a temporary file and renames it, so a reader sees the whole entry
/// or none.
///
/// # Errors
/// [`crate::Error::Storage`] when it cannot be written.
pub async fn log_batch(output: &Dir, batch_id: u64, files: Vec<String>) -> crate::Result<()> {
    if files.is_empty() {
        // A replay that writes nothing withdraws what its first attempt may have logged.
        output
            .delete(&format!("{SINK_LOG}/{}", entry_name(batch_id)))
            .await?;
    } else {
        put_entry(
            output,
            &entry_name(batch_id),
            &SinkLogEntry { batch_id, files },
        )
        .await?;
    }
    if (batch_id + 1).is_multiple_of(COMPACT_EVERY) {
        compact(output, batch_id).await?;
    }
    Ok(())
}

async fn put_entry(output: &Dir, name: &str, entry: &SinkLogEntry) -> crate::Result<()> {
    let json = serde_json::to_vec(entry)
        .map_err(|e| crate::Error::storage(format!("{}/{SINK_LOG}", output.url()), e))?;
    output
        .put(&format!("{SINK_LOG}/{name}"), Bytes::from(json))
        .await
}

/// Writes `<batch_id>.compact.json` with every file the log lists now, then deletes what the
/// compaction before it made obsolete. Nothing is written when no batch logged files since
/// the newest compaction (an idle stream's log is left as it is), unless a first attempt of
/// `batch_id` compacted already (a replay rewrites that compaction).
async fn compact(output: &Dir, batch_id: u64) -> crate::Result<()> {
    let log = output.sub(SINK_LOG);
    // A replay of `batch_id` compacts again from the compaction before it, so the entry it
    // has just rewritten (its files may differ) is the one compacted.
    let (replayed, names): (Vec<String>, Vec<String>) = log
        .list("")
        .await?
        .into_iter()
        .partition(|n| matches!(parse_name(n), Some((id, true)) if id >= batch_id));
    let (read, _) = plan_read(&names);
    let new_entries = read
        .iter()
        .any(|n| matches!(parse_name(n), Some((_, false))));
    if !new_entries && replayed.is_empty() {
        return Ok(());
    }
    let mut files = Vec::new();
    for name in read {
        let Some(bytes) = log.get(&name).await? else {
            continue;
        };
        let entry: SinkLogEntry = serde_json::from_slice(&bytes)
            .map_err(|e| crate::Error::storage(format!("{}/{name}", log.url()), e))?;
        files.extend(entry.files);
    }
    files.sort();
    files.dedup();
    put_entry(
        output,
        &compact_name(batch_id),
        &SinkLogEntry { batch_id, files },
    )
    .await?;
    let (_, obsolete) = plan_read(&log.list("").await?);
    for name in obsolete {
        if let Err(e) = log.delete(&name).await {
            tracing::warn!(error = %e, "cannot delete an obsolete sink log file");
        }
    }
    Ok(())
}

/// Paths (as the object store spells them) of the files the log under `base` lists: the data
/// of committed batches (the newest compaction and the entries after it).
///
/// # Errors
/// The store's errors, and an entry that is not a [`SinkLogEntry`] (named by its path).
pub async fn committed_files(
    store: &dyn object_store::ObjectStore,
    base: &object_store::path::Path,
) -> Result<HashSet<String>> {
    Ok(read_log(store, base).await?.0)
}

/// The committed files ([`committed_files`]) and the newest batch entry's modification time
/// (ms; 0 without one).
async fn read_log(
    store: &dyn object_store::ObjectStore,
    base: &object_store::path::Path,
) -> Result<(HashSet<String>, i64)> {
    let log = base.clone().join(SINK_LOG);
    let entries: Vec<_> = store.list(Some(&log)).try_collect().await?;
    let names: Vec<String> = entries
        .iter()
        .filter_map(|m| m.location.filename().map(str::to_string))
        .collect();
    let newest_entry = entries
        .iter()
        .filter_map(|m| Some((parse_name(m.location.filename()?)?, m.last_modified)))
        .filter(|((_, compact), _)| !compact)
        .max_by_key(|((id, _), _)| *id)
        .map_or(0, |(_, modified)| modified.timestamp_millis());
    let (read, _) = plan_read(&names);
    let mut files = HashSet::new();
    for name in read {
        let path = log.clone().join(name.as_str());
        let bytes = match store.get(&path).await {
            Ok(got) => got.bytes().await?,
            // Deleted by a compaction since the listing: a newer compaction lists its files.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let entry: SinkLogEntry = serde_json::from_slice(&bytes)
            .map_err(|e| DataFusionError::Execution(format!("sink log entry {path}: {e}")))?;
        for rel in &entry.files {
            let path: object_store::path::Path =
                rel.split('/').fold(base.clone(), |p, part| p.join(part));
            files.insert(path.to_string());
        }
    }
    Ok((files, newest_entry))
}

/// What the log under `base` has committed now, as a token that changes whenever the committed
/// files do (a batch logged or withdrawn) or the newest batch entry is written again (a
/// replay), and not when the log is compacted (every [`COMPACT_EVERY`] batches, with data or
/// not): a hash of the committed files' paths, their number, and the newest entry's
/// modification time (ms). Reads what a query's planning reads ([`committed_files`]), never
/// the data files.
///
/// # Errors
/// As [`committed_files`].
pub async fn log_state(
    store: &dyn object_store::ObjectStore,
    base: &object_store::path::Path,
) -> Result<String> {
    use std::hash::{Hash, Hasher};
    let (files, newest_entry) = read_log(store, base).await?;
    let mut files: Vec<String> = files.into_iter().collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut hasher);
    Ok(format!(
        "{:016x}:{}:{newest_entry}",
        hasher.finish(),
        files.len()
    ))
}

/// Whether the folder `base` has a sink log (a stream wrote at least one batch entry).
///
/// # Errors
/// The store's errors.
pub async fn has_log(
    store: &dyn object_store::ObjectStore,
    base: &object_store::path::Path,
) -> Result<bool> {
    let log = base.clone().join(SINK_LOG);
    Ok(store.list(Some(&log)).try_next().await?.is_some())
}

/// What a [`SinkLogTable`] is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Spec {
    /// The output folder URL, with a trailing `/`.
    location: String,
    /// Partition columns and their types (`Date32`, `Int64` or `Utf8`).
    partitions: Vec<(String, String)>,
}

fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Date32 => "Date32",
        DataType::Int64 => "Int64",
        _ => "Utf8",
    }
}

fn type_of(name: &str) -> DataType {
    match name {
        "Date32" => DataType::Date32,
        "Int64" => DataType::Int64,
        _ => DataType::Utf8,
    }
}

/// A Parquet listing table that reads only the files of committed batches.
#[derive(Debug)]
pub struct SinkLogTable {
    spec: Spec,
    inner: ListingTable,
}

impl SinkLogTable {
    /// The table over `location` (a folder URL with a trailing `/`) whose file schema is
    /// `file_schema`, partitioned by `partitions`.
    ///
    /// # Errors
    /// DataFusion's, for a bad URL.
    pub fn try_new(
        location: &str,
        file_schema: SchemaRef,
        partitions: Vec<(String, DataType)>,
    ) -> Result<Self> {
        let url = ListingTableUrl::parse(location)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partitions.clone());
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(file_schema);
        Ok(Self {
            spec: Spec {
                location: location.to_string(),
                partitions: partitions
                    .iter()
                    .map(|(n, t)| (n.clone(), type_name(t).to_string()))
                    .collect(),
            },
            inner: ListingTable::try_new(config)?,
        })
    }

    /// The output folder's URL (with a trailing `/`).
    pub fn location(&self) -> &str {
        &self.spec.location
    }

    /// Its sink log's state now ([`log_state`]): changes when a batch is committed.
    ///
    /// # Errors
    /// DataFusion's for a store `runtime` has none for; the store's errors.
    pub async fn log_state(&self, runtime: &RuntimeEnv) -> Result<String> {
        let (store, base) = self.store(runtime)?;
        log_state(store.as_ref(), &base).await
    }

    /// The files of committed batches ([`committed_files`]).
    async fn committed(&self, state: &dyn Session) -> Result<HashSet<String>> {
        let (store, base) = self.store(state.runtime_env())?;
        committed_files(store.as_ref(), &base).await
    }

    /// The output folder's store in `runtime`, and the folder's path in it.
    fn store(
        &self,
        runtime: &RuntimeEnv,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
        let url = ListingTableUrl::parse(&self.spec.location)?;
        Ok((runtime.object_store(&url)?, url.prefix().clone()))
    }
}

/// `plan` with every file scan restricted to `files`.
fn keep_files(
    plan: Arc<dyn ExecutionPlan>,
    files: &HashSet<String>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
                return Ok(Transformed::no(node));
            };
            let groups: Vec<FileGroup> = config
                .file_groups
                .iter()
                .map(|g| {
                    FileGroup::new(
                        g.files()
                            .iter()
                            .filter(|f| files.contains(f.object_meta.location.as_ref()))
                            .cloned()
                            .collect(),
                    )
                })
                .filter(|g| !g.is_empty())
                .collect();
            // The table's statistics count every file: inexact now, so that no optimizer rule
            // answers COUNT(*) from them.
            let statistics = config.statistics().to_inexact();
            let restricted = FileScanConfigBuilder::from(config.clone())
                .with_file_groups(groups)
                .with_statistics(statistics)
                .build();
            Ok(Transformed::yes(
                DataSourceExec::from_data_source(restricted) as Arc<dyn ExecutionPlan>,
            ))
        })?
        .data)
}

#[async_trait::async_trait]
impl TableProvider for SinkLogTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let committed = self.committed(state).await?;
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        keep_files(plan, &committed)
    }
}

impl SinkLogTable {
    /// The table as bytes (its location and partition columns, JSON), for Ember's codecs
    /// (`CodecTag::SinkLogTable`).
    ///
    /// # Errors
    /// Never in practice (JSON of strings).
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.spec).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// The table [`SinkLogTable::encode`] wrote, whose schema (files' columns, then the
    /// partition columns) is `schema`.
    ///
    /// # Errors
    /// Bytes `encode` did not write, or a bad location.
    pub fn decode(bytes: &[u8], schema: SchemaRef) -> Result<Self> {
        let spec: Spec =
            serde_json::from_slice(bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let partitions: Vec<(String, DataType)> = spec
            .partitions
            .iter()
            .map(|(n, t)| (n.clone(), type_of(t)))
            .collect();
        let file_fields: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| !partitions.iter().any(|(n, _)| n == f.name()))
            .cloned()
            .collect();
        SinkLogTable::try_new(
            &spec.location,
            Arc::new(Schema::new(file_fields)),
            partitions,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_reader_reads_the_newest_compaction_and_the_entries_after_it() {
        let log = names(&[
            "00000003.json",
            "00000009.compact.json",
            "00000009.json",
            "00000012.json",
            "00000019.compact.json",
            "00000019.json",
            "00000021.json",
            "00000022.json",
        ]);
        let (read, obsolete) = plan_read(&log);
        assert_eq!(
            read,
            names(&["00000019.compact.json", "00000021.json", "00000022.json"])
        );
        // Older than the compaction before the newest: nobody reads them.
        assert_eq!(obsolete, names(&["00000003.json", "00000009.json"]));
        let (read, obsolete) = plan_read(&names(&["00000000.json", "00000004.json"]));
        assert_eq!(read, names(&["00000000.json", "00000004.json"]));
        assert!(obsolete.is_empty());
    }

    /// 25 batches on a local folder, every third without files, batch 19 replayed with other
    /// files after its compaction: the reader sees exactly the last attempt of each batch,
    /// and the log keeps one compaction's worth of history.
    #[tokio::test]
    async fn compaction_keeps_every_committed_file_and_a_replay_replaces_its_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let registry = datafusion::execution::object_store::DefaultObjectStoreRegistry::new();
        let output = Dir::open(&tmp.path().display().to_string(), &registry).expect("dir");
        let files = |id: u64, attempt: &str| -> Vec<String> {
            if id % 3 == 2 {
                Vec::new()
            } else {
                vec![format!("d={attempt}/part-b{id:08}.parquet")]
            }
        };
        for id in 0..25 {
            log_batch(&output, id, files(id, "first"))
                .await
                .expect("log");
            if id == 19 {
                log_batch(&output, 19, files(19, "replay"))
                    .await
                    .expect("replay");
            }
        }
        let store = object_store::local::LocalFileSystem::new();
        let base = object_store::path::Path::from_filesystem_path(tmp.path()).expect("path");
        let got = committed_files(&store, &base).await.expect("read");
        let mut want = HashSet::new();
        for id in 0..25 {
            for rel in files(id, if id == 19 { "replay" } else { "first" }) {
                let p = rel.split('/').fold(base.clone(), |p, part| p.join(part));
                want.insert(p.to_string());
            }
        }
        assert_eq!(got, want);
        let mut log = output.sub(SINK_LOG).list("").await.expect("list");
        log.sort();
        assert_eq!(
            log,
            names(&[
                "00000009.compact.json",
                "00000010.json",
                "00000012.json",
                "00000013.json",
                "00000015.json",
                "00000016.json",
                "00000018.json",
                "00000019.compact.json",
                "00000019.json",
                "00000021.json",
                "00000022.json",
                "00000024.json",
            ])
        );
    }

    /// The state a reader keeps answers by moves with each batch that commits files, and not
    /// with a compaction after batches without files (a stream with no window closing).
    #[tokio::test]
    async fn the_log_state_changes_with_committed_files_not_with_a_compaction() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let registry = datafusion::execution::object_store::DefaultObjectStoreRegistry::new();
        let output = Dir::open(&tmp.path().display().to_string(), &registry).expect("dir");
        let store = object_store::local::LocalFileSystem::new();
        let base = object_store::path::Path::from_filesystem_path(tmp.path()).expect("path");
        let state = || async { log_state(&store, &base).await.expect("state") };
        log_batch(&output, 0, vec!["part-b0.parquet".into()])
            .await
            .expect("log");
        let first = state().await;
        // Batches 1 to 9 write no file; batch 9 compacts the log.
        for id in 1..10 {
            log_batch(&output, id, Vec::new()).await.expect("log");
        }
        let log = output.sub(SINK_LOG).list("").await.expect("list");
        assert!(log.contains(&compact_name(9)), "{log:?}");
        assert_eq!(state().await, first);
        // Batches 10 to 19 write no file either: nothing to compact, the log is left as it is.
        for id in 10..20 {
            log_batch(&output, id, Vec::new()).await.expect("log");
        }
        let mut idle = output.sub(SINK_LOG).list("").await.expect("list");
        idle.sort();
        assert_eq!(idle, vec![entry_name(0), compact_name(9)]);
        assert_eq!(state().await, first);
        log_batch(&output, 20, vec!["part-b20.parquet".into()])
            .await
            .expect("log");
        let second = state().await;
        assert_ne!(second, first);
        // A replay of batch 20 that writes nothing withdraws its files.
        log_batch(&output, 20, Vec::new()).await.expect("replay");
        assert_ne!(state().await, second);
        // Batch 29 commits a file and compacts; its replay without files rewrites the
        // compaction, which no longer lists it.
        log_batch(&output, 29, vec!["part-b29.parquet".into()])
            .await
            .expect("log");
        log_batch(&output, 29, Vec::new()).await.expect("replay");
        let got = committed_files(&store, &base).await.expect("read");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got.iter().all(|f| f.ends_with("part-b0.parquet")),
            "{got:?}"
        );
    }
}
