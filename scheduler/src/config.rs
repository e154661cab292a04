//! Settings of `ember scheduler`: flags, `EMBER_SCHEDULER_*` variables and the configuration
//! file's `[scheduler]` section (see `ember_core::config` for the file and the precedence:
//! flags > variables > file > defaults).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ember_core::config::{
    ConfigFile, StorageArgs, StorageSettings, invalid, optional_size, parse_duration,
};
use ember_core::error::Result;
use ember_core::security::{SecretUse, SecurityArgs, SecuritySettings};
use ember_serving::config::{FlightSqlArgs, FlightSqlSettings};

use crate::history::Retention;

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
    /// Where the job history lives: a folder, relative to the working directory, or a URL
    /// (e.g. hdfs://namenode:8020/ember/history). Start the scheduler again with the same
    /// setting and it lists the jobs it ran before [default: history].
    #[arg(long, env = "EMBER_SCHEDULER_HISTORY_DIR", value_name = "DIR")]
    pub history_dir: Option<String>,
    /// Ended jobs the history keeps at most; the oldest are forgotten first [default: 1000].
    #[arg(long, env = "EMBER_SCHEDULER_HISTORY_MAX_JOBS", value_name = "COUNT")]
    pub history_max_jobs: Option<usize>,
    /// Ended jobs older than this are forgotten [default: 30days].
    #[arg(long, env = "EMBER_SCHEDULER_HISTORY_MAX_AGE", value_name = "DURATION")]
    pub history_max_age: Option<String>,
    /// A running stream whose driver has reported nothing for this long is shown lost (the
    /// drivers report every --heartbeat-interval, 5s by default) [default: 30s].
    #[arg(long, env = "EMBER_SCHEDULER_STREAM_TIMEOUT", value_name = "DURATION")]
    pub stream_timeout: Option<String>,
    /// How long a finished distributed job's stages and tasks stay in memory (Ballista's
    /// finished job state; stream drivers start one or two such jobs per micro-batch). Ember
    /// keeps each job's steps as it saw them in its job history; at least 10s [default: 2m].
    #[arg(
        long,
        env = "EMBER_SCHEDULER_JOB_STATE_RETENTION",
        value_name = "DURATION"
    )]
    pub job_state_retention: Option<String>,
    /// Memory for Parquet footers kept across queries and sessions (one cache per process;
    /// planning reads each file's footer for its statistics), e.g. 16MiB; 0 = none
    /// [default: 50MiB, DataFusion's].
    #[arg(
        long,
        env = "EMBER_SCHEDULER_METADATA_CACHE_LIMIT",
        value_name = "SIZE"
    )]
    pub metadata_cache_limit: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: StorageArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub flight_sql: FlightSqlArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub security: SecurityArgs,
}

/// Resolved settings of `ember scheduler`.
#[derive(Debug, Clone)]
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
    /// The job history's folder (a path relative to the working directory, or a URL).
    pub history_dir: String,
    /// How many ended jobs the history keeps, and for how long.
    pub history_retention: Retention,
    /// How long a running stream's driver may be silent before the stream is shown lost.
    pub stream_timeout: Duration,
    /// How long Ballista keeps a finished distributed job's state (whole seconds, at least 1).
    pub job_state_retention: Duration,
    /// Limit of the process's footer cache in bytes (`None`: 50 MiB, DataFusion's default).
    pub metadata_cache_limit: Option<u64>,
    /// Storage settings.
    pub storage: StorageSettings,
    /// The Flight SQL endpoint.
    pub flight_sql: FlightSqlSettings,
    /// The cluster secret (created when missing), TLS, the allowed paths.
    pub security: SecuritySettings,
}

impl SchedulerSettings {
    /// Default port of the scheduler (Ballista's).
    pub const DEFAULT_PORT: u16 = 50050;

    /// Resolves flags and variables over the configuration file over defaults.
    ///
    /// # Errors
    /// The configuration file's errors, and [`Error::InvalidSetting`] for a bad value.
    pub fn resolve(args: &SchedulerArgs) -> Result<Self> {
        Self::resolve_with(args, SecretUse::Create)
    }

    /// [`SchedulerSettings::resolve`] with another use of the cluster secret (`--check-config` only
    /// reads it where it is, so that checking creates nothing and a secret the scheduler will
    /// create is not an error yet).
    ///
    /// # Errors
    /// As [`SchedulerSettings::resolve`].
    pub fn resolve_with(args: &SchedulerArgs, secret: SecretUse) -> Result<Self> {
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
            history_dir: args
                .history_dir
                .clone()
                .or_else(|| f.history_dir.clone())
                .unwrap_or_else(|| "history".into()),
            history_retention: Retention {
                max_jobs: args.history_max_jobs.or(f.history_max_jobs).unwrap_or(1000),
                max_age: parse_duration(
                    "--history-max-age / EMBER_SCHEDULER_HISTORY_MAX_AGE",
                    args.history_max_age
                        .as_deref()
                        .or(f.history_max_age.as_deref())
                        .unwrap_or("30days"),
                )?,
            },
            stream_timeout: parse_duration(
                "--stream-timeout / EMBER_SCHEDULER_STREAM_TIMEOUT",
                args.stream_timeout
                    .as_deref()
                    .or(f.stream_timeout.as_deref())
                    .unwrap_or("30s"),
            )?,
            job_state_retention: job_state_retention(
                args.job_state_retention
                    .as_deref()
                    .or(f.job_state_retention.as_deref())
                    .unwrap_or("2m"),
            )?,
            metadata_cache_limit: optional_size(
                "--metadata-cache-limit / EMBER_SCHEDULER_METADATA_CACHE_LIMIT",
                args.metadata_cache_limit.as_deref(),
                f.metadata_cache_limit.as_deref(),
            )?,
            storage: StorageSettings::resolve(&args.storage, &file.storage)?,
            flight_sql: FlightSqlSettings::resolve(&args.flight_sql, &file.flight_sql)?,
            security: SecuritySettings::resolve(&args.security, &file, secret)?,
        })
    }
}

/// `--job-state-retention`: at least 10 s, so that the job manager, which reads a running
/// job's steps every 2 s, sees every step before Ballista forgets it.
fn job_state_retention(text: &str) -> Result<Duration> {
    const NAME: &str = "--job-state-retention / EMBER_SCHEDULER_JOB_STATE_RETENTION";
    let retention = parse_duration(NAME, text)?;
    if retention < Duration::from_secs(10) {
        return Err(invalid(NAME, "must be at least 10s"));
    }
    Ok(retention)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_names_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[scheduler]\nprot = 1\n").expect("write");
        let args = SchedulerArgs {
            config: Some(path),
            security: SecurityArgs {
                cluster_secret_file: Some(dir.path().join("cluster.secret")),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = SchedulerSettings::resolve(&args)
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("bad.toml:2:1: unknown field `prot`"), "{err}");
    }

    #[test]
    fn scheduler_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("ember").join("cluster.secret");
        let s = SchedulerSettings::resolve(&SchedulerArgs {
            security: SecurityArgs {
                cluster_secret_file: Some(secret.clone()),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("defaults");
        assert!(
            s.security.created_secret && secret.is_file(),
            "the secret is created"
        );
        assert!(s.security.tls.is_none() && s.security.paths.is_open());
        assert_eq!(
            (s.bind_host.as_str(), s.port, s.external_host.as_str()),
            ("0.0.0.0", 50050, "localhost")
        );
        assert_eq!(s.executor_timeout, Duration::from_secs(60));
        assert_eq!(s.partitions, 4);
        assert_eq!(s.metadata_cache_limit, None, "DataFusion's default");
    }
}
