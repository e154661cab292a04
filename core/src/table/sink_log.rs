//! The stream sink log: which data files of a stream's output belong to committed
//! micro-batches. Spark's FileStreamSink keeps the same log in `_spark_metadata/`. This module
//! owns the whole contract, so the writer (the stream's sink) and the readers (Flight SQL, the
//! web UI) cannot drift apart:
//! - the format: one JSON file per batch, `<output>/_ember_sink/<batch id, 8 digits>.json`,
//!   holding a [`SinkLogEntry`] (`{"batch_id": 42, "files": ["window_date=…/…parquet"]}`, the
//!   batch's data files relative to the output folder);
//! - the writer: [`log_batch`], called once every file of the batch is written;
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

/// The entry's file name in the log: the batch id with 8 digits, `.json`.
pub fn entry_name(batch_id: u64) -> String {
    format!("{batch_id:08}.json")
}

/// Writes batch `batch_id`'s entry under `output` (a replay writes the same entry again).
/// The object store writes a temporary file and renames it, so a reader sees the whole entry
/// or none.
///
/// # Errors
/// [`crate::Error::Storage`] when it cannot be written.
pub async fn log_batch(output: &Dir, batch_id: u64, files: Vec<String>) -> crate::Result<()> {
    let entry = SinkLogEntry { batch_id, files };
    let json = serde_json::to_vec(&entry)
        .map_err(|e| crate::Error::storage(format!("{}/{SINK_LOG}", output.url()), e))?;
    output
        .put(
            &format!("{SINK_LOG}/{}", entry_name(batch_id)),
            Bytes::from(json),
        )
        .await
}

/// Paths (as the object store spells them) of the files the log under `base` lists: the data
/// of committed batches.
///
/// # Errors
/// The store's errors, and an entry that is not a [`SinkLogEntry`] (named by its path).
pub async fn committed_files(
    store: &dyn object_store::ObjectStore,
    base: &object_store::path::Path,
) -> Result<HashSet<String>> {
    let log = base.clone().join(SINK_LOG);
    let entries: Vec<_> = store.list(Some(&log)).try_collect().await?;
    let mut files = HashSet::new();
    for meta in entries {
        if !meta.location.as_ref().ends_with(".json") {
            continue;
        }
        let bytes = store.get(&meta.location).await?.bytes().await?;
        let entry: SinkLogEntry = serde_json::from_slice(&bytes).map_err(|e| {
            DataFusionError::Execution(format!("sink log entry {}: {e}", meta.location))
        })?;
        for rel in &entry.files {
            let path: object_store::path::Path =
                rel.split('/').fold(base.clone(), |p, part| p.join(part));
            files.insert(path.to_string());
        }
    }
    Ok(files)
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

    /// The files of committed batches ([`committed_files`]).
    async fn committed(&self, state: &dyn Session) -> Result<HashSet<String>> {
        let url = ListingTableUrl::parse(&self.spec.location)?;
        let store = state.runtime_env().object_store(&url)?;
        committed_files(store.as_ref(), url.prefix()).await
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
