//! A Parquet input read from the files listed once when the run started: [`ParquetFilesTable`],
//! a table provider whose scan is an ordinary DataFusion Parquet scan over exactly those files,
//! with the values of their `col=value/` folders as partition columns.
//!
//! DataFusion's `ListingTable` lists its folder again for every query that reads it, so a
//! file that lands during a run could be read by the output step and not by the quarantine or
//! the counts. This table holds its file list (path, size in bytes, partition values) and
//! lists nothing: every query of a run reads the same files, as Spark's `InMemoryFileIndex`
//! lists a folder once per `DataFrame`. Files are pruned by the query's filters on partition
//! columns (the filters stay above the scan: `Inexact`), as `ListingTable` prunes partitions,
//! and carry their footers' statistics (row counts, min, max, null counts) when DataFusion's
//! `collect_statistics` is on, as `ListingTable`'s do.
//!
//! The table travels to the scheduler in the logical plan (Ember's codecs, tag
//! `CodecTag::ParquetFiles`) as its file list, JSON; its scan is a plain `DataSourceExec`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::{
    ColumnStatistics, DFSchema, DataFusionError, Result, ScalarValue, Statistics,
};
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{PartitionedFile, helpers};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// One file of a [`ParquetFilesTable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFile {
    /// The file's object store path (percent-encoded as `object_store::path::Path` keeps it).
    pub path: String,
    /// Its size, bytes.
    pub size: u64,
    /// Its values of the table's partition columns, in their order (`None`: NULL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_values: Vec<Option<String>>,
}

impl ListedFile {
    /// The file `meta` as listed, with its `partition_values`.
    pub fn new(meta: &ObjectMeta, partition_values: Vec<Option<String>>) -> Self {
        Self {
            path: meta.location.to_string(),
            size: meta.size,
            partition_values,
        }
    }
}

/// What a [`ParquetFilesTable`] is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Spec {
    /// The object store the files are in (`file:///`, `hdfs://host:port`, …).
    store: String,
    /// The partition columns (`Utf8`, the schema's last columns).
    partitions: Vec<String>,
    /// The files, in listing order.
    files: Vec<ListedFile>,
}

/// Parquet files listed once, with their partition values (see the module documentation).
#[derive(Debug)]
pub struct ParquetFilesTable {
    spec: Spec,
    /// The files' columns, then the partition columns (`Utf8`, nullable): the order
    /// DataFusion's file scans produce.
    schema: SchemaRef,
}

impl ParquetFilesTable {
    /// The table over `files` in the object store `store`, whose files have the columns of
    /// `file_schema` and lie in `partitions` folders (`col=value/`, `Utf8` columns).
    ///
    /// # Errors
    /// A partition column that is also a column of the files, or a file whose number of
    /// partition values is not the number of partition columns.
    pub fn try_new(
        store: &ObjectStoreUrl,
        file_schema: &Schema,
        partitions: Vec<String>,
        files: Vec<ListedFile>,
    ) -> Result<Self> {
        if let Some(file) = files
            .iter()
            .find(|f| f.partition_values.len() != partitions.len())
        {
            return Err(DataFusionError::Plan(format!(
                "{} has {} partition values for {} partition columns",
                file.path,
                file.partition_values.len(),
                partitions.len()
            )));
        }
        let schema = table_schema(file_schema, &partitions)?;
        Ok(Self {
            spec: Spec {
                store: store.as_str().to_string(),
                partitions,
                files,
            },
            schema,
        })
    }

    /// The files the table reads, in listing order.
    pub fn files(&self) -> &[ListedFile] {
        &self.spec.files
    }

    /// The table as bytes (its store, partition columns and files, JSON), for Ember's codecs.
    ///
    /// # Errors
    /// Never in practice (JSON of strings and numbers).
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.spec).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// The table [`ParquetFilesTable::encode`] wrote, whose schema is `schema`.
    ///
    /// # Errors
    /// Bytes `encode` did not write.
    pub fn decode(bytes: &[u8], schema: SchemaRef) -> Result<Self> {
        let spec: Spec =
            serde_json::from_slice(bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Self { spec, schema })
    }

    fn partition_fields(&self) -> Vec<FieldRef> {
        self.spec
            .partitions
            .iter()
            .map(|n| Arc::new(Field::new(n, DataType::Utf8, true)))
            .collect()
    }

    fn file_schema(&self) -> SchemaRef {
        let n = self.schema.fields().len() - self.spec.partitions.len();
        Arc::new(Schema::new(self.schema.fields()[..n].to_vec()))
    }

    /// Which files can hold rows that `filters` keep: those whose partition values make the
    /// filters on partition columns alone true (all files without such filters).
    fn kept(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<bool>> {
        let names: Vec<&str> = self.spec.partitions.iter().map(String::as_str).collect();
        let on_partitions = filters
            .iter()
            .filter(|f| helpers::expr_applicable_for_cols(&names, f))
            .cloned();
        let (Some(predicate), false) = (conjunction(on_partitions), names.is_empty()) else {
            return Ok(vec![true; self.spec.files.len()]);
        };
        let schema = Arc::new(Schema::new(self.partition_fields()));
        let columns = (0..names.len())
            .map(|i| {
                Arc::new(
                    self.spec
                        .files
                        .iter()
                        .map(|f| f.partition_values[i].as_deref())
                        .collect::<StringArray>(),
                ) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let matches = state
            .create_physical_expr(predicate, &df_schema)?
            .evaluate(&batch)?
            .into_array(batch.num_rows())?;
        let matches = matches.as_boolean();
        // NULL, as false: a filter drops the rows it is NULL for.
        Ok((0..matches.len())
            .map(|i| matches.is_valid(i) && matches.value(i))
            .collect())
    }
}

/// The files' columns, then the partition columns (`Utf8`, nullable).
fn table_schema(file_schema: &Schema, partitions: &[String]) -> Result<SchemaRef> {
    if let Some(clash) = partitions
        .iter()
        .find(|p| file_schema.field_with_name(p).is_ok())
    {
        return Err(DataFusionError::Plan(format!(
            "partition column `{clash}` is also a column of the files"
        )));
    }
    let mut fields = file_schema.fields().to_vec();
    fields.extend(
        partitions
            .iter()
            .map(|n| Arc::new(Field::new(n, DataType::Utf8, true))),
    );
    Ok(Arc::new(Schema::new(fields)))
}

#[async_trait::async_trait]
impl TableProvider for ParquetFilesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Files are pruned with the filters; the rows are still filtered above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let kept = self.kept(state, filters)?;
        let files = self
            .spec
            .files
            .iter()
            .zip(kept)
            .filter(|(_, keep)| *keep)
            .map(|(f, _)| {
                let meta = ObjectMeta {
                    location: Path::parse(&f.path)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?,
                    last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                    size: f.size,
                    e_tag: None,
                    version: None,
                };
                let values = f
                    .partition_values
                    .iter()
                    .map(|v| ScalarValue::Utf8(v.clone()))
                    .collect();
                Ok(PartitionedFile::new_from_meta(meta).with_partition_values(values))
            })
            .collect::<Result<Vec<_>>>()?;
        let store = ObjectStoreUrl::parse(&self.spec.store)?;
        let files = if state.config().collect_statistics() {
            with_statistics(state, &store, &self.file_schema(), files).await?
        } else {
            files
        };
        let scan = ParquetScan {
            store,
            file_schema: self.file_schema(),
            partitions: self.partition_fields(),
        };
        scan.plan(state, files, projection, limit).await
    }
}

/// `files` with their statistics (row counts, and each column's min, max and null count, from
/// their footers, which DataFusion's metadata cache keeps), as `ListingTable` collects them
/// when `datafusion.execution.collect_statistics` is on: join planning picks the smaller side
/// with them. A NULL partition value counts as NULL in every row (DataFusion's
/// `PartitionedFile::with_statistics` would say no NULLs).
async fn with_statistics(
    state: &dyn Session,
    store: &ObjectStoreUrl,
    file_schema: &SchemaRef,
    files: Vec<PartitionedFile>,
) -> Result<Vec<PartitionedFile>> {
    let object_store = state.runtime_env().object_store(store)?;
    let format = ParquetFormat::default();
    let n = file_schema.fields().len();
    // Footers are read concurrently, as `ListingTable` reads them (`meta_fetch_concurrency`).
    let concurrency = state
        .config_options()
        .execution
        .meta_fetch_concurrency
        .get();
    futures::stream::iter(files)
        .map(|file| {
            let (format, object_store) = (&format, &object_store);
            async move {
                let statistics = format
                    .infer_stats(
                        state,
                        object_store,
                        Arc::clone(file_schema),
                        &file.object_meta,
                    )
                    .await?;
                let rows = statistics.num_rows;
                let values = file.partition_values.clone();
                let mut file = file.with_statistics(Arc::new(statistics));
                if let Some(stats) = file.statistics.as_mut() {
                    let stats = Arc::make_mut(stats);
                    for (i, value) in values.iter().enumerate() {
                        if value.is_null()
                            && let Some(column) = stats.column_statistics.get_mut(n + i)
                        {
                            *column = ColumnStatistics {
                                null_count: rows,
                                ..ColumnStatistics::new_unknown()
                            };
                        }
                    }
                }
                Ok(file)
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await
}

/// A DataFusion Parquet scan of files with partition values: what [`ParquetFilesTable`] and the
/// Delta table's scan (`super::delta_scan`) hand their files to.
pub(crate) struct ParquetScan {
    /// The object store of the files.
    pub store: ObjectStoreUrl,
    /// The files' columns.
    pub file_schema: SchemaRef,
    /// The partition columns (after the files' columns in the scan's output).
    pub partitions: Vec<FieldRef>,
}

impl ParquetScan {
    /// The scan of `files` (an empty plan when there are none), spread over the session's
    /// target partitions: largest first, round robin. Its statistics are the files' when
    /// every file carries them ([`PartitionedFile::statistics`]), unknown otherwise.
    pub async fn plan(
        self,
        state: &dyn Session,
        mut files: Vec<PartitionedFile>,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if files.is_empty() {
            let mut fields = self.file_schema.fields().to_vec();
            fields.extend(self.partitions.iter().cloned());
            let schema = Schema::new(fields);
            let projected = match projection {
                Some(p) => schema.project(p)?,
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(Arc::new(projected))));
        }
        let target = state.config().target_partitions().max(1);
        files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); target.min(files.len())];
        for (i, f) in files.into_iter().enumerate() {
            let n = groups.len();
            groups[i % n].push(f);
        }
        let format = ParquetFormat::default();
        let table_schema = TableSchema::builder(self.file_schema)
            .with_table_partition_cols(self.partitions)
            .build();
        let schema = Arc::clone(table_schema.table_schema());
        let source = format.file_source(table_schema);
        // The table's statistics: the files' when every file has them, else unknown.
        let per_file: Option<Vec<&Statistics>> = groups
            .iter()
            .flatten()
            .map(|f| f.statistics.as_deref())
            .collect();
        let statistics = match per_file {
            Some(per_file) => Statistics::try_merge_iter(per_file, &schema)?,
            None => Statistics::new_unknown(&schema),
        };
        let groups: Vec<FileGroup> = groups.into_iter().map(FileGroup::new).collect();
        let config = FileScanConfigBuilder::new(self.store, source)
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

#[cfg(test)]
#[path = "parquet_files_tests.rs"]
mod tests;
