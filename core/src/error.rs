//! Ember's error type for everything the core does: loading job manifests, parameters, SQL files.
//!
//! Every error renders as one line that says what was wrong and where (file, line, column when
//! known), because that line is what reaches the user. Errors are classified with [`ErrorKind`]
//! so retries and exit codes never depend on message text (the classification is Arroyo's idea).

use std::fmt;
use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// `Result` with Ember's core [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who has to act on an error. It reaches the user as the `ember` command's exit code
/// ([`ErrorKind::exit_code`]) and as the `kind` of a REST error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The user's input is wrong (manifest, parameter, SQL, data path). Retrying will not help.
    User,
    /// Something outside Ember failed (file system, network, a service). May succeed on retry.
    External,
    /// A bug or a broken invariant in Ember itself.
    Internal,
}

impl ErrorKind {
    /// The `ember` command's exit code for a failure of this kind: 1 user, 3 external, 4
    /// internal (2 is clap's usage error, 0 success).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::User => 1,
            ErrorKind::External => 3,
            ErrorKind::Internal => 4,
        }
    }

    /// Whether a failure of this kind may go away when the same thing is tried again.
    pub fn retryable(self) -> bool {
        self == ErrorKind::External
    }

    /// The kind's name, as in JSON: `user`, `external`, `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::User => "user",
            ErrorKind::External => "external",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error that knows who has to act on it. Every Ember crate's error type implements it, so
/// exit codes, REST answers and retries read the kind, never the message.
pub trait Classify: std::error::Error {
    /// Who has to act on this error.
    fn kind(&self) -> ErrorKind;

    /// Whether running the same thing again may succeed.
    fn retryable(&self) -> bool {
        self.kind().retryable()
    }
}

/// A place in a source file, 1-based, rendered as `path:line:column` like compilers do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it (relative paths stay relative).
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` within `text`, which was read from `path`.
    pub fn of_offset(path: impl Into<PathBuf>, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            path: path.into(),
            line,
            column,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Errors of Ember's core. Each variant's message is a single line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A job manifest is malformed or names something that does not exist (unknown keys are
    /// rejected, as `serde(deny_unknown_fields)` does).
    #[error("{location}: {message}")]
    Manifest {
        /// Where in the manifest.
        location: Location,
        /// What is wrong.
        message: String,
    },

    /// A manifest is well-formed TOML but its content is inconsistent (no line to point at).
    #[error("{}: {message}", path.display())]
    InvalidJob {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// `--set name=value` names a parameter the job does not declare.
    #[error("unknown parameter `{name}` for job {job}; it declares: {declared}")]
    UnknownParameter {
        /// The job's name.
        job: String,
        /// The parameter given.
        name: String,
        /// The declared parameters, comma-separated.
        declared: String,
    },

    /// A process setting (flag, `EMBER_*` variable or configuration file value) is invalid.
    #[error("{setting}: {message}")]
    InvalidSetting {
        /// The flag and variable, e.g. `--port / EMBER_SCHEDULER_PORT`.
        setting: String,
        /// What is wrong.
        message: String,
    },

    /// `--set` was given something that is not `name=value`.
    #[error("bad --set `{0}`: expected name=value")]
    BadSetting(String),

    /// A `${name}` reference in a manifest or SQL file has no parameter behind it.
    #[error("{location}: unknown parameter `${{{name}}}`; declared: {declared}")]
    UndefinedReference {
        /// Where the reference is.
        location: Location,
        /// The referenced name.
        name: String,
        /// The declared parameters, comma-separated.
        declared: String,
    },

    /// A SQL file does not parse or does not plan.
    #[error("{location}: {message}")]
    Sql {
        /// Where the error is (line 1, column 1 when DataFusion gives no position).
        location: Location,
        /// DataFusion's message, on one line.
        message: String,
    },

    /// Reading or writing a file or folder of an object store (local, HDFS) failed.
    #[error("storage {path}: {message}")]
    Storage {
        /// The file or folder, as a URL.
        path: String,
        /// The store's message.
        message: String,
    },

    /// A concurrent commit to a Delta table touched what this commit replaces (the same
    /// partitions, the same stream): Delta's optimistic concurrency refused this one. Running
    /// again commits on top of the other.
    #[error(
        "table {table}: a concurrent commit conflicts with this one ({message}); nothing of this run was committed"
    )]
    TableConflict {
        /// The table's location.
        table: String,
        /// delta-rs's conflict.
        message: String,
    },

    /// Something one process at a time may hold (an output a run commits into, a stream's
    /// checkpoint) is held by another (`crate::storage::lease`).
    #[error("{what} is in use by {holder}; {hint}")]
    Locked {
        /// What is held.
        what: String,
        /// Who holds it.
        holder: String,
        /// What the refused one can do.
        hint: String,
    },

    /// What is written does not fit the table (columns, types, partition columns), or a task
    /// reported something that is not a file of it.
    #[error("table {table}: {message}")]
    InvalidTable {
        /// The table's location.
        table: String,
        /// What does not fit.
        message: String,
    },

    /// A listener cannot be bound (port taken, address not local, no permission).
    #[error("{service}: cannot listen on {address}: {source}")]
    Bind {
        /// `scheduler`, `Flight SQL`, `web UI`, `executor metrics`.
        service: &'static str,
        /// `HOST:PORT`.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A server (a scheduler's REST API) answered with an error, or did not answer; the kind
    /// is the one the server's error body gave, or external.
    #[error("{message}")]
    Remote {
        /// Who has to act.
        kind: ErrorKind,
        /// What went wrong, naming the server.
        message: String,
    },

    /// A path outside `[security] allowed_paths`.
    #[error("{what} {path} is outside the allowed paths ({allowed})")]
    PathNotAllowed {
        /// What the path is for (`input \`raw_sales\``, `output`, `Flight SQL table …`).
        what: String,
        /// The path as given.
        path: String,
        /// The allowed folders, comma-separated.
        allowed: String,
    },

    /// What may not be done here: a plan that writes files (`COPY`, `INSERT`), or a report
    /// that changes what a stream started with.
    #[error("{0}")]
    Refused(String),

    /// Two plan node implementations claim the same codec tag (a build mistake).
    #[error("codec tag {tag} is claimed twice ({first} and {second})")]
    DuplicateCodecTag {
        /// The tag.
        tag: u8,
        /// The implementation registered first.
        first: String,
        /// The one registered second.
        second: String,
    },

    /// DataFusion failed outside a SQL file (registering a table, executing a plan).
    #[error("{context}: {}", one_line(&source.to_string()))]
    DataFusion {
        /// What Ember was doing.
        context: String,
        /// The DataFusion error.
        #[source]
        source: Box<DataFusionError>,
    },
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ErrorKind::User
                }
                _ => ErrorKind::External,
            },
            Error::Manifest { .. }
            | Error::InvalidJob { .. }
            | Error::UnknownParameter { .. }
            | Error::BadSetting(_)
            | Error::InvalidSetting { .. }
            | Error::UndefinedReference { .. }
            | Error::Sql { .. }
            | Error::PathNotAllowed { .. }
            | Error::InvalidTable { .. }
            | Error::Refused(_) => ErrorKind::User,
            Error::Storage { .. } | Error::TableConflict { .. } | Error::Locked { .. } => {
                ErrorKind::External
            }
            Error::Remote { kind, .. } => *kind,
            // A port that is taken or not ours: the user picks another.
            Error::Bind { source, .. } => match source.kind() {
                std::io::ErrorKind::AddrInUse
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::PermissionDenied => ErrorKind::User,
                _ => ErrorKind::External,
            },
            Error::DuplicateCodecTag { .. } => ErrorKind::Internal,
            Error::DataFusion { source, .. } => datafusion_kind(source),
        }
    }
}

impl Error {
    /// A bind error of `service` on `host:port`.
    pub fn bind(service: &'static str, host: &str, port: u16, source: std::io::Error) -> Self {
        Error::Bind {
            service,
            address: format!("{host}:{port}"),
            source,
        }
    }

    /// A storage error on `path` (a URL), with the store's message.
    pub fn storage(path: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Storage {
            path: path.into(),
            message: tidy(&message.to_string()),
        }
    }

    /// Wraps a DataFusion error with what Ember was doing.
    pub fn datafusion(context: impl Into<String>, source: DataFusionError) -> Self {
        Error::DataFusion {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Classifies a DataFusion error: plan and SQL errors are the user's, and so are execution
/// errors (a value that does not cast, a CSV line with too many fields, a division by zero:
/// the data or the query at run time). I/O and object store errors are external, the rest
/// internal.
///
/// Ballista reports a job whose task failed on an executor as an execution error whose text
/// holds the task's error in Rust's debug form (see [`readable`]): that form is all that
/// crosses the network, so it is read for the task error's variant. An I/O or object store
/// error there (a full disk, a lost DataNode: `IoError(`, `ObjectStore(`, `Os { code: …`,
/// `store: "…"`) is external; any other remote failure is the user's.
pub fn datafusion_kind(error: &DataFusionError) -> ErrorKind {
    match error.find_root() {
        DataFusionError::Execution(message) => {
            let remote = task_error(message).unwrap_or(message);
            if REMOTE_IO_MARKERS.iter().any(|m| remote.contains(m)) {
                ErrorKind::External
            } else {
                ErrorKind::User
            }
        }
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::NotImplemented(_) => ErrorKind::User,
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => ErrorKind::External,
        DataFusionError::ArrowError(e, _) => match e.as_ref() {
            datafusion::arrow::error::ArrowError::CsvError(_)
            | datafusion::arrow::error::ArrowError::ParseError(_)
            | datafusion::arrow::error::ArrowError::CastError(_) => ErrorKind::User,
            datafusion::arrow::error::ArrowError::IoError(..) => ErrorKind::External,
            _ => ErrorKind::Internal,
        },
        DataFusionError::External(_) => ErrorKind::External,
        _ => ErrorKind::Internal,
    }
}

/// How Ballista introduces a failed task's error in a job's error text.
const TASK: &str = "Task failed due to runtime execution error: ";

/// What the debug form of an I/O or object store error contains, and the gRPC errors Ballista's
/// client reports as execution errors when the scheduler cannot be reached or its connection
/// breaks (`Status { code: Unavailable, … }`, `code: 'Unknown error', message: "h2 protocol
/// error: …", source: hyper::Error(…)`, `tonic::transport::Error(Transport, ConnectError(…))`).
const REMOTE_IO_MARKERS: [&str; 12] = [
    "IoError(",
    "ObjectStore(",
    // The same errors as DataFusion displays them, when a job fails on the scheduler (a stage
    // planned over files whose DataNode is gone): `Job … failed: DataFusion error: Object
    // Store error: …`.
    "Object Store error: ",
    "IO error: ",
    "Os { code: ",
    "store: \"",
    "kind: StorageFull",
    "Status { code: Unavailable",
    "The service is currently unavailable",
    "tonic::transport::Error(",
    "hyper::Error(",
    "h2 protocol error",
];

/// The failed task's error (debug form) in a Ballista job error's text, if there is one.
fn task_error(text: &str) -> Option<&str> {
    text.find(TASK).map(|at| &text[at + TASK.len()..])
}

/// `message` as one line for a person: Java stack frames dropped (`\tat org.apache…(File.java:1)`
/// and `... 12 more`, which HDFS RPC errors carry after the exception's message), HDFS
/// DataNodes shortened ([`tidy_datanodes`]), whitespace collapsed ([`one_line`]).
pub fn tidy(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            let frame = line.starts_with("at ") && line.ends_with(')');
            let more = line.starts_with("... ") && line.ends_with(" more");
            !(frame || more)
        })
        .collect();
    one_line(&tidy_datanodes(&kept.join("\n")))
}

/// Collapses a multi-line message (DataFusion's contexts, backtraces) into one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A DataFusion error as one line, with a failed Ballista task's error unwrapped. Ballista
/// reports it as `Job … failed: … Task failed due to runtime execution error: <debug form>`:
/// - `DataFusionError(Shared(External(DataFusionError(Execution("<message>")))))`: the user
///   gets `<message>`;
/// - an operating system error inside (there or in any other debug form, such as the gRPC
///   status of a scheduler that cannot be reached), e.g. `… Generic { store: "LocalFileSystem", source:
///   UnableToCopyDataToFile { source: Os { code: 28, kind: StorageFull, message: "No space
///   left on device" } } …`: the user gets `LocalFileSystem: No space left on device (os error
///   28)`, as `std::io::Error` displays it.
pub fn readable(error: &DataFusionError) -> String {
    let text = tidy_datanodes(&error.strip_backtrace());
    if let Some(os) = io_error(&text) {
        return os;
    }
    let Some(task) = task_error(&text) else {
        return one_line(&text);
    };
    // The innermost `Variant("…")`: from its opening quote to the last quote.
    let inner = task
        .rfind("(\"")
        .zip(task.rfind("\")"))
        .filter(|(open, close)| open < close)
        .map(|(open, close)| unescape_debug(&task[open + 2..close]));
    match inner {
        Some(message) => one_line(&message),
        None => one_line(&text),
    }
}

/// `text` with each debug-printed HDFS DataNode (`DatanodeInfoProto { id: DatanodeIdProto {
/// ip_addr: "127.0.0.1", …, xfer_port: 37447, … }, capacity: …, … }`, as hdfs-native's "All
/// DataNodes failed: [...]" lists them) shortened to its data transfer address
/// (`127.0.0.1:37447`).
pub fn tidy_datanodes(text: &str) -> String {
    const START: &str = "DatanodeInfoProto {";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        out.push_str(&rest[..at]);
        let node = &rest[at..];
        // The struct ends at the brace that closes its opening one.
        let mut depth = 0usize;
        let mut end = node.len();
        for (i, c) in node.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        // Inside another debug-printed string (a task's error as Ballista reports it) the
        // quotes are escaped: `ip_addr: \"127.0.0.1\"`.
        let body = node[..end].replace("\\\"", "\"");
        let ip = quoted_after(&body, "ip_addr: ").unwrap_or_else(|| "?".into());
        let port: String = body
            .find("xfer_port: ")
            .map(|p| {
                body[p + "xfer_port: ".len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!("DataNode {ip}:{port}"));
        rest = &node[end..];
    }
    out.push_str(rest);
    out
}

/// An `std::io::Error` in a debug form, as the user should read it:
/// - `Os { code: N, kind: K, message: "M" }` as `[store: ]M (os error N)`, as `std::io::Error`
///   displays it;
/// - `Custom { kind: K, error: "M" }` (an error a library made, e.g. hdfs-native's `RPC
///   listener disconnected` when the NameNode goes away mid-call; the innermost one) as
///   `[store: ]M`.
///
/// `store` is the object store named before it (`store: "HdfsObjectStore"`), if any.
fn io_error(task: &str) -> Option<String> {
    let Some(at) = task.find("Os { code: ") else {
        let at = task.rfind("Custom { kind: ")?;
        let message = quoted_after(&task[at..], "error: ")?;
        return Some(match quoted_after(&task[..at], "store: ") {
            Some(store) => format!("{store}: {message}"),
            None => message,
        });
    };
    let os = &task[at..];
    let code: String = os["Os { code: ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let message = quoted_after(os, "message: ")?;
    let store = quoted_after(&task[..at], "store: ");
    Some(match store {
        Some(store) => format!("{store}: {message} (os error {code})"),
        None => format!("{message} (os error {code})"),
    })
}

/// The debug-quoted string right after `label` (`label"…"`), unescaped.
fn quoted_after(text: &str, label: &str) -> Option<String> {
    let start = text.find(&format!("{label}\""))? + label.len() + 1;
    let rest = &text[start..];
    let mut end = None;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                end = Some(i);
                break;
            }
            _ => escaped = false,
        }
    }
    Some(one_line(&unescape_debug(&rest[..end?])))
}

/// Undoes Rust's `{:?}` escapes of a string (`\"`, `\\`, `\n`, `\t`, `\'`).
fn unescape_debug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let text = "a\nbé c\n";
        let at_c = text.find('c').expect("c");
        let loc = Location::of_offset("x.sql", text, at_c);
        assert_eq!(loc.to_string(), "x.sql:2:4");
        assert_eq!(
            Location::of_offset("x.sql", text, 0).to_string(),
            "x.sql:1:1"
        );
        // An offset past the end points after the last character instead of panicking.
        assert_eq!(Location::of_offset("x.sql", text, 999).line, 3);
    }

    #[test]
    fn a_ballista_task_error_is_unwrapped() {
        let error = DataFusionError::Execution(
            "Job 038J failed: Job failed due to stage 1 failed: Task failed due to runtime execution error: DataFusionError(Shared(External(DataFusionError(Execution(\"input `t`: line 3 of a \\\"b\\\".csv: too many fields\")))))".to_string(),
        );
        assert_eq!(
            readable(&error),
            "input `t`: line 3 of a \"b\".csv: too many fields"
        );
        assert_eq!(datafusion_kind(&error), ErrorKind::User);
        let plain = DataFusionError::Plan("no such\ncolumn".to_string());
        assert_eq!(readable(&plain), "Error during planning: no such column");
    }

    #[test]
    fn a_full_disk_on_an_executor_is_one_line_and_external() {
        // As Ballista 55 reports a Parquet write that hit ENOSPC on a local disk.
        let error = DataFusionError::Execution(
            "Job 038J53XB8Y000 failed: Job failed due to stage 1 failed: Task failed due to runtime execution error: DataFusionError(Shared(External(DataFusionError(ParquetError(External(Custom { kind: Other, error: Generic { store: \"LocalFileSystem\", source: UnableToCopyDataToFile { source: Os { code: 28, kind: StorageFull, message: \"No space left on device\" } } } }))))))".to_string(),
        );
        assert_eq!(
            readable(&error),
            "LocalFileSystem: No space left on device (os error 28)"
        );
        assert_eq!(datafusion_kind(&error), ErrorKind::External);
        let hdfs = DataFusionError::Execution(format!(
            "Job 1 failed: {TASK}DataFusionError(ObjectStore(Generic {{ store: \"HdfsObjectStore\", source: IO(Os {{ code: 111, kind: ConnectionRefused, message: \"Connection refused\" }}) }}))"
        ));
        assert_eq!(
            readable(&hdfs),
            "HdfsObjectStore: Connection refused (os error 111)"
        );
        assert_eq!(datafusion_kind(&hdfs), ErrorKind::External);
        // The NameNode killed while an executor writes a cached view (CI, 2026-12-05).
        let aborted = DataFusionError::Execution(format!(
            "Job 038J6FR43R000 failed: Job failed due to stage 1 failed: {TASK}DataFusionError(Shared(External(DataFusionError(ParquetError(External(Custom {{ kind: Other, error: Generic {{ store: \"HdfsObjectStore\", source: IOError(Custom {{ kind: ConnectionAborted, error: \"RPC listener disconnected\" }}) }} }}))))))"
        ));
        assert_eq!(
            readable(&aborted),
            "HdfsObjectStore: RPC listener disconnected"
        );
        assert_eq!(datafusion_kind(&aborted), ErrorKind::External);
        // A scheduler killed while the driver waits for a job's status.
        let broken = DataFusionError::Execution(
            "code: 'Unknown error', message: \"h2 protocol error: error reading a body from connection\", source: hyper::Error(Body, Error { kind: Io(Custom { kind: BrokenPipe, error: \"stream closed because of a broken pipe\" }) })".to_string(),
        );
        assert_eq!(datafusion_kind(&broken), ErrorKind::External);
        // A job that failed on the scheduler, as Ballista reports it.
        let planned = DataFusionError::Execution(
            "Job 038J5PHD5W000 failed: DataFusion error: Object Store error: Generic HdfsObjectStore error: data transfer error: All DataNodes failed: [DataNode 127.0.0.1:38111]".to_string(),
        );
        assert_eq!(datafusion_kind(&planned), ErrorKind::External);
    }

    #[test]
    fn hdfs_datanodes_are_shown_by_address() {
        let error = DataFusionError::Execution(
            "counting: Generic HdfsObjectStore error: data transfer error: All DataNodes failed: [DatanodeInfoProto { id: DatanodeIdProto { ip_addr: \"127.0.0.1\", host_name: \"localhost\", datanode_uuid: \"c9c1\", xfer_port: 37447, info_port: 38997, ipc_port: 32823, info_secure_port: Some(0) }, capacity: Some(270553174016), location: Some(\"/default-rack\"), num_blocks: None }]".to_string(),
        );
        assert_eq!(
            readable(&error),
            "Execution error: counting: Generic HdfsObjectStore error: data transfer error: All DataNodes failed: [DataNode 127.0.0.1:37447]"
        );
        assert_eq!(tidy_datanodes("no node here"), "no node here");
        // The same list inside a debug-printed string: its quotes escaped.
        let escaped = "Execution(\"All DataNodes failed: [DatanodeInfoProto { id: DatanodeIdProto { ip_addr: \\\"127.0.0.1\\\", xfer_port: 39353, info_port: 1 } }]\")";
        assert_eq!(
            tidy_datanodes(escaped),
            "Execution(\"All DataNodes failed: [DataNode 127.0.0.1:39353]\")"
        );
    }

    #[test]
    fn tidy_drops_java_stack_frames() {
        let hdfs = "Generic HdfsObjectStore error: RPC error: java.io.FileNotFoundException rename source /w/a is not found.\n\tat org.apache.hadoop.hdfs.server.namenode.FSDirRenameOp.validateRenameSource(FSDirRenameOp.java:543)\n\tat org.apache.hadoop.ipc.Server$Handler.run(Server.java:2045)\n\t... 3 more\n";
        assert_eq!(
            tidy(hdfs),
            "Generic HdfsObjectStore error: RPC error: java.io.FileNotFoundException rename source /w/a is not found."
        );
        // A line of the message itself that starts with "at " stays.
        assert_eq!(tidy("failed\nat offset 7"), "failed at offset 7");
    }

    #[test]
    fn one_line_collapses_whitespace() {
        assert_eq!(one_line("a\n  b\tc\n"), "a b c");
    }

    #[test]
    fn kinds() {
        let e = Error::BadSetting("x".into());
        assert_eq!(e.kind(), ErrorKind::User);
        assert!(!e.retryable());
        let e = Error::datafusion("x", DataFusionError::Plan("no such column".into()));
        assert_eq!(e.kind(), ErrorKind::User);
        let e = Error::datafusion("x", DataFusionError::Internal("bug".into()));
        assert_eq!(e.kind(), ErrorKind::Internal);
        let e = Error::storage("hdfs://nn:9000/x", "connection refused");
        assert_eq!((e.kind(), e.retryable()), (ErrorKind::External, true));
        let e = Error::bind(
            "scheduler",
            "127.0.0.1",
            1,
            std::io::Error::from(std::io::ErrorKind::AddrInUse),
        );
        assert_eq!(e.kind(), ErrorKind::User);
        assert!(
            e.to_string()
                .starts_with("scheduler: cannot listen on 127.0.0.1:1: "),
            "{e}"
        );
        assert_eq!(
            [ErrorKind::User, ErrorKind::External, ErrorKind::Internal].map(ErrorKind::exit_code),
            [1, 3, 4]
        );
    }
}
