//! Tables over a stream's output that read only what its sink log committed: a query sees each
//! micro-batch's windows all at once or not at all, as Spark reads a FileStreamSink's output
//! through `_spark_metadata`.
//!
//! The stream writes a batch's data files, then `_ember_sink/<batch id>.json` with their list
//! (`ember_streaming::sink`). [`SinkLogTable`] is a listing table over the output folder whose
//! scan keeps only the files some log entry lists, read when the query is planned. Files of a
//! batch in flight, or of a batch a crash interrupted, are left out until the batch's entry is
//! written. The table travels to the scheduler in the logical plan ([`SinkLogNodes`]); its scan
//! is an ordinary file scan for the executors.

use std::collections::HashSet;
use std::sync::Arc;

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
use ember_core::codec::ExtensionNodes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

/// Folder of the sink log below a stream's output (as `ember_streaming::sink::SINK_LOG`).
pub const SINK_LOG: &str = "_ember_sink";

/// Codec tag of [`SinkLogTable`].
pub const TAG_SINK_LOG_TABLE: u8 = 17;

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

    /// Paths (as the object store spells them) of the files the log's entries list.
    async fn committed(&self, state: &dyn Session) -> Result<HashSet<String>> {
        let url = ListingTableUrl::parse(&self.spec.location)?;
        let store = state.runtime_env().object_store(&url)?;
        let base = url.prefix().clone();
        let log = base.clone().join(SINK_LOG);
        let entries: Vec<_> = store.list(Some(&log)).try_collect().await?;
        let mut files = HashSet::new();
        for meta in entries {
            if !meta.location.as_ref().ends_with(".json") {
                continue;
            }
            let bytes = store.get(&meta.location).await?.bytes().await?;
            let entry: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                DataFusionError::Execution(format!("sink log entry {}: {e}", meta.location))
            })?;
            for file in entry["files"].as_array().into_iter().flatten() {
                if let Some(rel) = file.as_str() {
                    let path: object_store::path::Path =
                        rel.split('/').fold(base.clone(), |p, part| p.join(part));
                    files.insert(path.to_string());
                }
            }
        }
        Ok(files)
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

/// [`SinkLogTable`] for Ember's codecs.
#[derive(Debug)]
pub struct SinkLogNodes;

impl ExtensionNodes for SinkLogNodes {
    fn tag(&self) -> u8 {
        TAG_SINK_LOG_TABLE
    }

    fn encode_table(&self, table: &dyn TableProvider) -> Option<Result<Vec<u8>>> {
        let table = table.downcast_ref::<SinkLogTable>()?;
        Some(serde_json::to_vec(&table.spec).map_err(|e| DataFusionError::External(Box::new(e))))
    }

    fn decode_table(&self, bytes: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
        let spec: Spec =
            serde_json::from_slice(bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let partitions: Vec<(String, DataType)> = spec
            .partitions
            .iter()
            .map(|(n, t)| (n.clone(), type_of(t)))
            .collect();
        // The table's schema is the files' columns, then the partition columns.
        let file_fields: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| !partitions.iter().any(|(n, _)| n == f.name()))
            .cloned()
            .collect();
        Ok(Arc::new(SinkLogTable::try_new(
            &spec.location,
            Arc::new(Schema::new(file_fields)),
            partitions,
        )?))
    }

    fn encode_exec(&self, _node: &dyn ExecutionPlan) -> Option<Result<Vec<u8>>> {
        None
    }

    fn decode_exec(
        &self,
        _bytes: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(
            "the sink log table has no plan node of its own".into(),
        ))
    }
}

/// Adds [`SinkLogTable`] to this process's plan codecs.
pub fn register_codec() {
    ember_core::codec::register_extension(Arc::new(SinkLogNodes));
}
