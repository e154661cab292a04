//! Errors of the executor process. Each renders as one line.

use ember_core::error::{Classify, ErrorKind};

/// `Result` with the executor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of starting and running an executor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scheduler did not accept a connection within the connect timeout.
    #[error(
        "cannot reach the scheduler at {address} after {seconds} s ({last_error}); check --scheduler / EMBER_EXECUTOR_SCHEDULER"
    )]
    SchedulerUnreachable {
        /// `HOST:PORT`.
        address: String,
        /// How long the executor tried.
        seconds: u64,
        /// The last connection error.
        last_error: String,
    },

    /// Ballista's executor stopped with an error.
    #[error("executor stopped: {0}")]
    Stopped(String),

    /// A port, the work folder or the session: core's errors.
    #[error(transparent)]
    Core(#[from] ember_core::Error),
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::SchedulerUnreachable { .. } => ErrorKind::External,
            Error::Stopped(_) => ErrorKind::External,
            Error::Core(e) => e.kind(),
        }
    }
}
