//! [`CsvScanExec`]: the tasks of a CSV input's scan, and its codec nodes.
//!
//! As the database and Kafka scans, the byte ranges are the scan's *input*: an in-memory source
//! with one partition per task (one row per range, [`RANGE_SCHEMA`]), because Ballista 55 hands
//! each task its slice of the leaves it knows (in-memory partitions among them) and would read
//! every range in every task if they were a field of the node. Its codec nodes are in
//! [`crate::codec`].

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PhysicalExpr, PlanProperties,
};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetResultPayload, ObjectStore};
use tokio::sync::mpsc::Sender;

use super::records::{Flow, RangeReader, Source};
use super::{CsvSpec, FileRange};
use crate::manifest::OnMalformed;

/// The scan's input: one row per byte range, one partition per task: `range` Utf8 (a
/// [`FileRange`] as JSON).
pub static RANGE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![Field::new(
        "range",
        DataType::Utf8,
        false,
    )]))
});

/// Bytes read from a local file at a time (4 MiB).
const READ_BYTES: usize = 4 * 1024 * 1024;

/// The in-memory source of `groups`: partition `i` holds group `i`'s ranges.
///
/// # Errors
/// None in practice (JSON of plain numbers).
pub fn ranges_source(groups: &[Vec<FileRange>]) -> Result<Arc<dyn ExecutionPlan>> {
    let partitions = groups
        .iter()
        .map(|group| {
            let rows = group
                .iter()
                .map(serde_json::to_string)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(json_error)?;
            let column: ArrayRef = Arc::new(StringArray::from(rows));
            Ok(vec![RecordBatch::try_new(
                RANGE_SCHEMA.clone(),
                vec![column],
            )?])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(MemorySourceConfig::try_new_exec(
        &partitions,
        RANGE_SCHEMA.clone(),
        None,
    )?)
}

/// A JSON error of the scan's ranges or codec spec, as DataFusion's.
pub(crate) fn json_error(e: serde_json::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Reads the byte ranges of its input ([`RANGE_SCHEMA`], one partition per task): output
/// partition `i` holds the records of input partition `i`'s ranges, projected.
#[derive(Debug)]
pub struct CsvScanExec {
    spec: Arc<CsvSpec>,
    input: Arc<dyn ExecutionPlan>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    sources: Vec<Source>,
    properties: Arc<PlanProperties>,
}

impl CsvScanExec {
    /// The scan of the ranges `input` yields, with the columns of `projection` (all if none).
    ///
    /// # Errors
    /// A projection index outside the table's columns, or an input not in [`RANGE_SCHEMA`].
    pub fn try_new(
        spec: Arc<CsvSpec>,
        input: Arc<dyn ExecutionPlan>,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        if input.schema().fields() != RANGE_SCHEMA.fields() {
            return internal_err!("CsvScanExec's input must be {RANGE_SCHEMA:?}");
        }
        let full = spec.schema();
        let n = spec.columns.len();
        let p = spec.partition_columns.len();
        let indices: Vec<usize> = match &projection {
            Some(p) => p.clone(),
            None => (0..full.fields().len()).collect(),
        };
        let sources = indices
            .iter()
            .map(|&i| match i.checked_sub(n) {
                None => Ok(Source::Field(i)),
                Some(k) if k < p => Ok(Source::Partition(k)),
                Some(k) => match k - p {
                    0 => Ok(Source::File),
                    1 => Ok(Source::Line),
                    2 => Ok(Source::CorruptRecord),
                    3 => Ok(Source::CorruptReason),
                    _ => internal_err!("CSV scan: no column {i}"),
                },
            })
            .collect::<Result<Vec<_>>>()?;
        let schema = Arc::new(full.project(&indices)?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            spec,
            input,
            projection,
            schema,
            sources,
            properties,
        })
    }
}

impl CsvScanExec {
    /// What its tasks read.
    pub fn spec(&self) -> &Arc<CsvSpec> {
        &self.spec
    }

    /// The table's columns it reads (all if none).
    pub fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }
}

impl DisplayAs for CsvScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CsvScanExec: input={}, files={}, split={}",
            self.spec.input,
            self.spec.files.len(),
            self.spec.split
        )
    }
}

impl ExecutionPlan for CsvScanExec {
    fn name(&self) -> &str {
        "CsvScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // One task per group of ranges, never a repartition of the ranges.
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(Self::try_new(
                Arc::clone(&self.spec),
                input,
                self.projection.clone(),
            )?)),
            _ => internal_err!("CsvScanExec takes exactly one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut ranges = self.input.execute(partition, Arc::clone(&context))?;
        let task = Task {
            spec: Arc::clone(&self.spec),
            schema: Arc::clone(&self.schema),
            sources: self.sources.clone(),
            batch_size: context.session_config().batch_size(),
            context,
        };
        let mut builder = RecordBatchReceiverStream::builder(Arc::clone(&self.schema), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            while let Some(batch) = ranges.next().await {
                let batch = batch?;
                let column = batch.column(0).as_string::<i32>();
                for text in column.iter().flatten() {
                    let range: FileRange = serde_json::from_str(text).map_err(json_error)?;
                    task.read(range, &tx).await?;
                }
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

/// What reading one range needs.
struct Task {
    spec: Arc<CsvSpec>,
    schema: SchemaRef,
    sources: Vec<Source>,
    batch_size: usize,
    context: Arc<TaskContext>,
}

impl Task {
    /// Reads `range`, sending its batches to `tx`.
    async fn read(&self, range: FileRange, tx: &Sender<Result<RecordBatch>>) -> Result<()> {
        let Some(file) = self.spec.files.get(range.file) else {
            return internal_err!("CSV scan: no file {}", range.file);
        };
        let (store_url, location) = super::locate(&file.url)?;
        let store = self.context.runtime_env().object_store(&store_url)?;
        let mut reader = RangeReader::new(
            &self.spec.options,
            !self.spec.malformed_rows,
            self.spec.columns.len(),
            file,
            range.start,
            (range.end < file.size).then_some(range.end),
            Arc::clone(&self.schema),
            self.sources.clone(),
            self.batch_size,
        );
        let from = reader.read_from();
        let lines_known = from == 0 || self.sources.contains(&Source::Line);
        if from > 0 && lines_known {
            reader.line_offset(count_lines(&store, &location, from).await?);
        }
        let outcome = feed(&store, &location, from, file.size, &mut reader, tx).await;
        let Err(error) = outcome else {
            return Ok(());
        };
        let Some(malformed) = reader.take_failure() else {
            return Err(error);
        };
        let line = if lines_known {
            malformed.line
        } else {
            malformed.line + count_lines(&store, &location, from).await?
        };
        let hint = match self.spec.options.malformed() {
            OnMalformed::Fail => "on_malformed = fail",
            OnMalformed::Quarantine => {
                "no SQL of the job reads `_corrupt_record`, so the line cannot be quarantined"
            }
        };
        Err(DataFusionError::Execution(format!(
            "input `{}`: malformed CSV line {line} of {}: {}: `{}` ({hint})",
            self.spec.input, file.name, malformed.reason, malformed.text
        )))
    }
}

/// Feeds `reader` the bytes of `location` from `from` to `size`, sending full batches.
async fn feed(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    from: u64,
    size: u64,
    reader: &mut RangeReader,
    tx: &Sender<Result<RecordBatch>>,
) -> Result<()> {
    let mut chunks = Chunks::open(store, location, from, size).await?;
    let mut flow = Flow::More;
    while flow == Flow::More {
        let Some(chunk) = chunks.next().await? else {
            break;
        };
        flow = reader.feed(&chunk)?;
        if !send(reader, tx).await {
            return Ok(());
        }
    }
    if flow == Flow::More {
        reader.finish()?;
    }
    send(reader, tx).await;
    Ok(())
}

/// Sends the reader's full batches; false when the consumer is gone (a LIMIT, a cancelled
/// query), so that reading stops.
async fn send(reader: &mut RangeReader, tx: &Sender<Result<RecordBatch>>) -> bool {
    for batch in reader.take_batches() {
        if tx.send(Ok(batch)).await.is_err() {
            return false;
        }
    }
    true
}

/// The `\n` in bytes `[0, upto)` of `location`.
async fn count_lines(store: &Arc<dyn ObjectStore>, location: &Path, upto: u64) -> Result<u64> {
    let mut chunks = Chunks::open(store, location, 0, upto).await?;
    let mut lines = 0;
    while let Some(chunk) = chunks.next().await? {
        lines += memchr::memchr_iter(b'\n', &chunk).count() as u64;
    }
    Ok(lines)
}

/// A file's bytes in order: read in [`READ_BYTES`] blocks from a local file, or as the store
/// streams them.
enum Chunks {
    File(std::io::Take<std::fs::File>),
    Stream(futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>),
}

impl Chunks {
    async fn open(
        store: &Arc<dyn ObjectStore>,
        location: &Path,
        from: u64,
        to: u64,
    ) -> Result<Self> {
        let options = GetOptions::default().with_range(Some(from..to));
        let result = store.get_opts(location, options).await?;
        let range = result.range.clone();
        Ok(match result.payload {
            GetResultPayload::File(mut file, _) => {
                file.seek(SeekFrom::Start(range.start))?;
                Chunks::File(file.take(range.end - range.start))
            }
            GetResultPayload::Stream(stream) => Chunks::Stream(stream),
        })
    }

    async fn next(&mut self) -> Result<Option<bytes::Bytes>> {
        match self {
            // Read in the task, as DataFusion's own CSV and Parquet scans read local files.
            Chunks::File(file) => {
                let mut buffer = Vec::with_capacity(READ_BYTES);
                file.by_ref()
                    .take(READ_BYTES as u64)
                    .read_to_end(&mut buffer)?;
                Ok((!buffer.is_empty()).then(|| buffer.into()))
            }
            Chunks::Stream(stream) => Ok(stream.next().await.transpose()?),
        }
    }
}
