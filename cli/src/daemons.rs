//! `ember scheduler` and `ember executor`: the cluster's long-running processes.

use std::time::Duration;

use ember_core::config::{ExecutorSettings, SchedulerSettings};

/// How long a stopping scheduler lets running jobs finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs a scheduler until SIGTERM or Ctrl-C. Prints `ember scheduler listening on HOST:PORT`
/// on stdout once it accepts connections (scripts and tests wait for that line).
///
/// # Errors
/// One line: the port is taken, …
pub async fn scheduler(settings: SchedulerSettings) -> Result<(), String> {
    let started = ember_scheduler::server::start(settings).await?;
    println!(
        "ember flight sql listening on {}{}",
        started.flight_sql.address,
        if started.flight_sql.tls { " (tls)" } else { "" }
    );
    println!("ember scheduler listening on {}", started.address);
    started
        .serve(ember_scheduler::server::shutdown_signal(), SHUTDOWN_GRACE)
        .await
}

/// Runs an executor until SIGTERM, Ctrl-C or the scheduler stops it.
///
/// # Errors
/// One line: the scheduler cannot be reached, a port is taken, …
pub async fn executor(settings: ExecutorSettings) -> Result<(), String> {
    println!(
        "ember executor connecting to {}:{} (flight {}:{}, {} task slots)",
        settings.scheduler_host,
        settings.scheduler_port,
        settings.external_host,
        settings.port,
        settings.task_slots
    );
    ember_executor::process::run(settings).await
}
