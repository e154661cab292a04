//! A database input as a table whose scan runs one task per split range, on the executors.
//!
//! As the Kafka scan (`ember_streaming::scan`), the ranges are the scan's *input*: an
//! in-memory source with one partition per range (a row with the range's `WHERE`), because
//! Ballista 55 hands each task the slice of the leaves it knows (in-memory partitions among
//! them) and would run every range in every task if they were a field of the node. Each task
//! connects, runs `SELECT <projected columns> FROM <table or (query)> WHERE <range>` and casts
//! the rows to the input's schema.
//!
//! [`DatabaseTable`] (logical plans, client → scheduler) and [`DatabaseScanExec`] (physical
//! plans, scheduler → executors) are encoded as JSON behind [`CodecTag::DatabaseScan`]; the
//! password travels with them (see [`super::connection`]).

use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PhysicalExpr, PlanProperties,
};
use ember_core::codec::{CodecTag, Codecs, ExtensionNodes};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::connection::Endpoint;
use super::sql;

/// The scan's input: one row per range, one partition per range: `predicate` Utf8 (the
/// range's `WHERE`).
pub static RANGE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![Field::new(
        "predicate",
        DataType::Utf8,
        false,
    )]))
});

/// A column of the input: its name and Arrow type (as Arrow prints it, which it parses back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The name in the database.
    pub name: String,
    /// The Arrow type's text (`Decimal128(10, 2)`, `Timestamp(µs)`, …).
    pub data_type: String,
}

/// What every task of the scan needs: where to connect and what to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSource {
    /// The input's table name in the job (for messages).
    pub input: String,
    /// The database.
    pub endpoint: Endpoint,
    /// The `FROM` ([`sql::from`]).
    pub from: String,
    /// The columns, in order (all nullable).
    pub columns: Vec<Column>,
}

impl ScanSource {
    /// The Arrow schema of [`ScanSource::columns`].
    ///
    /// # Errors
    /// A type text Arrow does not parse (an executor of another build).
    pub fn schema(&self) -> DfResult<SchemaRef> {
        let fields = self
            .columns
            .iter()
            .map(|c| {
                let t: DataType = c.data_type.parse().map_err(|e| {
                    DataFusionError::Plan(format!("column `{}` type {}: {e}", c.name, c.data_type))
                })?;
                Ok(Field::new(&c.name, t, true))
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The columns of `schema`.
    pub fn columns_of(schema: &Schema) -> Vec<Column> {
        schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
            })
            .collect()
    }
}

/// A database input of a run: its source and the `WHERE` of each task.
#[derive(Debug, Clone)]
pub struct DatabaseTable {
    source: ScanSource,
    ranges: Vec<String>,
    schema: SchemaRef,
}

#[derive(Serialize, Deserialize)]
struct TableSpec {
    source: ScanSource,
    ranges: Vec<String>,
}

impl DatabaseTable {
    /// The table of `source` read in `ranges` (at least one; each a task).
    ///
    /// # Errors
    /// A column type Arrow does not parse.
    pub fn try_new(source: ScanSource, ranges: Vec<String>) -> DfResult<Self> {
        let schema = source.schema()?;
        Ok(Self {
            source,
            ranges,
            schema,
        })
    }

    /// The ranges' source: one partition of one row per range ([`RANGE_SCHEMA`]).
    fn ranges_source(&self) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = self
            .ranges
            .iter()
            .map(|r| {
                let column: ArrayRef = Arc::new(StringArray::from(vec![r.as_str()]));
                Ok(vec![RecordBatch::try_new(
                    RANGE_SCHEMA.clone(),
                    vec![column],
                )?])
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &partitions,
            RANGE_SCHEMA.clone(),
            None,
        )?)
    }
}

#[async_trait::async_trait]
impl TableProvider for DatabaseTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(DatabaseScanExec::try_new(
            self.source.clone(),
            self.ranges_source()?,
            projection.cloned(),
        )?))
    }
}

/// Reads the ranges of its input ([`RANGE_SCHEMA`], one partition each): output partition `i`
/// holds the rows of input partition `i`'s ranges, projected.
#[derive(Debug)]
pub struct DatabaseScanExec {
    source: ScanSource,
    input: Arc<dyn ExecutionPlan>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DatabaseScanExec {
    /// The scan of the ranges `input` yields, with the columns of `projection` (all if none).
    ///
    /// # Errors
    /// A projection index outside the source's columns, or an input not in [`RANGE_SCHEMA`].
    pub fn try_new(
        source: ScanSource,
        input: Arc<dyn ExecutionPlan>,
        projection: Option<Vec<usize>>,
    ) -> DfResult<Self> {
        if input.schema().fields() != RANGE_SCHEMA.fields() {
            return internal_err!("DatabaseScanExec's input must be {RANGE_SCHEMA:?}");
        }
        let full = source.schema()?;
        let schema = match &projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            source,
            input,
            projection,
            schema,
            properties,
        })
    }
}

impl DisplayAs for DatabaseScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "DatabaseScanExec: {} FROM {}",
            self.source.endpoint.url(),
            self.source.from
        )
    }
}

/// Reads one range: the rows cast to `schema` (by position).
async fn read_range(
    source: Arc<ScanSource>,
    schema: SchemaRef,
    predicate: String,
) -> DfResult<Vec<RecordBatch>> {
    let started = std::time::Instant::now();
    let external = |e: crate::Error| DataFusionError::External(Box::new(e));
    let mut connection = source
        .endpoint
        .connect(&format!("input `{}`", source.input))
        .await
        .map_err(external)?;
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| sql::quote(source.endpoint.kind, f.name()))
        .collect();
    let query = sql::select(&columns, &source.from, std::slice::from_ref(&predicate));
    let stream = connection
        .query(&query, (!columns.is_empty()).then(|| Arc::clone(&schema)))
        .await
        .map_err(external)?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let mut out = Vec::with_capacity(batches.len());
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        if schema.fields().is_empty() {
            out.push(RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                vec![],
                &datafusion::arrow::array::RecordBatchOptions::new()
                    .with_row_count(Some(batch.num_rows())),
            )?);
            continue;
        }
        if batch.num_columns() != schema.fields().len() {
            return internal_err!(
                "input `{}`: the database returned {} columns, {} expected",
                source.input,
                batch.num_columns(),
                schema.fields().len()
            );
        }
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(Arc::clone(c))
                } else {
                    cast_with_options(c, f.data_type(), &options).map_err(|e| {
                        DataFusionError::Execution(format!(
                            "input `{}`: column `{}` ({} from the database) does not fit {}: {e}",
                            source.input,
                            f.name(),
                            c.data_type(),
                            f.data_type()
                        ))
                    })
                }
            })
            .collect::<DfResult<Vec<_>>>()?;
        out.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
    }
    tracing::info!(
        input = %source.input, range = %predicate,
        rows = out.iter().map(RecordBatch::num_rows).sum::<usize>(),
        duration_ms = started.elapsed().as_millis() as u64,
        "database scan task"
    );
    Ok(out)
}

impl ExecutionPlan for DatabaseScanExec {
    fn name(&self) -> &str {
        "DatabaseScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // One task per range, never a repartition of the ranges.
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(Self::try_new(
                self.source.clone(),
                input,
                self.projection.clone(),
            )?)),
            _ => internal_err!("DatabaseScanExec takes exactly one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let ranges = self.input.execute(partition, context)?;
        let source = Arc::new(self.source.clone());
        let schema = Arc::clone(&self.schema);
        let reads = ranges
            .map(|batch| batch.and_then(|b| predicates_of(&b)))
            .map_ok(|ranges| futures::stream::iter(ranges.into_iter().map(Ok)))
            .try_flatten()
            .and_then(move |predicate| {
                read_range(Arc::clone(&source), Arc::clone(&schema), predicate)
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            reads,
        )))
    }
}

/// The predicates of a [`RANGE_SCHEMA`] batch.
fn predicates_of(batch: &RecordBatch) -> DfResult<Vec<String>> {
    if batch.schema().fields() != RANGE_SCHEMA.fields() {
        return internal_err!("DatabaseScanExec's input is not {RANGE_SCHEMA:?}");
    }
    let column = batch.column(0).as_string::<i32>();
    Ok(column.iter().flatten().map(str::to_string).collect())
}

/// [`DatabaseTable`] and [`DatabaseScanExec`] for Ember's codecs.
#[derive(Debug)]
pub struct DatabaseScanNodes;

#[derive(Serialize, Deserialize)]
struct ExecSpec {
    source: ScanSource,
    projection: Option<Vec<usize>>,
}

fn json_error(e: serde_json::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ExtensionNodes for DatabaseScanNodes {
    fn tag(&self) -> CodecTag {
        CodecTag::DatabaseScan
    }

    fn encode_table(&self, table: &dyn TableProvider) -> Option<DfResult<Vec<u8>>> {
        let table = table.downcast_ref::<DatabaseTable>()?;
        let spec = TableSpec {
            source: table.source.clone(),
            ranges: table.ranges.clone(),
        };
        Some(serde_json::to_vec(&spec).map_err(json_error))
    }

    fn decode_table(&self, bytes: &[u8], _schema: SchemaRef) -> DfResult<Arc<dyn TableProvider>> {
        let spec: TableSpec = serde_json::from_slice(bytes).map_err(json_error)?;
        Ok(Arc::new(DatabaseTable::try_new(spec.source, spec.ranges)?))
    }

    fn encode_exec(&self, node: &dyn ExecutionPlan) -> Option<DfResult<Vec<u8>>> {
        let exec = node.downcast_ref::<DatabaseScanExec>()?;
        let spec = ExecSpec {
            source: exec.source.clone(),
            projection: exec.projection.clone(),
        };
        Some(serde_json::to_vec(&spec).map_err(json_error))
    }

    fn decode_exec(
        &self,
        bytes: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = inputs else {
            return internal_err!("DatabaseScanExec takes one input, got {}", inputs.len());
        };
        let spec: ExecSpec = serde_json::from_slice(bytes).map_err(json_error)?;
        Ok(Arc::new(DatabaseScanExec::try_new(
            spec.source,
            Arc::clone(input),
            spec.projection,
        )?))
    }
}

/// `codecs` and the database scan's nodes: what every role needs to read a database input on
/// a cluster (the driver, the scheduler, the executors).
///
/// # Errors
/// [`ember_core::Error::DuplicateCodecTag`] when `codecs` already has nodes with this tag.
pub fn codecs(codecs: Codecs) -> ember_core::Result<Codecs> {
    codecs.with(Arc::new(DatabaseScanNodes))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;
    use ember_core::manifest::DatabaseKind;

    use super::*;

    #[test]
    fn the_codec_carries_the_table_and_the_scan_with_their_types() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("d", DataType::Date32, true),
            Field::new("name", DataType::LargeUtf8, true),
        ]);
        let source = ScanSource {
            input: "tx".into(),
            endpoint: Endpoint::parse(
                DatabaseKind::Postgres,
                "postgres://u@h:5/db",
                Some("pw".into()),
            )
            .expect("url"),
            from: "\"tx\"".into(),
            columns: ScanSource::columns_of(&schema),
        };
        assert_eq!(source.schema().expect("types parse").as_ref(), &schema);
        let table =
            DatabaseTable::try_new(source.clone(), vec!["a".into(), "b".into()]).expect("table");
        let nodes = DatabaseScanNodes;
        let bytes = nodes.encode_table(&table).expect("ours").expect("encoded");
        let back = nodes.decode_table(&bytes, table.schema()).expect("decoded");
        let back = back.downcast_ref::<DatabaseTable>().expect("table");
        assert_eq!((&back.source, &back.ranges), (&source, &table.ranges));
        let exec = DatabaseScanExec::try_new(
            source,
            table.ranges_source().expect("ranges"),
            Some(vec![0, 2]),
        )
        .expect("exec");
        assert_eq!(exec.properties.partitioning.partition_count(), 2);
        let bytes = nodes.encode_exec(&exec).expect("ours").expect("encoded");
        let input = Arc::clone(&exec.input);
        let back = nodes.decode_exec(&bytes, &[input]).expect("decoded");
        assert_eq!(back.schema().fields().len(), 2);
        assert!(
            !format!(
                "{}",
                datafusion::physical_plan::displayable(back.as_ref()).one_line()
            )
            .contains("pw")
        );
    }
}
