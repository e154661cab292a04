//! Errors of starting and running the serving side (Flight SQL endpoint, web UI). Each renders
//! as one line that names the service and the address or file.

use ember_core::error::{Classify, ErrorKind};

/// `Result` with the serving side's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the Flight SQL endpoint and the web side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A TLS certificate or key cannot be read or used.
    #[error("{service} TLS: {message}")]
    Tls {
        /// The service.
        service: &'static str,
        /// What is wrong, with the file.
        message: String,
    },

    /// Serving stopped on an I/O error.
    #[error("{service} stopped: {source}")]
    Stopped {
        /// The service.
        service: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    /// A port cannot be bound, or a setting, a table or a query of the endpoint is wrong.
    #[error(transparent)]
    Core(#[from] ember_core::Error),
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Tls { .. } => ErrorKind::User,
            Error::Stopped { .. } => ErrorKind::External,
            Error::Core(e) => e.kind(),
        }
    }
}
