//! Streaming from the command line: `ember run` on a streaming job (a manifest with
//! `[stream]`), and `ember produce`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use ember_core::config::StorageSettings;
use ember_core::params::Params;
use ember_core::storage::EmberObjectStoreRegistry;
use ember_streaming::engine::Stream;
use ember_streaming::produce::{EventSource, ProduceOptions, produce};

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
pub async fn run(args: RunArgs, storage: StorageSettings) -> Result<(), String> {
    drive(&args.job, &args.set, args.format, &storage, None).await
}

/// `ember submit` of a streaming job: this process is the stream's driver (Spark's client
/// deploy mode) and each micro-batch's Kafka scan runs as tasks on the scheduler's executors.
/// Runs until the trigger stops it or Ctrl-C/SIGTERM, like [`run`].
pub async fn submit(args: SubmitArgs, storage: StorageSettings) -> Result<(), String> {
    let address = args.common.scheduler.trim_start_matches("http://");
    let url = format!("df://{}", address.trim_end_matches('/'));
    drive(
        &args.job,
        &args.set,
        args.common.format,
        &storage,
        Some(&url),
    )
    .await
}

async fn drive(
    path: &std::path::Path,
    set: &[String],
    format: Format,
    storage: &StorageSettings,
    scheduler_url: Option<&str>,
) -> Result<(), String> {
    let settings = Params::parse_settings(set).map_err(|e| e.to_string())?;
    let job = ember_streaming::manifest::load(path, &settings).map_err(|e| e.to_string())?;
    let name = job.name.clone();
    let registry = Arc::new(EmberObjectStoreRegistry::new(storage));
    let mut stream = match scheduler_url {
        None => Stream::new(job, registry).await,
        Some(url) => Stream::on_cluster(job, registry, url).await,
    }
    .map_err(|e| format!("stream {name}: {e}"))?;
    if let Some(url) = scheduler_url {
        eprintln!("stream {name}: driver in this process, Kafka scans on the executors of {url}");
    }
    let report = stream
        .run(ember_scheduler::server::shutdown_signal())
        .await
        .map_err(|e| format!("stream {name} failed: {e}"))?;
    match format {
        Format::Table => {
            println!(
                "stream {} stopped after {} batches ({} replayed)\n  output       {}\n  checkpoint   {}\n  records read {}\n  events       {}\n  quarantined  {:?}\n  windows out  {}\n  watermark    {}\n  state        {} events",
                report.job,
                report.batches,
                report.replayed,
                report.output,
                report.checkpoint,
                report.records,
                report.events,
                report.quarantined,
                report.rows_written,
                report.watermark.as_deref().unwrap_or("none yet"),
                report.state_events
            );
        }
        Format::Json => print_json(&report)?,
    }
    Ok(())
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
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic")]
    pub csv: Option<PathBuf>,
    /// Generate this many synthetic events instead.
    #[arg(long, value_name = "N")]
    pub synthetic: Option<u64>,
    /// Seed of the synthetic events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
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

/// Produces events; the error is the one line to print.
pub async fn produce_command(args: ProduceArgs) -> Result<(), String> {
    let source = match (&args.csv, args.synthetic) {
        (Some(path), _) => EventSource::Csv(path.clone()),
        (None, Some(count)) => EventSource::Synthetic {
            count,
            seed: args.seed,
        },
        (None, None) => return Err("give --csv FILE or --synthetic N".into()),
    };
    if args.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        return Err("--rate must be a positive number of events per second".into());
    }
    let options = ProduceOptions {
        brokers: args.brokers.clone(),
        topic: args.topic.clone(),
        partitions: args.partitions,
        rate: args.rate,
        limit: args.limit,
        progress: args.format == Format::Table,
    };
    let produced = produce(&source, &options)
        .await
        .map_err(|e| e.to_string())?;
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
