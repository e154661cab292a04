//! `ember`: the command users run. `ember run <job>` runs a batch job in embedded mode.
//!
//! Exit codes: 0 success; 1 the job failed (one line on stderr says why and where);
//! 2 the command line is wrong (clap's usage error).

mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ember: SQL data pipelines on Apache DataFusion and Ballista.
#[derive(Debug, Parser)]
#[command(name = "ember", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a batch job in embedded mode: an in-process Ballista scheduler and executor.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ember_core::telemetry::init();
    let runtime = match ember_core::threads::tokio_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ember: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ember: error: {message}");
            ExitCode::FAILURE
        }
    }
}
