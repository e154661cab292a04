//! `ember scheduler` and `ember executor`: the cluster's long-running processes.

use std::time::Duration;

use ember_core::codec::Codecs;
use ember_executor::config::ExecutorSettings;
use ember_scheduler::config::SchedulerSettings;

use crate::error::Result;

/// How long a stopping scheduler lets running jobs finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs a scheduler until SIGTERM or Ctrl-C. Prints `ember scheduler listening on HOST:PORT`
/// on stdout once it accepts connections (scripts and tests wait for that line).
///
/// # Errors
/// The port is taken, …
pub async fn scheduler(settings: SchedulerSettings, codecs: Codecs) -> Result<()> {
    if let Some(secret) = &settings.security.cluster_secret {
        println!(
            "ember cluster secret {} {} (executors and clients need this file)",
            if settings.security.created_secret {
                "written to"
            } else {
                "read from"
            },
            secret.path().display()
        );
    }
    let tls = settings.security.tls.is_some();
    let started = ember_scheduler::start(settings, codecs).await?;
    println!(
        "ember flight sql listening on {}{}",
        started.flight_sql.address,
        if started.flight_sql.tls { " (tls)" } else { "" }
    );
    println!(
        "ember scheduler listening on {}{}",
        started.address,
        if tls { " (tls)" } else { "" }
    );
    Ok(started
        .serve(ember_core::signal::shutdown(), SHUTDOWN_GRACE)
        .await?)
}

/// Runs an executor until SIGTERM, Ctrl-C or the scheduler stops it.
///
/// # Errors
/// The scheduler cannot be reached, a port is taken, …
pub async fn executor(settings: ExecutorSettings, codecs: Codecs) -> Result<()> {
    println!(
        "ember executor connecting to {}:{} (flight {}:{}, {} task slots)",
        settings.scheduler_host,
        settings.scheduler_port,
        settings.external_host,
        settings.port,
        settings.task_slots
    );
    Ok(ember_executor::process::run(settings, codecs).await?)
}
