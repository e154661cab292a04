//! Errors of starting and running the scheduler process. Each renders as one line.

use ember_core::error::{Classify, ErrorKind};

/// `Result` with the scheduler's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the scheduler process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Ballista refuses the scheduler's configuration.
    #[error("scheduler configuration: {0}")]
    InvalidConfig(String),

    /// Ballista's scheduler cannot start (its cluster state, its task manager).
    #[error("scheduler: {0}")]
    Ballista(String),

    /// A listener (the scheduler's port, Flight SQL's) or the web side failed.
    #[error(transparent)]
    Serving(#[from] ember_serving::Error),

    /// The session of the scheduler's own queries cannot be built.
    #[error(transparent)]
    Core(#[from] ember_core::Error),
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidConfig(_) => ErrorKind::User,
            Error::Ballista(_) => ErrorKind::Internal,
            Error::Serving(e) => e.kind(),
            Error::Core(e) => e.kind(),
        }
    }
}
