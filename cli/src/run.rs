//! `ember run <job> [--set name=value]…`: loads the job's manifest, applies parameters, starts
//! an embedded Ballista scheduler + executor, runs the job and prints its report.

use std::path::PathBuf;

use bytesize::ByteSize;
use clap::Args;
use ember_core::codec::Codecs;
use ember_core::config::{ConfigFile, StorageArgs, StorageSettings};
use ember_core::manifest::JobManifest;
use ember_core::params::Params;
use ember_core::runtime::RuntimeOptions;
use ember_core::security::{SecretUse, SecurityArgs, SecuritySettings};
use ember_core::session::SessionBuilder;

use crate::error::{Failure, Result};
use crate::format::{Format, print_json};

/// Arguments of `ember run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job folder (holding job.toml) or a manifest file.
    pub job: PathBuf,
    /// Override a job parameter declared in [params], as name=value (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// How to print the run's report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Set a DataFusion or Ballista session option for the run, as KEY=VALUE (repeatable), as
    /// spark-submit's `--conf`: e.g. `datafusion.execution.batch_size=16384`. An option
    /// DataFusion does not know is refused.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Task slots of the embedded executor, and partitions per stage [default: CPU cores].
    #[arg(
        long,
        env = "EMBER_EXECUTOR_TASK_SLOTS",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub parallelism: usize,
    /// Memory the executor's tasks may use before sorts, aggregations and joins spill to disk,
    /// e.g. 2GB; 0 for unbounded [default: 512MiB per task slot].
    #[arg(long, env = "EMBER_EXECUTOR_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<ByteSize>,
    /// Memory for Parquet footers kept across queries (one cache per process), e.g. 16MiB;
    /// 0 = none [default: 50MiB, DataFusion's].
    #[arg(long, env = "EMBER_EXECUTOR_METADATA_CACHE_LIMIT", value_name = "SIZE")]
    pub metadata_cache_limit: Option<ByteSize>,
    /// TOML configuration file; `ember run` reads its [storage] section.
    #[arg(long, env = "EMBER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: StorageArgs,
    /// Folder for spill files [default: the OS temporary folder].
    #[arg(long, env = "EMBER_EXECUTOR_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Streaming jobs: report the stream's progress to the web UI of this scheduler or
    /// `ember serve` (HTTP port), HOST:PORT, with the cluster secret.
    #[arg(long, env = "EMBER_REPORT_TO", value_name = "HOST:PORT")]
    pub report_to: Option<String>,
    /// Streaming jobs with --report-to: report at least this often, between micro-batches
    /// too (the driver's heartbeat; a stream silent past the scheduler's --stream-timeout is
    /// shown lost).
    #[arg(
        long,
        env = "EMBER_STREAM_HEARTBEAT_INTERVAL",
        value_name = "DURATION",
        default_value = "5s"
    )]
    pub heartbeat_interval: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub security: SecurityArgs,
}

impl RunArgs {
    /// The security settings: the allowed paths, and the cluster secret and TLS of
    /// `--report-to`.
    ///
    /// # Errors
    /// The configuration file's, a TLS file that cannot be read.
    pub fn security(&self) -> Result<SecuritySettings> {
        let file = ConfigFile::load_optional(self.config.as_deref())?;
        Ok(SecuritySettings::resolve(
            &self.security,
            &file,
            SecretUse::IfPresent,
        )?)
    }
}

/// Runs the job in embedded mode.
///
/// # Errors
/// The manifest's, the parameters', the embedded scheduler's or the run's, one line.
pub async fn run(args: RunArgs, storage: StorageSettings, codecs: Codecs) -> Result<()> {
    let manifest = JobManifest::load(&args.job)?;
    let mut params = manifest.params();
    let settings = Params::parse_settings(&args.set)?;
    params.apply(&settings)?;
    let job = manifest.resolve(params)?;
    let security = args.security()?;
    for (what, path) in job.paths() {
        security.paths.check(&what, path)?;
    }
    let mut builder = SessionBuilder::new(codecs);
    for pair in &args.conf {
        let (key, value) =
            pair.split_once('=')
                .ok_or_else(|| ember_core::Error::InvalidSetting {
                    setting: pair.clone(),
                    message: "--conf takes KEY=VALUE".into(),
                })?;
        builder = builder.with_option(key.trim(), value.trim());
    }
    let ctx = builder
        .with_parallelism(args.parallelism)
        .with_runtime(RuntimeOptions {
            storage,
            memory_limit: args.memory_limit.map(|b| b.as_u64()),
            spill_dir: args.spill_dir,
            metadata_cache_limit: args.metadata_cache_limit.map(|b| b.as_u64()),
        })
        .standalone()
        .await?;
    let report = ember_batch::run(&ctx, &job, "ballista-embedded")
        .await
        .map_err(|e| Failure::from(e).context(format!("job {} failed", job.name)))?;
    match args.format {
        Format::Table => println!("{report}"),
        Format::Json => print_json(&report)?,
    }
    Ok(())
}
