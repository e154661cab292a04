//! Committing a run whose output is a Delta table (`[output] format = "delta"`).
//!
//! The tasks wrote their files straight into the table's partition folders and reported their
//! `add` actions; nothing references those files yet. The commit, once every step succeeded
//! and the counts reconcile:
//! 1. the quarantine table (`<output>/_quarantine/`, a Delta table too): one commit replacing
//!    the quarantine partitions the run produced;
//! 2. the output table: one commit with the run's `add` actions and `remove` actions of the
//!    files of every partition it produced (dynamic partition overwrite, Delta's
//!    `replaceWhere` on those partitions), via `ember_core::table::delta::commit`;
//! 3. `<output>/_SUCCESS`, the run's JSON report (Delta readers skip `_` files).
//!
//! Both commits carry the run id in `commitInfo` (`ember.run_id`). The quarantine goes first,
//! so no committed output lacks its rejected rows. If the output's commit then fails, the
//! quarantine's is reverted (`ember_core::table::delta_revert`: one more commit giving the
//! quarantine its earlier files back; if that fails too, the run's error line says the
//! quarantine keeps its rows); if the run dies between the two, the output table is
//! still at its previous version, and the next run replaces the same quarantine partitions.
//! A run that fails before its commit, or whose commit conflicts with a concurrent one, leaves
//! both tables as they were; the files it wrote are unreferenced: removed here when the run
//! knows them, by `ember table vacuum` otherwise (e.g. after kill -9).

use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use ember_core::manifest::Job;
use ember_core::report::RunReport;
use ember_core::table::delta::{self, Commit, WriteMode};
use ember_core::table::delta_revert;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;
use serde_json::json;
use std::collections::BTreeMap;

use crate::committer::{Committer, QUARANTINE_DIR, SUCCESS_FILE};
use crate::error::{Error, Result};
use crate::staged::{Staged, finish};

/// The quarantine table's URL, with a trailing `/`.
pub(crate) fn quarantine_url(committer: &Committer) -> String {
    format!("{}{QUARANTINE_DIR}/", committer.output_url())
}

/// The data files the `add` actions in `reported` name, relative to the table.
///
/// # Errors
/// A reported entry that is not an `add` action.
pub(crate) fn paths(table: &str, reported: &[String]) -> Result<Vec<String>> {
    Ok(delta::parse_adds(table, reported)?
        .into_iter()
        .map(|a| a.path)
        .collect())
}

/// Deletes the files of `adds` under `table` (best effort: they are not referenced, and
/// `VACUUM` removes what is left).
async fn discard(committer: &Committer, table: &str, adds: &[delta::Add]) {
    let base = table
        .strip_prefix(committer.output_url().as_str())
        .unwrap_or_default();
    for add in adds {
        if let Ok(path) = committer.output_path(&format!("{base}{}", add.path)) {
            let _ = committer.store().delete(&path).await;
        }
    }
}

/// Deletes the files that a run which fails before its commit wrote into Delta tables:
/// `written` holds each table's URL and the `add` actions its tasks reported (best effort, as
/// [`discard`]).
pub(crate) async fn discard_written(committer: &Committer, written: Vec<(String, Vec<String>)>) {
    for (table, reported) in written {
        if let Ok(adds) = delta::parse_adds(&table, &reported) {
            discard(committer, &table, &adds).await;
        }
    }
}

/// One table's commit of this run; `None` when the run wrote no file there.
async fn commit_table(
    ctx: &SessionContext,
    committer: &Committer,
    table: &str,
    commit: Commit,
) -> Result<Option<delta::Committed>> {
    if commit.adds.is_empty() {
        return Ok(None);
    }
    let adds = commit.adds.clone();
    match delta::commit(&ctx.runtime_env(), table, commit).await {
        Ok(committed) => Ok(Some(committed)),
        Err(e) => {
            discard(committer, table, &adds).await;
            Err(e.into())
        }
    }
}

/// Reverts the quarantine's `version`, committed by this run before its output's commit
/// failed with `failed`, so that the failed run leaves both tables as they were. Returns the
/// error to report: `failed`, or, when the revert fails too (the storage still failing),
/// [`Error::QuarantineKept`], which also says that the quarantine holds this run's rejected
/// rows of the days it wrote until the next run on those days replaces them.
async fn revert_quarantine(
    ctx: &SessionContext,
    quarantine: &str,
    version: u64,
    schema: &SchemaRef,
    partition_by: &[String],
    info: BTreeMap<String, Value>,
    failed: Error,
) -> Error {
    match delta_revert::revert(
        &ctx.runtime_env(),
        quarantine,
        version,
        schema,
        partition_by,
        info,
    )
    .await
    {
        Ok(reverted) => {
            tracing::warn!(
                table = quarantine,
                version,
                reverted,
                "the output's commit failed: the quarantine's commit of this run is reverted"
            );
            failed
        }
        Err(e) => Error::QuarantineKept {
            source: Box::new(failed),
            table: quarantine.to_string(),
            version,
            revert: ember_core::error::one_line(&e.to_string()),
        },
    }
}

/// Commits the run's quarantine and output tables, then writes `_SUCCESS`; fills `report`.
///
/// # Errors
/// `ember_core::Error::TableConflict` when a concurrent run committed the same partitions
/// first; `ember_core::Error::InvalidTable` when the rows do not fit the existing table;
/// storage errors. The output table is then at its previous version.
pub(crate) async fn commit(
    ctx: &SessionContext,
    job: &Job,
    committer: &Committer,
    staged: Staged,
    report: &mut RunReport,
    clock: Instant,
) -> Result<()> {
    let info = delta::info([
        ("run_id", json!(committer.run_id())),
        ("job", json!(job.name)),
    ]);
    let output = committer.output_url().to_string();
    let quarantine = quarantine_url(committer);
    let data_adds = delta::parse_adds(&output, &staged.output_files)?;
    let quarantine_adds = delta::parse_adds(&quarantine, &staged.quarantine_files)?;
    report.files = data_adds.len() + quarantine_adds.len();
    report.bytes = data_adds
        .iter()
        .chain(&quarantine_adds)
        .map(|a| a.size.max(0) as u64)
        .sum();
    report.partitions.written = delta::partition_folders(&data_adds);
    report.partitions.quarantine = delta::partition_folders(&quarantine_adds);
    // The quarantine's commit, to revert if the output's fails: (version, schema, partitions).
    let mut quarantine_commit = None;
    if let (Some(q), Some(schema)) = (&job.quarantine, staged.quarantine_schema) {
        let committed = commit_table(
            ctx,
            committer,
            &quarantine,
            Commit {
                schema: schema.clone(),
                partition_by: q.partition_by.clone(),
                adds: quarantine_adds,
                mode: WriteMode::ReplacePartitions,
                info: info.clone(),
                read_version: staged.read_versions.1,
                loaded: None,
            },
        )
        .await;
        match committed {
            Ok(Some(c)) => {
                report.quarantine_version = Some(c.version);
                report.partitions.replaced += c.replaced;
                quarantine_commit = Some((c.version, schema, q.partition_by.clone()));
            }
            Ok(None) => {}
            Err(e) => {
                discard(committer, &output, &data_adds).await;
                return Err(e);
            }
        }
    }
    let committed = commit_table(
        ctx,
        committer,
        &output,
        Commit {
            schema: staged.output_schema,
            partition_by: job.output.partition_by.clone(),
            adds: data_adds,
            mode: WriteMode::ReplacePartitions,
            info: info.clone(),
            read_version: staged.read_versions.0,
            loaded: None,
        },
    )
    .await;
    let committed = match committed {
        Ok(committed) => committed,
        Err(e) => {
            let Some((version, schema, partition_by)) = quarantine_commit else {
                return Err(e);
            };
            return Err(revert_quarantine(
                ctx,
                &quarantine,
                version,
                &schema,
                &partition_by,
                info,
                e,
            )
            .await);
        }
    };
    if let Some(c) = committed {
        report.table_version = Some(c.version);
        report.partitions.replaced += c.replaced;
    }
    finish(report, clock);
    let success = committer.output_path(SUCCESS_FILE)?;
    let body = serde_json::to_vec_pretty(report).unwrap_or_default();
    committer
        .store()
        .put(&success, PutPayload::from(body))
        .await
        .map_err(|e| Error::storage(format!("writing {success}"), e))?;
    committer.cleanup().await
}
