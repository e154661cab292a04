//! Errors of streaming jobs: one line each, saying what was wrong and where (manifest line,
//! topic and partition, offset, source file, checkpoint file).

use ember_core::error::{Classify, ErrorKind};

/// A streaming job's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job definition (manifest, parameters, SQL) is wrong, or the output or checkpoint
    /// storage failed: core's errors.
    #[error(transparent)]
    Core(#[from] ember_core::Error),
    /// A Kafka call failed: which call, on which brokers/topic/partition.
    #[error("kafka {context}: {message}")]
    Kafka {
        /// What Ember was doing (`reading sales_events/2 offsets [10, 20) from 127.0.0.1:9092`).
        context: String,
        /// librdkafka's message.
        message: String,
    },
    /// The checkpoint is unreadable or inconsistent.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file or folder.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The Ballista scheduler of `ember submit` cannot be reached.
    #[error("cannot connect to the scheduler at {url}: {message}")]
    Scheduler {
        /// `df://HOST:PORT`.
        url: String,
        /// Why.
        message: String,
    },
    /// A lookup table (`[[input]]`) cannot be listed or read, or lacks its key.
    #[error("lookup table {name} ({path}): {message}")]
    Lookup {
        /// The table name.
        name: String,
        /// Its path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file of a `files` source cannot be read, changed after it was planned, or cannot be
    /// renamed or deleted after its batch committed ([`crate::spool`]).
    #[error("source file {file}: {message}")]
    SourceFile {
        /// The file's URL.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A micro-batch query failed.
    #[error("batch {batch_id}: {source}")]
    Query {
        /// The micro-batch.
        batch_id: u64,
        /// The query error (with the SQL file's line and column when planning failed).
        source: ember_core::Error,
    },
}

impl Classify for Error {
    /// Who has to act: the user (job, data), an external system (Kafka, storage), or Ember.
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(e) | Error::Query { source: e, .. } => e.kind(),
            Error::Kafka { .. } | Error::Scheduler { .. } | Error::SourceFile { .. } => {
                ErrorKind::External
            }
            Error::Checkpoint { .. } | Error::Lookup { .. } => ErrorKind::User,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
