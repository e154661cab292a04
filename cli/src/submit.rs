//! `ember submit <job> --scheduler HOST:PORT [--set k=v]... [--wait]`, as `spark-submit`: the
//! job is resolved here (manifest, parameters, SQL files: errors show at once, with file and
//! line), local paths are made absolute, and the scheduler runs it. With `--wait`, a progress
//! bar per stage shows tasks done over total, then the run's counts; the exit code tells
//! whether the job succeeded.
//!
//! A streaming job is not handed over: this process becomes its driver (Spark's client deploy
//! mode, `spark-submit`'s default) and runs in the foreground, and each micro-batch's Kafka
//! scan runs as tasks on the executors (see `crate::stream::submit`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ember_core::api::{JobDetail, JobState, SubmitJob, Submitted};
use ember_core::error::Classify;
use ember_core::manifest::{Job, JobManifest};
use ember_core::params::Params;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use ember_core::rest::Client;

use crate::error::{Failure, Result};
use crate::format::{Format, print_json};

/// Arguments of `ember submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job folder (holding job.toml) or a manifest file.
    pub job: PathBuf,
    /// Override a job parameter declared in [params], as name=value (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Follow the job to its end: progress per stage, then the counts; exit 1 if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Streaming jobs: the driver reports to the scheduler at least this often, between
    /// micro-batches too (its heartbeat; a stream silent past the scheduler's
    /// --stream-timeout is shown lost).
    #[arg(
        long,
        env = "EMBER_STREAM_HEARTBEAT_INTERVAL",
        value_name = "DURATION",
        default_value = "5s"
    )]
    pub heartbeat_interval: String,
    /// With --wait: how long to keep asking a scheduler that stopped answering (one that
    /// restarts) before giving up; the job's final state is reported once it answers again.
    /// For a streaming job: how long its driver runs a micro-batch that failed for an
    /// external reason (a scheduler restarting) again from the checkpoint before the stream
    /// fails.
    #[arg(
        long,
        env = "EMBER_SUBMIT_RECONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub reconnect_timeout: String,
    /// `--scheduler`, `--format`, `--config` and the security flags, as for `ember jobs`.
    #[command(flatten)]
    pub common: crate::jobs::Common,
    /// Storage of a streaming job's driver (output and checkpoint); batch jobs use the
    /// scheduler's.
    #[command(flatten)]
    pub storage: ember_core::config::StorageArgs,
}

/// Makes a local relative path absolute (the scheduler runs elsewhere); URLs stay as they are.
fn absolute(path: &str) -> Result<String> {
    if path.is_empty() || path.contains("://") || path.starts_with('/') {
        return Ok(path.to_string());
    }
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .map_err(|source| {
            ember_core::Error::Io {
                path: path.into(),
                source,
            }
            .into()
        })
}

/// Loads and resolves the job, with absolute paths.
///
/// # Errors
/// The manifest's, parameters' and SQL files' errors, one line each.
pub fn resolve(job: &std::path::Path, set: &[String]) -> Result<Job> {
    let manifest = JobManifest::load(job)?;
    let mut params = manifest.params();
    let settings = Params::parse_settings(set)?;
    params.apply(&settings)?;
    let mut job = manifest.resolve(params)?;
    for input in &mut job.inputs {
        input.path = absolute(&input.path)?;
    }
    job.output.path = absolute(&job.output.path)?;
    Ok(job)
}

/// Runs `ember submit`.
///
/// # Errors
/// One line; with `--wait`, also when the job fails (with the job's error kind) or is
/// cancelled (a user's failure).
pub async fn run(args: SubmitArgs) -> Result<()> {
    let job = resolve(&args.job, &args.set)?;
    let client = args.common.client()?;
    let Submitted { id } = client
        .post("/jobs", &SubmitJob { job: job.clone() })
        .await?;
    if !args.wait {
        match args.common.format {
            Format::Table => println!(
                "submitted job {} ({id}) to {}",
                job.name, args.common.scheduler
            ),
            Format::Json => print_json(&Submitted { id })?,
        }
        return Ok(());
    }
    if args.common.format == Format::Table {
        eprintln!(
            "submitted job {} ({id}) to {}",
            job.name, args.common.scheduler
        );
    }
    let reconnect = ember_core::config::parse_duration(
        "--reconnect-timeout / EMBER_SUBMIT_RECONNECT_TIMEOUT",
        &args.reconnect_timeout,
    )?;
    let detail = follow(&client, &id, args.common.format == Format::Table, reconnect).await?;
    match args.common.format {
        Format::Json => print_json(&detail)?,
        Format::Table => {
            if let Some(report) = &detail.report {
                println!("{report}");
            }
        }
    }
    match detail.summary.state {
        JobState::Succeeded => Ok(()),
        state => Err(Failure::new(
            detail
                .summary
                .error_kind
                .unwrap_or(ember_core::ErrorKind::User),
            format!(
                "job {} ({id}) {}: {}",
                detail.summary.name,
                state.as_str(),
                detail.summary.error.as_deref().unwrap_or("no reason given")
            ),
        )),
    }
}

/// Polls the job until it ends, drawing a progress bar per stage (tasks done / total).
///
/// A scheduler that stops answering (a restart) is asked again every second for up to
/// `reconnect`; once it answers, the job's state is followed on (a scheduler restarted with
/// its job history reports the job as it ended, e.g. `failed` with "scheduler restarted").
///
/// # Errors
/// The scheduler silent for longer than `reconnect`; the job unknown to a scheduler that came
/// back (restarted without its history: the job is lost); other answers' errors.
async fn follow(client: &Client, id: &str, bars: bool, reconnect: Duration) -> Result<JobDetail> {
    let progress = MultiProgress::new();
    if !bars {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:<28} [{bar:30}] {pos}/{len} tasks {msg}")
        .map_err(|e| Failure::new(ember_core::ErrorKind::Internal, e.to_string()))?
        .progress_chars("=> ");
    let mut stages: BTreeMap<(String, String), ProgressBar> = BTreeMap::new();
    let mut silent_since: Option<std::time::Instant> = None;
    loop {
        let detail: JobDetail = match client.get(&format!("/jobs/{id}")).await {
            Ok(detail) => {
                if silent_since.take().is_some() {
                    progress
                        .suspend(|| eprintln!("the scheduler answers again; following job {id}"));
                }
                detail
            }
            Err(e) if e.kind() == ember_core::ErrorKind::External => {
                let since = *silent_since.get_or_insert_with(|| {
                    progress.suspend(|| {
                        eprintln!(
                            "{e}; asking again every second for up to {}",
                            humantime::format_duration(reconnect)
                        );
                    });
                    std::time::Instant::now()
                });
                if since.elapsed() > reconnect {
                    return Err(Failure::new(
                        ember_core::ErrorKind::External,
                        format!(
                            "job {id}: the scheduler did not answer for {}: {e}; the job's state is unknown (ask `ember status {id}` once the scheduler is back)",
                            humantime::format_duration(reconnect)
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) if silent_since.is_some() => {
                return Err(Failure::new(
                    ember_core::ErrorKind::External,
                    format!(
                        "job {id} was lost: the scheduler came back without it (started without its job history?): {e}"
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        for step in &detail.steps {
            for stage in &step.stages {
                let key = (step.ballista_job_id.clone(), stage.stage_id.clone());
                let bar = stages.entry(key).or_insert_with(|| {
                    let bar = progress.add(ProgressBar::new(stage.tasks as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("{} · stage {}", step.step, stage.stage_id));
                    bar
                });
                bar.set_length(stage.tasks.max(1) as u64);
                bar.set_position(stage.tasks_done as u64);
                let failed = if stage.tasks_failed > 0 {
                    format!(", {} failed", stage.tasks_failed)
                } else {
                    String::new()
                };
                bar.set_message(format!("({}{failed})", stage.state.to_lowercase()));
                if matches!(stage.state.as_str(), "Successful" | "Failed") && !bar.is_finished() {
                    bar.finish();
                }
            }
        }
        if detail.summary.state.is_final() {
            for bar in stages.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            return Ok(detail);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
