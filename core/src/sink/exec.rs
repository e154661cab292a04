//! The physical plan node of Ember's Parquet sink: each input partition (one task) writes its
//! own files.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::file_options::parquet_writer::ParquetWriterOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, exec_err, internal_err, plan_err};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::physical_expr::{
    EquivalenceProperties, LexRequirement, OrderingRequirements, PhysicalSortRequirement,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PhysicalExpr, PlanProperties,
};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::delta::DeltaTaskWriter;
use super::node::{report, sink_schema};
use super::runs::partition_runs;
use crate::manifest::OutputFormat;

/// Writes each input partition as Parquet files under `url`, hive-partitioned by
/// `partition_by`: plain files (`format` Parquet, under a run's staging folder) or the data
/// files of a Delta table (`format` Delta, into the table's folder, reporting `add` actions;
/// see `super::delta`).
///
/// Input: hash-partitioned by `partition_by` (as Spark users write
/// `repartition(cols).write.partitionBy(cols)`), so each partition value is written by one task
/// into one file instead of one small file per task; each partition sorted by `partition_by`.
/// Both are requirements ([`ExecutionPlan::required_input_distribution`] and
/// [`ExecutionPlan::required_input_ordering`]): the optimizer adds the shuffle and the sort.
/// Unpartitioned outputs keep their input's partitioning.
/// Output: one partition per input partition, each one row of [`sink_schema`] (`count`,
/// `files`, `bytes`). No ordering.
#[derive(Debug)]
pub struct ParquetSinkExec {
    input: Arc<dyn ExecutionPlan>,
    url: String,
    partition_by: Vec<String>,
    format: OutputFormat,
    /// Parquet writer settings over the task's session (`ParquetSinkNode::parquet`).
    parquet: Vec<(String, String)>,
    properties: Arc<PlanProperties>,
}

impl ParquetSinkExec {
    /// A sink over `input`.
    ///
    /// # Errors
    /// A plan error when a partition column is not a column of `input`, or when every column
    /// is a partition column (the files would have none).
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        url: String,
        partition_by: Vec<String>,
        format: OutputFormat,
    ) -> Result<Self> {
        let schema = input.schema();
        for column in &partition_by {
            if schema.index_of(column).is_err() {
                return plan_err!(
                    "partition column `{column}` is not a column of the sink's input"
                );
            }
        }
        if !partition_by.is_empty() && partition_by.len() >= schema.fields().len() {
            return plan_err!(
                "the sink's input has only partition columns; files need at least one more"
            );
        }
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(sink_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            url,
            partition_by,
            format,
            parquet: Vec::new(),
            properties,
        })
    }

    /// The sink with Parquet writer settings over the task's session (see
    /// `ParquetSinkNode::parquet`).
    pub fn with_parquet(mut self, parquet: Vec<(String, String)>) -> Self {
        self.parquet = parquet;
        self
    }

    /// The Parquet writer settings over the task's session.
    pub fn parquet(&self) -> &[(String, String)] {
        &self.parquet
    }

    /// What the files make: plain Parquet or a Delta table's data files.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// The folder written into (URL with a trailing `/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The partition columns, in folder order.
    pub fn partition_by(&self) -> &[String] {
        &self.partition_by
    }

    /// The rows written.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    fn partition_exprs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        let schema = self.input.schema();
        self.partition_by
            .iter()
            .filter_map(|name| {
                let index = schema.index_of(name).ok()?;
                Some(Arc::new(Column::new(name, index)) as Arc<dyn PhysicalExpr>)
            })
            .collect()
    }

    fn ordering(&self) -> Option<OrderingRequirements> {
        let schema = self.input.schema();
        let requirements = self.partition_by.iter().filter_map(|name| {
            let index = schema.index_of(name).ok()?;
            let expr: Arc<dyn PhysicalExpr> = Arc::new(Column::new(name, index));
            Some(PhysicalSortRequirement::new(expr, None))
        });
        LexRequirement::new(requirements).map(OrderingRequirements::new)
    }
}

impl DisplayAs for ParquetSinkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ParquetSinkExec: url={}, partition_by=[{}], format={}",
            self.url,
            self.partition_by.join(", "),
            self.format.as_str()
        )
    }
}

impl ExecutionPlan for ParquetSinkExec {
    fn name(&self) -> &str {
        "ParquetSinkExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.partition_by.is_empty() {
            vec![Distribution::UnspecifiedDistribution]
        } else {
            vec![Distribution::KeyPartitioned(self.partition_exprs())]
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        vec![self.ordering()]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // More partitions, more tasks writing in parallel.
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(
                Self::try_new(
                    input,
                    self.url.clone(),
                    self.partition_by.clone(),
                    self.format,
                )?
                .with_parquet(self.parquet.clone()),
            )),
            _ => internal_err!("ParquetSinkExec takes exactly one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let url = ListingTableUrl::parse(&self.url)?;
        let store = context.runtime_env().object_store(url.object_store())?;
        let schema = self.input.schema();
        let data_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !self.partition_by.contains(schema.field(*i).name()))
            .collect();
        let data_schema = Arc::new(schema.project(&data_columns)?);
        // The session's Parquet settings (compression, row group size, …), with the Arrow
        // schema embedded in the files as DataFusion's own sink does.
        let mut options = TableParquetOptions::default();
        options.global = context.session_config().options().execution.parquet.clone();
        for (key, value) in &self.parquet {
            datafusion::config::ConfigField::set(&mut options, key, value)?;
        }
        if !options.global.skip_arrow_metadata {
            options.arrow_schema(&data_schema);
        }
        let writer_options = ParquetWriterOptions::try_from(&options)?;
        if self.format == OutputFormat::Delta {
            let task = DeltaTaskWriter::new(
                store,
                url.prefix(),
                self.partition_by.clone(),
                schema,
                writer_options.writer_options().clone(),
            );
            let output = futures::stream::once(async move { task.run(input).await });
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                sink_schema(),
                output,
            )));
        }
        let task = TaskWriter {
            store,
            base: url.prefix().clone(),
            partition,
            attempt: attempt_token(),
            partition_by: self.partition_by.clone(),
            schema,
            data_columns,
            data_schema,
            properties: writer_options.writer_options().clone(),
        };
        let output = futures::stream::once(async move { task.run(input).await });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            sink_schema(),
            output,
        )))
    }
}

/// 12 random hex digits that make this attempt's file names its own.
fn attempt_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Writes the files of one partition of one task attempt.
struct TaskWriter {
    store: Arc<dyn ObjectStore>,
    base: Path,
    /// The partition index as the task executes it (task-local in Ballista).
    partition: usize,
    /// Unique to this attempt (see the module documentation).
    attempt: String,
    partition_by: Vec<String>,
    /// The input's schema.
    schema: SchemaRef,
    /// Indices of the columns written into files: all but the partition columns.
    data_columns: Vec<usize>,
    /// The schema of the files.
    data_schema: SchemaRef,
    properties: datafusion::parquet::file::properties::WriterProperties,
}

/// The file being written and what it holds so far.
struct OpenFile {
    folder: String,
    path: Path,
    writer: AsyncArrowWriter<BufWriter>,
}

impl TaskWriter {
    /// The folder (`a=1/b=x`) of the rows of `keys` at `row`, each part escaped by
    /// `object_store` when it becomes a path.
    fn folder(&self, keys: &[ArrayRef], row: usize) -> Result<Vec<String>> {
        self.partition_by
            .iter()
            .zip(keys)
            .map(|(name, values)| {
                let value = if values.is_null(row) {
                    // The job runner maps NULL to Hive's default partition before the sink; keep
                    // the same rule for any other caller.
                    "__HIVE_DEFAULT_PARTITION__".to_string()
                } else {
                    array_value_to_string(values, row)?
                };
                Ok(format!("{name}={value}"))
            })
            .collect()
    }

    async fn open(&self, folder: &[String], sequence: usize) -> Result<OpenFile> {
        let path = folder
            .iter()
            .fold(self.base.clone(), |p, part| p.join(part.as_str()))
            .join(format!(
                "part-{:05}-{}-{sequence}.parquet",
                self.partition, self.attempt
            ));
        let object = BufWriter::new(Arc::clone(&self.store), path.clone());
        let writer = AsyncArrowWriter::try_new(
            object,
            Arc::clone(&self.data_schema),
            Some(self.properties.clone()),
        )?;
        Ok(OpenFile {
            folder: folder.join("/"),
            path,
            writer,
        })
    }

    async fn run(self, input: SendableRecordBatchStream) -> Result<RecordBatch> {
        let mut written: Vec<String> = Vec::new();
        let mut paths: Vec<Path> = Vec::new();
        let mut current: Option<OpenFile> = None;
        let result = self
            .write_all(input, &mut written, &mut paths, &mut current)
            .await;
        let (rows, bytes) = match result {
            Ok(counts) => counts,
            Err(e) => {
                self.abort(paths, current).await;
                return Err(e);
            }
        };
        tracing::info!(
            partition = self.partition,
            rows,
            bytes,
            files = written.len(),
            folder = %self.base,
            "parquet sink task"
        );
        report(rows, bytes, &written)
    }

    /// Writes every row of `input`, recording each finished file (relative name in `written`,
    /// path in `paths`) and the file being written in `current`. Returns (rows, bytes).
    async fn write_all(
        &self,
        mut input: SendableRecordBatchStream,
        written: &mut Vec<String>,
        paths: &mut Vec<Path>,
        current: &mut Option<OpenFile>,
    ) -> Result<(u64, u64)> {
        let key_columns: Vec<usize> = self
            .partition_by
            .iter()
            .map(|name| self.schema.index_of(name))
            .collect::<std::result::Result<_, _>>()?;
        let (mut rows, mut bytes) = (0u64, 0u64);
        let mut sequences: HashMap<String, usize> = HashMap::new();
        while let Some(batch) = input.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let (keys, runs) = partition_runs(&batch, &key_columns)?;
            let data = batch.project(&self.data_columns)?;
            for run in runs {
                let folder = self.folder(&keys, run.start)?;
                let joined = folder.join("/");
                if current.as_ref().is_none_or(|f| f.folder != joined) {
                    if let Some(done) = current.take() {
                        paths.push(done.path.clone());
                        bytes += self.finish(done, written).await?;
                    }
                    // Input is sorted by the partition columns, so a folder normally comes once;
                    // if it comes again, a new file keeps what was written.
                    let sequence = sequences.entry(joined).or_insert(0);
                    *current = Some(self.open(&folder, *sequence).await?);
                    *sequence += 1;
                }
                let slice = data.slice(run.start, run.end - run.start);
                rows += slice.num_rows() as u64;
                if let Some(file) = current.as_mut() {
                    file.writer.write(&slice).await?;
                }
            }
        }
        if let Some(done) = current.take() {
            paths.push(done.path.clone());
            bytes += self.finish(done, written).await?;
        }
        Ok((rows, bytes))
    }

    /// Removes what a failed attempt wrote, as Hadoop's `abortTask` does: the files it finished
    /// (`paths`) and the one it was writing (its upload aborted). Best effort: a Delta table's
    /// leftovers are unreferenced and `VACUUM` removes them; a Parquet output's staging folder
    /// goes with its run.
    async fn abort(&self, paths: Vec<Path>, current: Option<OpenFile>) {
        if let Some(file) = current {
            let _ = file.writer.into_inner().abort().await;
            let _ = self.store.delete(&file.path).await;
        }
        for path in paths {
            let _ = self.store.delete(&path).await;
        }
    }

    /// Closes a file (it appears under its name only now), records its path relative to the
    /// sink's folder, and returns its size in bytes.
    async fn finish(&self, file: OpenFile, written: &mut Vec<String>) -> Result<u64> {
        file.writer.close().await?;
        let size = match self.store.head(&file.path).await {
            Ok(meta) => meta.size,
            Err(e) => return exec_err!("wrote {} but cannot read its size: {e}", file.path),
        };
        let relative: Vec<String> = file
            .path
            .prefix_match(&self.base)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
            .unwrap_or_default();
        written.push(relative.join("/"));
        Ok(size)
    }
}
