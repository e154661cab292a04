//! Table maintenance on Delta tables, through delta-rs's own operations (`ember table …`):
//! - [`history`]: the table's versions, newest first, with the run or stream that committed
//!   each, rows and files added and removed (from `commitInfo`);
//! - [`vacuum`]: deletes the data files no version within the retention period references
//!   (files of replaced partitions, of failed or killed runs), as Delta's `VACUUM … RETAIN`;
//! - [`optimize`]: compacts small files (a stream's micro-batches) into files of about a
//!   target size, in one commit that changes no row (Delta's `OPTIMIZE`).

use std::num::NonZeroU64;
use std::time::Duration;

use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::operations::vacuum::VacuumMode;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

use super::delta;
use crate::error::{Error, Result};

/// One version of a table's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// The table version.
    pub version: u64,
    /// When it was committed, RFC 3339 UTC (absent when the log does not say).
    pub timestamp: Option<String>,
    /// Delta's operation: `CREATE TABLE`, `WRITE`, `STREAMING UPDATE`, `OPTIMIZE`, …
    pub operation: String,
    /// The batch run that committed it (`ember.run_id`), if Ember's.
    pub run_id: Option<String>,
    /// The stream and micro-batch that committed it, if a stream's.
    pub stream_batch: Option<String>,
    /// Rows the version added (from the `add` actions' statistics), if known.
    pub rows_added: Option<u64>,
    /// Data files added.
    pub files_added: Option<u64>,
    /// Data files removed.
    pub files_removed: Option<u64>,
}

fn number(info: &std::collections::HashMap<String, Value>, key: &str) -> Option<u64> {
    match info.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The table's last `limit` versions (all when `None`), newest first.
///
/// # Errors
/// [`Error::Storage`] when the location is not a Delta table or its log cannot be read.
pub async fn history(
    runtime: &RuntimeEnv,
    location: &str,
    limit: Option<usize>,
) -> Result<Vec<HistoryEntry>> {
    let table = delta::load(runtime, location, None).await?;
    let latest = table.version().unwrap_or(0);
    let infos: Vec<_> = table
        .history(limit)
        .try_collect()
        .await
        .map_err(|e| Error::storage(location, e))?;
    Ok(infos
        .into_iter()
        .enumerate()
        .map(|(i, info)| {
            let text = |key: &str| {
                info.info
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let parameter = |key: &str| {
                info.operation_parameters
                    .as_ref()
                    .and_then(|p| p.get(key))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            };
            let stream_batch = match (parameter("queryId"), parameter("epochId")) {
                (Some(query), Some(epoch)) => Some(format!("{query} batch {epoch}")),
                _ => None,
            };
            let metrics = info
                .info
                .get("operationMetrics")
                .and_then(Value::as_object)
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default();
            HistoryEntry {
                version: latest.saturating_sub(i as u64),
                timestamp: info.timestamp.and_then(|ms| {
                    chrono::DateTime::from_timestamp_millis(ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                }),
                operation: info.operation.clone().unwrap_or_default(),
                run_id: text("ember.run_id"),
                stream_batch,
                rows_added: number(&info.info, "ember.rows_added")
                    .or_else(|| number(&metrics, "numOutputRows")),
                files_added: number(&info.info, "ember.files_added")
                    .or_else(|| number(&metrics, "numAddedFiles")),
                files_removed: number(&info.info, "ember.files_removed")
                    .or_else(|| number(&metrics, "numRemovedFiles")),
            }
        })
        .collect())
}

/// What [`vacuum`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vacuumed {
    /// Whether the files were only listed.
    pub dry_run: bool,
    /// The files deleted (or that would be), relative to the table.
    pub files: Vec<String>,
}

/// Deletes the table's data files that no version within `retain` references and that are
/// older than `retain` (Delta's `VACUUM … RETAIN`). Below the table's minimum retention
/// (`delta.deletedFileRetentionDuration`, 7 days by default) only with `force`, as Spark
/// requires turning its retention check off.
///
/// # Errors
/// [`Error::Storage`] for a location that is not a Delta table, a retention below the minimum
/// without `force`, or a file that cannot be deleted.
pub async fn vacuum(
    runtime: &RuntimeEnv,
    location: &str,
    retain: Duration,
    dry_run: bool,
    force: bool,
) -> Result<Vacuumed> {
    let table = delta::load(runtime, location, None).await?;
    let retention = chrono::Duration::from_std(retain).map_err(|e| Error::InvalidSetting {
        setting: "--retain".into(),
        message: e.to_string(),
    })?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        // Every file no version references (files of killed runs too), as Spark's VACUUM; the
        // lite mode would delete only the files versions removed.
        .with_mode(VacuumMode::Full)
        .with_enforce_retention_duration(!force)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("Invalid retention period") {
                Error::InvalidSetting {
                    setting: "--retain".into(),
                    message: format!(
                        "table {location}: {}; readers of older versions need those files (give --force to vacuum anyway)",
                        text.trim_start_matches("Generic error: ")
                    ),
                }
            } else {
                Error::storage(location, e)
            }
        })?;
    Ok(Vacuumed {
        dry_run: metrics.dry_run,
        files: metrics.files_deleted,
    })
}

/// What [`optimize`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Optimized {
    /// The version before.
    pub from_version: u64,
    /// The version the compaction committed (`from_version` when nothing needed compacting).
    pub to_version: u64,
    /// Files written.
    pub files_added: u64,
    /// Files compacted away.
    pub files_removed: u64,
    /// Partitions compacted.
    pub partitions: u64,
}

/// Compacts the table's small files into files of about `target_bytes`, one commit.
///
/// # Errors
/// [`Error::Storage`] for a location that is not a Delta table or a failed rewrite;
/// [`Error::TableConflict`] when a concurrent commit removed files it compacts.
pub async fn optimize(
    runtime: &RuntimeEnv,
    location: &str,
    target_bytes: u64,
) -> Result<Optimized> {
    let table = delta::load(runtime, location, None).await?;
    let from_version = table.version().unwrap_or(0);
    let target = NonZeroU64::new(target_bytes).ok_or_else(|| Error::InvalidSetting {
        setting: "--target-size".into(),
        message: "must be more than 0 bytes".into(),
    })?;
    let (table, metrics) = table
        .optimize()
        .with_target_size(target)
        .await
        .map_err(|e| Error::storage(location, e))?;
    Ok(Optimized {
        from_version,
        to_version: table.version().unwrap_or(from_version),
        files_added: metrics.num_files_added,
        files_removed: metrics.num_files_removed,
        partitions: metrics.partitions_optimized,
    })
}
