//! `ember --check-config <command> …`: parses the command line, the `EMBER_*` variables and the
//! configuration file, and loads the job with its `--set` parameters, exactly as the command
//! would, then prints the resolved settings (secrets as `***`) and exits without starting
//! anything. Deployments check their commands with it (the docker-compose test does).

use std::path::Path;

use ember_core::config::{StorageSettings, parse_host_port};
use ember_core::params::Params;
use ember_core::security::SecretUse;
use ember_executor::config::ExecutorSettings;
use ember_scheduler::config::SchedulerSettings;

use crate::Command;
use crate::error::Result;

/// The job at `path` with `set` applied, loaded as `ember submit` loads it: its name and output.
fn job(path: &Path, set: &[String]) -> Result<String> {
    if crate::stream::is_stream(path) {
        let settings = Params::parse_settings(set)?;
        let job = ember_streaming::manifest::load(path, &settings)?;
        Ok(format!(
            "streaming job {} ({}, output {})",
            job.name,
            job.source_label(),
            job.outputs
                .iter()
                .map(|o| o.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        let job = crate::submit::resolve(path, set)?;
        Ok(format!(
            "batch job {} (output {})",
            job.name, job.output.path
        ))
    }
}

fn scheduler_address(text: &str) -> Result<String> {
    let (host, port) = parse_host_port("--scheduler / EMBER_SCHEDULER", text)?;
    Ok(format!("{host}:{port}"))
}

/// What `command` would run with, one setting per line.
///
/// # Errors
/// The one line the command itself would fail with.
pub fn check(command: &Command) -> Result<String> {
    Ok(match command {
        Command::Run(args) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.config.as_deref())?;
            format!("run {}\nstorage {storage:?}", job(&args.job, &args.set)?)
        }
        Command::Scheduler(args) => {
            let s = SchedulerSettings::resolve_with(args, SecretUse::Check)?;
            format!("scheduler {s:#?}")
        }
        Command::Executor(args) => {
            let s = ExecutorSettings::resolve_with(args, SecretUse::Check)?;
            format!("executor {s:#?}")
        }
        Command::Submit(args) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.common.config.as_deref())?;
            format!(
                "submit {} to {}\nstorage {storage:?}\nsecurity {:?}",
                job(&args.job, &args.set)?,
                scheduler_address(&args.common.scheduler)?,
                args.common.security_with(SecretUse::Check)?
            )
        }
        Command::Jobs(args) => format!(
            "jobs of {}\nsecurity {:?}",
            scheduler_address(&args.common().scheduler)?,
            args.common().security_with(SecretUse::Check)?
        ),
        Command::Status(args) | Command::Cancel(args) => format!(
            "job on {}\nsecurity {:?}",
            scheduler_address(&args.common().scheduler)?,
            args.common().security_with(SecretUse::Check)?
        ),
        Command::Produce(args) => match &args.log_lines {
            Some(dir) => format!("produce log files into {}", dir.display()),
            None => {
                args.source()?;
                format!("produce to topic {} on {}", args.topic, args.brokers)
            }
        },
        Command::Serve(args) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.config.as_deref())?;
            let flight_sql = crate::serve::flight_sql_settings(args)?;
            format!(
                "serve on {} (web UI port {})\nflight sql {flight_sql:#?}\nstorage {storage:?}",
                args.bind_host, args.http_port
            )
        }
        Command::Table(args) => {
            let storage =
                StorageSettings::resolve_with_file(&args.storage, args.config.as_deref())?;
            format!(
                "table {:?}
storage {storage:?}",
                args.action
            )
        }
    })
}
