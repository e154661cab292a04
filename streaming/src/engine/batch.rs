//! One micro-batch, from its plan to its commit mark (the steps 2 to 8 of the engine's
//! documentation), and the state a batch keeps for the windows still open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{SessionContext, col};
use ember_core::api::BatchCounts;
use ember_core::manifest::OutputFormat;
use ember_core::table::{delta, sink_log};

use super::failpoint::{Phase, crash_point};
use super::rules::retain;
use super::state::{Shards, State};
use super::stream::{Input, Reader, Stream, StreamReport, query_error, rfc3339, ts_lit};
use crate::checkpoint::{BatchCommit, BatchPlan, Checkpoint};
use crate::error::{Error, Result};
use crate::event;
use crate::kafka::READ_TIMEOUT;
use crate::scan::{self, KafkaBatchTable, Message, ScanSource, ScanSpec};
use crate::sink;
use crate::watermark::Watermark;

/// Records in a local batch from which parsing is spread over the cores.
const PARALLEL_PARSE_FROM: usize = 10_000;

impl Stream {
    /// Appends micro-batch `id`'s `batches` to the Delta table at `table` in one commit with
    /// the `txn` (`app`, `id`), as Spark's Delta streaming sink does; nothing when the table
    /// already has that batch (a replay after a crash between the commit and the commit mark),
    /// or when there is no row.
    async fn append_to_delta(
        &self,
        table: &str,
        app: &str,
        id: u64,
        partition_by: &[String],
        batches: &[RecordBatch],
        replay: bool,
    ) -> Result<()> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            // No file to write (no window closed): the crash point still fires.
            crash_point(Phase::Files, id, replay);
            return Ok(());
        }
        let runtime = self.ctx.runtime_env();
        let version = i64::try_from(id).unwrap_or(i64::MAX);
        let (seen, loaded) = delta::transaction_version(&runtime, table, app).await?;
        if seen.is_some_and(|v| v >= version) {
            tracing::info!(
                batch_id = id,
                table,
                "the table has this batch already: skipped"
            );
            return Ok(());
        }
        let adds = delta::write_batches(&runtime, table, partition_by, batches).await?;
        crash_point(Phase::Files, id, replay);
        let schema = batches[0].schema();
        delta::commit(
            &runtime,
            table,
            delta::Commit {
                schema,
                partition_by: partition_by.to_vec(),
                adds,
                mode: delta::WriteMode::Append {
                    app_id: app.to_string(),
                    version,
                },
                info: delta::info([
                    ("job", serde_json::json!(self.job.name)),
                    ("stream_id", serde_json::json!(self.stream_id)),
                    ("batch_id", serde_json::json!(id)),
                ]),
                read_version: None,
                loaded,
            },
        )
        .await?;
        Ok(())
    }

    /// The watermark that marks `plan`'s late events: the plan's when an output is windowed;
    /// none when every output is stateless, which keeps late events (Spark's watermark only
    /// drops data in stateful operators). One rule for all outputs, so that they all see the
    /// same events.
    fn late_marks(&self, plan: &BatchPlan) -> Watermark {
        if self.sinks.iter().any(|s| s.window.is_some()) {
            plan.watermark.clone()
        } else {
            Watermark::new(plan.watermark.lateness_us, plan.watermark.idle_timeout_ms)
        }
    }

    /// Event times after this, µs, are quarantined as `future_event_time`: the plan's
    /// processing time (so a replay decides as the first attempt did) plus
    /// `max_event_time_skew`.
    fn future_after(&self, plan: &BatchPlan) -> i64 {
        plan.now_ms
            .saturating_mul(1000)
            .saturating_add(self.job.max_event_time_skew_us)
    }

    /// `sql` over an `events` table of `events`, filtered by `filter`.
    async fn query(
        &self,
        id: u64,
        sql: &ember_core::sql_file::SqlFile,
        events: Vec<RecordBatch>,
        filter: Option<datafusion::prelude::Expr>,
    ) -> Result<Vec<RecordBatch>> {
        let sql_error = |e| Error::Query {
            batch_id: id,
            source: sql.error(e),
        };
        let mut df = self.plan_over(id, sql, events).await?;
        if let Some(filter) = filter {
            df = df
                .filter(filter)
                .map_err(|e| query_error(id, "emit filter", e))?;
        }
        df.collect().await.map_err(sql_error)
    }

    /// Reads and parses `plan`'s ranges with one Ballista task per range ([`crate::scan`]).
    async fn scan_on_executors(
        &self,
        remote: &SessionContext,
        plan: &BatchPlan,
    ) -> Result<Vec<Message>> {
        let id = plan.batch_id;
        if plan.records() == 0 {
            return Ok(Vec::new());
        }
        let kafka = self.job.kafka().ok_or_else(|| Error::Kafka {
            context: format!("batch {id}"),
            message: "a files source has no Kafka scan (a bug)".into(),
        })?;
        let spec = ScanSpec {
            source: ScanSource {
                schema: self.job.schema.decl.clone(),
                brokers: kafka.brokers.clone(),
                topic: plan.topic.clone(),
                group_id: kafka.group_id.clone(),
                options: kafka.options.clone(),
                watermark: self.late_marks(plan),
                future_after_us: Some(self.future_after(plan)),
            },
            ranges: plan.ranges.clone(),
        };
        let context = "the Kafka scan on the executors";
        let batches = remote
            .read_table(Arc::new(
                KafkaBatchTable::try_new(spec).map_err(|e| query_error(id, context, e))?,
            ))
            .map_err(|e| query_error(id, context, e))?
            .collect()
            .await
            .map_err(|e| query_error(id, context, e))?;
        let mut messages = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
        for b in &batches {
            messages.extend(
                scan::from_scan_batch(&self.job.schema, b)
                    .map_err(|e| query_error(id, context, e.into()))?,
            );
        }
        Ok(messages)
    }

    /// The session the merge of partial aggregates runs in: the cluster's (its tasks on the
    /// executors) when the scans run there, else this process's.
    fn merge_session(&self) -> &SessionContext {
        match &self.reader {
            Reader::Cluster(remote) => remote,
            Reader::Local => &self.ctx,
        }
    }

    /// Output `k`'s rows for the windows closed by this batch (`closed`, a filter on
    /// `window_end`; none before the first watermark) and its state after the batch, from its
    /// partial aggregates (`super::state`):
    /// 1. the driver aggregates the batch's new events into partial rows, written to
    ///    `state/<id>-<k>/new.parquet`;
    /// 2. the state's shards before the batch (`prev`) and the new rows are merged per (window,
    ///    key) by a job of [`Stream::merge_session`] (hash-partitioned by the group key), whose
    ///    tasks write the groups still open after the watermark `after` (windows of `size_us`)
    ///    as the new shards, one per task;
    /// 3. a second job merges the groups the watermark closed and returns them; the rest of the
    ///    query runs over them in the driver.
    #[allow(clippy::too_many_arguments)]
    async fn windows_from_partials(
        &self,
        id: u64,
        k: usize,
        prev: &Shards,
        new_events: &RecordBatch,
        closed: Option<datafusion::prelude::Expr>,
        after: Option<i64>,
        size_us: i64,
    ) -> Result<(Vec<RecordBatch>, Shards)> {
        let split = self.split(id, k, vec![new_events.clone()]).await?;
        let folder = Checkpoint::shard_folder(id, k);
        // A batch run again after a crash rewrites its shards.
        self.checkpoint.clear(&folder).await?;
        let base = self.checkpoint.url().trim_end_matches('/').to_string();
        let mut files: Vec<String> = prev.files.iter().map(|f| format!("{base}/{f}")).collect();
        if new_events.num_rows() > 0 {
            let partial = self
                .collect(id, "partial aggregate", split.partial_plan())
                .await?;
            let rows = split
                .to_state(&partial)
                .map_err(|e| query_error(id, "partial aggregate", e.into()))?;
            if !rows.is_empty() {
                let rel = format!("{folder}/new.parquet");
                self.checkpoint
                    .dir()
                    .put(&rel, sink::to_parquet(&split.state_schema(), &rows)?)
                    .await?;
                files.push(format!("{base}/{rel}"));
            }
        }
        let mut shards = Shards {
            output: prev.output.clone(),
            fingerprint: prev.fingerprint.clone(),
            ..Shards::default()
        };
        if files.is_empty() {
            return Ok((Vec::new(), shards));
        }
        let context = "merge of partial aggregates";
        let merged = split
            .files_plan(&files)
            .and_then(|input| split.merge_plan(input))
            .map_err(|e| query_error(id, context, e))?;
        let filtered = |open: bool, watermark: i64| {
            LogicalPlanBuilder::from(merged.clone())
                .filter(split.window_filter(size_us, watermark, open))
                .and_then(LogicalPlanBuilder::build)
                .map_err(|e| query_error(id, context, e))
        };
        let session = self.merge_session();
        let open = match after {
            Some(after) => filtered(true, after)?,
            None => merged.clone(),
        };
        let written = ember_core::sink::write(
            session,
            DataFrame::new(session.state(), open),
            &format!("{base}/{folder}/"),
            Vec::new(),
            OutputFormat::Parquet,
        )
        .await
        .map_err(|e| query_error(id, context, e))?;
        shards.files = written
            .paths
            .iter()
            .map(|p| format!("{folder}/{p}"))
            .collect();
        shards.files.sort();
        shards.groups = written.rows;
        shards.bytes = written.bytes;
        let (Some(closed), Some(after)) = (closed, after) else {
            return Ok((Vec::new(), shards));
        };
        let closing = DataFrame::new(session.state(), filtered(false, after)?)
            .collect()
            .await
            .map_err(|e| query_error(id, context, e))?;
        let closing = split
            .to_state(&closing)
            .map_err(|e| query_error(id, context, e.into()))?;
        if closing.is_empty() {
            return Ok((Vec::new(), shards));
        }
        let sql = &self.job.outputs[k].sql;
        let plan = split
            .emit_plan(closing)
            .map_err(|e| query_error(id, "windows from partial aggregates", e))?;
        let rows = DataFrame::new(self.batch_state(), plan)
            .filter(closed)
            .map_err(|e| query_error(id, "emit filter", e))?
            .collect()
            .await
            .map_err(|e| Error::Query {
                batch_id: id,
                source: sql.error(e),
            })?;
        Ok((rows, shards))
    }

    /// Reloads the lookup tables whose files changed, runs `plan` (`state` before, then after
    /// it), then logs the committed batch, sends its progress (`latest`: the partitions' ends
    /// when it was planned; `tick`, `last_tick`: this batch's and the previous one's start) and
    /// adds it to `report`.
    ///
    /// # Errors
    /// A lookup that cannot be reloaded; the batch's errors ([`Stream::run_batch`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_and_record(
        &mut self,
        plan: &BatchPlan,
        state: &mut State,
        replay: bool,
        report: &mut StreamReport,
        latest: &BTreeMap<i32, i64>,
        tick: Instant,
        last_tick: Option<Instant>,
    ) -> Result<BatchCommit> {
        // Lookups whose files changed are loaded again before the batch.
        let reloaded = self.lookups.refresh(&self.ctx).await?;
        if !reloaded.is_empty() {
            tracing::info!(batch_id = plan.batch_id, lookups = ?reloaded, "lookup tables reloaded");
        }
        let commit = self.run_batch(plan, state, replay).await?;
        let counts = &commit.counts;
        tracing::info!(
            batch_id = commit.batch_id, records = counts.records, events = counts.events,
            rows_written = counts.rows_written, state_events = counts.state_events,
            state_groups = counts.state_groups, state_bytes = counts.state_bytes,
            files = plan.files.len(), phases_ms = ?commit.phases_ms,
            watermark = ?commit.watermark.current_us.map(rfc3339), duration_ms = commit.duration_ms,
            "batch committed"
        );
        self.send_progress(plan, &commit, latest, tick, last_tick);
        report.batches += 1;
        report.replayed += u64::from(replay);
        report.counts.add(&commit.counts);
        for (phase, ms) in &commit.phases_ms {
            *report.phases_ms.entry(phase.clone()).or_default() += ms;
        }
        report.watermark = commit.watermark.current_us.map(rfc3339);
        Ok(commit)
    }

    /// Runs one planned batch and commits it; `state` is the state before and becomes the
    /// state after.
    pub(super) async fn run_batch(
        &self,
        plan: &BatchPlan,
        state: &mut State,
        replay: bool,
    ) -> Result<BatchCommit> {
        let started = Instant::now();
        let id = plan.batch_id;
        let ranges = plan.ranges.clone();
        self.batch_now_ms
            .store(plan.now_ms, std::sync::atomic::Ordering::Relaxed);
        // Wall time per phase, ms (Spark's `durationMs`).
        let mut phases: BTreeMap<String, u64> = BTreeMap::new();
        let mut phase = Instant::now();
        let mut lap = |name: &str, phases: &mut BTreeMap<String, u64>| {
            phases.insert(
                name.to_string(),
                u64::try_from(phase.elapsed().as_millis()).unwrap_or(u64::MAX),
            );
            phase = Instant::now();
        };
        let (late, future) = (self.late_marks(plan), Some(self.future_after(plan)));
        // Parsing is the costly part of a local batch (a regex or JSON per record): the
        // records are cut in one chunk per core, parsed on scoped threads, kept in order.
        let classify = |records: &[crate::kafka::Record]| -> Vec<Message> {
            let one = |chunk: &[crate::kafka::Record]| -> Vec<Message> {
                chunk
                    .iter()
                    .map(|r| scan::classify(&self.job.schema, r, &late, future))
                    .collect()
            };
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            if cores < 2 || records.len() < PARALLEL_PARSE_FROM {
                return one(records);
            }
            std::thread::scope(|scope| {
                let parts: Vec<_> = records
                    .chunks(records.len().div_ceil(cores))
                    .map(|chunk| scope.spawn(move || one(chunk)))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        let messages: Vec<Message> = match (&self.input, &self.reader) {
            (Input::Files(spool), _) => {
                let mut records = Vec::new();
                for (i, file) in plan.files.iter().enumerate() {
                    let index = i32::try_from(i).unwrap_or(i32::MAX);
                    records.extend(spool.read(file, index).await?);
                }
                lap("read", &mut phases);
                let parsed = classify(&records);
                lap("parse", &mut phases);
                parsed
            }
            (Input::Kafka(consumer), Reader::Local) => {
                let records = tokio::task::block_in_place(|| consumer.read(&ranges, READ_TIMEOUT))?;
                lap("read", &mut phases);
                let parsed = classify(&records);
                lap("parse", &mut phases);
                parsed
            }
            (Input::Kafka(_), Reader::Cluster(remote)) => {
                let parsed = self.scan_on_executors(remote, plan).await?;
                lap("scan", &mut phases);
                parsed
            }
        };
        // Offsets of the plan with no message (removed by retention or compaction, or
        // transaction markers): counted and logged, never silent. More messages than offsets
        // means a message was delivered twice, which would count it twice: the batch fails.
        // A files plan has no offsets before it reads: its records are its files' lines.
        let offsets_skipped = match &self.input {
            Input::Files(_) => 0,
            Input::Kafka(_) => plan.records() - i64::try_from(messages.len()).unwrap_or(i64::MAX),
        };
        if offsets_skipped < 0 {
            return Err(Error::Kafka {
                context: format!("batch {id} of {}", plan.topic),
                message: format!(
                    "{} messages read for {} planned offsets {:?}: a range was read twice",
                    messages.len(),
                    plan.records(),
                    plan.ranges
                ),
            });
        }
        if offsets_skipped > 0 {
            tracing::warn!(
                batch_id = id,
                offsets_skipped,
                "planned offsets without a message (retention, compaction or transaction markers)"
            );
        }
        // Late and malformed messages go to the quarantine.
        let records = messages.len();
        let mut events = Vec::with_capacity(records);
        let mut rejected = Vec::new();
        let mut delivered: BTreeMap<i32, i64> = BTreeMap::new();
        // A folder's files are one source of event time: its watermark is the newest event
        // time of all of them (a file is no partition that could go idle).
        let one_source = matches!(self.input, Input::Files(_));
        for m in messages {
            match m {
                Message::Valid(origin, e) => {
                    let key = if one_source { 0 } else { origin.partition };
                    let high = delivered.entry(key).or_insert(e.event_time_us);
                    *high = (*high).max(e.event_time_us);
                    events.push((origin, e));
                }
                Message::Rejected(r) => rejected.push(r),
            }
        }
        let mut watermark = plan.watermark.clone();
        let before = watermark.current_us;
        let after = watermark.advance(&delivered, plan.now_ms);
        let new_events = event::to_batch(&self.job.schema, &events)
            .map_err(|e| query_error(id, "events", e.into()))?;
        let mut all = state.events.clone();
        if new_events.num_rows() > 0 {
            all.push(new_events.clone());
        }
        let unmatched = self.lookups.unmatched(&new_events)?;
        // Each output's rows: a stateless query's over this batch's events at once; a windowed
        // query's for the windows the watermark closed in this batch, from its partial
        // aggregates or from the events of its open windows.
        let closed = after.map(|after| {
            let end = col("window_end");
            let ends_now = end.clone().lt_eq(ts_lit(after));
            match before {
                Some(b) => end.gt(ts_lit(b)).and(ends_now),
                None => ends_now,
            }
        });
        let mut emitted: Vec<Vec<RecordBatch>> = Vec::with_capacity(self.sinks.len());
        let mut merged: Vec<Option<Shards>> = Vec::with_capacity(self.sinks.len());
        for (k, (output, sink)) in self.job.outputs.iter().zip(&self.sinks).enumerate() {
            let mut partials = None;
            emitted.push(match (sink.window, &state.partials[k]) {
                (None, _) if new_events.num_rows() > 0 => {
                    self.query(id, &output.sql, vec![new_events.clone()], None)
                        .await?
                }
                (None, _) => Vec::new(),
                (Some(window), Some(prev)) => {
                    let (out, shards) = self
                        .windows_from_partials(
                            id,
                            k,
                            prev,
                            &new_events,
                            closed.clone(),
                            after,
                            window.size_us,
                        )
                        .await?;
                    partials = Some(shards);
                    out
                }
                (Some(_), None) => match &closed {
                    Some(closed) => {
                        self.query(id, &output.sql, all.clone(), Some(closed.clone()))
                            .await?
                    }
                    None => Vec::new(),
                },
            });
            merged.push(partials);
        }
        lap("query", &mut phases);
        let rows_by_output: BTreeMap<String, u64> = self
            .job
            .outputs
            .iter()
            .zip(&emitted)
            .map(|(o, rows)| {
                (
                    o.name.clone(),
                    rows.iter().map(|b| b.num_rows() as u64).sum(),
                )
            })
            .collect();
        let rows_written: u64 = rows_by_output.values().sum();
        let quarantine = if rejected.is_empty() {
            None
        } else {
            Some(
                event::quarantine_batch(&|o| plan.source_of(o), &rejected)
                    .map_err(|e| query_error(id, "quarantine", e.into()))?,
            )
        };
        // The quarantine first, into the first output: if the process dies before the outputs,
        // the replay writes it again over itself (Parquet: the same file name; Delta: skipped by
        // its `txn`).
        let primary = &self.sinks[0];
        if let Some(q) = quarantine {
            match self.job.primary().format {
                OutputFormat::Parquet => {
                    primary
                        .dir
                        .put(
                            &format!("_quarantine/{}", sink::file_name(id)),
                            sink::to_parquet(&q.schema(), &[q])?,
                        )
                        .await?;
                }
                OutputFormat::Delta => {
                    let table = format!("{}/_quarantine/", primary.dir.url());
                    let app = format!("{}.quarantine", self.stream_id);
                    self.append_to_delta(&table, &app, id, &[], &[q], replay)
                        .await?;
                }
            }
        }
        // Then every output, in declared order; the crash points fire at the first.
        for (i, ((output, sink), rows)) in self
            .job
            .outputs
            .iter()
            .zip(&self.sinks)
            .zip(&emitted)
            .enumerate()
        {
            let first = i == 0;
            match output.format {
                OutputFormat::Parquet => {
                    let files =
                        sink::write_partitioned(&sink.dir, id, &output.partition_by, rows).await?;
                    crash_point(Phase::Files, id, replay || !first);
                    // The batch's rows become visible to readers of the sink log at once.
                    sink_log::log_batch(&sink.dir, id, files).await?;
                }
                OutputFormat::Delta => {
                    let table = format!("{}/", sink.dir.url());
                    self.append_to_delta(
                        &table,
                        &self.stream_id,
                        id,
                        &output.partition_by,
                        rows,
                        replay || !first,
                    )
                    .await?;
                }
            }
            if first && self.sinks.len() > 1 {
                crash_point(Phase::Output, id, replay);
            }
        }
        crash_point(Phase::Commit, id, replay);
        lap("write", &mut phases);
        // The state after the batch: the events of open windows for the outputs that keep
        // events, the partial aggregates of open (window, key) groups for the others.
        let windows: Vec<_> = self
            .sinks
            .iter()
            .filter(|s| s.partial.is_none())
            .filter_map(|s| s.window)
            .collect();
        let kept = State {
            events: retain(&all, self.job.schema.time_index, &windows, after)
                .map_err(|e| query_error(id, "state", e.into()))?,
            partials: merged,
        };
        let state_bytes = self.save_state(id, &kept).await?;
        crash_point(Phase::State, id, replay);
        lap("state", &mut phases);
        let mut quarantined = BTreeMap::new();
        for r in &rejected {
            *quarantined.entry(r.reason.clone()).or_insert(0u64) += 1;
        }
        let commit = BatchCommit {
            batch_id: id,
            watermark,
            counts: BatchCounts {
                records: i64::try_from(records).unwrap_or(i64::MAX),
                offsets_skipped,
                offsets_lost: plan.offsets_lost,
                events: events.len() as u64,
                quarantined,
                rows_written,
                state_events: kept.events(),
                state_groups: kept.groups(),
                state_bytes,
                rows_by_output,
                unmatched,
            },
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            phases_ms: phases,
        };
        self.checkpoint.commit(&commit).await?;
        *state = kept;
        crash_point(Phase::Source, id, replay);
        match &self.input {
            Input::Kafka(consumer) => {
                if let Err(e) = tokio::task::block_in_place(|| consumer.commit(&plan.ends())) {
                    tracing::warn!(error = %e, "cannot commit offsets to the consumer group (lag tools will lag)");
                }
            }
            // Only now may the files leave the folder; a failure stops the stream before it
            // lists the folder again (the restart finishes them first).
            Input::Files(spool) => {
                spool.finish(&plan.files).await?;
            }
        }
        Ok(commit)
    }
}
