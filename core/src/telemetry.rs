//! Logging for every Ember process: `tracing` to stderr, filtered by `RUST_LOG`. The default,
//! [`DEFAULT_FILTER`], shows Ember's warnings and hides Ballista's and delta-rs's own log
//! lines: a failed job reaches the user once, as Ember's one-line error, not also as
//! Ballista's ERROR records or delta-rs's report of a commit conflict.
//! `RUST_LOG=info,ballista_core=info,deltalake_core=info` shows them. Records from crates that use `log` (Ballista
//! does) are captured too.

/// The filter of commands (`ember run`, `submit`, …) when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "warn,ballista=off,ballista_core=off,ballista_scheduler=off,ballista_executor=off,deltalake_core=off";

/// The filter of the scheduler and executor processes when `RUST_LOG` is not set: Ember's own
/// events (jobs submitted, succeeded, failed) and Ballista's warnings.
pub const DAEMON_FILTER: &str = "warn,ember_scheduler=info,ember_executor=info,ember_core=info,ember_streaming=info,ember_ingest=info,ember_batch=info";

/// Installs the global subscriber once; later calls do nothing. `daemon`: a long-running
/// process (scheduler, executor), which logs more by default.
pub fn init(daemon: bool) {
    let default = if daemon {
        DAEMON_FILTER
    } else {
        DEFAULT_FILTER
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: daemons usually log to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}
