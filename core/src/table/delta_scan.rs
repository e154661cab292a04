//! Reading a Delta table the way its log says: [`DeltaLogTable`], a table provider whose scan is
//! an ordinary DataFusion Parquet scan over exactly the files of one table version.
//!
//! When a query is planned (on the scheduler, or in the local session), the provider loads the
//! table's snapshot with delta-rs (the latest version, or a pinned one: time travel), keeps the
//! files whose partition values and column statistics (`minValues`, `maxValues`, `nullCount`
//! of each `add` action) can match the query's filters (DataFusion's `PruningPredicate` over
//! delta-rs's statistics), and hands them to a Parquet scan with their partition values. No
//! folder is listed, and files a run wrote but never committed are never read.
//!
//! The scan is a plain `DataSourceExec`, so Ballista ships it to executors with its own codec;
//! the table itself travels to the scheduler in the logical plan (Ember's codecs, tag
//! `CodecTag::DeltaTable`) as its location and pinned version. Tables that need a reader
//! feature this scan does not apply (deletion vectors, column mapping) are refused with a
//! clear error; Ember's own writers use neither.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::{ListingTableUrl, PartitionedFile};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};

use super::delta;
use super::parquet_files::ParquetScan;

/// What a [`DeltaLogTable`] is: a location and, for time travel, a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Spec {
    /// The table's folder URL, with a trailing `/`.
    location: String,
    /// The version read; `None`: the latest when each query is planned.
    version: Option<u64>,
    /// The partition columns (the schema's last columns).
    partitions: Vec<String>,
}

/// A Delta table read through its log (see the module documentation).
#[derive(Debug)]
pub struct DeltaLogTable {
    spec: Spec,
    /// The data files' columns (the table's columns but the partition columns), then the
    /// partition columns: the order DataFusion's file scans produce.
    schema: SchemaRef,
    /// The partition columns, typed.
    partitions: Vec<FieldRef>,
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// An Ember error as DataFusion's: the user's (no such version) as a planning error, which
/// clients show as the query's fault; the rest as external.
fn planning(e: crate::Error) -> DataFusionError {
    use crate::error::{Classify, ErrorKind};
    match e.kind() {
        ErrorKind::User => DataFusionError::Plan(e.to_string()),
        _ => external(e),
    }
}

/// Reader features of the Delta protocol this scan does not apply.
const UNSUPPORTED_READER_FEATURES: [&str; 2] = ["deletionVectors", "columnMapping"];

impl DeltaLogTable {
    /// The table at `location` (a local path or URL), at `version` (`None`: the latest at each
    /// query), whose schema is read from the log now.
    ///
    /// # Errors
    /// The location is not a Delta table, the version does not exist, or the table needs a
    /// reader feature this scan does not apply.
    pub async fn try_new(
        runtime: &datafusion::execution::runtime_env::RuntimeEnv,
        location: &str,
        version: Option<u64>,
    ) -> Result<Self> {
        let table = delta::load(runtime, location, version)
            .await
            .map_err(planning)?;
        let state = table.snapshot().map_err(external)?;
        check_protocol(location, state.protocol())?;
        let url = table.table_url().to_string();
        let arrow = state.snapshot().arrow_schema();
        let partition_names = state.metadata().partition_columns().to_vec();
        let (schema, partitions) = split_schema(&arrow, &partition_names)?;
        Ok(Self {
            spec: Spec {
                location: url,
                version,
                partitions: partition_names.clone(),
            },
            schema,
            partitions,
        })
    }

    /// The table's location (a URL with a trailing `/`).
    pub fn location(&self) -> &str {
        &self.spec.location
    }

    /// The pinned version, if any.
    pub fn version(&self) -> Option<u64> {
        self.spec.version
    }

    /// The partition columns (the last columns of the schema).
    pub fn partition_columns(&self) -> &[FieldRef] {
        &self.partitions
    }

    /// The same table pinned at `version` (time travel).
    ///
    /// # Errors
    /// As [`DeltaLogTable::try_new`].
    pub async fn at_version(
        &self,
        runtime: &datafusion::execution::runtime_env::RuntimeEnv,
        version: u64,
    ) -> Result<Self> {
        Self::try_new(runtime, &self.spec.location, Some(version)).await
    }

    /// The table as bytes (its location and version, JSON), for Ember's codecs.
    ///
    /// # Errors
    /// Never in practice (JSON of strings).
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.spec).map_err(external)
    }

    /// The table [`DeltaLogTable::encode`] wrote, whose schema is `schema` (as the encoding
    /// side planned it).
    ///
    /// # Errors
    /// Bytes `encode` did not write.
    pub fn decode(bytes: &[u8], schema: SchemaRef) -> Result<Self> {
        let spec: Spec = serde_json::from_slice(bytes).map_err(external)?;
        let partitions = spec
            .partitions
            .iter()
            .map(|n| {
                schema
                    .field_with_name(n)
                    .map(|f| Arc::new(f.clone()))
                    .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            spec,
            schema,
            partitions,
        })
    }

    /// The data files' schema: the table's schema without the partition columns.
    fn file_schema(&self) -> SchemaRef {
        let fields: Vec<FieldRef> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.partitions.iter().any(|p| p.name() == f.name()))
            .cloned()
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// The table's columns reordered as a file scan produces them (file columns, then partition
/// columns), and the partition columns.
fn split_schema(
    arrow: &SchemaRef,
    partition_names: &[String],
) -> Result<(SchemaRef, Vec<FieldRef>)> {
    let mut files: Vec<FieldRef> = Vec::new();
    for f in arrow.fields() {
        if !partition_names.contains(f.name()) {
            files.push(Arc::clone(f));
        }
    }
    let partitions: Vec<FieldRef> = partition_names
        .iter()
        .map(|n| {
            arrow
                .field_with_name(n)
                .map(|f| Arc::new(Field::new(n, f.data_type().clone(), true)))
                .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
        })
        .collect::<Result<_>>()?;
    let mut fields = files;
    fields.extend(partitions.iter().cloned());
    Ok((Arc::new(Schema::new(fields)), partitions))
}

fn check_protocol(location: &str, protocol: &deltalake::kernel::Protocol) -> Result<()> {
    let features = protocol.reader_features().unwrap_or_default();
    for feature in features {
        let name = feature.to_string();
        if UNSUPPORTED_READER_FEATURES.contains(&name.as_str()) {
            return Err(DataFusionError::NotImplemented(format!(
                "Delta table {location} needs the reader feature {name}, which Ember's scan does not apply"
            )));
        }
    }
    Ok(())
}

/// The typed value of a partition column from its text in the log (`None`: NULL).
fn partition_value(field: &Field, text: Option<&String>) -> Result<ScalarValue> {
    match text {
        None => ScalarValue::try_from(field.data_type()),
        Some(t) => ScalarValue::try_from_string(t.clone(), field.data_type()),
    }
}

#[async_trait::async_trait]
impl TableProvider for DeltaLogTable {
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
        let runtime = state.runtime_env();
        let table = delta::load(runtime, &self.spec.location, self.spec.version)
            .await
            .map_err(planning)?;
        let snapshot = table.snapshot().map_err(external)?;
        check_protocol(&self.spec.location, snapshot.protocol())?;
        let log_data = snapshot.log_data();
        // Which files can hold rows the filters keep.
        let keep: Option<Vec<bool>> = match conjunction(filters.iter().cloned()) {
            Some(predicate) => {
                let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                let physical = state.create_physical_expr(predicate, &df_schema)?;
                PruningPredicateBuilder::new()
                    .with_file_schema(Arc::clone(&self.schema))
                    .build(physical)
                    .and_then(|pruning| pruning.prune(&log_data).ok())
            }
            None => None,
        };
        let url = ListingTableUrl::parse(&self.spec.location)?;
        let base = url.prefix().clone();
        let mut files = Vec::new();
        for (i, file) in log_data.iter().enumerate() {
            if keep
                .as_ref()
                .is_some_and(|k| !k.get(i).copied().unwrap_or(true))
            {
                continue;
            }
            let values = file.partition_values_map();
            let partition_values = self
                .partitions
                .iter()
                .map(|p| partition_value(p, values.get(p.name()).and_then(|v| v.as_ref())))
                .collect::<Result<Vec<_>>>()?;
            let relative = file.object_store_path();
            let path = object_store::path::Path::from_iter(base.parts().chain(relative.parts()));
            files.push(
                PartitionedFile::new(path.to_string(), file.size().max(0) as u64)
                    .with_partition_values(partition_values),
            );
        }
        let scan = ParquetScan {
            store: url.object_store(),
            file_schema: self.file_schema(),
            partitions: self.partitions.clone(),
        };
        scan.plan(state, files, projection, limit).await
    }
}
