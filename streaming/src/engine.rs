//! The micro-batch engine: plans a batch (offset ranges, write-ahead), reads it from Kafka,
//! parses and quarantines, runs the windowed SQL over the new events plus the state, emits the
//! windows the watermark closed, and commits (output files, state, commit mark, group offsets).
//!
//! One batch, in order (the numbers are the crash points the recovery rules cover):
//! 1. `offsets/<id>` is written (the plan). A crash before: the batch never existed.
//! 2. The ranges are read and parsed, in this process (`ember run`) or by one Ballista task per
//!    range on the executors (`ember submit`, see [`crate::scan`]). Late events (below the
//!    watermark before the batch) and malformed messages are the batch's quarantine.
//! 3. The new watermark is computed from the plan's processing time and the batch's events.
//! 4. The SQL runs over `events` = state ∪ new events; rows whose `window_end` is in
//!    `(watermark before, watermark after]` are emitted (append mode: each window once).
//! 5. Output and quarantine files are written, named by batch id, then the batch's sink log
//!    entry (`_ember_sink/<id>.json`), which makes them visible to readers of the log at once.
//!    A crash here or later: the restart runs plan `<id>` again, which writes the same files
//!    and entry over these.
//! 6. `state/<id>.parquet`: the events of windows still open (bounded by the open windows).
//! 7. `commits/<id>`. After it, the batch is done; 8. the group offsets are committed to Kafka
//!    (for lag tools only).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{filter_record_batch, kernels::cmp};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::prelude::{SessionContext, col, lit};
use ember_core::api::{PartitionProgress, StreamProgress};
use ember_core::udf::WindowSpec;

use crate::checkpoint::{BatchCommit, BatchPlan, Checkpoint, OffsetRange, Resume};
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::event::{self, EVENT_SCHEMA};
use crate::kafka::KafkaSource;
use crate::manifest::{StartingOffsets, StreamJob, Trigger};
use crate::scan::{self, KafkaBatchTable, Message, ScanSource, ScanSpec};
use crate::sink;
use crate::watermark::Watermark;

/// Longest wait for the brokers to deliver a planned range.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable for crash tests: `EMBER_STREAM_CRASH_AFTER_OUTPUT=<batch id>` aborts
/// the process after that batch wrote its output and before its commit mark (not on a replay).
pub const CRASH_AFTER_OUTPUT: &str = "EMBER_STREAM_CRASH_AFTER_OUTPUT";

/// What a run of a stream did (this process only).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamReport {
    /// The job.
    pub job: String,
    /// Batches committed by this run.
    pub batches: u64,
    /// Of those, batches run again from a plan a crashed run left.
    pub replayed: u64,
    /// Messages read.
    pub records: i64,
    /// Planned offsets that held no message (retention, compaction).
    #[serde(default)]
    pub offsets_skipped: i64,
    /// Valid, not late events.
    pub events: u64,
    /// Quarantined messages by reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Windows written (output rows).
    pub rows_written: u64,
    /// The watermark at the end, RFC 3339; none before the first event.
    pub watermark: Option<String>,
    /// Events in the state at the end.
    pub state_events: u64,
    /// The checkpoint folder.
    pub checkpoint: String,
    /// The output folder.
    pub output: String,
}

/// Where a batch's messages are read and parsed.
enum Reader {
    /// In this process, by the stream's consumer, which keeps its position between batches.
    Local,
    /// By Ballista tasks on the executors, one per partition range ([`crate::scan`]), through
    /// this session on the scheduler.
    Cluster(SessionContext),
}

/// A streaming job ready to run.
pub struct Stream {
    job: StreamJob,
    ctx: SessionContext,
    reader: Reader,
    window: WindowSpec,
    source: KafkaSource,
    checkpoint: Checkpoint,
    output: Dir,
    progress: Option<tokio::sync::mpsc::UnboundedSender<StreamProgress>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("job", &self.job.name)
            .finish_non_exhaustive()
    }
}

fn runtime(
    registry: &Arc<dyn ObjectStoreRegistry>,
) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::clone(registry))
        .build_arc()
        .map_err(|e| Error::Job(ember_core::Error::datafusion("runtime", e)))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

fn ts_lit(us: i64) -> datafusion::logical_expr::Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(us), None))
}

fn query_error(batch_id: u64, context: &str, e: datafusion::error::DataFusionError) -> Error {
    Error::Query {
        batch_id,
        source: ember_core::Error::datafusion(context.to_string(), e),
    }
}

/// Splits `budget` messages over partitions with `available` messages each: an equal share,
/// then what is left to the partitions that have more, in partition order.
pub fn split_budget(available: &BTreeMap<i32, i64>, budget: i64) -> BTreeMap<i32, i64> {
    let mut take: BTreeMap<i32, i64> = available.keys().map(|&p| (p, 0)).collect();
    let mut left = budget.max(0);
    let n = i64::try_from(available.len().max(1)).unwrap_or(1);
    let share = left / n;
    for (&p, &a) in available {
        let t = a.max(0).min(share);
        take.insert(p, t);
        left -= t;
    }
    for (&p, &a) in available {
        if left == 0 {
            break;
        }
        let t = take.get(&p).copied().unwrap_or(0);
        let more = (a.max(0) - t).min(left);
        take.insert(p, t + more);
        left -= more;
    }
    take
}

/// Events whose last window ends after `watermark_us`: the state to keep.
///
/// # Errors
/// An Arrow error (a bug: the batch is not in the events schema).
pub fn retain(
    batches: &[RecordBatch],
    window: &WindowSpec,
    watermark_us: Option<i64>,
) -> std::result::Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    let Some(w) = watermark_us else {
        return Ok(batches.to_vec());
    };
    // last_end(t) > w  ⇔  t ≥ ((w − size) div slide + 1) × slide
    let threshold = ((w - window.size_us).div_euclid(window.slide_us) + 1) * window.slide_us;
    let scalar = TimestampMicrosecondArray::new_scalar(threshold);
    batches
        .iter()
        .map(|b| {
            let mask = cmp::gt_eq(b.column(0), &scalar)?;
            filter_record_batch(b, &mask)
        })
        .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
        .collect()
}

impl Stream {
    /// Prepares `job`: its session (DataFusion with Ember's functions), its window shape from
    /// the SQL, the Kafka consumer, the checkpoint and output folders.
    ///
    /// # Errors
    /// The SQL's errors (file, line, column), a query without window, storage that cannot be
    /// opened, or a consumer librdkafka refuses.
    pub async fn new(job: StreamJob, registry: Arc<dyn ObjectStoreRegistry>) -> Result<Self> {
        let config = ember_core::session::configure(datafusion::prelude::SessionConfig::new(), 2);
        let ctx = SessionContext::new_with_state(ember_core::session::session_state(
            config,
            runtime(&registry)?,
        ));
        let window = crate::window_query::analyze(&ctx, &job.sql, &job.partition_by).await?;
        let source = KafkaSource::new(
            &job.source.brokers,
            &job.source.topic,
            &job.source.group_id,
            &job.source.options,
        )?;
        let checkpoint = Checkpoint::new(Dir::open(&job.checkpoint, registry.as_ref())?);
        let output = Dir::open(&job.output, registry.as_ref())?;
        Ok(Self {
            job,
            ctx,
            reader: Reader::Local,
            window,
            source,
            checkpoint,
            output,
            progress: None,
        })
    }

    /// Like [`Stream::new`], but each batch's Kafka ranges are read and parsed by tasks on the
    /// executors of the Ballista scheduler at `scheduler_url` (`df://HOST:PORT`), one task per
    /// partition range; this process (the driver, as in Spark's client deploy mode) plans the
    /// batches, runs the windows over the parsed events and the state, and commits.
    ///
    /// # Errors
    /// As [`Stream::new`], and a scheduler that cannot be reached.
    pub async fn on_cluster(
        job: StreamJob,
        registry: Arc<dyn ObjectStoreRegistry>,
        scheduler_url: &str,
    ) -> Result<Self> {
        use ballista::prelude::{SessionConfigExt, SessionContextExt};
        scan::register_codec();
        // Ballista's session connects lazily; a driver should fail at once, not at its first
        // batch.
        let unreachable = |message: String| Error::Scheduler {
            url: scheduler_url.to_string(),
            message,
        };
        let address = scheduler_url.trim_start_matches("df://");
        match tokio::time::timeout(
            crate::kafka::REQUEST_TIMEOUT,
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("no answer".into())),
        }
        let mut config = ember_core::session::configure(
            datafusion::prelude::SessionConfig::new_with_ballista(),
            2,
        );
        // No round-robin repartition above the scan: Ballista keeps it inside the scan's stage,
        // so every task of the stage would run every range's read (each message read twice).
        config
            .options_mut()
            .optimizer
            .enable_round_robin_repartition = false;
        let state = ember_core::session::session_state(config, runtime(&registry)?);
        let remote = SessionContext::remote_with_state(scheduler_url, state)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut stream = Self::new(job, registry).await?;
        stream.reader = Reader::Cluster(remote);
        Ok(stream)
    }

    /// The window shape found in the SQL.
    pub fn window(&self) -> WindowSpec {
        self.window
    }

    /// Sends each committed batch's progress (offsets, lag, rates, watermark) to `sender`,
    /// for the scheduler's streaming page. A closed receiver is ignored.
    pub fn report_progress(&mut self, sender: tokio::sync::mpsc::UnboundedSender<StreamProgress>) {
        self.progress = Some(sender);
    }

    /// Runs the stream until its trigger says stop (available-now: the topic is drained) or
    /// `stop` resolves (between batches).
    ///
    /// # Errors
    /// The first error of a batch; what was committed before stays committed, and a restart
    /// runs the failed batch again.
    pub async fn run(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<StreamReport> {
        tokio::pin!(stop);
        let mut report = StreamReport {
            job: self.job.name.clone(),
            checkpoint: self.checkpoint.url().to_string(),
            output: self.output.url().to_string(),
            ..StreamReport::default()
        };
        // Poll it once now, so that signal handlers are installed before the first batch.
        if self
            .wait(Some(Duration::ZERO), Instant::now(), &mut stop)
            .await
        {
            return Ok(report);
        }
        let topic = self.job.source.topic.clone();
        let partitions = self.blocking_source(|s| s.partitions()).await?;
        // Where to go on: the plan to run again, the watermark, the state, the next batch id and
        // the next start offset per partition (the ends of the last plan).
        let (mut next_plan, mut watermark, mut state, mut next_id, mut starts) =
            match self.checkpoint.resume().await? {
                Resume::Fresh => (
                    None,
                    Watermark::new(self.job.allowed_lateness_us, self.job.idle_timeout_ms),
                    Vec::new(),
                    0,
                    BTreeMap::new(),
                ),
                Resume::Replay { plan } => {
                    tracing::info!(
                        batch_id = plan.batch_id,
                        "running an uncommitted batch again with its planned offsets"
                    );
                    let state = self.load_state(plan.batch_id.checked_sub(1)).await?;
                    let wm = plan.watermark.clone();
                    let id = plan.batch_id;
                    let starts = plan.ranges.iter().map(|r| (r.partition, r.start)).collect();
                    (Some(plan), wm, state, id, starts)
                }
                Resume::Continue { last, plan } => {
                    let state = self.load_state(Some(last.batch_id)).await?;
                    (None, last.watermark, state, last.batch_id + 1, plan.ends())
                }
            };
        // Partitions without a start begin at the starting offsets; available-now stops at the
        // ends seen now. One offsets request per partition answers both.
        let available_now = self.job.trigger == Trigger::AvailableNow;
        let mut limit: Option<BTreeMap<i32, i64>> = available_now.then(BTreeMap::new);
        for &p in &partitions {
            if !available_now && starts.contains_key(&p) {
                continue;
            }
            let (low, high) = self.blocking_source(move |s| s.watermarks(p)).await?;
            starts
                .entry(p)
                .or_insert(match self.job.source.starting_offsets {
                    StartingOffsets::Earliest => low,
                    StartingOffsets::Latest => high,
                });
            if let Some(ends) = limit.as_mut() {
                ends.insert(p, high);
            }
        }
        let interval = match self.job.trigger {
            Trigger::ProcessingTime(d) => Some(d),
            Trigger::AvailableNow => None,
        };
        let mut replay = next_plan.is_some();
        // The partitions' ends when the batch was planned (lag), and the previous batch's start
        // (input rate).
        let mut latest: BTreeMap<i32, i64> = BTreeMap::new();
        let mut last_tick: Option<Instant> = None;
        loop {
            let tick = Instant::now();
            let plan = match next_plan.take() {
                Some(plan) => plan,
                None => {
                    latest.clear();
                    let mut available = BTreeMap::new();
                    for &p in &partitions {
                        let high = match &limit {
                            Some(l) => l.get(&p).copied().unwrap_or(0),
                            None => self.blocking_source(move |s| s.watermarks(p)).await?.1,
                        };
                        let start = starts.get(&p).copied().unwrap_or(0);
                        latest.insert(p, high);
                        available.insert(p, (high - start).max(0));
                    }
                    let budget =
                        i64::try_from(self.job.source.max_records_per_trigger).unwrap_or(i64::MAX);
                    let take = split_budget(&available, budget);
                    let now = now_ms();
                    let mut wm = watermark.clone();
                    wm.track(partitions.iter().copied(), now);
                    let ranges: Vec<OffsetRange> = partitions
                        .iter()
                        .map(|&p| {
                            let start = starts.get(&p).copied().unwrap_or(0);
                            OffsetRange {
                                partition: p,
                                start,
                                end: start + take.get(&p).copied().unwrap_or(0),
                            }
                        })
                        .collect();
                    let records: i64 = ranges.iter().map(|r| r.end - r.start).sum();
                    if records == 0 {
                        // A no-data batch only when idle partitions would move the watermark.
                        let moved =
                            wm.clone().advance(&BTreeMap::new(), now) != watermark.current_us;
                        if limit.is_some() {
                            break;
                        }
                        if !moved {
                            if self.wait(interval, tick, &mut stop).await {
                                break;
                            }
                            continue;
                        }
                    }
                    let plan = BatchPlan {
                        batch_id: next_id,
                        topic: topic.clone(),
                        ranges,
                        watermark: wm,
                        now_ms: now,
                    };
                    self.checkpoint.plan(&plan).await?;
                    plan
                }
            };
            let commit = self.run_batch(&plan, &mut state, replay).await?;
            tracing::info!(
                batch_id = commit.batch_id, records = commit.records, events = commit.events,
                rows_written = commit.rows_written, state_events = commit.state_events,
                phases_ms = ?commit.phases_ms,
                watermark = ?commit.watermark.current_us.map(rfc3339), duration_ms = commit.duration_ms,
                "batch committed"
            );
            self.send_progress(&plan, &commit, &latest, tick, last_tick);
            last_tick = Some(tick);
            report.batches += 1;
            report.replayed += u64::from(replay);
            report.records += commit.records;
            report.offsets_skipped += commit.offsets_skipped;
            report.events += commit.events;
            for (k, v) in &commit.quarantined {
                *report.quarantined.entry(k.clone()).or_default() += v;
            }
            report.rows_written += commit.rows_written;
            report.state_events = commit.state_events;
            report.watermark = commit.watermark.current_us.map(rfc3339);
            replay = false;
            starts.extend(plan.ends());
            watermark = commit.watermark;
            next_id = plan.batch_id + 1;
            if self.wait(interval, tick, &mut stop).await {
                break;
            }
        }
        report.watermark = watermark.current_us.map(rfc3339);
        Ok(report)
    }

    /// Sends the progress of a committed batch, as Spark's `StreamingQueryProgress`: the input
    /// rate counts from the previous batch's start (or this one's, for the first), the process
    /// rate over this batch's wall time.
    fn send_progress(
        &self,
        plan: &BatchPlan,
        commit: &BatchCommit,
        latest: &BTreeMap<i32, i64>,
        tick: Instant,
        last_tick: Option<Instant>,
    ) {
        let Some(sender) = &self.progress else {
            return;
        };
        #[allow(clippy::cast_precision_loss)]
        let per_second = |rows: i64, seconds: f64| {
            if seconds > 0.0 {
                rows as f64 / seconds
            } else {
                0.0
            }
        };
        let since = last_tick.unwrap_or(tick).elapsed().as_secs_f64();
        let partitions = plan
            .ranges
            .iter()
            .map(|r| {
                let end_of_partition = latest
                    .get(&r.partition)
                    .copied()
                    .unwrap_or(r.end)
                    .max(r.end);
                PartitionProgress {
                    partition: r.partition,
                    start_offset: r.start,
                    end_offset: r.end,
                    latest_offset: end_of_partition,
                    lag: end_of_partition - r.end,
                }
            })
            .collect();
        let progress = StreamProgress {
            batch_id: commit.batch_id,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            topic: plan.topic.clone(),
            input_rows: commit.records,
            input_rows_per_second: per_second(commit.records, since),
            processed_rows_per_second: per_second(
                commit.records,
                Duration::from_millis(commit.duration_ms).as_secs_f64(),
            ),
            duration_ms: commit.duration_ms,
            phases_ms: commit.phases_ms.clone(),
            events: commit.events,
            quarantined: commit.quarantined.values().sum(),
            rows_written: commit.rows_written,
            state_events: commit.state_events,
            watermark: commit.watermark.current_us.map(rfc3339),
            partitions,
        };
        let _ = sender.send(progress);
    }

    /// Waits for the next trigger; true when `stop` resolved first.
    async fn wait(
        &self,
        interval: Option<Duration>,
        since: Instant,
        stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let left = interval.map_or(Duration::ZERO, |i| i.saturating_sub(since.elapsed()));
        tokio::select! {
            biased;
            () = stop.as_mut() => true,
            () = tokio::time::sleep(left) => false,
        }
    }

    async fn blocking_source<T: Send + 'static>(
        &self,
        f: impl FnOnce(&KafkaSource) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // librdkafka calls block; the consumer is used from one task at a time.
        tokio::task::block_in_place(|| f(&self.source))
    }

    async fn load_state(&self, batch_id: Option<u64>) -> Result<Vec<RecordBatch>> {
        let Some(id) = batch_id else {
            return Ok(Vec::new());
        };
        match self.checkpoint.load_state(id).await? {
            Some(bytes) => sink::from_parquet(
                &format!("{}/state/{id}.parquet", self.checkpoint.url()),
                bytes,
            ),
            None => Err(Error::Checkpoint {
                path: format!("{}/state/{id}.parquet", self.checkpoint.url()),
                message: "missing: the state of the last committed batch is needed to resume"
                    .into(),
            }),
        }
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
        let spec = ScanSpec {
            source: ScanSource {
                brokers: self.job.source.brokers.clone(),
                topic: plan.topic.clone(),
                group_id: self.job.source.group_id.clone(),
                options: self.job.source.options.clone(),
                watermark: plan.watermark.clone(),
            },
            ranges: plan.ranges.clone(),
        };
        let context = "the Kafka scan on the executors";
        let batches = remote
            .read_table(Arc::new(KafkaBatchTable::new(spec)))
            .map_err(|e| query_error(id, context, e))?
            .collect()
            .await
            .map_err(|e| query_error(id, context, e))?;
        let mut messages = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
        for b in &batches {
            messages
                .extend(scan::from_scan_batch(b).map_err(|e| query_error(id, context, e.into()))?);
        }
        Ok(messages)
    }

    /// Runs one planned batch and commits it; `state` is the state before and becomes the
    /// state after.
    async fn run_batch(
        &self,
        plan: &BatchPlan,
        state: &mut Vec<RecordBatch>,
        replay: bool,
    ) -> Result<BatchCommit> {
        let started = Instant::now();
        let id = plan.batch_id;
        let ranges = plan.ranges.clone();
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
        let messages: Vec<Message> = match &self.reader {
            Reader::Local => {
                let records =
                    tokio::task::block_in_place(|| self.source.read(&ranges, READ_TIMEOUT))?;
                lap("read", &mut phases);
                let parsed = records
                    .iter()
                    .map(|r| scan::classify(r, &plan.watermark))
                    .collect();
                lap("parse", &mut phases);
                parsed
            }
            Reader::Cluster(remote) => {
                let parsed = self.scan_on_executors(remote, plan).await?;
                lap("scan", &mut phases);
                parsed
            }
        };
        // Offsets of the plan with no message (removed by retention or compaction, or
        // transaction markers): counted and logged, never silent. More messages than offsets
        // means a message was delivered twice, which would count it twice: the batch fails.
        let offsets_skipped = plan.records() - i64::try_from(messages.len()).unwrap_or(i64::MAX);
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
        for m in messages {
            match m {
                Message::Valid(origin, e) => {
                    let high = delivered.entry(origin.partition).or_insert(e.event_time_us);
                    *high = (*high).max(e.event_time_us);
                    events.push((origin, e));
                }
                Message::Rejected(r) => rejected.push(r),
            }
        }
        let mut watermark = plan.watermark.clone();
        let before = watermark.current_us;
        let after = watermark.advance(&delivered, plan.now_ms);
        let new_events =
            event::to_batch(&events).map_err(|e| query_error(id, "events", e.into()))?;
        let mut all = state.clone();
        if new_events.num_rows() > 0 {
            all.push(new_events);
        }
        // Windows the watermark closed in this batch.
        let mut emitted = Vec::new();
        if let Some(after) = after {
            let table = MemTable::try_new(EVENT_SCHEMA.clone(), vec![all.clone()])
                .map_err(|e| query_error(id, "events table", e))?;
            let _ = self.ctx.deregister_table("events");
            self.ctx
                .register_table("events", Arc::new(table))
                .map_err(|e| query_error(id, "events table", e))?;
            let df = self
                .ctx
                .sql(&self.job.sql.text)
                .await
                .map_err(|e| Error::Query {
                    batch_id: id,
                    source: self.job.sql.error(e),
                })?;
            let end = col("window_end");
            let ends_now = end.clone().lt_eq(ts_lit(after));
            let closed = match before {
                Some(b) => end.gt(ts_lit(b)).and(ends_now),
                None => ends_now,
            };
            emitted = df
                .filter(closed)
                .map_err(|e| query_error(id, "emit filter", e))?
                .collect()
                .await
                .map_err(|e| Error::Query {
                    batch_id: id,
                    source: self.job.sql.error(e),
                })?;
        }
        lap("query", &mut phases);
        let rows_written: u64 = emitted.iter().map(|b| b.num_rows() as u64).sum();
        let files =
            sink::write_partitioned(&self.output, id, &self.job.partition_by, &emitted).await?;
        if !rejected.is_empty() {
            let q = event::quarantine_batch(&plan.topic, &rejected)
                .map_err(|e| query_error(id, "quarantine", e.into()))?;
            self.output
                .put(
                    &format!("_quarantine/{}", sink::file_name(id)),
                    sink::to_parquet(&q.schema(), &[q])?,
                )
                .await?;
        }
        if !replay
            && std::env::var(CRASH_AFTER_OUTPUT)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                == Some(id)
        {
            tracing::error!(
                batch_id = id,
                "{CRASH_AFTER_OUTPUT}: aborting after the output, before the commit"
            );
            std::process::abort();
        }
        // The batch's windows become visible to readers of the sink log at once.
        sink::log_batch(&self.output, id, files).await?;
        lap("write", &mut phases);
        let kept =
            retain(&all, &self.window, after).map_err(|e| query_error(id, "state", e.into()))?;
        let state_events: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
        self.checkpoint
            .save_state(id, sink::to_parquet(&EVENT_SCHEMA, &kept)?)
            .await?;
        lap("state", &mut phases);
        let mut quarantined = BTreeMap::new();
        for r in &rejected {
            *quarantined.entry(r.reason.to_string()).or_insert(0u64) += 1;
        }
        let commit = BatchCommit {
            batch_id: id,
            watermark,
            records: i64::try_from(records).unwrap_or(i64::MAX),
            offsets_skipped,
            events: events.len() as u64,
            quarantined,
            rows_written,
            state_events,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            phases_ms: phases,
        };
        self.checkpoint.commit(&commit).await?;
        *state = kept;
        if let Err(e) = tokio::task::block_in_place(|| self.source.commit(&plan.ends())) {
            tracing::warn!(error = %e, "cannot commit offsets to the consumer group (lag tools will lag)");
        }
        Ok(commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;

    #[test]
    fn budget_is_shared_then_filled() {
        let avail: BTreeMap<i32, i64> = [(0, 100), (1, 5), (2, 0)].into();
        assert_eq!(split_budget(&avail, 30), [(0, 25), (1, 5), (2, 0)].into());
        assert_eq!(
            split_budget(&avail, 1000),
            [(0, 100), (1, 5), (2, 0)].into()
        );
        assert_eq!(split_budget(&avail, 0), [(0, 0), (1, 0), (2, 0)].into());
    }

    #[test]
    fn the_state_keeps_events_of_open_windows_only() {
        const MIN: i64 = 60_000_000;
        let spec = WindowSpec::new(60 * MIN, 15 * MIN).expect("spec");
        let e = |t: i64| {
            (
                Origin {
                    partition: 0,
                    offset: t,
                },
                event::Event {
                    event_time_us: t * MIN,
                    store_id: None,
                    product_id: "A".into(),
                    category: None,
                    transaction_type: "SALE",
                    quantity: 1,
                    unit_price: 1,
                },
            )
        };
        let batch = event::to_batch(&[e(0), e(44), e(45), e(100)]).expect("batch");
        // Watermark 105 min: the last window of t=44 is [30, 90) → closed; t=45's is [45, 105)
        // → closed at 105; t=100's is [90, 150) → open. Only events with last end > 105 stay.
        let kept = retain(std::slice::from_ref(&batch), &spec, Some(105 * MIN)).expect("retain");
        let times: Vec<i64> = kept
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .map(|a| a.values().to_vec())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(times, [100 * MIN]);
        for t in [0, 44, 45, 100] {
            assert_eq!(
                spec.last_end(t * MIN) > 105 * MIN,
                times.contains(&(t * MIN)),
                "t={t}"
            );
        }
        assert_eq!(retain(&[batch], &spec, None).expect("all")[0].num_rows(), 4);
    }
}
