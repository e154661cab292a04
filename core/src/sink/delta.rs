//! The Delta side of Ember's sink: a task writes its rows as Parquet files straight into the
//! table's partition folders with delta-rs's data file writer, and reports the Delta `add`
//! actions of the files it wrote (path relative to the table, size, partition values, column
//! statistics). The driver commits the actions of the successful task attempts in one Delta
//! commit (`crate::table::delta`); files of a failed or duplicate attempt are never referenced,
//! and `VACUUM` removes them.
//!
//! The input is sorted by the partition columns (the sink requires it), so one writer at a
//! time is open: memory holds one partition's buffered row group, not one per partition.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::file::properties::WriterProperties;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::Add;
use futures::StreamExt;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};

use super::node::report;
use super::runs::partition_runs;

fn delta(e: deltalake::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Writes one task attempt's rows into a Delta table's folder.
pub(super) struct DeltaTaskWriter {
    /// The object store, rooted at the table's folder.
    pub(super) table: Arc<dyn ObjectStore>,
    pub(super) partition_by: Vec<String>,
    /// The input's schema (partition columns included: delta-rs leaves them out of the files).
    pub(super) schema: SchemaRef,
    pub(super) properties: WriterProperties,
}

impl DeltaTaskWriter {
    /// A writer into the table at `base` of `store`.
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        base: &Path,
        partition_by: Vec<String>,
        schema: SchemaRef,
        properties: WriterProperties,
    ) -> Self {
        let table: Arc<dyn ObjectStore> = if base.as_ref().is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, base.clone()))
        };
        Self {
            table,
            partition_by,
            schema,
            properties,
        }
    }

    fn writer(&self) -> DeltaWriter {
        let config = WriterConfig::new(
            Arc::clone(&self.schema),
            self.partition_by.clone(),
            Some(self.properties.clone()),
            None,
            None,
            // Statistics on the first 32 columns, as Delta's default.
            Default::default(),
            None,
        );
        DeltaWriter::new(Arc::clone(&self.table), config)
    }

    /// Writes `input`; returns the sink's report row, whose `paths` are the `add` actions (JSON).
    /// A failed attempt deletes the files it finished (Hadoop's `abortTask`), best effort.
    pub(super) async fn run(self, input: SendableRecordBatchStream) -> Result<RecordBatch> {
        let mut adds: Vec<Add> = Vec::new();
        let rows = match self.write_all(input, &mut adds).await {
            Ok(rows) => rows,
            Err(e) => {
                for add in &adds {
                    if let Ok(path) = Path::from_url_path(&add.path) {
                        let _ = self.table.delete(&path).await;
                    }
                }
                return Err(e);
            }
        };
        let bytes = adds.iter().map(|a| a.size.max(0) as u64).sum();
        let actions = adds
            .iter()
            .map(|a| serde_json::to_string(a).map_err(|e| DataFusionError::External(Box::new(e))))
            .collect::<Result<Vec<_>>>()?;
        report(rows, bytes, &actions)
    }

    /// Writes every row of `input`, adding the `add` action of each file it closes to `adds`.
    /// Returns the rows written.
    async fn write_all(
        &self,
        mut input: SendableRecordBatchStream,
        adds: &mut Vec<Add>,
    ) -> Result<u64> {
        let key_columns: Vec<usize> = self
            .partition_by
            .iter()
            .map(|name| self.schema.index_of(name))
            .collect::<std::result::Result<_, _>>()?;
        let mut rows = 0u64;
        // The open writer and the partition (as text keys) it writes.
        let mut current: Option<(Vec<Option<String>>, DeltaWriter)> = None;
        while let Some(batch) = input.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let (keys, runs) = partition_runs(&batch, &key_columns)?;
            for run in runs {
                let key: Vec<Option<String>> = keys
                    .iter()
                    .map(|k| {
                        let k = k.slice(run.start, 1);
                        (!k.is_null(0)).then(|| {
                            datafusion::arrow::util::display::array_value_to_string(&k, 0)
                                .unwrap_or_default()
                        })
                    })
                    .collect();
                if current.as_ref().is_none_or(|(open, _)| *open != key) {
                    if let Some((_, done)) = current.take() {
                        adds.extend(done.close().await.map_err(delta)?);
                    }
                    current = Some((key, self.writer()));
                }
                let slice = batch.slice(run.start, run.end - run.start);
                rows += slice.num_rows() as u64;
                if let Some((_, writer)) = current.as_mut() {
                    writer.write(&slice).await.map_err(delta)?;
                }
            }
        }
        if let Some((_, done)) = current.take() {
            adds.extend(done.close().await.map_err(delta)?);
        }
        Ok(rows)
    }
}
