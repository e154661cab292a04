//! The stream's file sink: each micro-batch's emitted windows as Parquet under hive-style
//! partition folders, in files named by the batch id, so a batch that runs again after a crash
//! replaces its own files instead of adding to them (Spark's FileStreamSink names files by
//! task; Ember names them by batch, which makes the replay idempotent without a metadata log).
//!
//! ```text
//! <output>/window_date=2011-12-09/window_hour=10/part-b00000042.parquet
//! <output>/_quarantine/part-b00000042.parquet
//! ```
//!
//! Each file is written whole (a temporary file, then a rename), so readers never see a part
//! of a file. Once every file of a batch is written, the batch's entry in the sink log
//! `<output>/_ember_sink/<batch id>.json` lists them (`ember_core::table::sink_log`), as Spark's
//! FileStreamSink writes `_spark_metadata/<batch id>`. Readers that go through the log (Ember's
//! Flight SQL tables) see a batch's windows all at once or not at all. Readers that list the
//! folders may see some files of a batch in flight.

use std::collections::BTreeMap;

use bytes::Bytes;
use datafusion::arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use ember_core::storage::Dir;

use ember_core::sink::HIVE_DEFAULT_PARTITION;

/// The file name of batch `batch_id`'s data in each partition folder.
pub fn file_name(batch_id: u64) -> String {
    format!("part-b{batch_id:08}.parquet")
}

fn arrow_error(what: &str, e: impl std::fmt::Display) -> Error {
    ember_core::Error::storage(what, e).into()
}

/// Encodes batches as one Parquet file (zstd), in memory.
///
/// # Errors
/// [`ember_core::Error::Storage`] when encoding fails.
pub fn to_parquet(schema: &Schema, batches: &[RecordBatch]) -> Result<Bytes> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut buffer,
        std::sync::Arc::new(schema.clone()),
        Some(props),
    )
    .map_err(|e| arrow_error("parquet writer", e))?;
    for b in batches {
        writer
            .write(b)
            .map_err(|e| arrow_error("parquet writer", e))?;
    }
    writer
        .close()
        .map_err(|e| arrow_error("parquet writer", e))?;
    Ok(Bytes::from(buffer))
}

/// Decodes a Parquet file held in memory, with its Arrow schema's metadata (the batches a
/// Parquet reader gives carry none).
///
/// # Errors
/// [`ember_core::Error::Storage`] naming `what` when the bytes are not Parquet.
pub fn from_parquet(
    what: &str,
    bytes: Bytes,
) -> Result<(Vec<RecordBatch>, std::collections::HashMap<String, String>)> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| arrow_error(what, e))?;
    let metadata = builder.schema().metadata().clone();
    let batches = builder
        .build()
        .map_err(|e| arrow_error(what, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| arrow_error(what, e))?;
    Ok((batches, metadata))
}

/// Writes `batches` (one schema) under `output`, partitioned by `partition_by`, one file per
/// partition folder named by `batch_id`. Returns the files written (relative to `output`).
///
/// # Errors
/// [`ember_core::Error::Storage`] when a partition column is missing or a file cannot be written.
pub async fn write_partitioned(
    output: &Dir,
    batch_id: u64,
    partition_by: &[String],
    batches: &[RecordBatch],
) -> Result<Vec<String>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let all = concat_batches(&schema, batches).map_err(|e| arrow_error(output.url(), e))?;
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let mut keys = Vec::with_capacity(partition_by.len());
    for name in partition_by {
        let column = all.column_by_name(name).ok_or_else(|| {
            arrow_error(
                output.url(),
                format!("partition column `{name}` is not produced by the query"),
            )
        })?;
        keys.push(cast(column, &DataType::Utf8).map_err(|e| arrow_error(output.url(), e))?);
    }
    let keys: Vec<&StringArray> = keys
        .iter()
        .filter_map(|k| k.as_any().downcast_ref::<StringArray>())
        .collect();
    // One folder per distinct partition value list: `name=value`, NULL as Hive's default.
    let mut groups: BTreeMap<Vec<String>, Vec<u32>> = BTreeMap::new();
    for row in 0..all.num_rows() {
        let folder: Vec<String> = partition_by
            .iter()
            .zip(&keys)
            .map(|(name, k)| {
                let value = if k.is_null(row) {
                    HIVE_DEFAULT_PARTITION
                } else {
                    k.value(row)
                };
                format!("{name}={value}")
            })
            .collect();
        groups
            .entry(folder)
            .or_default()
            .push(u32::try_from(row).unwrap_or(u32::MAX));
    }
    let data_columns: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !partition_by.contains(schema.field(*i).name()))
        .collect();
    let data = all
        .project(&data_columns)
        .map_err(|e| arrow_error(output.url(), e))?;
    let mut written = Vec::with_capacity(groups.len());
    for (mut parts, rows) in groups {
        let indices = UInt32Array::from(rows);
        let columns = data
            .columns()
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| arrow_error(output.url(), e))?;
        let part = RecordBatch::try_new(data.schema(), columns)
            .map_err(|e| arrow_error(output.url(), e))?;
        parts.push(file_name(batch_id));
        written.push(
            output
                .put_parts(&parts, to_parquet(&data.schema(), &[part])?)
                .await?,
        );
    }
    Ok(written)
}
