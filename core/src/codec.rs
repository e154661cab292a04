//! Plan codecs that carry Ember's plan nodes between client, scheduler and executors, around
//! Ballista's own codecs (which carry shuffle nodes and file formats).
//!
//! Every encoded extension starts with one tag byte, a [`CodecTag`]: [`CodecTag::Ballista`] (the
//! rest is Ballista's encoding) or an Ember node's tag (the rest is the node's own bytes, JSON
//! for Ember's). Every role gets the same [`Codecs`] explicitly: the client and embedded mode
//! through the session config ([`crate::session::SessionBuilder`]), the scheduler and executor
//! processes through their `override_*_codec` settings.
//!
//! [`Codecs::ember`] knows core's nodes (the Parquet sink, the sink log table, the Delta table); a crate above
//! core adds its own with [`Codecs::with`] (the streaming crate's Kafka scan). A tag claimed
//! twice is an error, never a silent override.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, TableReference, internal_err};
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    AggregateUDF, Extension, HigherOrderUDF, LogicalPlan, ScalarUDF, WindowUDF,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::csv::scan::CsvScanExec;
use crate::csv::{CsvSpec, CsvTable};
use crate::manifest::OutputFormat;
use crate::sink::{ParquetSinkExec, ParquetSinkNode};
use crate::table::delta_scan::DeltaLogTable;
use crate::table::parquet_files::ParquetFilesTable;
use crate::table::sink_log::SinkLogTable;

/// The tag byte in front of every encoded extension: one list, so two crates cannot pick the
/// same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum CodecTag {
    /// Encoded by Ballista's codec.
    Ballista = 0,
    /// Ember's Parquet sink (logical and physical), `ember_core::sink`.
    ParquetSink = 1,
    /// A micro-batch's Kafka scan (table and execution plan), `ember_streaming::scan`.
    KafkaScan = 16,
    /// A stream output read through its sink log, [`crate::table::sink_log`].
    SinkLogTable = 17,
    /// A Delta table read through its log, [`crate::table::delta_scan`].
    DeltaTable = 18,
    /// A database input's table and its split scan, `ember_ingest::database::scan`.
    DatabaseScan = 19,
    /// A CSV input's table and its byte-range scan, [`crate::csv`].
    CsvScan = 20,
    /// A Parquet input's files listed once, [`crate::table::parquet_files`].
    ParquetFiles = 21,
}

impl CodecTag {
    /// Every tag, in byte order.
    pub const ALL: [CodecTag; 8] = [
        CodecTag::Ballista,
        CodecTag::ParquetSink,
        CodecTag::KafkaScan,
        CodecTag::SinkLogTable,
        CodecTag::DeltaTable,
        CodecTag::DatabaseScan,
        CodecTag::CsvScan,
        CodecTag::ParquetFiles,
    ];

    /// The byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The tag of `byte`, if it is one.
    pub fn of(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.byte() == byte)
    }
}

/// Plan nodes a crate adds to Ember's codecs: a table provider (travels in logical plans,
/// client → scheduler) and the execution plan node its scan makes (travels in physical plans,
/// scheduler → executors). Each is encoded as [`ExtensionNodes::tag`] followed by the
/// implementation's bytes.
pub trait ExtensionNodes: Send + Sync + std::fmt::Debug {
    /// The tag.
    fn tag(&self) -> CodecTag;

    /// Encodes `table` when it is one of these nodes' tables; `None` otherwise.
    fn encode_table(&self, table: &dyn TableProvider) -> Option<Result<Vec<u8>>>;

    /// Decodes a table encoded by [`ExtensionNodes::encode_table`], whose schema is `schema`.
    ///
    /// # Errors
    /// Bytes this implementation did not write.
    fn decode_table(&self, bytes: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>>;

    /// Encodes `node` when it is one of these nodes; `None` otherwise (the default: a table
    /// whose scan is made of DataFusion's own plan nodes).
    fn encode_exec(&self, _node: &dyn ExecutionPlan) -> Option<Result<Vec<u8>>> {
        None
    }

    /// Decodes a node encoded by [`ExtensionNodes::encode_exec`] with its `inputs`.
    ///
    /// # Errors
    /// Bytes this implementation did not write, or the wrong number of inputs; by default,
    /// always (these nodes have no plan node of their own).
    fn decode_exec(
        &self,
        _bytes: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        internal_err!("{self:?} has no plan node of its own")
    }
}

/// The plan nodes a process can encode and decode: core's, plus those added with
/// [`Codecs::with`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Codecs {
    nodes: Arc<Vec<Arc<dyn ExtensionNodes>>>,
}

impl Codecs {
    /// Core's nodes: the Parquet sink (built into the codecs), the sink log table, the
    /// Delta table, the CSV input's scan and the Parquet input's file list.
    pub fn ember() -> Self {
        Self {
            nodes: Arc::new(vec![
                Arc::new(SinkLogNodes),
                Arc::new(DeltaTableNodes),
                Arc::new(CsvScanNodes),
                Arc::new(ParquetFilesNodes),
            ]),
        }
    }

    /// These codecs and `nodes`.
    ///
    /// # Errors
    /// [`crate::Error::DuplicateCodecTag`] when `nodes`' tag is taken (by core's Parquet sink,
    /// Ballista, or nodes added before).
    pub fn with(self, nodes: Arc<dyn ExtensionNodes>) -> crate::Result<Self> {
        let tag = nodes.tag();
        let taken = match tag {
            CodecTag::Ballista => Some("Ballista's codec".to_string()),
            CodecTag::ParquetSink => Some("Ember's Parquet sink".to_string()),
            _ => self
                .nodes
                .iter()
                .find(|n| n.tag() == tag)
                .map(|n| format!("{n:?}")),
        };
        if let Some(first) = taken {
            return Err(crate::Error::DuplicateCodecTag {
                tag: tag.byte(),
                first,
                second: format!("{nodes:?}"),
            });
        }
        let mut list = self.nodes.as_ref().clone();
        list.push(nodes);
        Ok(Self {
            nodes: Arc::new(list),
        })
    }

    /// Whether nodes with `tag` are known.
    pub fn knows(&self, tag: CodecTag) -> bool {
        matches!(tag, CodecTag::Ballista | CodecTag::ParquetSink)
            || self.nodes.iter().any(|n| n.tag() == tag)
    }

    /// The logical codec (client → scheduler).
    pub fn logical(&self) -> Arc<EmberLogicalCodec> {
        Arc::new(EmberLogicalCodec {
            inner: Arc::new(BallistaLogicalExtensionCodec::default()),
            codecs: self.clone(),
        })
    }

    /// The physical codec (scheduler → executors).
    pub fn physical(&self) -> Arc<EmberPhysicalCodec> {
        Arc::new(EmberPhysicalCodec {
            inner: Arc::new(BallistaPhysicalExtensionCodec::default()),
            codecs: self.clone(),
        })
    }

    fn extension(&self, byte: u8) -> Result<&Arc<dyn ExtensionNodes>> {
        self.nodes
            .iter()
            .find(|n| n.tag().byte() == byte)
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!(
                    "plan node tag {byte} is not known to this process (are the client, scheduler and executors the same `ember` build?)"
                ))
            })
    }
}

/// [`DeltaLogTable`] in Ember's codecs (a table only; its scan is a file scan).
#[derive(Debug)]
struct DeltaTableNodes;

impl ExtensionNodes for DeltaTableNodes {
    fn tag(&self) -> CodecTag {
        CodecTag::DeltaTable
    }

    fn encode_table(&self, table: &dyn TableProvider) -> Option<Result<Vec<u8>>> {
        Some(table.downcast_ref::<DeltaLogTable>()?.encode())
    }

    fn decode_table(&self, bytes: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(DeltaLogTable::decode(bytes, schema)?))
    }
}

/// [`ParquetFilesTable`] in Ember's codecs (a table only; its scan is a file scan).
#[derive(Debug)]
struct ParquetFilesNodes;

impl ExtensionNodes for ParquetFilesNodes {
    fn tag(&self) -> CodecTag {
        CodecTag::ParquetFiles
    }

    fn encode_table(&self, table: &dyn TableProvider) -> Option<Result<Vec<u8>>> {
        Some(table.downcast_ref::<ParquetFilesTable>()?.encode())
    }

    fn decode_table(&self, bytes: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(ParquetFilesTable::decode(bytes, schema)?))
    }
}

/// [`SinkLogTable`] in Ember's codecs (a table only; its scan is a file scan).
#[derive(Debug)]
struct SinkLogNodes;

impl ExtensionNodes for SinkLogNodes {
    fn tag(&self) -> CodecTag {
        CodecTag::SinkLogTable
    }

    fn encode_table(&self, table: &dyn TableProvider) -> Option<Result<Vec<u8>>> {
        Some(table.downcast_ref::<SinkLogTable>()?.encode())
    }

    fn decode_table(&self, bytes: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(SinkLogTable::decode(bytes, schema)?))
    }
}

fn with_tag(tag: CodecTag, bytes: Vec<u8>, buf: &mut Vec<u8>) {
    buf.push(tag.byte());
    buf.extend(bytes);
}

/// What Ember's Parquet sink carries besides its input.
#[derive(Debug, Serialize, Deserialize)]
struct SinkSpec {
    url: String,
    partition_by: Vec<String>,
    #[serde(default)]
    format: OutputFormat,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parquet: Vec<(String, String)>,
}

fn encode_json<T: Serialize>(tag: CodecTag, value: &T, buf: &mut Vec<u8>) -> Result<()> {
    buf.push(tag.byte());
    serde_json::to_writer(buf, value)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

fn decode_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

/// Ballista's logical codec plus Ember's logical nodes ([`Codecs::logical`]).
#[derive(Debug)]
pub struct EmberLogicalCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
    codecs: Codecs,
}

impl LogicalExtensionCodec for EmberLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        match buf.split_first() {
            Some((&tag, rest)) if tag == CodecTag::ParquetSink.byte() => {
                let spec: SinkSpec = decode_json(rest)?;
                let [input] = inputs else {
                    return internal_err!(
                        "ParquetSink takes exactly one input, got {}",
                        inputs.len()
                    );
                };
                let node = ParquetSinkNode::try_new(
                    input.clone(),
                    spec.url,
                    spec.partition_by,
                    spec.format,
                )?
                .with_parquet(spec.parquet);
                Ok(Extension {
                    node: Arc::new(node),
                })
            }
            Some((&tag, rest)) if tag == CodecTag::Ballista.byte() => {
                self.inner.try_decode(rest, inputs, ctx)
            }
            _ => internal_err!("unknown logical extension tag {:?}", buf.first()),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(sink) = node.node.as_any().downcast_ref::<ParquetSinkNode>() {
            let spec = SinkSpec {
                url: sink.url.clone(),
                partition_by: sink.partition_by.clone(),
                format: sink.format,
                parquet: sink.parquet.clone(),
            };
            return encode_json(CodecTag::ParquetSink, &spec, buf);
        }
        buf.push(CodecTag::Ballista.byte());
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.split_first() {
            Some((&tag, rest)) if tag == CodecTag::Ballista.byte() => self
                .inner
                .try_decode_table_provider(rest, table_ref, schema, ctx),
            Some((&tag, rest)) => self.codecs.extension(tag)?.decode_table(rest, schema),
            None => internal_err!("empty table provider encoding for {table_ref}"),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        for ext in self.codecs.nodes.iter() {
            if let Some(bytes) = ext.encode_table(node.as_ref()) {
                with_tag(ext.tag(), bytes?, buf);
                return Ok(());
            }
        }
        buf.push(CodecTag::Ballista.byte());
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_higher_order_function(
        &self,
        name: &str,
        buf: &[u8],
    ) -> Result<Arc<HigherOrderUDF>> {
        self.inner.try_decode_higher_order_function(name, buf)
    }

    fn try_encode_higher_order_function(
        &self,
        node: &HigherOrderUDF,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_higher_order_function(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// Ballista's physical codec plus Ember's execution plan nodes ([`Codecs::physical`]).
#[derive(Debug)]
pub struct EmberPhysicalCodec {
    inner: Arc<dyn PhysicalExtensionCodec>,
    codecs: Codecs,
}

impl PhysicalExtensionCodec for EmberPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&tag, rest)) if tag == CodecTag::ParquetSink.byte() => {
                let spec: SinkSpec = decode_json(rest)?;
                let [input] = inputs else {
                    return internal_err!(
                        "ParquetSinkExec takes exactly one input, got {}",
                        inputs.len()
                    );
                };
                Ok(Arc::new(
                    ParquetSinkExec::try_new(
                        Arc::clone(input),
                        spec.url,
                        spec.partition_by,
                        spec.format,
                    )?
                    .with_parquet(spec.parquet),
                ))
            }
            Some((&tag, rest)) if tag == CodecTag::Ballista.byte() => {
                self.inner.try_decode(rest, inputs, ctx, proto_converter)
            }
            Some((&tag, rest)) => self.codecs.extension(tag)?.decode_exec(rest, inputs),
            None => internal_err!("empty physical extension encoding"),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(sink) = node.downcast_ref::<ParquetSinkExec>() {
            let spec = SinkSpec {
                url: sink.url().to_string(),
                partition_by: sink.partition_by().to_vec(),
                format: sink.format(),
                parquet: sink.parquet().to_vec(),
            };
            return encode_json(CodecTag::ParquetSink, &spec, buf);
        }
        for ext in self.codecs.nodes.iter() {
            if let Some(bytes) = ext.encode_exec(node.as_ref()) {
                with_tag(ext.tag(), bytes?, buf);
                return Ok(());
            }
        }
        buf.push(CodecTag::Ballista.byte());
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_higher_order_function(
        &self,
        name: &str,
        buf: &[u8],
    ) -> Result<Arc<HigherOrderUDF>> {
        self.inner.try_decode_higher_order_function(name, buf)
    }

    fn try_encode_higher_order_function(
        &self,
        node: &HigherOrderUDF,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_higher_order_function(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// [`CsvTable`] and [`CsvScanExec`] for Ember's codecs.
#[derive(Debug)]
struct CsvScanNodes;

#[derive(Serialize, Deserialize)]
struct CsvExecSpec {
    spec: CsvSpec,
    projection: Option<Vec<usize>>,
}

impl ExtensionNodes for CsvScanNodes {
    fn tag(&self) -> CodecTag {
        CodecTag::CsvScan
    }

    fn encode_table(&self, table: &dyn TableProvider) -> Option<Result<Vec<u8>>> {
        let table = table.downcast_ref::<CsvTable>()?;
        Some(serde_json::to_vec(table.spec()).map_err(crate::csv::scan::json_error))
    }

    fn decode_table(&self, bytes: &[u8], _schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
        let spec: CsvSpec = serde_json::from_slice(bytes).map_err(crate::csv::scan::json_error)?;
        Ok(Arc::new(CsvTable::new(spec)))
    }

    fn encode_exec(&self, node: &dyn ExecutionPlan) -> Option<Result<Vec<u8>>> {
        let exec = node.downcast_ref::<CsvScanExec>()?;
        let spec = CsvExecSpec {
            spec: exec.spec().as_ref().clone(),
            projection: exec.projection().cloned(),
        };
        Some(serde_json::to_vec(&spec).map_err(crate::csv::scan::json_error))
    }

    fn decode_exec(
        &self,
        bytes: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = inputs else {
            return internal_err!("CsvScanExec takes one input, got {}", inputs.len());
        };
        let spec: CsvExecSpec =
            serde_json::from_slice(bytes).map_err(crate::csv::scan::json_error)?;
        Ok(Arc::new(CsvScanExec::try_new(
            Arc::new(spec.spec),
            Arc::clone(input),
            spec.projection,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nodes(CodecTag);

    impl ExtensionNodes for Nodes {
        fn tag(&self) -> CodecTag {
            self.0
        }
        fn encode_table(&self, _table: &dyn TableProvider) -> Option<Result<Vec<u8>>> {
            None
        }
        fn decode_table(
            &self,
            _bytes: &[u8],
            _schema: SchemaRef,
        ) -> Result<Arc<dyn TableProvider>> {
            internal_err!("none")
        }
    }

    #[test]
    fn a_tag_claimed_twice_is_an_error_and_tags_are_unique() {
        let codecs = Codecs::ember()
            .with(Arc::new(Nodes(CodecTag::KafkaScan)))
            .expect("a free tag");
        assert!(codecs.knows(CodecTag::KafkaScan) && codecs.knows(CodecTag::SinkLogTable));
        for taken in [
            CodecTag::KafkaScan,
            CodecTag::SinkLogTable,
            CodecTag::ParquetSink,
            CodecTag::Ballista,
        ] {
            let err = codecs
                .clone()
                .with(Arc::new(Nodes(taken)))
                .expect_err("a taken tag");
            assert!(
                err.to_string()
                    .starts_with(&format!("codec tag {} is claimed twice", taken.byte())),
                "{err}"
            );
        }
        let mut bytes: Vec<u8> = CodecTag::ALL.iter().map(|t| t.byte()).collect();
        bytes.dedup();
        assert_eq!(bytes.len(), CodecTag::ALL.len());
        assert!(
            CodecTag::ALL
                .iter()
                .all(|t| CodecTag::of(t.byte()) == Some(*t))
        );
    }
}
