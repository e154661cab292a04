//! `ember`: the command users run.
//!
//! - `ember run <job>`: runs a batch job in embedded mode (in-process scheduler + executor), or
//!   a streaming job (a manifest with `[stream]`) until its trigger stops or Ctrl-C;
//! - `ember produce`: writes sales events into a Kafka topic;
//! - `ember serve`: the Arrow Flight SQL endpoint over the job outputs, embedded;
//! - `ember table history|vacuum|optimize <path>`: maintenance of a Delta table;
//! - `ember scheduler` / `ember executor`: the cluster's processes;
//! - `ember submit <job> --scheduler HOST:PORT [--wait]`, `ember jobs`, `ember status <id>`,
//!   `ember cancel <id>`: run and follow jobs on a cluster (like `spark-submit`); a streaming
//!   job's driver runs in the `submit` process, its micro-batch scans on the executors.
//!
//! Exit codes ([`error`]): 0 success; 1 the user's error, 3 an external system failed or does
//! not answer, 4 a bug in Ember (one line on stderr says why and where); 2 the command line is
//! wrong (clap's usage error).

mod check;
mod daemons;
mod error;
mod format;
mod jobs;
mod run;
mod serve;
mod stream;
mod submit;
mod table;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ember_core::codec::Codecs;
use ember_core::config::StorageSettings;
use ember_executor::config::{ExecutorArgs, ExecutorSettings};
use ember_scheduler::config::{SchedulerArgs, SchedulerSettings};

use crate::error::Failure;

/// Ember: SQL data pipelines on Apache DataFusion and Ballista.
#[derive(Debug, Parser)]
#[command(name = "ember", version, about, long_about = None)]
struct Cli {
    /// Check the command line, the EMBER_* variables, the configuration file and the job's
    /// parameters as the command would, print the resolved settings, and exit without
    /// starting anything.
    #[arg(long, global = true)]
    check_config: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a batch job in embedded mode: an in-process Ballista scheduler and executor.
    Run(run::RunArgs),
    /// Start a scheduler: Ballista's scheduler, Ember's job service and REST API, on one port.
    Scheduler(SchedulerArgs),
    /// Start an executor that runs tasks for a scheduler.
    Executor(ExecutorArgs),
    /// Submit a job to a scheduler (like spark-submit); --wait follows it to its end.
    Submit(submit::SubmitArgs),
    /// List the scheduler's jobs, newest first.
    Jobs(jobs::JobsArgs),
    /// Show a job: state, steps, stages with tasks done/running/failed, error or counts.
    Status(jobs::JobArgs),
    /// Cancel a queued or running job; nothing of it is committed.
    Cancel(jobs::JobArgs),
    /// Write events into a Kafka topic (replay an Online Retail CSV or Instacart order lines, or synthetic), creating it if missing.
    Produce(stream::ProduceArgs),
    /// Serve the job outputs over Arrow Flight SQL, embedded (in-process scheduler + executor).
    Serve(serve::ServeArgs),
    /// Maintain a Delta table: history, vacuum, optimize.
    Table(table::TableArgs),
}

type Task = Pin<Box<dyn Future<Output = Result<(), Failure>>>>;

/// The plan codecs of every role: core's nodes, the stream's Kafka scan and the database
/// scan, which any role may meet in a plan.
fn codecs() -> Result<Codecs, Failure> {
    Ok(ember_ingest::codecs(ember_streaming::scan::codecs(
        Codecs::ember(),
    )?)?)
}

/// Resolves the command's settings (before any thread starts, so process-wide settings such as
/// the HDFS user can be applied) and returns what to run.
fn prepare(command: Command, codecs: Codecs) -> Result<Task, Failure> {
    Ok(match command {
        Command::Run(args) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.config.as_deref())?;
            ember_core::storage::apply_process_environment(&storage);
            if stream::is_stream(&args.job) {
                Box::pin(stream::run(args, storage, codecs))
            } else {
                Box::pin(run::run(args, storage, codecs))
            }
        }
        Command::Scheduler(args) => {
            let settings = SchedulerSettings::resolve(&args)?;
            ember_core::storage::apply_process_environment(&settings.storage);
            Box::pin(daemons::scheduler(settings, codecs))
        }
        Command::Executor(args) => {
            let settings = ExecutorSettings::resolve(&args)?;
            ember_core::storage::apply_process_environment(&settings.storage);
            Box::pin(daemons::executor(settings, codecs))
        }
        Command::Submit(args) if stream::is_stream(&args.job) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.common.config.as_deref())?;
            ember_core::storage::apply_process_environment(&storage);
            Box::pin(stream::submit(args, storage, codecs))
        }
        Command::Submit(args) => Box::pin(submit::run(args)),
        Command::Jobs(args) => Box::pin(jobs::list(args)),
        Command::Status(args) => Box::pin(jobs::status(args)),
        Command::Cancel(args) => Box::pin(jobs::cancel(args)),
        Command::Produce(args) => Box::pin(stream::produce_command(args)),
        Command::Serve(args) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.config.as_deref())?;
            ember_core::storage::apply_process_environment(&storage);
            Box::pin(serve::run(args, storage, codecs))
        }
        Command::Table(args) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.config.as_deref())?;
            ember_core::storage::apply_process_environment(&storage);
            Box::pin(table::run(args, storage, codecs))
        }
    })
}

/// Prints the failure as one line ([`ember_core::error::tidy`]) and returns its exit code.
fn fail(failure: &Failure) -> ExitCode {
    eprintln!(
        "ember: error: {}",
        ember_core::error::tidy(&failure.to_string())
    );
    ExitCode::from(failure.kind.exit_code())
}

fn main() -> ExitCode {
    ember_core::security::tls::install_crypto_provider();
    let cli = Cli::parse();
    if cli.check_config {
        return match check::check(&cli.command) {
            Ok(settings) => {
                println!("{settings}");
                println!("ember: the configuration is valid");
                ExitCode::SUCCESS
            }
            Err(failure) => fail(&failure),
        };
    }
    let daemon = matches!(cli.command, Command::Scheduler(_) | Command::Executor(_));
    ember_core::telemetry::init(daemon);
    let task = match codecs().and_then(|codecs| prepare(cli.command, codecs)) {
        Ok(task) => task,
        Err(failure) => return fail(&failure),
    };
    let runtime = match ember_core::threads::tokio_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(&Failure::external(format!(
                "cannot start the async runtime: {e}"
            )));
        }
    };
    let ended = runtime.block_on(task);
    // The embedded executor's shuffle files, once its tasks are stopped.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    ember_core::standalone::remove_work_folders();
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}
