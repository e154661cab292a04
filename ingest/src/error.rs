//! Errors of database inputs: one line naming the input and what was wrong, classified.

use ember_core::error::{Classify, ErrorKind};

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a database input or output. Every message names it (`input \`x\``,
/// `output table \`t\``) and, where it helps, the table or column; passwords never appear.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The password could not be read (variable unset, file unreadable) or the URL is wrong.
    #[error("{what}: {message}")]
    Settings {
        /// What failed: `input \`transactions\``, `output table \`daily_revenue\``.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The server refused the user or the password.
    #[error("{what} ({url}): authentication failed: check the user and the password")]
    Authentication {
        /// What failed: `input \`transactions\``, `output table \`daily_revenue\``.
        what: String,
        /// The URL without password.
        url: String,
    },
    /// The server cannot be reached (host, port, network).
    #[error("{what} ({url}): cannot connect: {message}")]
    Connect {
        /// What failed: `input \`transactions\``, `output table \`daily_revenue\``.
        what: String,
        /// The URL without password.
        url: String,
        /// The driver's reason, one line.
        message: String,
    },
    /// The table, database or a column does not exist, or a column's type has no Arrow type.
    #[error("{what} ({url}): {message}")]
    Schema {
        /// What failed: `input \`transactions\``, `output table \`daily_revenue\``.
        what: String,
        /// The URL without password.
        url: String,
        /// What is wrong, naming the table or column.
        message: String,
    },
    /// A query failed on the server or while its rows were read.
    #[error("{what} ({url}): query failed: {message}")]
    Query {
        /// What failed: `input \`transactions\``, `output table \`daily_revenue\``.
        what: String,
        /// The URL without password.
        url: String,
        /// The driver's reason, one line.
        message: String,
    },
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Settings { .. } | Error::Authentication { .. } | Error::Schema { .. } => {
                ErrorKind::User
            }
            Error::Connect { .. } | Error::Query { .. } => ErrorKind::External,
        }
    }
}
