//! What a failed command reports: one line and its kind, which is the exit code.
//!
//! | exit code | kind | e.g. |
//! |---|---|---|
//! | 0 | | the command succeeded |
//! | 1 | user | a missing job folder, a bad manifest or SQL file, a bad `--set`, an unknown job id |
//! | 2 | usage | the command line is wrong (clap) |
//! | 3 | external | a scheduler, broker or store that does not answer; a job failed for it |
//! | 4 | internal | a bug in Ember (a broken invariant) |

use std::fmt;

use ember_core::error::{Classify, ErrorKind};

/// A command's failure: the one line printed after `ember: error: `, and its kind.
#[derive(Debug)]
pub struct Failure {
    /// Who has to act.
    pub kind: ErrorKind,
    /// What was wrong and where, one line.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The user's mistake (exit code 1).
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::User, message)
    }

    /// Something outside Ember failed (exit code 3).
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::External, message)
    }

    /// The same failure, its message behind `context: `.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: Classify> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

/// `Result` of a command.
pub type Result<T, E = Failure> = std::result::Result<T, E>;
