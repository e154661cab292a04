//! Streaming from the command line: `ember run` on a streaming job (a manifest with
//! `[stream]`), and `ember produce`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use ember_core::api::{StreamProgress, StreamState, StreamUpdate};
use ember_core::codec::Codecs;
use ember_core::config::StorageSettings;
use ember_core::params::Params;
use ember_core::runtime::RuntimeOptions;
use ember_core::session::SessionBuilder;
use ember_streaming::engine::Stream;
use ember_streaming::produce::{EventSource, ProduceOptions, produce};

use ember_core::rest::Client;
use ember_core::security::SecuritySettings;

use crate::error::{Failure, Result};
use crate::format::{Format, print_json};
use crate::run::RunArgs;
use crate::submit::SubmitArgs;

/// Whether the job at `path` is a streaming job.
pub fn is_stream(path: &std::path::Path) -> bool {
    let file = ember_streaming::manifest::manifest_file(path);
    std::fs::read_to_string(file).is_ok_and(|t| ember_streaming::manifest::is_stream_manifest(&t))
}

/// Runs a streaming job embedded until its trigger stops it (available-now) or Ctrl-C/SIGTERM
/// (after the batch in flight commits).
pub async fn run(args: RunArgs, storage: StorageSettings, codecs: Codecs) -> Result<()> {
    let security = args.security()?;
    // A driver reports with the cluster secret, not with a user's token.
    let progress_to = match &args.report_to {
        Some(address) => Some(Client::new(
            "--report-to / EMBER_REPORT_TO",
            address,
            None,
            &security,
        )?),
        None => None,
    };
    let heartbeat = heartbeat(&args.heartbeat_interval)?;
    drive(
        &args.job,
        &args.set,
        args.format,
        &session(storage, codecs),
        &security,
        None,
        progress_to.map(|client| (client, heartbeat)),
    )
    .await
}

/// `ember submit` of a streaming job: this process is the stream's driver (Spark's client
/// deploy mode) and each micro-batch's Kafka scan runs as tasks on the scheduler's executors.
/// Runs until the trigger stops it or Ctrl-C/SIGTERM, like [`run`].
pub async fn submit(args: SubmitArgs, storage: StorageSettings, codecs: Codecs) -> Result<()> {
    let address = args.common.scheduler.trim_start_matches("http://");
    let url = format!("df://{}", address.trim_end_matches('/'));
    let security = args.common.security()?;
    // A driver reports with the cluster secret, not with a user's token.
    let client = Client::new(
        "--scheduler / EMBER_SCHEDULER",
        &args.common.scheduler,
        None,
        &security,
    )?;
    let heartbeat = heartbeat(&args.heartbeat_interval)?;
    let retry_for = ember_core::config::parse_duration(
        "--reconnect-timeout / EMBER_SUBMIT_RECONNECT_TIMEOUT",
        &args.reconnect_timeout,
    )?;
    drive(
        &args.job,
        &args.set,
        args.common.format,
        &session(storage, codecs).with_security(security.clone()),
        &security,
        Some((&url, retry_for)),
        Some((client, heartbeat)),
    )
    .await
}

/// The driver's heartbeat interval (`--heartbeat-interval`), at least 100 ms.
fn heartbeat(text: &str) -> Result<std::time::Duration> {
    let every = ember_core::config::parse_duration(
        "--heartbeat-interval / EMBER_STREAM_HEARTBEAT_INTERVAL",
        text,
    )?;
    Ok(every.max(std::time::Duration::from_millis(100)))
}

/// The session recipe of a stream's driver: Ember's codecs (with the Kafka scan) and storage.
fn session(storage: StorageSettings, codecs: Codecs) -> SessionBuilder {
    SessionBuilder::new(codecs).with_runtime(RuntimeOptions {
        storage,
        ..RuntimeOptions::default()
    })
}

async fn drive(
    path: &std::path::Path,
    set: &[String],
    format: Format,
    session: &SessionBuilder,
    security: &SecuritySettings,
    cluster: Option<(&str, std::time::Duration)>,
    progress_to: Option<(Client, std::time::Duration)>,
) -> Result<()> {
    let scheduler_url = cluster.map(|(url, _)| url);
    let settings = Params::parse_settings(set)?;
    let job = ember_streaming::manifest::load(path, &settings)?;
    for output in &job.outputs {
        security.paths.check("the stream's output", &output.path)?;
    }
    for lookup in &job.lookups {
        security
            .paths
            .check("the stream's lookup table", &lookup.path)?;
    }
    security
        .paths
        .check("the stream's checkpoint", &job.checkpoint)?;
    let name = job.name.clone();
    let output = job.primary().path.clone();
    let reads_here = job.kafka().is_none();
    let mut stream = match scheduler_url {
        None => Stream::new(job, session).await,
        Some(url) => Stream::on_cluster(job, session, url).await,
    }
    .map_err(|e| Failure::from(e).context(format!("stream {name}")))?;
    if let Some((_, retry_for)) = cluster {
        // A scheduler restarting fails the batch in flight: run it again from the checkpoint.
        stream.retry_failed_batches_for(retry_for);
    }
    if let Some(url) = scheduler_url {
        if reads_here {
            eprintln!(
                "stream {name}: driver in this process reads the folder's files, merges of window state on the executors of {url}"
            );
        } else {
            eprintln!(
                "stream {name}: driver in this process, Kafka scans on the executors of {url}"
            );
        }
    }
    let reporter = match progress_to {
        Some((client, heartbeat)) => {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            stream.report_progress(sender);
            Some(Reporter::start(client, &name, &output, receiver, heartbeat))
        }
        None => None,
    };
    let result = stream
        .run(ember_core::signal::shutdown())
        .await
        .map_err(|e| Failure::from(e).context(format!("stream {name} failed")));
    drop(stream);
    if let Some(reporter) = reporter {
        reporter
            .finish(result.as_ref().err().map(|f| f.message.as_str()))
            .await;
    }
    let report = result?;
    match format {
        Format::Table => {
            println!(
                "stream {} stopped after {} batches ({} replayed)\n  outputs      {}\n  checkpoint   {}\n  records read {}\n  events       {}\n  quarantined  {:?}\n  unmatched    {:?}\n  rows out     {:?}\n  watermark    {}\n  state        {} events, {} partial-aggregate groups, {} bytes",
                report.job,
                report.batches,
                report.replayed,
                report.outputs.join(", "),
                report.checkpoint,
                report.counts.records,
                report.counts.events,
                report.counts.quarantined,
                report.counts.unmatched,
                report.counts.rows_by_output,
                report.watermark.as_deref().unwrap_or("none yet"),
                report.counts.state_events,
                report.counts.state_groups,
                report.counts.state_bytes
            );
        }
        Format::Json => print_json(&report)?,
    }
    Ok(())
}

/// Sends a stream's state and each batch's progress to a scheduler (or `ember serve`), for
/// its Streaming page (`POST /api/v1/streams/{id}`): at start, after every micro-batch, and
/// every `heartbeat` in between (so that the scheduler can tell a silent driver, shown
/// `lost`, from a stream between batches). A scheduler that cannot be reached is logged once
/// and does not stop the stream; the reports resume when it is back.
struct Reporter {
    task: tokio::task::JoinHandle<()>,
    client: Arc<Client>,
    id: String,
    name: String,
    output: String,
}

impl Reporter {
    fn start(
        client: Client,
        name: &str,
        output: &str,
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<StreamProgress>,
        heartbeat: std::time::Duration,
    ) -> Self {
        let client = Arc::new(client);
        let id = uuid::Uuid::new_v4().to_string();
        let (task_client, task_id) = (Arc::clone(&client), id.clone());
        let (n, o) = (name.to_string(), output.to_string());
        let update = move |progress: Option<StreamProgress>| StreamUpdate {
            name: n.clone(),
            output: o.clone(),
            state: StreamState::Running,
            progress,
            error: None,
        };
        let task = tokio::spawn(async move {
            let path = format!("/streams/{task_id}");
            let mut failing = false;
            let mut send = async |body: StreamUpdate| match task_client.send(&path, &body).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot report the stream's progress");
                }
                Err(_) => {}
            };
            send(update(None)).await;
            let mut beat = tokio::time::interval(heartbeat);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            beat.tick().await;
            loop {
                tokio::select! {
                    progress = receiver.recv() => match progress {
                        Some(progress) => send(update(Some(progress))).await,
                        None => break,
                    },
                    _ = beat.tick() => send(update(None)).await,
                }
            }
        });
        Self {
            task,
            client,
            id,
            name: name.to_string(),
            output: output.to_string(),
        }
    }

    /// Waits (at most 10 s) for the batches' updates to go out, then reports the end.
    async fn finish(self, error: Option<&str>) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
        let end = StreamUpdate {
            name: self.name,
            output: self.output,
            state: if error.is_some() {
                StreamState::Failed
            } else {
                StreamState::Stopped
            },
            progress: None,
            error: error.map(str::to_string),
        };
        if let Err(e) = self
            .client
            .send(&format!("/streams/{}", self.id), &end)
            .await
        {
            tracing::warn!(error = %e, "cannot report the stream's end");
        }
    }
}

/// Arguments of `ember produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT…].
    #[arg(long, env = "EMBER_KAFKA_BROKERS", default_value = "localhost:9092")]
    pub brokers: String,
    /// The topic (created when missing).
    #[arg(long, default_value = "sales_events")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Replay this CSV (or .csv.gz) in the Online Retail layout.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["synthetic", "instacart"])]
    pub csv: Option<PathBuf>,
    /// Replay the Instacart order lines of this folder (orders.csv and
    /// order_products__prior.csv, or .csv.gz): one event per line, in event-time order.
    #[arg(long, value_name = "DIR", conflicts_with = "synthetic")]
    pub instacart: Option<PathBuf>,
    /// Generate this many synthetic events instead.
    #[arg(long, value_name = "N")]
    pub synthetic: Option<u64>,
    /// Write application log files into this folder instead of events into Kafka (seed 002's
    /// log generator, for `jobs/app_logs`): each file appears whole, renamed from a hidden
    /// name; --rate counts lines per second, --limit lines [default: until stopped].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["csv", "instacart", "synthetic"])]
    pub log_lines: Option<PathBuf>,
    /// Log lines per file with --log-lines.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "log_lines")]
    pub lines_per_file: u64,
    /// Seed of the synthetic events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time between one synthetic event and the next, with --synthetic (e.g. 10ms: with
    /// --rate 100, event time passes as fast as wall time, and an hour's window closes after an
    /// hour) [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub event_time_step: Option<String>,
    /// Events per second [default: as fast as possible].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl ProduceArgs {
    /// The events to write, with the arguments checked.
    ///
    /// # Errors
    /// A user error: no source, a CSV that is not a file, a rate that is not positive, an
    /// event time step without `--synthetic`, under 1 ms, or taking the events past year 9999.
    pub fn source(&self) -> Result<EventSource> {
        if self.event_time_step.is_some() && self.synthetic.is_none() {
            return Err(Failure::user(
                "--event-time-step spaces synthetic events: give it with --synthetic N",
            ));
        }
        let source = match (&self.csv, &self.instacart, self.synthetic) {
            (Some(path), _, _) if !path.is_file() => {
                return Err(Failure::user(format!(
                    "--csv {}: no such file",
                    path.display()
                )));
            }
            (Some(path), _, _) => EventSource::Csv(path.clone()),
            (None, Some(dir), _) if !dir.is_dir() => {
                return Err(Failure::user(format!(
                    "--instacart {}: no such folder",
                    dir.display()
                )));
            }
            (None, Some(dir), _) => EventSource::Instacart(dir.clone()),
            (None, None, Some(count)) => EventSource::Synthetic {
                count,
                seed: self.seed,
                step_ms: event_time_step(self.event_time_step.as_deref().unwrap_or("1s"), count)?,
            },
            (None, None, None) => {
                return Err(Failure::user(
                    "give --csv FILE, --instacart DIR, --synthetic N or --log-lines DIR",
                ));
            }
        };
        if self.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
            return Err(Failure::user(
                "--rate must be a positive number of events per second",
            ));
        }
        Ok(source)
    }
}

/// `--event-time-step` in ms: at least 1, and `count` events that far apart must stay within
/// the times synthetic events can carry ([`ember_streaming::produce::synthetic_fits`]).
fn event_time_step(text: &str, count: u64) -> Result<u64> {
    let step = ember_core::config::parse_duration("--event-time-step", text)?;
    let ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(Failure::user(format!(
            "--event-time-step must be at least 1ms, not `{text}`"
        )));
    }
    if !ember_streaming::produce::synthetic_fits(count, ms) {
        return Err(Failure::user(format!(
            "--synthetic {count} events {text} apart would go past 9999-12-31T23:59:59Z, \
             the last event time written: give fewer events or a shorter --event-time-step"
        )));
    }
    Ok(ms)
}

/// `ember produce --log-lines DIR`: writes log files.
fn produce_logs(args: &ProduceArgs, dir: &std::path::Path) -> Result<()> {
    if args.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        return Err(Failure::user(
            "--rate must be a positive number of lines per second",
        ));
    }
    if args.lines_per_file == 0 {
        return Err(Failure::user("--lines-per-file must be > 0"));
    }
    let options = ember_streaming::produce::logs::LogOptions {
        dir: dir.to_path_buf(),
        lines_per_file: args.lines_per_file,
        rate: args.rate,
        limit: args.limit.unwrap_or(u64::MAX),
        seed: args.seed,
    };
    let written =
        tokio::task::block_in_place(|| ember_streaming::produce::logs::write_logs(&options))?;
    match args.format {
        Format::Table => println!(
            "wrote {} log lines ({} lines with stack frames) in {} files into {} in {:.1} s",
            written.entries,
            written.lines,
            written.files,
            dir.display(),
            written.duration_ms as f64 / 1000.0
        ),
        Format::Json => print_json(&written)?,
    }
    Ok(())
}

/// Produces events.
///
/// # Errors
/// The arguments', the CSV's or the brokers', one line.
pub async fn produce_command(args: ProduceArgs) -> Result<()> {
    if let Some(dir) = &args.log_lines {
        return produce_logs(&args, dir);
    }
    let source = args.source()?;
    let options = ProduceOptions {
        brokers: args.brokers.clone(),
        topic: args.topic.clone(),
        partitions: args.partitions,
        rate: args.rate,
        limit: args.limit,
        progress: args.format == Format::Table,
    };
    let produced = produce(&source, &options).await?;
    match args.format {
        Format::Table => println!(
            "produced {} events to {} on {} in {:.1} s{}",
            produced.messages,
            args.topic,
            args.brokers,
            produced.duration_ms as f64 / 1000.0,
            if produced.created_topic {
                format!(" (created the topic with {} partitions)", args.partitions)
            } else {
                String::new()
            }
        ),
        Format::Json => print_json(&produced)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_time_step_is_read_in_ms_and_must_be_positive() {
        assert_eq!(event_time_step("10ms", 1000).expect("10ms"), 10);
        assert_eq!(event_time_step("1s", 1000).expect("1s"), 1000);
        for bad in ["0s", "500us", "soon"] {
            let e = event_time_step(bad, 1000).expect_err(bad).to_string();
            assert!(e.contains("--event-time-step"), "{bad}: {e}");
        }
        // A million events a thousand years apart would go past year 9999.
        let e = event_time_step("1000years", 1_000_000)
            .expect_err("too far")
            .to_string();
        assert!(e.contains("9999-12-31"), "{e}");
    }
}
