//! The Kafka scan of a micro-batch as a plan node, so that a stream's reading and parsing run on
//! Ballista executors as a batch job's file scans do.
//!
//! The driver (the `ember submit` process) plans a batch's offset ranges as usual and reads
//! them with `SELECT * FROM` a [`KafkaBatchTable`]. The table travels to the scheduler in the
//! logical plan; its scan is a [`KafkaScanExec`] with **one partition (one task) per Kafka
//! partition range**, which travels to the executors in the physical plan. Each task reads its
//! `[start, end)` with its own consumer, parses and validates every message (the rules of
//! job's declared [`crate::event::schema`]) and marks the late ones, and returns one row per
//! message in [`scan_schema`]. The driver turns the rows back into events and quarantined messages and
//! goes on as in embedded mode (watermark, windows, output, checkpoint).
//!
//! The ranges are the scan's *input*, an in-memory source with one partition per range
//! ([`RANGE_SCHEMA`]), not a field of the node: Ballista 55's scheduler restricts each task's
//! plan to that task's partitions by slicing the leaves it knows (file groups, in-memory
//! partitions, shuffle readers), and runs every partition of a leaf it does not know in every
//! task. A leaf holding the ranges would be read whole by each task.
//!
//! Both nodes are encoded as JSON ([`ScanSpec`], [`ScanSource`]) behind tag
//! [`CodecTag::KafkaScan`] by [`KafkaScanNodes`], which [`codecs`] adds to Ember's codecs; the
//! ranges' source is encoded by DataFusion's own codec.

use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int32Builder, Int64Array, Int64Builder, RecordBatch,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
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

use crate::checkpoint::OffsetRange;
use crate::event::columns::cell_at;
use crate::event::{self, Event, EventColumns, EventSchema, Origin, Rejected, SchemaDecl};
use crate::kafka::Record;
use crate::watermark::Watermark;

/// The scan's input, one row per range and one partition per range: `kafka_partition` Int32,
/// `start` Int64, `end` Int64 (offsets, end exclusive).
pub static RANGE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("start", DataType::Int64, false),
        Field::new("end", DataType::Int64, false),
    ]))
});

/// One row per message read: `kafka_partition` Int32, `kafka_offset` Int64, `reason` Utf8
/// (NULL for a valid event, else the quarantine reason incl. `late`), `value` Utf8 (the raw
/// message of a rejected one, invalid UTF-8 replaced; NULL for a valid event), then the
/// declared fields of `schema`, nullable (the event time is also set for `late`).
pub fn scan_schema(schema: &EventSchema) -> SchemaRef {
    let mut fields = vec![
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
    ];
    fields.extend(
        schema
            .arrow_fields()
            .into_iter()
            .map(|f| f.with_nullable(true)),
    );
    Arc::new(Schema::new(fields))
}

/// Columns of [`scan_schema`] before the declared fields.
const SCAN_HEAD: usize = 4;

/// A message of a batch, parsed and checked against the watermark before the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A valid event, not late.
    Valid(Origin, Event),
    /// A malformed or late message, for the quarantine.
    Rejected(Rejected),
}

/// The reason of an event whose time is more than the job's `max_event_time_skew` ahead of
/// the batch's processing time.
pub const FUTURE_EVENT_TIME: &str = "future_event_time";

/// Parses `record` as `schema` declares. A valid event whose time is after `future_after_us`
/// (the batch's processing time plus `max_event_time_skew`) is [`FUTURE_EVENT_TIME`]: a clock
/// gone wrong must not move the watermark past every open window. A valid event older than
/// `watermark` is `late`.
pub fn classify(
    schema: &EventSchema,
    record: &Record,
    watermark: &Watermark,
    future_after_us: Option<i64>,
) -> Message {
    let origin = Origin {
        partition: record.partition,
        offset: record.offset,
    };
    let rejected = |reason: &str, event_time_us| {
        Message::Rejected(Rejected {
            origin,
            value: String::from_utf8_lossy(&record.payload).into_owned(),
            reason: reason.to_string(),
            event_time_us,
        })
    };
    match event::parse(schema, &record.payload) {
        Ok(e) if future_after_us.is_some_and(|f| e.event_time_us > f) => {
            rejected(FUTURE_EVENT_TIME, Some(e.event_time_us))
        }
        Ok(e) if watermark.is_late(e.event_time_us) => rejected("late", Some(e.event_time_us)),
        Ok(e) => Message::Valid(origin, e),
        Err(reason) => rejected(reason, None),
    }
}

/// Builds the [`scan_schema`] batch of `messages` of `schema`.
///
/// # Errors
/// An Arrow error if the columns do not fit the schema (a bug).
pub fn to_scan_batch(
    schema: &EventSchema,
    messages: &[Message],
) -> Result<RecordBatch, ArrowError> {
    let n = messages.len();
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut reason = StringBuilder::new();
    let mut value = StringBuilder::new();
    let mut event = EventColumns::with_capacity(schema, n)?;
    for m in messages {
        match m {
            Message::Valid(o, e) => {
                partition.append_value(o.partition);
                offset.append_value(o.offset);
                reason.append_null();
                value.append_null();
                event.append(e);
            }
            Message::Rejected(r) => {
                partition.append_value(r.origin.partition);
                offset.append_value(r.origin.offset);
                reason.append_value(&r.reason);
                value.append_value(&r.value);
                event.append_none(r.event_time_us);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(reason.finish()),
        Arc::new(value.finish()),
    ];
    columns.extend(event.finish());
    RecordBatch::try_new(scan_schema(schema), columns)
}

fn bad_row(what: &str, row: usize) -> ArrowError {
    ArrowError::InvalidArgumentError(format!("scan row {row}: {what}"))
}

/// The messages of a [`scan_schema`] batch of `schema` (the inverse of [`to_scan_batch`]).
///
/// # Errors
/// A batch not in [`scan_schema`], or a valid row without its event time (an executor of
/// another Ember build, or of another declaration).
pub fn from_scan_batch(
    schema: &EventSchema,
    batch: &RecordBatch,
) -> Result<Vec<Message>, ArrowError> {
    let expected = scan_schema(schema);
    if batch.schema().fields() != expected.fields() {
        return Err(ArrowError::SchemaError(format!(
            "a Kafka scan returned {:?}, expected {expected:?}",
            batch.schema(),
        )));
    }
    let c = |i: usize| batch.column(i);
    let partition = c(0).as_primitive::<Int32Type>();
    let offset = c(1).as_primitive::<Int64Type>();
    let reason = c(2).as_string::<i32>();
    let value = c(3).as_string::<i32>();
    let fields = &batch.columns()[SCAN_HEAD..];
    let time = &fields[schema.time_index];
    (0..batch.num_rows())
        .map(|i| {
            let origin = Origin {
                partition: partition.value(i),
                offset: offset.value(i),
            };
            let time_at = |i| match cell_at(time, schema.fields[schema.time_index].kind, i) {
                Ok(event::Cell::Time(t)) => Ok(Some(t)),
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
            if reason.is_valid(i) {
                return Ok(Message::Rejected(Rejected {
                    origin,
                    value: value.value(i).to_string(),
                    reason: reason.value(i).to_string(),
                    event_time_us: time_at(i)?,
                }));
            }
            let event_time_us =
                time_at(i)?.ok_or_else(|| bad_row("a valid event without its event time", i))?;
            let cells = fields
                .iter()
                .zip(&schema.fields)
                .map(|(column, f)| cell_at(column, f.kind, i))
                .collect::<Result<_, _>>()?;
            Ok(Message::Valid(
                origin,
                Event {
                    event_time_us,
                    cells,
                },
            ))
        })
        .collect()
}

/// What every task of a batch's Kafka scan needs: where to read, and the watermark before the
/// batch (to mark late events). Its range comes from the scan's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSource {
    /// Bootstrap servers, `HOST:PORT[,…]`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group of the task consumers (they only `assign`, never join or commit).
    pub group_id: String,
    /// librdkafka settings (`[stream.source.options]`).
    pub options: std::collections::BTreeMap<String, String>,
    /// The event schema the job declares (`[source.schema]`).
    pub schema: SchemaDecl,
    /// The watermark before the batch.
    pub watermark: Watermark,
    /// Event times after this, µs, are [`FUTURE_EVENT_TIME`] (the batch's processing time plus
    /// `max_event_time_skew`).
    #[serde(default)]
    pub future_after_us: Option<i64>,
}

/// A batch's Kafka scan: the source and its ranges (one task each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSpec {
    /// Where to read.
    pub source: ScanSource,
    /// The ranges; empty ones are left out of the plan.
    pub ranges: Vec<OffsetRange>,
}

/// `decl` checked, as a planning error when it is not valid (an executor of another build).
fn checked(decl: &SchemaDecl) -> DfResult<Arc<EventSchema>> {
    decl.check()
        .map(Arc::new)
        .map_err(|e| DataFusionError::Plan(format!("the stream's event schema: {e}")))
}

impl ScanSpec {
    /// The in-memory source of the non-empty ranges: one partition of one row each
    /// ([`RANGE_SCHEMA`]).
    ///
    /// # Errors
    /// An Arrow error (a bug).
    pub fn ranges_source(&self) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = self
            .ranges
            .iter()
            .filter(|r| r.end > r.start)
            .map(|r| {
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int32Array::from(vec![r.partition])),
                    Arc::new(Int64Array::from(vec![r.start])),
                    Arc::new(Int64Array::from(vec![r.end])),
                ];
                Ok(vec![RecordBatch::try_new(RANGE_SCHEMA.clone(), columns)?])
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &partitions,
            RANGE_SCHEMA.clone(),
            None,
        )?)
    }
}

/// The ranges of a [`RANGE_SCHEMA`] batch.
fn ranges_of(batch: &RecordBatch) -> DfResult<Vec<OffsetRange>> {
    if batch.schema().fields() != RANGE_SCHEMA.fields() {
        return internal_err!("KafkaScanExec's input is not {RANGE_SCHEMA:?}");
    }
    let partition = batch.column(0).as_primitive::<Int32Type>();
    let start = batch.column(1).as_primitive::<Int64Type>();
    let end = batch.column(2).as_primitive::<Int64Type>();
    Ok((0..batch.num_rows())
        .map(|i| OffsetRange {
            partition: partition.value(i),
            start: start.value(i),
            end: end.value(i),
        })
        .collect())
}

/// The messages of one micro-batch as a table ([`scan_schema`]).
#[derive(Debug)]
pub struct KafkaBatchTable {
    spec: ScanSpec,
    schema: SchemaRef,
}

impl KafkaBatchTable {
    /// The table of `spec`'s ranges.
    ///
    /// # Errors
    /// A planning error when the spec's event schema is not valid.
    pub fn try_new(spec: ScanSpec) -> DfResult<Self> {
        let schema = scan_schema(checked(&spec.source.schema)?.as_ref());
        Ok(Self { spec, schema })
    }
}

#[async_trait::async_trait]
impl TableProvider for KafkaBatchTable {
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
        Ok(Arc::new(KafkaScanExec::try_new(
            self.spec.source.clone(),
            self.spec.ranges_source()?,
            projection.cloned(),
        )?))
    }
}

/// Reads the Kafka ranges of its input ([`RANGE_SCHEMA`], one partition per range): output
/// partition `i` holds the messages of input partition `i`'s ranges in [`scan_schema`]
/// (projected), one record batch per range, unordered.
#[derive(Debug)]
pub struct KafkaScanExec {
    source: ScanSource,
    events: Arc<EventSchema>,
    input: Arc<dyn ExecutionPlan>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl KafkaScanExec {
    /// The scan of the ranges `input` yields, with the columns of `projection` (all if none).
    ///
    /// # Errors
    /// A projection index outside [`scan_schema`], an input not in [`RANGE_SCHEMA`], or an
    /// event schema that is not valid.
    pub fn try_new(
        source: ScanSource,
        input: Arc<dyn ExecutionPlan>,
        projection: Option<Vec<usize>>,
    ) -> DfResult<Self> {
        if input.schema().fields() != RANGE_SCHEMA.fields() {
            return internal_err!("KafkaScanExec's input must be {RANGE_SCHEMA:?}");
        }
        let events = checked(&source.schema)?;
        let full = scan_schema(&events);
        let schema = match &projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            source,
            events,
            input,
            projection,
            properties,
        })
    }
}

impl DisplayAs for KafkaScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "KafkaScanExec: topic={}, brokers={}",
            self.source.topic, self.source.brokers
        )
    }
}

/// Reads and classifies one range (blocking: librdkafka).
fn read_range(
    spec: &ScanSource,
    events: &EventSchema,
    range: OffsetRange,
) -> DfResult<RecordBatch> {
    let started = std::time::Instant::now();
    let kafka = |e: crate::Error| DataFusionError::External(Box::new(e));
    let source = crate::consumers::consumer(
        &spec.brokers,
        &spec.topic,
        &spec.group_id,
        &spec.options,
        range.partition,
    )
    .map_err(kafka)?;
    let records = source
        .read(&[range], crate::kafka::READ_TIMEOUT)
        .map_err(kafka)?;
    let messages: Vec<Message> = records
        .iter()
        .map(|r| classify(events, r, &spec.watermark, spec.future_after_us))
        .collect();
    tracing::info!(
        topic = %spec.topic, partition = range.partition, start = range.start, end = range.end,
        messages = messages.len(), duration_ms = started.elapsed().as_millis() as u64,
        "kafka scan task"
    );
    Ok(to_scan_batch(events, &messages)?)
}

impl ExecutionPlan for KafkaScanExec {
    fn name(&self) -> &str {
        "KafkaScanExec"
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
            _ => internal_err!("KafkaScanExec takes exactly one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let ranges = self.input.execute(partition, context)?;
        let spec = Arc::new(self.source.clone());
        let events = Arc::clone(&self.events);
        let projection = self.projection.clone();
        let batches = ranges
            .map(|batch| batch.and_then(|b| ranges_of(&b)))
            .map_ok(|ranges| futures::stream::iter(ranges.into_iter().map(Ok)))
            .try_flatten()
            .and_then(move |range| {
                let spec = Arc::clone(&spec);
                let events = Arc::clone(&events);
                let projection = projection.clone();
                async move {
                    let batch =
                        tokio::task::spawn_blocking(move || read_range(&spec, &events, range))
                            .await
                            .map_err(|e| DataFusionError::External(Box::new(e)))??;
                    match projection {
                        Some(p) => Ok(batch.project(&p)?),
                        None => Ok(batch),
                    }
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }
}

/// [`KafkaBatchTable`] and [`KafkaScanExec`] for Ember's codecs.
#[derive(Debug)]
pub struct KafkaScanNodes;

/// What a [`KafkaScanExec`] carries.
#[derive(Serialize, Deserialize)]
struct ExecSpec {
    source: ScanSource,
    projection: Option<Vec<usize>>,
}

fn json_error(e: serde_json::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ExtensionNodes for KafkaScanNodes {
    fn tag(&self) -> CodecTag {
        CodecTag::KafkaScan
    }

    fn encode_table(&self, table: &dyn TableProvider) -> Option<DfResult<Vec<u8>>> {
        let table = table.downcast_ref::<KafkaBatchTable>()?;
        Some(serde_json::to_vec(&table.spec).map_err(json_error))
    }

    fn decode_table(&self, bytes: &[u8], _schema: SchemaRef) -> DfResult<Arc<dyn TableProvider>> {
        let spec: ScanSpec = serde_json::from_slice(bytes).map_err(json_error)?;
        Ok(Arc::new(KafkaBatchTable::try_new(spec)?))
    }

    fn encode_exec(&self, node: &dyn ExecutionPlan) -> Option<DfResult<Vec<u8>>> {
        let exec = node.downcast_ref::<KafkaScanExec>()?;
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
            return internal_err!("KafkaScanExec takes one input, got {}", inputs.len());
        };
        let spec: ExecSpec = serde_json::from_slice(bytes).map_err(json_error)?;
        Ok(Arc::new(KafkaScanExec::try_new(
            spec.source,
            Arc::clone(input),
            spec.projection,
        )?))
    }
}

/// `codecs` and the Kafka scan's nodes: what every role needs to run a stream's micro-batches
/// on a cluster (the driver, the scheduler, the executors).
///
/// # Errors
/// [`ember_core::Error::DuplicateCodecTag`] when `codecs` already has nodes with the scan's tag.
pub fn codecs(codecs: Codecs) -> ember_core::Result<Codecs> {
    codecs.with(Arc::new(KafkaScanNodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, payload: &str) -> Record {
        Record {
            partition: 3,
            offset,
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn messages_survive_the_scan_schema() {
        const MIN: i64 = 60_000_000;
        let mut watermark = Watermark::new(0, 60_000);
        // Events before 12:30 are late.
        let at_1230 = chrono::DateTime::parse_from_rfc3339("2011-12-09T12:30:00Z")
            .expect("time")
            .timestamp_micros();
        watermark.current_us = Some(at_1230);
        let good = r#"{"event_time":"2011-12-09T12:50:00Z","store_id":"UK","product_id":"A","transaction_type":"SALE","quantity":2,"unit_price":"1.25"}"#;
        let late = r#"{"event_time":"2011-12-09T12:00:00Z","product_id":"B","transaction_type":"RETURN","quantity":1,"unit_price":3}"#;
        let future = r#"{"event_time":"2011-12-11T12:00:00Z","product_id":"C","transaction_type":"SALE","quantity":1,"unit_price":3}"#;
        let records = [
            record(10, good),
            record(11, "not json"),
            record(12, late),
            record(13, future),
        ];
        let schema = crate::event::tests::retail();
        // Processing time 2011-12-09T13:00Z, one day of skew allowed.
        let skew = at_1230 + 30 * MIN + 24 * 60 * MIN;
        let messages: Vec<Message> = records
            .iter()
            .map(|r| classify(&schema, r, &watermark, Some(skew)))
            .collect();
        let reasons: Vec<Option<&str>> = messages
            .iter()
            .map(|m| match m {
                Message::Valid(..) => None,
                Message::Rejected(r) => Some(r.reason.as_str()),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                None,
                Some("not_json"),
                Some("late"),
                Some(FUTURE_EVENT_TIME)
            ]
        );
        let Message::Rejected(r) = &messages[2] else {
            panic!("late")
        };
        assert_eq!(r.event_time_us, Some(at_1230 - 30 * MIN));
        let batch = to_scan_batch(&schema, &messages).expect("batch");
        assert_eq!(batch.schema(), scan_schema(&schema));
        assert_eq!(from_scan_batch(&schema, &batch).expect("back"), messages);
    }

    #[test]
    fn the_codec_carries_the_table_and_the_scan() {
        let spec = ScanSpec {
            source: ScanSource {
                brokers: "127.0.0.1:9092".into(),
                topic: "t".into(),
                group_id: "g".into(),
                options: [("security.protocol".to_string(), "plaintext".to_string())].into(),
                watermark: Watermark::new(1_000, 2_000),
                future_after_us: Some(3_000),
                schema: crate::event::tests::retail().decl,
            },
            ranges: vec![
                OffsetRange {
                    partition: 0,
                    start: 5,
                    end: 9,
                },
                OffsetRange {
                    partition: 1,
                    start: 7,
                    end: 7,
                },
            ],
        };
        let nodes = KafkaScanNodes;
        let table = KafkaBatchTable::try_new(spec.clone()).expect("table");
        let bytes = nodes.encode_table(&table).expect("ours").expect("encoded");
        let back = nodes.decode_table(&bytes, table.schema()).expect("decoded");
        let back = back.downcast_ref::<KafkaBatchTable>().expect("table");
        assert_eq!(back.spec, spec);
        let source = spec.ranges_source().expect("ranges");
        let exec = KafkaScanExec::try_new(
            spec.source.clone(),
            Arc::clone(&source),
            Some(vec![0, 1, 2]),
        )
        .expect("exec");
        // The empty range of partition 1 is no task.
        assert_eq!(exec.properties.partitioning.partition_count(), 1);
        let bytes = nodes.encode_exec(&exec).expect("ours").expect("encoded");
        let back = nodes.decode_exec(&bytes, &[source]).expect("decoded");
        let back = back.downcast_ref::<KafkaScanExec>().expect("scan");
        assert_eq!(
            (&back.source, back.projection.clone(), back.schema()),
            (&spec.source, exec.projection.clone(), exec.schema())
        );
        assert!(
            nodes
                .encode_exec(&datafusion::physical_plan::empty::EmptyExec::new(
                    table.schema()
                ))
                .is_none()
        );
    }
}
