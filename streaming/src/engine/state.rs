//! The state a stream keeps between micro-batches for its windows still open, as the
//! checkpoint stores it (`state/<batch id>.parquet` and `state/<batch id>-<output>.parquet`):
//! - the **events** of open windows, for the windowed outputs whose aggregates need every event
//!   (`count(DISTINCT …)` and other holistic aggregates); the file's schema metadata
//!   [`RAW_OUTPUTS_KEY`] names those outputs;
//! - per windowed output whose aggregates merge, its **partial aggregates**: one row per open
//!   (window, key) ([`crate::partial`]); the file's schema metadata [`OUTPUT_KEY`] names the
//!   output and [`crate::partial::FINGERPRINT_KEY`] what its rows aggregate.
//!
//! A checkpoint written before partial aggregates existed holds the events only: an output
//! that now keeps partial aggregates gets them from those events on its first restore.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;

use super::stream::{Stream, query_error};
use crate::error::{Error, Result};
use crate::partial::{FINGERPRINT_KEY, Split};
use crate::sink;

/// Schema metadata key of the events file: the JSON list of the outputs it keeps events for.
pub const RAW_OUTPUTS_KEY: &str = "ember.raw_outputs";

/// Schema metadata key of a partial-aggregate file: its output's name.
pub const OUTPUT_KEY: &str = "ember.output";

/// What a stream keeps for its open windows.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    /// Events of open windows (the `events` schema), for the outputs that keep events.
    pub(super) events: Vec<RecordBatch>,
    /// Per output, in declared order: its partial aggregates (state rows), for the outputs that
    /// keep them; `None` for the others.
    pub(super) partials: Vec<Option<Vec<RecordBatch>>>,
}

impl State {
    /// Events kept.
    pub(super) fn events(&self) -> u64 {
        crate::partial::rows(&self.events)
    }

    /// Open (window, key) groups kept as partial aggregates, all outputs.
    pub(super) fn groups(&self) -> u64 {
        self.partials
            .iter()
            .flatten()
            .map(|rows| crate::partial::rows(rows))
            .sum()
    }
}

fn schema_list(s: &Schema) -> String {
    s.fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Stream {
    /// The outputs whose state is their windows' events (windowed, aggregates not mergeable).
    fn raw_outputs(&self) -> Vec<String> {
        self.job
            .outputs
            .iter()
            .zip(&self.sinks)
            .filter(|(_, s)| s.window.is_some() && s.partial.is_none())
            .map(|(o, _)| o.name.clone())
            .collect()
    }

    /// An empty state: no events, no partial aggregates.
    pub(super) fn empty_state(&self) -> State {
        State {
            events: Vec::new(),
            partials: self
                .sinks
                .iter()
                .map(|s| s.partial.as_ref().map(|_| Vec::new()))
                .collect(),
        }
    }

    /// Writes `state` as the state after batch `id`; returns the bytes written (all files).
    pub(super) async fn save_state(&self, id: u64, state: &State) -> Result<u64> {
        let raw = serde_json::to_string(&self.raw_outputs()).unwrap_or_default();
        let events_schema = Schema::new_with_metadata(
            self.job.schema.events_schema().fields().clone(),
            HashMap::from([(RAW_OUTPUTS_KEY.to_string(), raw)]),
        );
        let events = sink::to_parquet(&events_schema, &state.events)?;
        let mut written = events.len() as u64;
        self.checkpoint.save_state(id, None, events).await?;
        for (k, ((output, sink), rows)) in self
            .job
            .outputs
            .iter()
            .zip(&self.sinks)
            .zip(&state.partials)
            .enumerate()
        {
            let (Some(schema), Some(rows)) = (&sink.partial, rows) else {
                continue;
            };
            let mut metadata = schema.metadata().clone();
            metadata.insert(OUTPUT_KEY.to_string(), output.name.clone());
            let schema = Schema::new_with_metadata(schema.fields().clone(), metadata);
            let bytes = sink::to_parquet(&schema, rows)?;
            written += bytes.len() as u64;
            self.checkpoint.save_state(id, Some(k), bytes).await?;
        }
        Ok(written)
    }

    /// The state after batch `batch_id` (empty before the first batch).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when a file is missing, or was written for another event schema,
    /// another output or another query's aggregates: the stream cannot go on from it.
    pub(super) async fn load_state(&self, batch_id: Option<u64>) -> Result<State> {
        let Some(id) = batch_id else {
            return Ok(self.empty_state());
        };
        let (path, bytes) = self.checkpoint.load_state(id, None).await?;
        let bytes = bytes.ok_or_else(|| Error::Checkpoint {
            path: path.clone(),
            message: "missing: the state of the last committed batch is needed to resume".into(),
        })?;
        let (events, events_meta) = sink::from_parquet_with_metadata(&path, bytes)?;
        // A stream restarted with another event schema cannot go on from this state.
        let expected = self.job.schema.events_schema();
        if let Some(b) = events
            .iter()
            .find(|b| b.schema().fields() != expected.fields())
        {
            return Err(Error::Checkpoint {
                path,
                message: format!(
                    "the state's columns ({}) differ from the declared event schema's ({}): \
                     the schema changed since this checkpoint; keep the old schema or start \
                     a new checkpoint",
                    schema_list(&b.schema()),
                    schema_list(&expected)
                ),
            });
        }
        // The outputs the events were kept for (a checkpoint older than partial aggregates
        // kept them for every windowed output).
        let kept_for: Option<Vec<String>> = events_meta
            .get(RAW_OUTPUTS_KEY)
            .and_then(|json| serde_json::from_str(json).ok());
        let covers = |name: &str| {
            kept_for
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == name))
        };
        let mut partials = Vec::with_capacity(self.sinks.len());
        for (k, (output, sink)) in self.job.outputs.iter().zip(&self.sinks).enumerate() {
            if sink.window.is_none() {
                partials.push(None);
                continue;
            }
            let Some(schema) = &sink.partial else {
                if !covers(&output.name) {
                    return Err(Error::Checkpoint {
                        path,
                        message: format!(
                            "output `{}` needs the events of its open windows, but this checkpoint kept partial aggregates for it (its query changed to an aggregate that cannot be merged): restore the query or start a new checkpoint",
                            output.name
                        ),
                    });
                }
                partials.push(None);
                continue;
            };
            let (file, bytes) = self.checkpoint.load_state(id, Some(k)).await?;
            let rows = match bytes {
                Some(bytes) => {
                    let (rows, meta) = sink::from_parquet_with_metadata(&file, bytes)?;
                    let owner = meta.get(OUTPUT_KEY).cloned().unwrap_or_default();
                    let fingerprint = meta.get(FINGERPRINT_KEY).cloned().unwrap_or_default();
                    let expected = schema
                        .metadata()
                        .get(FINGERPRINT_KEY)
                        .cloned()
                        .unwrap_or_default();
                    if owner != output.name {
                        return Err(Error::Checkpoint {
                            path: file,
                            message: format!(
                                "holds the state of output `{owner}`, not `{}`: the outputs were reordered since this checkpoint; restore their order or start a new checkpoint",
                                output.name
                            ),
                        });
                    }
                    if fingerprint != expected {
                        return Err(Error::Checkpoint {
                            path: file,
                            message: format!(
                                "output `{}`'s query aggregates something else than when this state was written (then: {fingerprint}; now: {expected}): restore the query or start a new checkpoint",
                                output.name
                            ),
                        });
                    }
                    rows.into_iter()
                        .map(|b| RecordBatch::try_new(Arc::clone(schema), b.columns().to_vec()))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| Error::Checkpoint {
                            path: file.clone(),
                            message: format!("not the state of output `{}`: {e}", output.name),
                        })?
                }
                None if covers(&output.name) => {
                    tracing::info!(
                        output = %output.name,
                        "the checkpoint keeps this output's events: turned into partial aggregates"
                    );
                    self.partials_of(id, k, events.clone()).await?
                }
                None => {
                    return Err(Error::Checkpoint {
                        path: file,
                        message: format!(
                            "missing: output `{}`'s partial aggregates are needed to resume",
                            output.name
                        ),
                    });
                }
            };
            partials.push(Some(rows));
        }
        Ok(State { events, partials })
    }

    /// Output `k`'s query cut at its aggregate, planned over `events`.
    pub(super) async fn split(&self, id: u64, k: usize, events: Vec<RecordBatch>) -> Result<Split> {
        let sql = &self.job.outputs[k].sql;
        let table = MemTable::try_new(self.job.schema.events_schema(), vec![events])
            .map_err(|e| query_error(id, "events table", e))?;
        let _ = self.ctx.deregister_table("events");
        self.ctx
            .register_table("events", Arc::new(table))
            .map_err(|e| query_error(id, "events table", e))?;
        let df = self.ctx.sql(&sql.text).await.map_err(|e| Error::Query {
            batch_id: id,
            source: sql.error(e),
        })?;
        Split::new(df.logical_plan()).map_err(|message| {
            query_error(
                id,
                &format!("output `{}`", self.job.outputs[k].name),
                datafusion::error::DataFusionError::Internal(format!(
                    "the query no longer splits at its aggregate: {message}"
                )),
            )
        })
    }

    /// Output `k`'s partial aggregates (state rows) of `events`.
    pub(super) async fn partials_of(
        &self,
        id: u64,
        k: usize,
        events: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        if events.iter().all(|b| b.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let split = self.split(id, k, events).await?;
        let rows = self
            .collect(id, "partial aggregate", split.partial_plan())
            .await?;
        split
            .to_state(&rows)
            .map_err(|e| query_error(id, "partial aggregate", e.into()))
    }

    /// Runs `plan` in the driver's session.
    pub(super) async fn collect(
        &self,
        id: u64,
        context: &str,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<Vec<RecordBatch>> {
        DataFrame::new(self.ctx.state(), plan)
            .collect()
            .await
            .map_err(|e| query_error(id, context, e))
    }
}
