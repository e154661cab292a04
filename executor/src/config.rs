//! Settings of `ember executor`: flags, `EMBER_EXECUTOR_*` variables and the configuration
//! file's `[executor]` section (see `ember_core::config` for the file and the precedence:
//! flags > variables > file > defaults).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ember_core::config::{
    ConfigFile, StorageArgs, StorageSettings, invalid, machine_hostname, optional_size,
    parse_duration, parse_host_port,
};
use ember_core::error::Result;
use ember_core::security::{SecretUse, SecurityArgs, SecuritySettings};

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
    /// Tasks run at once [default: CPU cores].
    #[arg(long, env = "EMBER_EXECUTOR_TASK_SLOTS")]
    pub task_slots: Option<usize>,
    /// Memory of running tasks before operators spill, e.g. 2GB; 0 = unbounded
    /// [default: 512MiB per task slot].
    #[arg(long, env = "EMBER_EXECUTOR_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// Memory for Parquet footers kept across queries and sessions (one cache per process),
    /// e.g. 16MiB; 0 = none [default: 50MiB, DataFusion's].
    #[arg(long, env = "EMBER_EXECUTOR_METADATA_CACHE_LIMIT", value_name = "SIZE")]
    pub metadata_cache_limit: Option<String>,
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
    #[command(flatten)]
    #[allow(missing_docs)]
    pub security: SecurityArgs,
}

/// Resolved settings of `ember executor`.
#[derive(Debug, Clone)]
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
    /// Task slots.
    pub task_slots: usize,
    /// Memory limit in bytes (`Some(0)`: unbounded; `None`: 512 MiB per slot).
    pub memory_limit: Option<u64>,
    /// Limit of the process's footer cache in bytes (`None`: 50 MiB, DataFusion's default).
    pub metadata_cache_limit: Option<u64>,
    /// Work folder.
    pub work_dir: Option<PathBuf>,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Connect timeout at start.
    pub scheduler_connect_timeout: Duration,
    /// Storage settings.
    pub storage: StorageSettings,
    /// The cluster secret (required: an executor presents it to the scheduler), TLS, the
    /// allowed paths of the tasks it runs.
    pub security: SecuritySettings,
}

impl ExecutorSettings {
    /// Resolves flags and variables over the configuration file over defaults.
    ///
    /// # Errors
    /// The configuration file's errors, and [`Error::InvalidSetting`] for a bad value.
    pub fn resolve(args: &ExecutorArgs) -> Result<Self> {
        Self::resolve_with(args, SecretUse::Require)
    }

    /// [`ExecutorSettings::resolve`] with another use of the cluster secret (`--check-config` only
    /// reads it where it is, so that checking creates nothing and a secret the scheduler will
    /// create is not an error yet).
    ///
    /// # Errors
    /// As [`ExecutorSettings::resolve`].
    pub fn resolve_with(args: &ExecutorArgs, secret: SecretUse) -> Result<Self> {
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
        let memory_limit = optional_size(
            "--memory-limit / EMBER_EXECUTOR_MEMORY_LIMIT",
            args.memory_limit.as_deref(),
            f.memory_limit.as_deref(),
        )?;
        let metadata_cache_limit = optional_size(
            "--metadata-cache-limit / EMBER_EXECUTOR_METADATA_CACHE_LIMIT",
            args.metadata_cache_limit.as_deref(),
            f.metadata_cache_limit.as_deref(),
        )?;
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
            task_slots,
            memory_limit,
            metadata_cache_limit,
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
            security: SecuritySettings::resolve(&args.security, &file, secret)?,
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
            "[executor]\nscheduler = \"sched:6000\"\ntask_slots = 3\nmemory_limit = \"1GiB\"\nmetadata_cache_limit = \"8MiB\"\n\n[storage.hdfs]\nuser = \"etl\"\noptions = { \"a\" = \"1\" }\n",
        )
        .expect("write");
        let secret = dir.path().join("cluster.secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("secret");
        let args = ExecutorArgs {
            config: Some(path.clone()),
            task_slots: Some(5),
            security: SecurityArgs {
                cluster_secret_file: Some(secret),
                ..Default::default()
            },
            storage: StorageArgs {
                hdfs_namenode: None,
                hdfs_user: None,
                hdfs_options: vec!["b=2".into()],
                s3_options: Vec::new(),
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
        assert_eq!(s.metadata_cache_limit, Some(8 << 20), "file value");
        assert_eq!(s.port, 50051, "default");
        assert_eq!(s.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(s.storage.hdfs_user.as_deref(), Some("etl"));
        assert_eq!(s.storage.hdfs_options.len(), 2);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let security = SecurityArgs {
            cluster_secret_file: Some(dir.path().join("none")),
            ..Default::default()
        };
        let err = ExecutorSettings::resolve(&ExecutorArgs {
            security: security.clone(),
            ..Default::default()
        })
        .expect_err("no secret")
        .to_string();
        assert!(err.contains("no cluster secret at"), "{err}");
        let secret = dir.path().join("cluster.secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("secret");
        let security = SecurityArgs {
            cluster_secret_file: Some(secret),
            ..Default::default()
        };
        let args = ExecutorArgs {
            heartbeat_interval: Some("5 parsecs".into()),
            security: security.clone(),
            ..Default::default()
        };
        let err = ExecutorSettings::resolve(&args)
            .expect_err("bad duration")
            .to_string();
        assert!(err.starts_with("--heartbeat-interval / EMBER_EXECUTOR_HEARTBEAT_INTERVAL: `5 parsecs` is not a duration"), "{err}");
        let args = ExecutorArgs {
            metadata_cache_limit: Some("lots".into()),
            security: security.clone(),
            ..Default::default()
        };
        let err = ExecutorSettings::resolve(&args)
            .expect_err("bad size")
            .to_string();
        assert!(
            err.starts_with(
                "--metadata-cache-limit / EMBER_EXECUTOR_METADATA_CACHE_LIMIT: `lots` is not a size"
            ),
            "{err}"
        );
        let args = ExecutorArgs {
            scheduler: Some("nohost".into()),
            security,
            ..Default::default()
        };
        assert!(
            ExecutorSettings::resolve(&args)
                .expect_err("bad address")
                .to_string()
                .contains("is not HOST:PORT")
        );
    }
}
