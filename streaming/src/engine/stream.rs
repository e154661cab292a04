//! The stream: its constructors (embedded, or with its scans on a cluster) and the trigger
//! loop that plans batches, runs them and waits for the next trigger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::prelude::{SessionContext, lit};
use ember_core::api::{BatchCounts, StreamProgress};
use ember_core::error::Classify;
use ember_core::session::SessionBuilder;
use ember_core::storage::Dir;
use ember_core::udf::WindowSpec;

use crate::checkpoint::{BatchPlan, Checkpoint, OffsetRange, Resume};
use crate::error::{Error, Result};
use crate::kafka::KafkaSource;
use crate::lookup::Lookups;
use crate::manifest::{KafkaTopic, Source, StartingOffsets, StreamJob, Trigger};
use crate::spool::Spool;
use crate::watermark::Watermark;

use super::rules::split_budget;

/// What a run of a stream did (this process only).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamReport {
    /// The job.
    pub job: String,
    /// Batches committed by this run.
    pub batches: u64,
    /// Of those, batches run again from a plan a crashed run left.
    pub replayed: u64,
    /// What the run's batches read, rejected and wrote, in all (flattened in JSON; the state
    /// is the one after the last batch).
    #[serde(flatten)]
    pub counts: BatchCounts,
    /// The watermark at the end, RFC 3339; none before the first event.
    pub watermark: Option<String>,
    /// The checkpoint folder.
    pub checkpoint: String,
    /// The output folders, in declared order.
    pub outputs: Vec<String>,
    /// Wall time per phase of a batch, ms, summed over the run's batches (the phases of
    /// [`crate::checkpoint::BatchCommit::phases_ms`]: `query` is the window stage).
    #[serde(default)]
    pub phases_ms: BTreeMap<String, u64>,
}

/// Where a batch's messages are read and parsed.
pub(super) enum Reader {
    /// In this process, by the stream's consumer, which keeps its position between batches.
    Local,
    /// By Ballista tasks on the executors, one per partition range ([`crate::scan`]), through
    /// this session on the scheduler.
    Cluster(SessionContext),
}

/// What the stream reads records from: a Kafka consumer, or a folder of files.
pub(super) enum Input {
    /// The consumer of the stream's topic (which keeps its position between batches).
    Kafka(KafkaSource),
    /// The watched folder of a `files` source.
    Files(Spool),
}

/// Where one output of the stream goes, and its query's window (`None`: stateless), at the
/// index of its declaration in `job.outputs`.
pub(super) struct Sink {
    pub(super) dir: Dir,
    pub(super) window: Option<WindowSpec>,
    /// The schema of its partial-aggregate state rows ([`crate::partial`]); `None` when it
    /// keeps its windows' events, or is stateless.
    pub(super) partial: Option<SchemaRef>,
}

/// A streaming job ready to run.
pub struct Stream {
    pub(super) job: StreamJob,
    pub(super) ctx: SessionContext,
    pub(super) reader: Reader,
    pub(super) sinks: Vec<Sink>,
    pub(super) lookups: Lookups,
    pub(super) input: Input,
    pub(super) checkpoint: Checkpoint,
    pub(super) progress: Option<tokio::sync::mpsc::UnboundedSender<StreamProgress>>,
    /// The stream's id (the checkpoint's `metadata`), known once [`Stream::run`] started.
    pub(super) stream_id: String,
    /// The processing time of the batch being run, ms since the epoch (its plan's `now_ms`):
    /// what `now()` gives the batch's queries ([`Stream::batch_state`]).
    pub(super) batch_now_ms: std::sync::atomic::AtomicI64,
    /// How long failing micro-batches are run again from the checkpoint before the stream
    /// fails ([`Stream::retry_failed_batches_for`]); `None`: the first failure ends it.
    pub(super) retry_for: Option<Duration>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("job", &self.job.name)
            .finish_non_exhaustive()
    }
}

/// The pause between a failed micro-batch and its next attempt.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

pub(super) fn ts_lit(us: i64) -> datafusion::logical_expr::Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(us), None))
}

pub(super) fn query_error(
    batch_id: u64,
    context: &str,
    e: datafusion::error::DataFusionError,
) -> Error {
    Error::Query {
        batch_id,
        source: ember_core::Error::datafusion(context.to_string(), e),
    }
}

impl Stream {
    /// The session recipe of a stream's driver: `session`'s codecs and storage, 2 partitions,
    /// no memory limit (the window query runs in this process over the batch's events and the
    /// state, which the state's own bound keeps small).
    fn driver_session(session: &SessionBuilder) -> SessionBuilder {
        session
            .clone()
            .with_parallelism(2)
            .with_runtime(ember_core::runtime::RuntimeOptions {
                memory_limit: Some(0),
                ..session.runtime().clone()
            })
    }

    /// Prepares `job` with sessions made by `session` (whose runtime gives the storage): the
    /// lookup tables loaded, each output's window shape from its SQL, the Kafka consumer, the
    /// checkpoint and output folders.
    ///
    /// # Errors
    /// A lookup that cannot be read, the SQL's errors (file, line, column), storage that cannot
    /// be opened, or a consumer librdkafka refuses.
    pub async fn new(job: StreamJob, session: &SessionBuilder) -> Result<Self> {
        let ctx = Self::driver_session(session).local()?;
        for lookup in &job.lookups {
            if let Some(key) = &lookup.key
                && job.schema.events_schema().index_of(key).is_err()
            {
                return Err(Error::Lookup {
                    name: lookup.name.clone(),
                    path: lookup.path.clone(),
                    message: format!("key `{key}` is not a field of the events ([source.schema])"),
                });
            }
        }
        let mut lookups = Lookups::new(&job.lookups);
        lookups.refresh(&ctx).await?;
        let registry = Arc::clone(&ctx.runtime_env().object_store_registry);
        let mut sinks = Vec::with_capacity(job.outputs.len());
        for output in &job.outputs {
            let window = crate::window_query::analyze(
                &ctx,
                &output.sql,
                &output.partition_by,
                job.schema.events_schema(),
            )
            .await?;
            let (window, partial) = match window {
                None => (None, None),
                Some(mut w) => {
                    if output.state == crate::manifest::StateMode::Events {
                        w.state = Err("state = \"events\"".into());
                    }
                    match &w.state {
                        Ok(_) => tracing::info!(
                            output = %output.name,
                            "state: partial aggregates per open (window, key)"
                        ),
                        Err(why) => tracing::info!(
                            output = %output.name,
                            "state: the events of open windows ({why})"
                        ),
                    }
                    (Some(w.spec), w.state.ok())
                }
            };
            sinks.push(Sink {
                dir: Dir::open(&output.path, registry.as_ref())?,
                window,
                partial,
            });
        }
        let input = match &job.source {
            Source::Kafka(k) => Input::Kafka(KafkaSource::new(
                &k.brokers,
                &k.topic,
                &k.group_id,
                &k.options,
            )?),
            Source::Files(f) => Input::Files(Spool::open(f, registry.as_ref())?),
        };
        let checkpoint = Checkpoint::new(Dir::open(&job.checkpoint, registry.as_ref())?);
        Ok(Self {
            job,
            ctx,
            reader: Reader::Local,
            sinks,
            lookups,
            input,
            checkpoint,
            progress: None,
            stream_id: String::new(),
            batch_now_ms: std::sync::atomic::AtomicI64::new(0),
            retry_for: None,
        })
    }

    /// Like [`Stream::new`], but each batch's Kafka ranges are read and parsed by tasks on the
    /// executors of the Ballista scheduler at `scheduler_url` (`df://HOST:PORT`), one task per
    /// partition range (a `files` source's files are read by this process, and the merges of
    /// partial aggregates run on the executors); this process (the driver, as in Spark's
    /// client deploy mode) plans the batches, runs the windows over the parsed events and the
    /// state, and commits. `session`'s
    /// codecs must know the Kafka scan ([`crate::scan::KafkaScanNodes`]), as the scheduler's and
    /// executors' do.
    ///
    /// # Errors
    /// As [`Stream::new`], a scheduler that cannot be reached, and codecs without the scan.
    pub async fn on_cluster(
        job: StreamJob,
        session: &SessionBuilder,
        scheduler_url: &str,
    ) -> Result<Self> {
        if !session
            .codecs()
            .knows(ember_core::codec::CodecTag::KafkaScan)
        {
            return Err(ember_core::Error::InvalidJob {
                path: job.manifest_path.clone(),
                message: "the driver's codecs do not know the Kafka scan (a build mistake)".into(),
            }
            .into());
        }
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
        // No round-robin repartition above the scan: Ballista keeps it inside the scan's stage,
        // so every task of the stage would run every range's read (each message read twice).
        // Planned without file statistics: the scheduler plans the merge of the state shards
        // each micro-batch, files read once, whose statistics no plan of these jobs (a Kafka
        // read, grouped merges, no join) uses; collecting them read every shard's footer.
        let remote = Self::driver_session(session)
            .with_option(
                "datafusion.optimizer.enable_round_robin_repartition",
                "false",
            )
            .with_option("datafusion.execution.collect_statistics", "false")
            .remote(scheduler_url)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut stream = Self::new(job, session).await?;
        stream.reader = Reader::Cluster(remote);
        Ok(stream)
    }

    /// The window shape found in each output's SQL, in declared order; `None` for a
    /// stateless query.
    pub fn windows(&self) -> Vec<Option<WindowSpec>> {
        self.sinks.iter().map(|s| s.window).collect()
    }

    /// Sends each committed batch's progress (offsets, lag, rates, watermark) to `sender`,
    /// for the scheduler's streaming page. A closed receiver is ignored.
    pub fn report_progress(&mut self, sender: tokio::sync::mpsc::UnboundedSender<StreamProgress>) {
        self.progress = Some(sender);
    }

    /// Runs the stream until its trigger says stop (available-now: the topic is drained) or
    /// `stop` resolves (between batches), holding the checkpoint's lease.
    ///
    /// # Errors
    /// `ember_core::Error::Locked` when another driver runs this checkpoint; the first error of
    /// a batch: what was committed before stays committed, and a restart runs the failed batch
    /// again.
    pub async fn run(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<StreamReport> {
        // One driver per checkpoint: the lease is held until this run ends.
        self.stream_id = self.checkpoint.stream_id().await?;
        let lease = self
            .checkpoint
            .lease(&self.job.name, &self.stream_id)
            .await?;
        let kafka = self.job.kafka().cloned();
        tokio::pin!(stop);
        let mut report = self.new_report();
        // Since when batches have failed without one committing in between.
        let mut failing_since: Option<Instant> = None;
        let result = loop {
            let committed = report.batches;
            let attempt = match &kafka {
                Some(kafka) => self.run_leased(kafka, &mut stop, &mut report).await,
                None => self.run_files(&mut stop, &mut report).await,
            };
            let Err(error) = attempt else {
                break Ok(report);
            };
            if report.batches > committed {
                failing_since = None;
            }
            let since = *failing_since.get_or_insert_with(Instant::now);
            match self.retry_for {
                Some(limit) if error.retryable() && since.elapsed() < limit => {
                    tracing::warn!(
                        error = %error,
                        failing_for_ms = since.elapsed().as_millis() as u64,
                        "a micro-batch failed; running it again from the checkpoint"
                    );
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                _ => break Err(error),
            }
        };
        if let Some(kafka) = &kafka {
            // The scan's consumers in this process (embedded mode's tasks); executors close
            // theirs when idle (crate::consumers).
            crate::consumers::close_stream(&kafka.brokers, &kafka.topic, &kafka.group_id);
        }
        lease.release().await;
        result
    }

    /// Runs a micro-batch that failed for an external reason ([`Classify::retryable`]: a
    /// scheduler restarting, executors lost, storage or Kafka unreachable) again from the
    /// checkpoint, as a restarted driver would (the same plan, so exactly once holds), every
    /// second for up to `limit` without a batch committing; then the stream fails with the
    /// last error. A user error (the SQL, the data) still ends the stream at once. Without
    /// this, the first failure ends the stream (Spark's behaviour: a restart policy restarts
    /// the query).
    pub fn retry_failed_batches_for(&mut self, limit: Duration) {
        self.retry_for = Some(limit);
    }

    /// A session state for one of the batch's queries in this process, whose `now()` /
    /// `current_timestamp()` / `current_date()` is the batch's planned processing time, as
    /// Spark's `current_timestamp()` in a micro-batch is its batch timestamp: a replayed batch
    /// sees the time its first attempt saw, so it writes the same rows.
    pub(super) fn batch_state(&self) -> datafusion::execution::SessionState {
        let mut state = self.ctx.state();
        let ms = self.batch_now_ms.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(at) = chrono::DateTime::from_timestamp_millis(ms) {
            state.execution_props_mut().query_execution_start_time = Some(at);
        }
        state
    }

    /// An empty report of this stream's run.
    pub(super) fn new_report(&self) -> StreamReport {
        StreamReport {
            job: self.job.name.clone(),
            checkpoint: self.checkpoint.url().to_string(),
            outputs: self.sinks.iter().map(|s| s.dir.url().to_string()).collect(),
            ..StreamReport::default()
        }
    }

    async fn run_leased(
        &mut self,
        kafka: &KafkaTopic,
        stop: impl std::future::Future<Output = ()>,
        report: &mut StreamReport,
    ) -> Result<()> {
        tokio::pin!(stop);
        // Poll it once now, so that signal handlers are installed before the first batch.
        if self
            .wait(Some(Duration::ZERO), Instant::now(), &mut stop)
            .await
        {
            return Ok(());
        }
        let topic = kafka.topic.clone();
        let mut partitions = self.blocking_source(|s| s.partitions()).await?;
        let mut listed_at = Instant::now();
        // Where to go on: the plan to run again, the watermark, the state, the next batch id and
        // the next start offset per partition (the ends of the last plan).
        let (mut next_plan, mut watermark, mut state, mut next_id, mut starts) =
            match self.checkpoint.resume().await? {
                Resume::Fresh => (
                    None,
                    Watermark::new(self.job.allowed_lateness_us, self.job.idle_timeout_ms),
                    self.empty_state(),
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
        // Settings changed since the checkpoint take effect from the next planned batch (a
        // replayed plan keeps its own, so that it decides as its first attempt did).
        for change in watermark.reconfigure(self.job.allowed_lateness_us, self.job.idle_timeout_ms)
        {
            tracing::warn!(
                next_batch = next_id,
                "{change}: takes effect from this batch on"
            );
        }
        // Partitions without a start begin at the starting offsets; available-now stops at the
        // ends seen now. One offsets request per partition answers both.
        let available_now = self.job.trigger == Trigger::AvailableNow;
        let mut limit: Option<BTreeMap<i32, i64>> = available_now.then(BTreeMap::new);
        // Offsets jumped over (on_offsets_lost), counted by the next plan.
        let mut lost: i64 = 0;
        for &p in &partitions {
            let marks = self.blocking_source(move |s| s.watermarks(p)).await?;
            match starts.get(&p) {
                // A replayed plan reads its own ranges; the next plans are checked.
                Some(&start) if next_plan.is_none() => {
                    self.check_start(&topic, p, start, marks, &mut starts, &mut lost)?;
                }
                Some(_) => {}
                None => {
                    starts.insert(
                        p,
                        match kafka.starting_offsets {
                            StartingOffsets::Earliest => marks.0,
                            StartingOffsets::Latest => marks.1,
                        },
                    );
                }
            }
            if let Some(ends) = limit.as_mut() {
                ends.insert(p, marks.1);
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
                    if limit.is_none() && listed_at.elapsed() >= kafka.partition_discovery {
                        lost += self
                            .discover_partitions(&topic, &mut partitions, &mut starts, &latest)
                            .await?;
                        listed_at = Instant::now();
                    }
                    latest.clear();
                    let mut available = BTreeMap::new();
                    for &p in &partitions {
                        let high = match &limit {
                            Some(l) => l.get(&p).copied().unwrap_or(0),
                            None => {
                                let marks = self.blocking_source(move |s| s.watermarks(p)).await?;
                                let start = starts.get(&p).copied().unwrap_or(0);
                                self.check_start(&topic, p, start, marks, &mut starts, &mut lost)?;
                                marks.1
                            }
                        };
                        let start = starts.get(&p).copied().unwrap_or(0);
                        latest.insert(p, high);
                        available.insert(p, (high - start).max(0));
                    }
                    let budget = i64::try_from(kafka.max_records_per_trigger).unwrap_or(i64::MAX);
                    let take = split_budget(&available, budget);
                    let now = now_ms();
                    let mut wm = watermark.clone();
                    // Every new plan carries the job's settings (after a replayed plan, too).
                    wm.reconfigure(self.job.allowed_lateness_us, self.job.idle_timeout_ms);
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
                    if records == 0 && lost == 0 {
                        // A no-data batch only when idle partitions would move the watermark
                        // (or to commit offsets jumped over).
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
                        offsets_lost: std::mem::take(&mut lost),
                        files: Vec::new(),
                    };
                    self.checkpoint.plan(&plan).await?;
                    super::failpoint::crash_point(
                        super::failpoint::Phase::Offsets,
                        plan.batch_id,
                        false,
                    );
                    plan
                }
            };
            let commit = self
                .run_and_record(&plan, &mut state, replay, report, &latest, tick, last_tick)
                .await?;
            last_tick = Some(tick);
            replay = false;
            starts.extend(plan.ends());
            watermark = commit.watermark;
            next_id = plan.batch_id + 1;
            if self.wait(interval, tick, &mut stop).await {
                break;
            }
        }
        report.watermark = watermark.current_us.map(rfc3339);
        Ok(())
    }

    /// Checks that partition `p`'s next offset `start` is still in the topic (`marks`: its
    /// low and high offsets); when it is not, goes on as `on_offsets_lost` says (moving
    /// `starts`, adding the offsets jumped over to `lost`), or fails.
    ///
    /// # Errors
    /// [`Error::Kafka`] naming the topic, partition and offsets, with `on_offsets_lost = "fail"`.
    fn check_start(
        &self,
        topic: &str,
        p: i32,
        start: i64,
        marks: (i64, i64),
        starts: &mut BTreeMap<i32, i64>,
        lost: &mut i64,
    ) -> Result<()> {
        match super::rules::offsets_lost(start, marks, self.on_offsets_lost()) {
            Ok(None) => Ok(()),
            Ok(Some((new_start, skipped))) => {
                tracing::warn!(
                    topic,
                    partition = p,
                    from = start,
                    to = new_start,
                    offsets_lost = skipped,
                    "the checkpoint's next offset is no longer in the topic: going on as on_offsets_lost says"
                );
                starts.insert(p, new_start);
                *lost += skipped;
                Ok(())
            }
            Err(what) => Err(Error::Kafka {
                context: format!("topic {topic} partition {p}"),
                message: format!(
                    "{what}; set [source] on_offsets_lost = \"earliest\" or \"latest\" to go on"
                ),
            }),
        }
    }

    /// Lists the topic's partitions again (`partition_discovery`): a new one is read from its
    /// earliest offset (as Spark's Kafka source does); one that is gone (the topic was deleted
    /// and created again with fewer partitions) is lost offsets, handled as `on_offsets_lost`
    /// says. Returns the offsets lost with gone partitions: those between a partition's next
    /// offset and its end when the last batch was planned (`latest`), the unread offsets known.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the brokers do not answer, or a partition is gone and
    /// `on_offsets_lost = "fail"`.
    async fn discover_partitions(
        &self,
        topic: &str,
        partitions: &mut Vec<i32>,
        starts: &mut BTreeMap<i32, i64>,
        latest: &BTreeMap<i32, i64>,
    ) -> Result<i64> {
        let now = self.blocking_source(|s| s.partitions()).await?;
        if now == *partitions {
            return Ok(0);
        }
        let mut lost = 0;
        for &p in now.iter().filter(|p| !partitions.contains(p)) {
            let (low, high) = self.blocking_source(move |s| s.watermarks(p)).await?;
            tracing::info!(
                topic,
                partition = p,
                from = low,
                messages = high - low,
                "new partition: read from its earliest offset"
            );
            starts.insert(p, low);
        }
        for &p in partitions.iter().filter(|p| !now.contains(p)) {
            if self.on_offsets_lost() == super::rules::OnOffsetsLost::Fail {
                return Err(Error::Kafka {
                    context: format!("topic {topic} partition {p}"),
                    message: format!(
                        "the partition is gone (the topic has partitions {now:?}; was it deleted and created again?); set [source] on_offsets_lost = \"earliest\" or \"latest\" to go on without it"
                    ),
                });
            }
            let start = starts.remove(&p).unwrap_or(0);
            let unread = latest.get(&p).map_or(0, |&high| (high - start).max(0));
            tracing::warn!(
                topic,
                partition = p,
                offsets_lost = unread,
                "the partition is gone: going on without it as on_offsets_lost says"
            );
            lost += unread;
        }
        *partitions = now;
        Ok(lost)
    }

    fn on_offsets_lost(&self) -> super::rules::OnOffsetsLost {
        self.job
            .kafka()
            .map_or(super::rules::OnOffsetsLost::Fail, |k| k.on_offsets_lost)
    }

    pub(super) async fn wait(
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
        let Input::Kafka(consumer) = &self.input else {
            return Err(Error::Kafka {
                context: self.job.source_label(),
                message: "a files source has no Kafka consumer (a bug)".into(),
            });
        };
        // librdkafka calls block; the consumer is used from one task at a time.
        tokio::task::block_in_place(|| f(consumer))
    }
}
