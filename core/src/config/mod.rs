//! Configuration of Ember's processes (`ember scheduler`, `ember executor`).
//!
//! Every setting can be given as a flag, as an `EMBER_<SECTION>_<KEY>` environment variable, or
//! in a TOML file named by `--config` / `EMBER_CONFIG`. Flags win over the environment (clap),
//! both win over the file, and the file wins over the defaults. Durations and sizes are human
//! strings (`"5s"`, `"2GB"`). The file (unknown keys are errors that name their line):
//!
//! ```toml
//! [scheduler]
//! bind_host = "0.0.0.0"          # EMBER_SCHEDULER_BIND_HOST
//! port = 50050                   # EMBER_SCHEDULER_PORT: gRPC and REST API on one port
//! external_host = "scheduler"    # EMBER_SCHEDULER_EXTERNAL_HOST
//! executor_timeout = "60s"       # EMBER_SCHEDULER_EXECUTOR_TIMEOUT
//! partitions = 4                 # EMBER_SCHEDULER_PARTITIONS: partitions per stage of submitted jobs
//!
//! [executor]
//! scheduler = "scheduler:50050"  # EMBER_EXECUTOR_SCHEDULER
//! bind_host = "0.0.0.0"          # EMBER_EXECUTOR_BIND_HOST
//! external_host = "executor-1"   # EMBER_EXECUTOR_EXTERNAL_HOST: how other executors reach this one
//! port = 50051                   # EMBER_EXECUTOR_PORT: Arrow Flight (shuffle reads)
//! grpc_port = 50052              # EMBER_EXECUTOR_GRPC_PORT
//! task_slots = 2                 # EMBER_EXECUTOR_TASK_SLOTS
//! memory_limit = "2GB"           # EMBER_EXECUTOR_MEMORY_LIMIT
//! work_dir = "/var/lib/ember"    # EMBER_EXECUTOR_WORK_DIR: shuffle files
//! heartbeat_interval = "5s"      # EMBER_EXECUTOR_HEARTBEAT_INTERVAL
//! scheduler_connect_timeout = "30s"  # EMBER_EXECUTOR_SCHEDULER_CONNECT_TIMEOUT
//!
//! [storage.hdfs]
//! namenode = "hdfs://namenode:9000"  # EMBER_STORAGE_HDFS_NAMENODE: for hdfs:///paths
//! user = "ember"                 # EMBER_STORAGE_HDFS_USER
//! options = { "dfs.client.use.datanode.hostname" = "true" }  # EMBER_STORAGE_HDFS_OPTIONS="k=v,k=v"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::error::{Error, Location, Result};

mod flight_sql;

pub use flight_sql::{
    FlightSqlArgs, FlightSqlFile, FlightSqlSettings, Secret, TableFile, ViewFile,
};

/// The TOML configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[scheduler]`.
    #[serde(default)]
    pub scheduler: SchedulerFile,
    /// `[executor]`.
    #[serde(default)]
    pub executor: ExecutorFile,
    /// `[storage]`.
    #[serde(default)]
    pub storage: StorageFile,
    /// `[flight_sql]`.
    #[serde(default)]
    pub flight_sql: FlightSqlFile,
}

/// `[scheduler]` of the configuration file; see [`SchedulerArgs`] for each key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SchedulerFile {
    pub bind_host: Option<String>,
    pub port: Option<u16>,
    pub external_host: Option<String>,
    pub executor_timeout: Option<String>,
    pub partitions: Option<usize>,
}

/// `[executor]` of the configuration file; see [`ExecutorArgs`] for each key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ExecutorFile {
    pub scheduler: Option<String>,
    pub bind_host: Option<String>,
    pub external_host: Option<String>,
    pub port: Option<u16>,
    pub grpc_port: Option<u16>,
    pub metrics_port: Option<u16>,
    pub task_slots: Option<usize>,
    pub memory_limit: Option<String>,
    pub work_dir: Option<PathBuf>,
    pub heartbeat_interval: Option<String>,
    pub scheduler_connect_timeout: Option<String>,
}

/// `[storage]` of the configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// `[storage.hdfs]`.
    #[serde(default)]
    pub hdfs: HdfsFile,
}

/// `[storage.hdfs]` of the configuration file; see [`StorageArgs`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HdfsFile {
    pub namenode: Option<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl ConfigFile {
    /// Reads and parses a configuration file.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::Manifest`] with the line and column of a
    /// TOML error or an unknown key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Manifest {
            location: Location::of_offset(path, &text, e.span().map_or(0, |s| s.start)),
            message: crate::error::one_line(e.message()),
        })
    }

    fn load_optional(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }
}

/// An invalid setting: which one (flag and variable) and why.
pub(crate) fn invalid(setting: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidSetting {
        setting: setting.to_string(),
        message: message.to_string(),
    }
}

/// Parses a human duration (`"500ms"`, `"5s"`, `"2m"`).
///
/// # Errors
/// [`Error::InvalidSetting`] naming `setting`.
pub fn parse_duration(setting: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            setting,
            format!("`{text}` is not a duration ({e}); write e.g. 500ms, 5s, 2m"),
        )
    })
}

/// Parses a human size (`"512MiB"`, `"2GB"`); `"0"` is zero.
///
/// # Errors
/// [`Error::InvalidSetting`] naming `setting`.
pub fn parse_size(setting: &str, text: &str) -> Result<u64> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| {
            invalid(
                setting,
                format!("`{text}` is not a size ({e}); write e.g. 512MiB, 2GB"),
            )
        })
}

/// Storage flags shared by every process.
#[derive(Debug, Clone, Default, Args)]
pub struct StorageArgs {
    /// Default NameNode for `hdfs:///path` URLs, e.g. hdfs://namenode:9000 (Hadoop's
    /// fs.defaultFS); `hdfs://host:port/path` URLs name their own.
    #[arg(long, env = "EMBER_STORAGE_HDFS_NAMENODE", value_name = "URL")]
    pub hdfs_namenode: Option<String>,
    /// User name Ember acts as on HDFS (hdfs:// paths) [default: the HDFS client's default,
    /// $HADOOP_USER_NAME or the OS user].
    #[arg(long, env = "EMBER_STORAGE_HDFS_USER", value_name = "USER")]
    pub hdfs_user: Option<String>,
    /// Extra HDFS client options, `key=value` (repeatable, or comma-separated in the variable),
    /// e.g. dfs.client.use.datanode.hostname=true.
    #[arg(
        long = "hdfs-option",
        env = "EMBER_STORAGE_HDFS_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub hdfs_options: Vec<String>,
}

/// Resolved storage settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageSettings {
    /// The default NameNode, if set.
    pub hdfs_namenode: Option<String>,
    /// The HDFS user, if set.
    pub hdfs_user: Option<String>,
    /// HDFS client options (file values first, flag values override).
    pub hdfs_options: BTreeMap<String, String>,
}

impl StorageSettings {
    fn resolve(args: &StorageArgs, file: &StorageFile) -> Result<Self> {
        let mut hdfs_options = file.hdfs.options.clone();
        for option in &args.hdfs_options {
            let (k, v) = option.split_once('=').ok_or_else(|| {
                invalid(
                    "--hdfs-option / EMBER_STORAGE_HDFS_OPTIONS",
                    format!("`{option}` is not key=value"),
                )
            })?;
            hdfs_options.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(Self {
            hdfs_namenode: args
                .hdfs_namenode
                .clone()
                .or_else(|| file.hdfs.namenode.clone()),
            hdfs_user: args.hdfs_user.clone().or_else(|| file.hdfs.user.clone()),
            hdfs_options,
        })
    }

    /// Resolves storage flags over an optional configuration file (for commands without a
    /// section of their own, such as `ember run`).
    ///
    /// # Errors
    /// The configuration file's errors; [`Error::InvalidSetting`] for a bad option.
    pub fn resolve_with_file(args: &StorageArgs, config: Option<&Path>) -> Result<Self> {
        Self::resolve(args, &ConfigFile::load_optional(config)?.storage)
    }
}

/// Flags of `ember scheduler`.
#[derive(Debug, Clone, Default, Args)]
pub struct SchedulerArgs {
    /// TOML configuration file (flags and EMBER_* variables override it).
    #[arg(long, env = "EMBER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "EMBER_SCHEDULER_BIND_HOST", value_name = "HOST")]
    pub bind_host: Option<String>,
    /// Port of gRPC (executors, clients) and the REST API; 0 picks a free port [default: 50050].
    #[arg(long, env = "EMBER_SCHEDULER_PORT")]
    pub port: Option<u16>,
    /// Host name the scheduler advertises [default: the bind host, or localhost for 0.0.0.0].
    #[arg(long, env = "EMBER_SCHEDULER_EXTERNAL_HOST", value_name = "HOST")]
    pub external_host: Option<String>,
    /// An executor silent this long is lost; its tasks run again elsewhere [default: 60s].
    #[arg(
        long,
        env = "EMBER_SCHEDULER_EXECUTOR_TIMEOUT",
        value_name = "DURATION"
    )]
    pub executor_timeout: Option<String>,
    /// Partitions per stage (tasks per stage) of submitted jobs [default: 4].
    #[arg(long, env = "EMBER_SCHEDULER_PARTITIONS")]
    pub partitions: Option<usize>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: StorageArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub flight_sql: FlightSqlArgs,
}

/// Resolved settings of `ember scheduler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// Address to listen on.
    pub bind_host: String,
    /// Port of gRPC and the REST API (0: a free one).
    pub port: u16,
    /// Advertised host name.
    pub external_host: String,
    /// Executor loss timeout.
    pub executor_timeout: Duration,
    /// Partitions per stage of submitted jobs.
    pub partitions: usize,
    /// Storage settings.
    pub storage: StorageSettings,
    /// The Flight SQL endpoint.
    pub flight_sql: FlightSqlSettings,
}

impl SchedulerSettings {
    /// Default port of the scheduler (Ballista's).
    pub const DEFAULT_PORT: u16 = 50050;

    /// Resolves flags and variables over the configuration file over defaults.
    ///
    /// # Errors
    /// The configuration file's errors, and [`Error::InvalidSetting`] for a bad value.
    pub fn resolve(args: &SchedulerArgs) -> Result<Self> {
        let file = ConfigFile::load_optional(args.config.as_deref())?;
        let f = &file.scheduler;
        let bind_host = args
            .bind_host
            .clone()
            .or_else(|| f.bind_host.clone())
            .unwrap_or_else(|| "0.0.0.0".into());
        let external_host = args
            .external_host
            .clone()
            .or_else(|| f.external_host.clone())
            .unwrap_or_else(|| {
                if bind_host == "0.0.0.0" {
                    "localhost".into()
                } else {
                    bind_host.clone()
                }
            });
        let timeout = args
            .executor_timeout
            .clone()
            .or_else(|| f.executor_timeout.clone())
            .unwrap_or_else(|| "60s".into());
        let partitions = args.partitions.or(f.partitions).unwrap_or(4);
        if partitions == 0 {
            return Err(invalid(
                "--partitions / EMBER_SCHEDULER_PARTITIONS",
                "must be at least 1",
            ));
        }
        Ok(Self {
            bind_host,
            port: args.port.or(f.port).unwrap_or(Self::DEFAULT_PORT),
            external_host,
            executor_timeout: parse_duration(
                "--executor-timeout / EMBER_SCHEDULER_EXECUTOR_TIMEOUT",
                &timeout,
            )?,
            partitions,
            storage: StorageSettings::resolve(&args.storage, &file.storage)?,
            flight_sql: FlightSqlSettings::resolve(&args.flight_sql, &file.flight_sql)?,
        })
    }
}

/// Flags of `ember executor`.
#[derive(Debug, Clone, Default, Args)]
pub struct ExecutorArgs {
    /// TOML configuration file (flags and EMBER_* variables override it).
    #[arg(long, env = "EMBER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The scheduler, HOST:PORT [default: localhost:50050].
    #[arg(long, env = "EMBER_EXECUTOR_SCHEDULER", value_name = "HOST:PORT")]
    pub scheduler: Option<String>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "EMBER_EXECUTOR_BIND_HOST", value_name = "HOST")]
    pub bind_host: Option<String>,
    /// Host name other executors and clients use to fetch this executor's shuffle output
    /// [default: the bind host, or the machine's host name for 0.0.0.0].
    #[arg(long, env = "EMBER_EXECUTOR_EXTERNAL_HOST", value_name = "HOST")]
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle reads) [default: 50051].
    #[arg(long, env = "EMBER_EXECUTOR_PORT")]
    pub port: Option<u16>,
    /// gRPC port [default: 50052].
    #[arg(long, env = "EMBER_EXECUTOR_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// HTTP port of the executor's Prometheus `/metrics` [default: 50053].
    #[arg(long, env = "EMBER_EXECUTOR_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub token: TokenArgs,
    /// Tasks run at once [default: CPU cores].
    #[arg(long, env = "EMBER_EXECUTOR_TASK_SLOTS")]
    pub task_slots: Option<usize>,
    /// Memory of running tasks before operators spill, e.g. 2GB; 0 = unbounded
    /// [default: 512MiB per task slot].
    #[arg(long, env = "EMBER_EXECUTOR_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// Folder for shuffle and spill files [default: a temporary folder].
    #[arg(long, env = "EMBER_EXECUTOR_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// How often the executor reports to the scheduler [default: 5s].
    #[arg(
        long,
        env = "EMBER_EXECUTOR_HEARTBEAT_INTERVAL",
        value_name = "DURATION"
    )]
    pub heartbeat_interval: Option<String>,
    /// Give up when the scheduler cannot be reached this long at start [default: 30s].
    #[arg(
        long,
        env = "EMBER_EXECUTOR_SCHEDULER_CONNECT_TIMEOUT",
        value_name = "DURATION"
    )]
    pub scheduler_connect_timeout: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: StorageArgs,
}

/// The bearer token a command sends to the scheduler's REST API (or `ember serve`'s) when Flight
/// SQL authentication is on there: a static token of `[flight_sql]`.
#[derive(Debug, Clone, Default, Args)]
pub struct TokenArgs {
    /// Bearer token for the scheduler's REST API, when its Flight SQL authentication is on (a
    /// static token of [flight_sql]).
    #[arg(
        long,
        env = "EMBER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Resolved settings of `ember executor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorSettings {
    /// Scheduler host.
    pub scheduler_host: String,
    /// Scheduler port.
    pub scheduler_port: u16,
    /// Address to listen on.
    pub bind_host: String,
    /// Advertised host name.
    pub external_host: String,
    /// Arrow Flight port.
    pub port: u16,
    /// gRPC port.
    pub grpc_port: u16,
    /// HTTP port of `/metrics`.
    pub metrics_port: u16,
    /// Bearer token for the scheduler's REST API.
    pub token: Option<Secret>,
    /// Task slots.
    pub task_slots: usize,
    /// Memory limit in bytes (`Some(0)`: unbounded; `None`: 512 MiB per slot).
    pub memory_limit: Option<u64>,
    /// Work folder.
    pub work_dir: Option<PathBuf>,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Connect timeout at start.
    pub scheduler_connect_timeout: Duration,
    /// Storage settings.
    pub storage: StorageSettings,
}

/// Splits `HOST:PORT`.
///
/// # Errors
/// [`Error::InvalidSetting`] naming `setting`.
pub fn parse_host_port(setting: &str, text: &str) -> Result<(String, u16)> {
    let text = text
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("df://");
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid(setting, format!("`{text}` is not HOST:PORT")))?;
    let port = port
        .parse()
        .map_err(|_| invalid(setting, format!("`{port}` is not a port number")))?;
    if host.is_empty() {
        return Err(invalid(setting, format!("`{text}` has no host")));
    }
    Ok((host.to_string(), port))
}

/// This machine's host name (Linux `/proc/sys/kernel/hostname`), if it has one.
pub fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl ExecutorSettings {
    /// Resolves flags and variables over the configuration file over defaults.
    ///
    /// # Errors
    /// The configuration file's errors, and [`Error::InvalidSetting`] for a bad value.
    pub fn resolve(args: &ExecutorArgs) -> Result<Self> {
        let file = ConfigFile::load_optional(args.config.as_deref())?;
        let f = &file.executor;
        let scheduler = args
            .scheduler
            .clone()
            .or_else(|| f.scheduler.clone())
            .unwrap_or_else(|| "localhost:50050".into());
        let (scheduler_host, scheduler_port) =
            parse_host_port("--scheduler / EMBER_EXECUTOR_SCHEDULER", &scheduler)?;
        let bind_host = args
            .bind_host
            .clone()
            .or_else(|| f.bind_host.clone())
            .unwrap_or_else(|| "0.0.0.0".into());
        let external_host = args
            .external_host
            .clone()
            .or_else(|| f.external_host.clone())
            .unwrap_or_else(|| {
                if bind_host == "0.0.0.0" {
                    // As Spark advertises a host: the machine's name, which other machines (and
                    // other containers of a compose network) resolve.
                    machine_hostname().unwrap_or_else(|| "localhost".into())
                } else {
                    bind_host.clone()
                }
            });
        let task_slots = args
            .task_slots
            .or(f.task_slots)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        if task_slots == 0 {
            return Err(invalid(
                "--task-slots / EMBER_EXECUTOR_TASK_SLOTS",
                "must be at least 1",
            ));
        }
        let memory_limit = match args.memory_limit.clone().or_else(|| f.memory_limit.clone()) {
            Some(text) => Some(parse_size(
                "--memory-limit / EMBER_EXECUTOR_MEMORY_LIMIT",
                &text,
            )?),
            None => None,
        };
        let heartbeat = args
            .heartbeat_interval
            .clone()
            .or_else(|| f.heartbeat_interval.clone())
            .unwrap_or_else(|| "5s".into());
        let connect = args
            .scheduler_connect_timeout
            .clone()
            .or_else(|| f.scheduler_connect_timeout.clone())
            .unwrap_or_else(|| "30s".into());
        Ok(Self {
            scheduler_host,
            scheduler_port,
            bind_host,
            external_host,
            port: args.port.or(f.port).unwrap_or(50051),
            grpc_port: args.grpc_port.or(f.grpc_port).unwrap_or(50052),
            metrics_port: args.metrics_port.or(f.metrics_port).unwrap_or(50053),
            token: args.token.token.clone().map(Secret::new),
            task_slots,
            memory_limit,
            work_dir: args.work_dir.clone().or_else(|| f.work_dir.clone()),
            heartbeat_interval: parse_duration(
                "--heartbeat-interval / EMBER_EXECUTOR_HEARTBEAT_INTERVAL",
                &heartbeat,
            )?,
            scheduler_connect_timeout: parse_duration(
                "--scheduler-connect-timeout / EMBER_EXECUTOR_SCHEDULER_CONNECT_TIMEOUT",
                &connect,
            )?,
            storage: StorageSettings::resolve(&args.storage, &file.storage)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ember.toml");
        std::fs::write(
            &path,
            "[executor]\nscheduler = \"sched:6000\"\ntask_slots = 3\nmemory_limit = \"1GiB\"\n\n[storage.hdfs]\nuser = \"etl\"\noptions = { \"a\" = \"1\" }\n",
        )
        .expect("write");
        let args = ExecutorArgs {
            config: Some(path.clone()),
            task_slots: Some(5),
            storage: StorageArgs {
                hdfs_namenode: None,
                hdfs_user: None,
                hdfs_options: vec!["b=2".into()],
            },
            ..Default::default()
        };
        let s = ExecutorSettings::resolve(&args).expect("resolve");
        assert_eq!(
            (s.scheduler_host.as_str(), s.scheduler_port),
            ("sched", 6000)
        );
        assert_eq!(s.task_slots, 5, "flag wins");
        assert_eq!(s.memory_limit, Some(1 << 30), "file value");
        assert_eq!(s.port, 50051, "default");
        assert_eq!(s.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(s.storage.hdfs_user.as_deref(), Some("etl"));
        assert_eq!(s.storage.hdfs_options.len(), 2);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let args = ExecutorArgs {
            heartbeat_interval: Some("5 parsecs".into()),
            ..Default::default()
        };
        let err = ExecutorSettings::resolve(&args)
            .expect_err("bad duration")
            .to_string();
        assert!(err.starts_with("--heartbeat-interval / EMBER_EXECUTOR_HEARTBEAT_INTERVAL: `5 parsecs` is not a duration"), "{err}");
        let args = ExecutorArgs {
            scheduler: Some("nohost".into()),
            ..Default::default()
        };
        assert!(
            ExecutorSettings::resolve(&args)
                .expect_err("bad address")
                .to_string()
                .contains("is not HOST:PORT")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[scheduler]\nprot = 1\n").expect("write");
        let args = SchedulerArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = SchedulerSettings::resolve(&args)
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("bad.toml:2:1: unknown field `prot`"), "{err}");
    }

    #[test]
    fn scheduler_defaults() {
        let s = SchedulerSettings::resolve(&SchedulerArgs::default()).expect("defaults");
        assert_eq!(
            (s.bind_host.as_str(), s.port, s.external_host.as_str()),
            ("0.0.0.0", 50050, "localhost")
        );
        assert_eq!(s.executor_timeout, Duration::from_secs(60));
        assert_eq!(s.partitions, 4);
    }
}
