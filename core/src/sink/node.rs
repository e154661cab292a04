//! The logical node of Ember's Parquet sink.

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ListBuilder, RecordBatch, StringBuilder, UInt64Array};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef, Result, plan_err};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::manifest::OutputFormat;

/// Schema of what the sink returns: one row per input partition, from the task attempt that
/// succeeded. Columns: `count` UInt64 (rows written, DataFusion's `COPY` name), `files` UInt64,
/// `bytes` UInt64, and `paths` List<Utf8>: the files written, relative to the sink's folder
/// (object_store-encoded path parts joined by `/`); for a Delta sink, each file's `add` action
/// as JSON (its `path` relative to the table). `paths` is the task's commit message, as in
/// Spark's commit protocol: the committer moves exactly these files, so a failed or duplicate
/// attempt's files are never committed.
pub fn sink_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("count", DataType::UInt64, false),
            Field::new("files", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new(
                "paths",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
                false,
            ),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// Writes its input as Parquet under `url`, hive-partitioned by `partition_by` (in folder
/// order), one set of files per input partition. The partition columns are left out of the
/// files; their values (as text) name the folders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParquetSinkNode {
    /// The rows to write.
    pub input: LogicalPlan,
    /// The folder to write into, as a URL with a trailing `/` (a run's staging folder).
    pub url: String,
    /// Partition columns, in folder order; each must be a column of `input`.
    pub partition_by: Vec<String>,
    /// Plain Parquet (into a staging folder) or a Delta table's data files (into the table).
    pub format: OutputFormat,
    /// Parquet writer settings over the session's, as (key, value) of
    /// `datafusion.execution.parquet` without the prefix (`compression` = `lz4_raw`). They
    /// travel with the plan: a Ballista executor's tasks do not see the client's session.
    pub parquet: Vec<(String, String)>,
    schema: DFSchemaRef,
}

impl ParquetSinkNode {
    /// The node with Parquet writer settings over the session's (see [`Self::parquet`]).
    pub fn with_parquet(mut self, parquet: Vec<(String, String)>) -> Self {
        self.parquet = parquet;
        self
    }

    /// A sink for `input`.
    ///
    /// # Errors
    /// A plan error when a partition column is not a column of `input`.
    pub fn try_new(
        input: LogicalPlan,
        url: String,
        partition_by: Vec<String>,
        format: OutputFormat,
    ) -> Result<Self> {
        for column in &partition_by {
            if input.schema().field_with_unqualified_name(column).is_err() {
                return plan_err!(
                    "partition column `{column}` is not a column of the sink's input"
                );
            }
        }
        let schema = Arc::new(DFSchema::try_from(sink_schema().as_ref().clone())?);
        Ok(Self {
            input,
            url,
            partition_by,
            format,
            parquet: Vec::new(),
            schema,
        })
    }
}

impl PartialOrd for ParquetSinkNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.url, &self.partition_by, self.format.as_str()).partial_cmp(&(
            &other.url,
            &other.partition_by,
            other.format.as_str(),
        ))
    }
}

impl UserDefinedLogicalNodeCore for ParquetSinkNode {
    fn name(&self) -> &str {
        "ParquetSink"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ParquetSink: url={} partition_by=[{}] format={}",
            self.url,
            self.partition_by.join(", "),
            self.format.as_str()
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        match inputs.pop() {
            Some(input) if inputs.is_empty() => Self::try_new(
                input,
                self.url.clone(),
                self.partition_by.clone(),
                self.format,
            )
            .map(|node| node.with_parquet(self.parquet.clone())),
            _ => plan_err!("ParquetSink takes exactly one input"),
        }
    }

    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // Every input column is written: none may be pruned.
        Some(vec![(0..self.input.schema().fields().len()).collect()])
    }
}

/// A task's report row ([`sink_schema`]): `rows` written in `paths.len()` files of `bytes`.
pub(super) fn report(rows: u64, bytes: u64, paths: &[String]) -> Result<RecordBatch> {
    let mut list = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(
        datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, false),
    ));
    for path in paths {
        list.values().append_value(path);
    }
    list.append(true);
    RecordBatch::try_new(
        sink_schema(),
        vec![
            Arc::new(UInt64Array::from(vec![rows])),
            Arc::new(UInt64Array::from(vec![paths.len() as u64])),
            Arc::new(UInt64Array::from(vec![bytes])),
            Arc::new(list.finish()),
        ],
    )
    .map_err(Into::into)
}
