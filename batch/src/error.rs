//! Errors of running a job. Each renders as one line naming what was wrong and where (the
//! input and its path, the SQL file and line, the output folder).

use datafusion::error::DataFusionError;
use ember_core::error::{Classify, ErrorKind, datafusion_kind};

/// `Result` with the batch runner's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the job runner and its output committer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or resolving the job failed (manifest, parameters, SQL files).
    #[error(transparent)]
    Core(#[from] ember_core::Error),

    /// An input cannot be used: no file matches, unknown encoding, duplicate keys, …
    #[error("input `{input}` ({path}): {message}")]
    Input {
        /// The input's table name.
        input: String,
        /// Its path as given.
        path: String,
        /// What is wrong.
        message: String,
    },

    /// Reading an input's file or writing its staged copy failed in storage (a full disk, a
    /// lost DataNode, a refused connection): it may succeed when run again.
    #[error("input `{input}` ({path}): {message}")]
    InputStorage {
        /// The input's table name.
        input: String,
        /// Its path as given.
        path: String,
        /// What failed, with the file's URL.
        message: String,
    },

    /// A database input failed: settings, connection, authentication, schema or a query.
    #[error(transparent)]
    Database(Box<ember_ingest::Error>),

    /// The output cannot be planned or written (partition column missing, bad path, …).
    #[error("output {path}: {message}")]
    Output {
        /// The output path as given.
        path: String,
        /// What is wrong.
        message: String,
    },

    /// Row counts do not reconcile (`rows_read != rows_valid + rows_quarantined`): a query
    /// lost or duplicated rows. Nothing was committed.
    #[error("row counts do not reconcile, nothing was committed: {0}")]
    Reconcile(String),

    /// A storage operation of the committer failed.
    #[error("{context}: {source}")]
    Storage {
        /// What the committer was doing, with the path.
        context: String,
        /// The object store error.
        #[source]
        source: object_store::Error,
    },

    /// A Delta output's commit failed after this run had committed its quarantine, and undoing
    /// the quarantine's commit failed too (the storage still failing): the quarantine keeps this
    /// run's rejected rows of the days it wrote (table version `version`) until the next run on
    /// those days replaces them. The line is the output's failure, then the quarantine's state.
    #[error(
        "{source}; the quarantine {table} keeps this run's rejected rows (its version {version}): undoing that commit failed: {revert}"
    )]
    QuarantineKept {
        /// Why the output's commit failed.
        source: Box<Error>,
        /// The quarantine table's URL.
        table: String,
        /// The quarantine's version this run committed.
        version: u64,
        /// Why the revert failed, in one line.
        revert: String,
    },

    /// DataFusion or Ballista failed while executing a step of the job. When the failure is
    /// storage's (a full disk: [`Classify::kind`] is external), the line names the folder the
    /// step was writing: `writing the output (to file:///…/_temporary/…/data/): LocalFileSystem:
    /// No space left on device (os error 28)`.
    #[error(
        "{context}{}: {}",
        target_shown(target, source),
        ember_core::error::readable(source)
    )]
    Execution {
        /// The step (e.g. "writing the output").
        context: String,
        /// The URL the step was writing, if it writes.
        target: Option<String>,
        /// The error.
        #[source]
        source: Box<DataFusionError>,
    },
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(e) => e.kind(),
            Error::Input { .. } | Error::Output { .. } => ErrorKind::User,
            Error::InputStorage { .. } => ErrorKind::External,
            Error::Database(e) => e.kind(),
            // The job's own queries do not split the input into valid and quarantined rows.
            Error::Reconcile(_) => ErrorKind::User,
            Error::Storage { .. } => ErrorKind::External,
            Error::Execution { source, .. } => datafusion_kind(source),
            Error::QuarantineKept { source, .. } => source.kind(),
        }
    }
}

impl Error {
    /// Wraps a DataFusion error with the step that failed.
    pub fn execution(context: impl Into<String>, source: DataFusionError) -> Self {
        Error::Execution {
            context: context.into(),
            target: None,
            source: Box::new(source),
        }
    }

    /// Wraps a DataFusion error with the step that failed and the URL it was writing.
    pub fn writing(
        context: impl Into<String>,
        target: impl Into<String>,
        source: DataFusionError,
    ) -> Self {
        Error::Execution {
            context: context.into(),
            target: Some(target.into()),
            source: Box::new(source),
        }
    }

    /// Wraps an object store error with what the committer was doing.
    pub fn storage(context: impl Into<String>, source: object_store::Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }
}

/// ` (to <url>)` when a step writing `target` failed in storage, else nothing: a data error
/// (a value that does not cast) is about the input, not about where it was going.
fn target_shown(target: &Option<String>, source: &DataFusionError) -> String {
    match target {
        Some(url) if datafusion_kind(source) == ErrorKind::External => format!(" (to {url})"),
        _ => String::new(),
    }
}
