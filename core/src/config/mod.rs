//! Configuration of Ember's processes: the one TOML file every role reads ([`ConfigFile`], each
//! role its sections), the settings every role shares (storage, the REST token) and the
//! parsers of human values. Each role's own flags live with the role
//! (`ember_scheduler::config`, `ember_executor::config`, `ember_serving::config`).
//!
//! Every setting can be given as a flag, as an `EMBER_<SECTION>_<KEY>` environment variable, or
//! in a TOML file named by `--config` / `EMBER_CONFIG`. Flags win over the environment (clap),
//! both win over the file, and the file wins over the defaults. Durations and sizes are human
//! strings (`"5s"`, `"2GB"`). The file (unknown keys, and sizes or durations that do not
//! parse, are errors that name their line and column):
//!
//! ```toml
//! [scheduler]
//! bind_host = "0.0.0.0"          # EMBER_SCHEDULER_BIND_HOST
//! port = 50050                   # EMBER_SCHEDULER_PORT: gRPC and REST API on one port
//! external_host = "scheduler"    # EMBER_SCHEDULER_EXTERNAL_HOST
//! executor_timeout = "60s"       # EMBER_SCHEDULER_EXECUTOR_TIMEOUT
//! partitions = 4                 # EMBER_SCHEDULER_PARTITIONS: partitions per stage of submitted jobs
//! metadata_cache_limit = "50MiB" # EMBER_SCHEDULER_METADATA_CACHE_LIMIT: Parquet footers kept
//!
//! [executor]
//! scheduler = "scheduler:50050"  # EMBER_EXECUTOR_SCHEDULER
//! bind_host = "0.0.0.0"          # EMBER_EXECUTOR_BIND_HOST
//! external_host = "executor-1"   # EMBER_EXECUTOR_EXTERNAL_HOST: how other executors reach this one
//! port = 50051                   # EMBER_EXECUTOR_PORT: Arrow Flight (shuffle reads)
//! grpc_port = 50052              # EMBER_EXECUTOR_GRPC_PORT
//! task_slots = 2                 # EMBER_EXECUTOR_TASK_SLOTS
//! memory_limit = "2GB"           # EMBER_EXECUTOR_MEMORY_LIMIT
//! metadata_cache_limit = "50MiB" # EMBER_EXECUTOR_METADATA_CACHE_LIMIT: Parquet footers kept
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
mod security;

pub use flight_sql::{FlightSqlFile, Secret, TableFile, TokenFile, UserFile, ViewFile, parquet};
pub use security::{SecurityFile, TlsFile};

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
    /// `[security]`: the cluster secret's file, the allowed paths.
    #[serde(default)]
    pub security: security::SecurityFile,
    /// `[tls]`: certificates of every listener and client.
    #[serde(default)]
    pub tls: security::TlsFile,
}

/// `[scheduler]` of the configuration file; see `ember_scheduler::config::SchedulerArgs` for
/// each key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SchedulerFile {
    pub bind_host: Option<String>,
    pub port: Option<u16>,
    pub external_host: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub executor_timeout: Option<String>,
    pub partitions: Option<usize>,
    pub history_dir: Option<String>,
    pub history_max_jobs: Option<usize>,
    #[serde(default, deserialize_with = "duration_text")]
    pub history_max_age: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub stream_timeout: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub job_state_retention: Option<String>,
    #[serde(default, deserialize_with = "size_text")]
    pub metadata_cache_limit: Option<String>,
}

/// `[executor]` of the configuration file; see `ember_executor::config::ExecutorArgs` for each
/// key.
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
    #[serde(default, deserialize_with = "size_text")]
    pub memory_limit: Option<String>,
    #[serde(default, deserialize_with = "size_text")]
    pub metadata_cache_limit: Option<String>,
    pub work_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration_text")]
    pub heartbeat_interval: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub scheduler_connect_timeout: Option<String>,
}

/// `[storage]` of the configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// `[storage.hdfs]`.
    #[serde(default)]
    pub hdfs: HdfsFile,
    /// `[storage.s3]`.
    #[serde(default)]
    pub s3: S3File,
}

/// `[storage.s3]` of the configuration file: object_store's S3 options (`endpoint`,
/// `region`, `access_key_id`, `secret_access_key`, `allow_http`,
/// `virtual_hosted_style_request`, …; the `aws_` prefix is optional), over the standard
/// `AWS_*` variables; see [`StorageArgs`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct S3File {
    #[serde(default)]
    pub options: BTreeMap<String, String>,
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

    /// [`ConfigFile::load`] when a file is named, the defaults otherwise.
    ///
    /// # Errors
    /// As [`ConfigFile::load`].
    pub fn load_optional(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }
}

/// A size in the file (`"512MiB"`), checked as the file is read, so that a bad one is reported
/// at its line and column of the file.
fn size_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    checked_text(d, |t| parse_size("", t).map(drop))
}

/// A duration in the file (`"5s"`), checked as the file is read, as [`size_text`].
fn duration_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    checked_text(d, |t| parse_duration("", t).map(drop))
}

/// The text of an optional value that `check` accepts; its reason, as a deserializer's error
/// (the file's line and column go before it), when it does not.
fn checked_text<'de, D: serde::Deserializer<'de>>(
    d: D,
    check: impl Fn(&str) -> Result<()>,
) -> std::result::Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    if let Some(t) = &text {
        check(t).map_err(|e| match e {
            Error::InvalidSetting { message, .. } => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })?;
    }
    Ok(text)
}

/// An invalid setting: which one (flag and variable) and why.
pub fn invalid(setting: &str, message: impl std::fmt::Display) -> Error {
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

/// A size setting given as a flag (or its variable) or in the file, the flag winning; `None`
/// when neither gives it.
///
/// # Errors
/// [`Error::InvalidSetting`] naming `setting` when the text is not a size.
pub fn optional_size(setting: &str, flag: Option<&str>, file: Option<&str>) -> Result<Option<u64>> {
    flag.or(file)
        .map(|text| parse_size(setting, text))
        .transpose()
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
    /// S3 options for s3:// paths, `key=value` (repeatable, or comma-separated in the
    /// variable), over the standard AWS_* variables (AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP), e.g.
    /// endpoint=http://127.0.0.1:9000,allow_http=true. Keep secrets in the variables or the
    /// configuration file, not in flags.
    #[arg(
        long = "s3-option",
        env = "EMBER_STORAGE_S3_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub s3_options: Vec<String>,
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
    /// S3 options (file values first, flag values override; both over the AWS_* variables).
    pub s3_options: BTreeMap<String, String>,
}

/// `base` with `key=value` items of `flag` over it.
fn merge_options(
    flag: &str,
    base: &BTreeMap<String, String>,
    items: &[String],
) -> Result<BTreeMap<String, String>> {
    let mut options = base.clone();
    for option in items {
        let (k, v) = option
            .split_once('=')
            .ok_or_else(|| invalid(flag, format!("`{option}` is not key=value")))?;
        options.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(options)
}

/// The object_store S3 setting an option key names: `endpoint` or `aws_endpoint`, any case.
///
/// # Errors
/// A message naming the key and the usual options, for a key object_store does not know.
pub fn s3_config_key(
    key: &str,
) -> std::result::Result<object_store::aws::AmazonS3ConfigKey, String> {
    let lower = key.trim().to_ascii_lowercase();
    let name = if lower.starts_with("aws_") {
        lower
    } else {
        format!("aws_{lower}")
    };
    name.parse().map_err(|_| {
        format!(
            "unknown option `{key}` (object_store's S3 options: endpoint, region, access_key_id, secret_access_key, allow_http, virtual_hosted_style_request, …)"
        )
    })
}

impl StorageSettings {
    /// Resolves storage flags over the file's `[storage]`. S3 option keys are checked here, so
    /// that a misspelt one is refused when the command starts, not at the first S3 access.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for an option that is not `key=value`, or an S3 option
    /// object_store does not know.
    pub fn resolve(args: &StorageArgs, file: &StorageFile) -> Result<Self> {
        let hdfs_options = merge_options(
            "--hdfs-option / EMBER_STORAGE_HDFS_OPTIONS",
            &file.hdfs.options,
            &args.hdfs_options,
        )?;
        let s3_options = merge_options(
            "--s3-option / EMBER_STORAGE_S3_OPTIONS",
            &file.s3.options,
            &args.s3_options,
        )?;
        for key in s3_options.keys() {
            s3_config_key(key).map_err(|m| {
                invalid(
                    "storage.s3.options / --s3-option / EMBER_STORAGE_S3_OPTIONS",
                    m,
                )
            })?;
        }
        Ok(Self {
            hdfs_namenode: args
                .hdfs_namenode
                .clone()
                .or_else(|| file.hdfs.namenode.clone()),
            hdfs_user: args.hdfs_user.clone().or_else(|| file.hdfs.user.clone()),
            hdfs_options,
            s3_options,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_size_or_duration_in_the_file_is_reported_at_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ember.toml");
        let cases = [
            (
                "[executor]\ntask_slots = 2\nmemory_limit = \"2 gigs\"\n",
                3,
                "`2 gigs` is not a size",
            ),
            (
                "[scheduler]\nstream_timeout = \"soon\"\n",
                2,
                "`soon` is not a duration",
            ),
        ];
        for (text, line, why) in cases {
            std::fs::write(&path, text).expect("write");
            let err = ConfigFile::load(&path)
                .expect_err("a bad value")
                .to_string();
            assert!(
                err.contains(&format!("ember.toml:{line}:")) && err.contains(why),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        std::fs::write(
            &path,
            "[executor]\nmemory_limit = \"2GB\"\nheartbeat_interval = \"5s\"\n",
        )
        .expect("write");
        let file = ConfigFile::load(&path).expect("good values");
        assert_eq!(file.executor.memory_limit.as_deref(), Some("2GB"));
    }

    #[test]
    fn s3_options_are_checked_when_settings_are_resolved() {
        let args = |options: &[&str]| StorageArgs {
            s3_options: options.iter().map(|o| (*o).to_string()).collect(),
            ..StorageArgs::default()
        };
        let ok = StorageSettings::resolve(
            &args(&["endpoint=http://127.0.0.1:9000", "AWS_ALLOW_HTTP=true"]),
            &StorageFile::default(),
        )
        .expect("known options");
        assert_eq!(ok.s3_options.len(), 2);
        let mut file = StorageFile::default();
        file.s3.options.insert("colour".into(), "red".into());
        let err = StorageSettings::resolve(&args(&[]), &file)
            .expect_err("unknown option")
            .to_string();
        assert!(
            err.contains("unknown option `colour`") && err.contains("--s3-option"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
