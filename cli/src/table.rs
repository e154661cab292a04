//! `ember table history|vacuum|optimize <path>`: maintenance of a Delta table (a job's or a
//! stream's output with `format = "delta"`), local or on HDFS, run in this process with the
//! same storage settings as `ember run`.

use std::path::PathBuf;

use bytesize::ByteSize;
use clap::{Args, Subcommand};
use ember_core::codec::Codecs;
use ember_core::config::{ConfigFile, StorageArgs, StorageSettings, parse_duration};
use ember_core::runtime::RuntimeOptions;
use ember_core::security::{SecretUse, SecurityArgs, SecuritySettings};
use ember_core::session::SessionBuilder;
use ember_core::table::delta_maintenance as maintenance;

use crate::error::Result;
use crate::format::{Format, print_json, table};

/// Arguments of `ember table`.
#[derive(Debug, Args)]
pub struct TableArgs {
    #[command(subcommand)]
    /// What to do.
    pub action: TableAction,
    /// TOML configuration file: its [storage] and [security] sections.
    #[arg(long, env = "EMBER_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: StorageArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub security: SecurityArgs,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

/// `ember table` actions.
#[derive(Debug, Subcommand)]
pub enum TableAction {
    /// The table's versions, newest first: operation, run or stream batch, rows, files.
    History {
        /// The table's folder (local path or hdfs:// URL).
        path: String,
        /// Only the last N versions.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete data files no version within the retention period references (files of
    /// replaced partitions, of failed or killed runs), as Delta's VACUUM … RETAIN.
    Vacuum {
        /// The table's folder.
        path: String,
        /// Keep what versions younger than this reference, e.g. 168h, 7days.
        #[arg(long, default_value = "7days")]
        retain: String,
        /// Only list the files that would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Allow a retention below the table's minimum (7 days by default), as Spark's
        /// retentionDurationCheck.enabled=false; readers of older versions may then fail.
        #[arg(long)]
        force: bool,
    },
    /// Compact small files (a stream's micro-batches) into files of about --target-size, in
    /// one commit that changes no row (Delta's OPTIMIZE).
    Optimize {
        /// The table's folder.
        path: String,
        /// The size of the files to write.
        #[arg(long, default_value = "128MiB")]
        target_size: ByteSize,
    },
}

impl TableAction {
    fn path(&self) -> &str {
        match self {
            TableAction::History { path, .. }
            | TableAction::Vacuum { path, .. }
            | TableAction::Optimize { path, .. } => path,
        }
    }
}

/// Absolute, so that the table's URL does not depend on where the command runs.
fn location(path: &str) -> String {
    if path.contains("://") {
        return path.to_string();
    }
    std::path::absolute(path).map_or_else(|_| path.to_string(), |p| p.display().to_string())
}

/// Runs `ember table …`.
///
/// # Errors
/// The location is outside the allowed paths or not a Delta table; the operation's error.
pub async fn run(args: TableArgs, storage: StorageSettings, codecs: Codecs) -> Result<()> {
    let file = ConfigFile::load_optional(args.config.as_deref())?;
    let security = SecuritySettings::resolve(&args.security, &file, SecretUse::Check)?;
    let location = location(args.action.path());
    security.paths.check("table", &location)?;
    let ctx = SessionBuilder::new(codecs)
        .with_runtime(RuntimeOptions {
            storage,
            ..Default::default()
        })
        .local()?;
    let runtime = ctx.runtime_env();
    match args.action {
        TableAction::History { limit, .. } => {
            let entries = maintenance::history(&runtime, &location, limit).await?;
            if args.format == Format::Json {
                return print_json(&entries);
            }
            let dash = || "-".to_string();
            let rows = entries
                .iter()
                .map(|e| {
                    vec![
                        e.version.to_string(),
                        e.timestamp.clone().unwrap_or_else(dash),
                        e.operation.clone(),
                        e.run_id
                            .clone()
                            .or_else(|| e.stream_batch.clone())
                            .unwrap_or_else(dash),
                        e.rows_added.map_or_else(dash, |n| n.to_string()),
                        e.files_added.map_or_else(dash, |n| n.to_string()),
                        e.files_removed.map_or_else(dash, |n| n.to_string()),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "VERSION",
                        "TIMESTAMP",
                        "OPERATION",
                        "RUN",
                        "ROWS ADDED",
                        "FILES ADDED",
                        "FILES REMOVED"
                    ],
                    rows
                )
            );
        }
        TableAction::Vacuum {
            retain,
            dry_run,
            force,
            ..
        } => {
            let retain = parse_duration("--retain", &retain)?;
            let vacuumed = maintenance::vacuum(&runtime, &location, retain, dry_run, force).await?;
            if args.format == Format::Json {
                return print_json(&vacuumed);
            }
            let verb = if vacuumed.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            println!("table {location}: {verb} {} files", vacuumed.files.len());
            for f in &vacuumed.files {
                println!("  {f}");
            }
        }
        TableAction::Optimize { target_size, .. } => {
            let optimized =
                maintenance::optimize(&runtime, &location, target_size.as_u64()).await?;
            if args.format == Format::Json {
                return print_json(&optimized);
            }
            println!(
                "table {location}: version {} -> {}: {} files compacted into {} in {} partitions",
                optimized.from_version,
                optimized.to_version,
                optimized.files_removed,
                optimized.files_added,
                optimized.partitions
            );
        }
    }
    Ok(())
}
