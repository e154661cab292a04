//! Logging for every Ember process: `tracing` to stderr, filtered by `RUST_LOG`. The default,
//! [`DEFAULT_FILTER`], shows Ember's warnings and hides Ballista's own log lines: a failed job
//! reaches the user once, as Ember's one-line error, not also as Ballista's ERROR records.
//! `RUST_LOG=info,ballista_core=info` shows them. Records from crates that use `log` (Ballista
//! does) are captured too.

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str =
    "warn,ballista=off,ballista_core=off,ballista_scheduler=off,ballista_executor=off";

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
