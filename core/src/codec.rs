//! Plan codecs that carry Ember's plan nodes between client, scheduler and executors, around
//! Ballista's own codecs (which carry shuffle nodes and file formats).
//!
//! Every encoded extension starts with one tag byte: [`TAG_BALLISTA`] (the rest is Ballista's
//! encoding) or an Ember node tag (the rest is the node's JSON). All roles use these codecs:
//! the client and embedded mode through the session config, the scheduler and executor
//! processes through their `override_*_codec` settings.
//!
//! Crates above `ember-core` add their own nodes with [`register_extension`] (the streaming
//! crate's Kafka scan): the `ember` binary registers them at start, in every role.

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

use crate::sink::{ParquetSinkExec, ParquetSinkNode};

/// Tag of an extension encoded by Ballista's codec.
pub const TAG_BALLISTA: u8 = 0;
/// Tag of Ember's Parquet sink (logical and physical).
pub const TAG_PARQUET_SINK: u8 = 1;

/// Plan nodes a crate above `ember-core` adds to Ember's codecs: a table provider (travels in
/// logical plans, client → scheduler) and the execution plan node its scan makes (travels in
/// physical plans, scheduler → executors). Each is encoded as [`ExtensionNodes::tag`] followed
/// by the implementation's bytes.
pub trait ExtensionNodes: Send + Sync + std::fmt::Debug {
    /// The tag byte: unique, and not one of Ember's own (`0..16`).
    fn tag(&self) -> u8;

    /// Encodes `table` when it is one of these nodes' tables; `None` otherwise.
    fn encode_table(&self, table: &dyn TableProvider) -> Option<Result<Vec<u8>>>;

    /// Decodes a table encoded by [`ExtensionNodes::encode_table`], whose schema is `schema`.
    ///
    /// # Errors
    /// Bytes this implementation did not write.
    fn decode_table(&self, bytes: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>>;

    /// Encodes `node` when it is one of these nodes; `None` otherwise.
    fn encode_exec(&self, node: &dyn ExecutionPlan) -> Option<Result<Vec<u8>>>;

    /// Decodes a node encoded by [`ExtensionNodes::encode_exec`] with its `inputs`.
    ///
    /// # Errors
    /// Bytes this implementation did not write, or the wrong number of inputs.
    fn decode_exec(
        &self,
        bytes: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> Result<Arc<dyn ExecutionPlan>>;
}

static EXTENSIONS: std::sync::RwLock<Vec<Arc<dyn ExtensionNodes>>> =
    std::sync::RwLock::new(Vec::new());

/// Adds `nodes` to this process's codecs (once per tag; a second registration of a tag is
/// ignored). Call it before any plan is encoded or decoded.
pub fn register_extension(nodes: Arc<dyn ExtensionNodes>) {
    let mut list = EXTENSIONS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if list.iter().all(|n| n.tag() != nodes.tag()) {
        list.push(nodes);
    }
}

fn extensions() -> Vec<Arc<dyn ExtensionNodes>> {
    EXTENSIONS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn extension(tag: u8) -> Result<Arc<dyn ExtensionNodes>> {
    extensions()
        .into_iter()
        .find(|n| n.tag() == tag)
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!(
                "plan node tag {tag} is not known to this process (are the client, scheduler and executors the same `ember` build?)"
            ))
        })
}

fn with_tag(tag: u8, bytes: Vec<u8>, buf: &mut Vec<u8>) {
    buf.push(tag);
    buf.extend(bytes);
}

/// What Ember's Parquet sink carries besides its input.
#[derive(Debug, Serialize, Deserialize)]
struct SinkSpec {
    url: String,
    partition_by: Vec<String>,
}

fn encode_json<T: Serialize>(tag: u8, value: &T, buf: &mut Vec<u8>) -> Result<()> {
    buf.push(tag);
    serde_json::to_writer(buf, value)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

fn decode_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

/// Ballista's logical codec plus Ember's logical nodes.
#[derive(Debug)]
pub struct EmberLogicalCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
}

impl Default for EmberLogicalCodec {
    fn default() -> Self {
        Self {
            inner: Arc::new(BallistaLogicalExtensionCodec::default()),
        }
    }
}

impl LogicalExtensionCodec for EmberLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        match buf.split_first() {
            Some((&TAG_PARQUET_SINK, rest)) => {
                let spec: SinkSpec = decode_json(rest)?;
                let [input] = inputs else {
                    return internal_err!(
                        "ParquetSink takes exactly one input, got {}",
                        inputs.len()
                    );
                };
                let node = ParquetSinkNode::try_new(input.clone(), spec.url, spec.partition_by)?;
                Ok(Extension {
                    node: Arc::new(node),
                })
            }
            Some((&TAG_BALLISTA, rest)) => self.inner.try_decode(rest, inputs, ctx),
            _ => internal_err!("unknown logical extension tag {:?}", buf.first()),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(sink) = node.node.as_any().downcast_ref::<ParquetSinkNode>() {
            let spec = SinkSpec {
                url: sink.url.clone(),
                partition_by: sink.partition_by.clone(),
            };
            return encode_json(TAG_PARQUET_SINK, &spec, buf);
        }
        buf.push(TAG_BALLISTA);
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
            Some((&TAG_BALLISTA, rest)) => self
                .inner
                .try_decode_table_provider(rest, table_ref, schema, ctx),
            Some((&tag, rest)) => extension(tag)?.decode_table(rest, schema),
            None => internal_err!("empty table provider encoding for {table_ref}"),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        for ext in extensions() {
            if let Some(bytes) = ext.encode_table(node.as_ref()) {
                with_tag(ext.tag(), bytes?, buf);
                return Ok(());
            }
        }
        buf.push(TAG_BALLISTA);
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

/// Ballista's physical codec plus Ember's execution plan nodes.
#[derive(Debug)]
pub struct EmberPhysicalCodec {
    inner: Arc<dyn PhysicalExtensionCodec>,
}

impl Default for EmberPhysicalCodec {
    fn default() -> Self {
        Self {
            inner: Arc::new(BallistaPhysicalExtensionCodec::default()),
        }
    }
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
            Some((&TAG_PARQUET_SINK, rest)) => {
                let spec: SinkSpec = decode_json(rest)?;
                let [input] = inputs else {
                    return internal_err!(
                        "ParquetSinkExec takes exactly one input, got {}",
                        inputs.len()
                    );
                };
                Ok(Arc::new(ParquetSinkExec::try_new(
                    Arc::clone(input),
                    spec.url,
                    spec.partition_by,
                )?))
            }
            Some((&TAG_BALLISTA, rest)) => {
                self.inner.try_decode(rest, inputs, ctx, proto_converter)
            }
            Some((&tag, rest)) => extension(tag)?.decode_exec(rest, inputs),
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
            };
            return encode_json(TAG_PARQUET_SINK, &spec, buf);
        }
        for ext in extensions() {
            if let Some(bytes) = ext.encode_exec(node.as_ref()) {
                with_tag(ext.tag(), bytes?, buf);
                return Ok(());
            }
        }
        buf.push(TAG_BALLISTA);
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
