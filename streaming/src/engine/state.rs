//! The state a stream keeps between micro-batches for its windows still open, as the
//! checkpoint stores it:
//! - `state/<batch id>.parquet`: the **events** of open windows, for the windowed outputs whose
//!   aggregates need every event (`count(DISTINCT …)` and other holistic aggregates); the
//!   file's schema metadata [`RAW_OUTPUTS_KEY`] names those outputs. The driver holds them.
//! - per windowed output `<k>` whose aggregates merge, its **partial aggregates**, one row per
//!   open (window, key) ([`crate::partial`]), in **shards**: `state/<batch id>-<k>/part-….parquet`,
//!   one per task of the merge's last stage, hash-partitioned by the group key, written by the
//!   tasks (on the executors on a cluster, see `super::batch`), and the batch's new partial rows
//!   `state/<batch id>-<k>/new.parquet` written by the driver. The manifest
//!   `state/<batch id>-<k>.json` ([`Shards`]) lists the shard files the successful task attempts
//!   reported (as the batch job's committer does), names its output and what its rows
//!   aggregate. The driver holds only the manifest, never the shards' rows.
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

/// One output's partial-aggregate state after a batch: `state/<batch id>-<k>.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Shards {
    /// The output's name.
    pub(super) output: String,
    /// What the rows aggregate ([`crate::partial::Split::fingerprint`]).
    pub(super) fingerprint: String,
    /// The state's Parquet files, relative to the checkpoint folder (every row in them is an
    /// open (window, key) group, each group in one file).
    pub(super) files: Vec<String>,
    /// Open (window, key) groups in the files.
    pub(super) groups: u64,
    /// Bytes of the files.
    pub(super) bytes: u64,
}

/// What a stream keeps for its open windows.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    /// Events of open windows (the `events` schema), for the outputs that keep events.
    pub(super) events: Vec<RecordBatch>,
    /// Per output, in declared order: its partial aggregates' shards, for the outputs that
    /// keep them; `None` for the others.
    pub(super) partials: Vec<Option<Shards>>,
}

impl State {
    /// Events kept.
    pub(super) fn events(&self) -> u64 {
        crate::partial::rows(&self.events)
    }

    /// Open (window, key) groups kept as partial aggregates, all outputs.
    pub(super) fn groups(&self) -> u64 {
        self.partials.iter().flatten().map(|s| s.groups).sum()
    }
}

fn fingerprint_of(schema: &Schema) -> String {
    schema
        .metadata()
        .get(FINGERPRINT_KEY)
        .cloned()
        .unwrap_or_default()
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
                .zip(&self.job.outputs)
                .map(|(s, o)| {
                    s.partial.as_ref().map(|schema| Shards {
                        output: o.name.clone(),
                        fingerprint: fingerprint_of(schema),
                        ..Shards::default()
                    })
                })
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
        self.checkpoint.save_state(id, events).await?;
        for (k, shards) in state.partials.iter().enumerate() {
            let Some(shards) = shards else {
                continue;
            };
            written += shards.bytes;
            self.checkpoint.save_shards(id, k, shards).await?;
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
        let (path, bytes) = self.checkpoint.load_state(id).await?;
        let bytes = bytes.ok_or_else(|| Error::Checkpoint {
            path: path.clone(),
            message: "missing: the state of the last committed batch is needed to resume".into(),
        })?;
        let (events, events_meta) = sink::from_parquet(&path, bytes)?;
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
            let expected = fingerprint_of(schema);
            let (file, shards) = self.checkpoint.load_shards::<Shards>(id, k).await?;
            let shards = match shards {
                Some(shards) => {
                    if shards.output != output.name {
                        return Err(Error::Checkpoint {
                            path: file,
                            message: format!(
                                "holds the state of output `{}`, not `{}`: the outputs were reordered since this checkpoint; restore their order or start a new checkpoint",
                                shards.output, output.name
                            ),
                        });
                    }
                    if shards.fingerprint != expected {
                        return Err(Error::Checkpoint {
                            path: file,
                            message: format!(
                                "output `{}`'s query aggregates something else than when this state was written (then: {}; now: {expected}): restore the query or start a new checkpoint",
                                output.name, shards.fingerprint
                            ),
                        });
                    }
                    shards
                }
                None if covers(&output.name) => {
                    tracing::info!(
                        output = %output.name,
                        "the checkpoint keeps this output's events: turned into partial aggregates"
                    );
                    let rows = self.partials_of(id, k, events.clone()).await?;
                    let bytes = sink::to_parquet(schema, &rows)?;
                    let rel = format!("state/{id}-{k}/from-events.parquet");
                    let size = bytes.len() as u64;
                    self.checkpoint.dir().put(&rel, bytes).await?;
                    Shards {
                        output: output.name.clone(),
                        fingerprint: expected,
                        files: vec![rel],
                        groups: crate::partial::rows(&rows),
                        bytes: size,
                    }
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
            partials.push(Some(shards));
        }
        Ok(State { events, partials })
    }

    /// `sql` planned over an `events` table of `events` (registered in the driver's session),
    /// with the batch's time as `now()` ([`Stream::batch_state`]).
    ///
    /// # Errors
    /// The SQL's planning error (file, line, column), as [`Error::Query`] of batch `id`.
    pub(super) async fn plan_over(
        &self,
        id: u64,
        sql: &ember_core::sql_file::SqlFile,
        events: Vec<RecordBatch>,
    ) -> Result<DataFrame> {
        let table = MemTable::try_new(self.job.schema.events_schema(), vec![events])
            .map_err(|e| query_error(id, "events table", e))?;
        let _ = self.ctx.deregister_table("events");
        self.ctx
            .register_table("events", Arc::new(table))
            .map_err(|e| query_error(id, "events table", e))?;
        let state = self.batch_state();
        let plan = state
            .create_logical_plan(&sql.text)
            .await
            .map_err(|e| Error::Query {
                batch_id: id,
                source: sql.error(e),
            })?;
        Ok(DataFrame::new(state, plan))
    }

    /// Output `k`'s query cut at its aggregate, planned over `events`.
    pub(super) async fn split(&self, id: u64, k: usize, events: Vec<RecordBatch>) -> Result<Split> {
        let df = self.plan_over(id, &self.job.outputs[k].sql, events).await?;
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
        DataFrame::new(self.batch_state(), plan)
            .collect()
            .await
            .map_err(|e| query_error(id, context, e))
    }
}
