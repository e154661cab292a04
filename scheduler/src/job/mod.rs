//! The batch job runner: runs a resolved [`Job`] on a session (embedded Ballista, a Ballista
//! cluster, or plain DataFusion for comparisons) and commits its output atomically.
//!
//! Steps of a run, in order; any failure removes the staging folder and leaves the previous
//! output as it was:
//! 1. register inputs (files must exist; non-UTF-8 CSV re-encoded; unique keys checked);
//! 2. plan the views, the quarantine and the output (SQL errors name file, line and column;
//!    partition columns must be produced by the output query);
//! 3. write the quarantine and the output as Parquet into `<output>/_temporary/<run_id>/`,
//!    partitioned hive-style; a NULL partition value goes to `col=__HIVE_DEFAULT_PARTITION__`
//!    (Hive's and Spark's rule) instead of DataFusion's silent misfiling;
//! 4. count: rows read, valid rows, quarantined rows by reason, and check that
//!    `read = valid + quarantined` and that every quarantined row has a reason;
//! 5. commit with dynamic partition overwrite and write the report to `<output>/_SUCCESS`.

pub mod committer;
pub mod inputs;
mod transcode;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::catalog::view::ViewTable;
use datafusion::common::Column;
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, cast, col, lit};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use ember_core::manifest::{Job, REASON_COLUMN};
use ember_core::sink::ParquetSinkNode;
use ember_core::sql_file::SqlFile;
use tracing::Instrument;

use crate::error::{Error, Result};
use committer::{Area, Committer};
use ember_core::report::{PartitionCounts, RowCounts, RunReport};

pub use ember_core::sink::HIVE_DEFAULT_PARTITION;

/// A new run id: the UTC start time and 8 random hex digits (ids sort by time).
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Names the distributed jobs of the next step `<job> <run_id> <step>` (Ballista's
/// `ballista.job.name`, shown by its UI and used by Ember's REST API to find a run's steps).
/// A plain DataFusion session has no such setting; nothing happens then.
pub fn name_step(ctx: &SessionContext, job: &str, run_id: &str, step: &str) {
    let name = format!("{job} {run_id} {step}");
    let _ = ctx
        .state_ref()
        .write()
        .config_mut()
        .options_mut()
        .set("ballista.job.name", &name);
}

/// Runs `job` on `ctx` and commits its output, under a new run id. `engine` names what `ctx`
/// executes on, for the report (`ballista-embedded`, `ballista-cluster`, `datafusion`).
///
/// # Errors
/// Any step's [`Error`]; nothing is committed then and the staging folder is removed.
pub async fn run(ctx: &SessionContext, job: &Job, engine: &str) -> Result<RunReport> {
    run_with_id(ctx, job, engine, &new_run_id()).await
}

/// [`run`] with a given run id (the scheduler's job id). The staging folder is
/// `<output>/_temporary/<run_id>/`.
///
/// # Errors
/// As [`run`].
pub async fn run_with_id(
    ctx: &SessionContext,
    job: &Job,
    engine: &str,
    run_id: &str,
) -> Result<RunReport> {
    let span = tracing::info_span!("job", job = %job.name, run_id = %run_id);
    run_in_span(ctx, job, engine, run_id).instrument(span).await
}

async fn run_in_span(
    ctx: &SessionContext,
    job: &Job,
    engine: &str,
    run_id: &str,
) -> Result<RunReport> {
    let started = Utc::now();
    let clock = Instant::now();
    let run_id = run_id.to_string();
    let committer = Committer::new(ctx, &job.output.path, &run_id)?;
    let result = execute(ctx, job, &committer).await;
    let staged = match result {
        Ok(staged) => staged,
        Err(e) => {
            if let Err(cleanup) = committer.cleanup().await {
                tracing::warn!(error = %cleanup, "could not remove the staging folder of a failed run");
            }
            return Err(e);
        }
    };
    let mut report = RunReport {
        job: job.name.clone(),
        run_id,
        engine: engine.to_string(),
        started_at: started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished_at: String::new(),
        duration_ms: 0,
        output: committer.output_url().to_string(),
        params: job
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        inputs: staged.inputs,
        rows: staged.rows,
        quarantined_by_reason: staged.by_reason,
        partitions: PartitionCounts::default(),
        files: 0,
        bytes: 0,
    };
    let mut areas = vec![(Area::Data, staged.output_files)];
    if job.quarantine.is_some() {
        areas.push((Area::Quarantine, staged.quarantine_files));
    }
    let commit = committer
        .commit(&areas, |summary| {
            fill(&mut report, summary, clock);
            serde_json::to_vec_pretty(&report).unwrap_or_default()
        })
        .await;
    match commit {
        Ok(summary) => {
            fill(&mut report, &summary, clock);
            Ok(report)
        }
        Err(e) => {
            if let Err(cleanup) = committer.cleanup().await {
                tracing::warn!(error = %cleanup, "could not remove the staging folder after a failed commit");
            }
            Err(e)
        }
    }
}

fn fill(report: &mut RunReport, summary: &committer::CommitSummary, clock: Instant) {
    let area = |name| summary.partitions.get(name).cloned().unwrap_or_default();
    report.partitions = PartitionCounts {
        written: area("data"),
        replaced: summary.replaced,
        quarantine: area("quarantine"),
    };
    report.files = summary.files;
    report.bytes = summary.bytes;
    report.finished_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    report.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
}

/// What a run staged, before the commit.
struct Staged {
    inputs: Vec<ember_core::report::InputSummary>,
    rows: RowCounts,
    by_reason: BTreeMap<String, u64>,
    /// Files the output's tasks reported (relative to the staging area).
    output_files: Vec<String>,
    /// Files the quarantine's tasks reported.
    quarantine_files: Vec<String>,
}

async fn execute(ctx: &SessionContext, job: &Job, committer: &Committer) -> Result<Staged> {
    let step = |label: &str| name_step(ctx, &job.name, committer.run_id(), label);
    let inputs = inputs::register_all(ctx, &job.inputs, committer, &step).await?;
    for view in &job.views {
        let plan = plan_query(ctx, view).await?;
        ctx.register_table(
            view.name.as_str(),
            Arc::new(ViewTable::new(plan, Some(view.text.clone()))),
        )
        .map_err(|e| view.error(e))?;
    }
    let output_path = &job.output.path;
    let output = hive_partitions(
        query(ctx, &job.output.sql).await?,
        &job.output.partition_by,
        &job.output.sql,
        output_path,
    )?;
    let quarantine = match &job.quarantine {
        Some(q) => {
            let df = query(ctx, &q.sql).await?;
            match df.schema().field_with_unqualified_name(REASON_COLUMN) {
                Ok(f)
                    if matches!(
                        f.data_type(),
                        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                    ) => {}
                _ => {
                    return Err(Error::Output {
                        path: output_path.clone(),
                        message: format!(
                            "{} must produce a text column `{REASON_COLUMN}`",
                            q.sql.path.display()
                        ),
                    });
                }
            }
            Some(hive_partitions(df, &q.partition_by, &q.sql, output_path)?)
        }
        None => None,
    };

    let mut rows = RowCounts::default();
    let mut quarantine_files = Vec::new();
    let clock = Instant::now();
    if let Some(df) = quarantine {
        step("quarantine");
        let written = write(
            ctx,
            df,
            &committer.staging_url(Area::Quarantine),
            job.quarantine
                .as_ref()
                .map(|q| q.partition_by.clone())
                .unwrap_or_default(),
        )
        .await
        .map_err(|e| Error::execution("writing the quarantine", e))?;
        rows.quarantined = written.rows;
        quarantine_files = written.paths;
        tracing::info!(
            rows = rows.quarantined,
            ms = clock.elapsed().as_millis() as u64,
            "quarantine written"
        );
    }
    let clock = Instant::now();
    step("output");
    let written = write(
        ctx,
        output,
        &committer.staging_url(Area::Data),
        job.output.partition_by.clone(),
    )
    .await
    .map_err(|e| Error::execution("writing the output", e))?;
    rows.written = written.rows;
    let output_files = written.paths;
    tracing::info!(
        rows = rows.written,
        ms = clock.elapsed().as_millis() as u64,
        "output written"
    );

    let clock = Instant::now();
    let by_reason = if rows.quarantined > 0 {
        step("quarantine reasons");
        count_reasons(ctx, committer, &quarantine_files).await?
    } else {
        BTreeMap::new()
    };
    if let Some(checks) = &job.checks {
        step(&format!("count {}", checks.rows_read));
        rows.read = Some(count_rows(ctx, &checks.rows_read).await?);
        step(&format!("count {}", checks.rows_valid));
        rows.valid = Some(count_rows(ctx, &checks.rows_valid).await?);
    }
    tracing::info!(ms = clock.elapsed().as_millis() as u64, "rows counted");
    reconcile(&rows, &by_reason)?;
    Ok(Staged {
        inputs,
        rows,
        by_reason,
        output_files,
        quarantine_files,
    })
}

/// Plans a SQL file that must be a query (not DDL, DML or COPY).
async fn plan_query(ctx: &SessionContext, sql: &SqlFile) -> Result<LogicalPlan> {
    let plan = ctx
        .state()
        .create_logical_plan(&sql.text)
        .await
        .map_err(|e| sql.error(e))?;
    if matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
    ) {
        return Err(ember_core::Error::Sql {
            location: ember_core::error::Location { path: sql.path.clone(), line: 1, column: 1 },
            message: "a job's SQL file must be one query (SELECT, WITH or VALUES); tables are declared in job.toml".to_string(),
        }
        .into());
    }
    Ok(plan)
}

async fn query(ctx: &SessionContext, sql: &SqlFile) -> Result<DataFrame> {
    let plan = plan_query(ctx, sql).await?;
    ctx.execute_logical_plan(plan)
        .await
        .map_err(|e| sql.error(e).into())
}

/// Checks that the partition columns exist and turns each into its folder name: the value as
/// text, or [`HIVE_DEFAULT_PARTITION`] for NULL (the files do not contain partition columns,
/// so their type is not lost; readers get it back from the folder names).
fn hive_partitions(
    df: DataFrame,
    partition_by: &[String],
    sql: &SqlFile,
    output: &str,
) -> Result<DataFrame> {
    let produced: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for p in partition_by {
        if !produced.contains(p) {
            return Err(Error::Output {
                path: output.to_string(),
                message: format!(
                    "partition column `{p}` is not produced by {} (it produces: {})",
                    sql.path.display(),
                    produced.join(", ")
                ),
            });
        }
    }
    if !partition_by.is_empty() && produced.len() == partition_by.len() {
        return Err(Error::Output {
            path: output.to_string(),
            message: format!(
                "{} produces only partition columns; files need at least one more",
                sql.path.display()
            ),
        });
    }
    if partition_by.is_empty() {
        return Ok(df);
    }
    let exprs: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if partition_by.contains(field.name()) {
                coalesce(vec![
                    cast(column, DataType::Utf8),
                    lit(HIVE_DEFAULT_PARTITION),
                ])
                .alias(field.name())
            } else {
                column
            }
        })
        .collect();
    df.select(exprs).map_err(|e| sql.error(e).into())
}

/// Writes `df` as Parquet under `url`, hive-partitioned; returns the rows written.
/// What the tasks of a write reported.
#[derive(Debug, Default)]
struct Written {
    /// Rows written.
    rows: u64,
    /// Files written by the successful task attempts, relative to the staging area.
    paths: Vec<String>,
}

/// Writes `df` through Ember's distributed Parquet sink: every task of the last stage writes its
/// own files under `url` (see `ember_core::sink`) and reports them.
async fn write(
    ctx: &SessionContext,
    df: DataFrame,
    url: &str,
    partition_by: Vec<String>,
) -> datafusion::error::Result<Written> {
    let (_, plan) = df.into_parts();
    let sink = ParquetSinkNode::try_new(plan, url.to_string(), partition_by)?;
    let plan = LogicalPlan::Extension(Extension {
        node: Arc::new(sink),
    });
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    let mut written = Written::default();
    for batch in &batches {
        let (Some(counts), Some(paths)) = (
            batch
                .column_by_name("count")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
            batch
                .column_by_name("paths")
                .and_then(|c| c.as_list_opt::<i32>()),
        ) else {
            return datafusion::common::internal_err!(
                "the Parquet sink returned {}",
                batch.schema()
            );
        };
        written.rows += counts.iter().flatten().sum::<u64>();
        for list in paths.iter().flatten() {
            let list = list.as_string::<i32>();
            written
                .paths
                .extend(list.iter().flatten().map(str::to_string));
        }
    }
    Ok(written)
}

async fn count_rows(ctx: &SessionContext, table: &str) -> Result<u64> {
    let context = || format!("counting the rows of `{table}`");
    let df = ctx
        .table(table)
        .await
        .map_err(|e| Error::execution(context(), e))?;
    let n = df
        .count()
        .await
        .map_err(|e| Error::execution(context(), e))?;
    Ok(n as u64)
}

/// Quarantined rows per reason, read back from the files the quarantine's tasks reported.
async fn count_reasons(
    ctx: &SessionContext,
    committer: &Committer,
    files: &[String],
) -> Result<BTreeMap<String, u64>> {
    let context = "counting quarantined rows by reason";
    let base = committer.staging_url(Area::Quarantine);
    let urls: Vec<String> = files.iter().map(|f| format!("{base}{f}")).collect();
    let batches = ctx
        .read_parquet(urls, ParquetReadOptions::default())
        .await
        .and_then(|df| df.aggregate(vec![col(REASON_COLUMN)], vec![count(lit(1)).alias("n")]))
        .map_err(|e| Error::execution(context, e))?
        .collect()
        .await
        .map_err(|e| Error::execution(context, e))?;
    let mut by_reason = BTreeMap::new();
    for batch in &batches {
        let reasons = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| Error::execution(context, e.into()))?;
        let reasons = reasons.as_string::<i32>();
        let counts = batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            let reason = if reasons.is_null(row) {
                String::new()
            } else {
                reasons.value(row).to_string()
            };
            *by_reason.entry(reason).or_insert(0) += counts.value(row) as u64;
        }
    }
    Ok(by_reason)
}

/// `read = valid + quarantined`, and every quarantined row has a reason.
fn reconcile(rows: &RowCounts, by_reason: &BTreeMap<String, u64>) -> Result<()> {
    if let Some(n) = by_reason.get("").filter(|n| **n > 0) {
        return Err(Error::Reconcile(format!(
            "{n} quarantined rows have no reason (NULL or empty `{REASON_COLUMN}`)"
        )));
    }
    let by_reason_total: u64 = by_reason.values().sum();
    if by_reason_total != rows.quarantined {
        return Err(Error::Reconcile(format!(
            "{} rows were written to the quarantine but {by_reason_total} were read back",
            rows.quarantined
        )));
    }
    if let (Some(read), Some(valid)) = (rows.read, rows.valid)
        && read != valid + rows.quarantined
    {
        return Err(Error::Reconcile(format!(
            "rows read {read} != rows valid {valid} + rows quarantined {} (difference {}); the quarantine query must select exactly the rows the valid table leaves out",
            rows.quarantined,
            read as i128 - (valid + rows.quarantined) as i128
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_rules() {
        let ok = RowCounts {
            read: Some(10),
            valid: Some(7),
            quarantined: 3,
            written: 2,
        };
        let reasons: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        reconcile(&ok, &reasons).expect("balanced");
        let lost = RowCounts {
            valid: Some(6),
            ..ok.clone()
        };
        let err = reconcile(&lost, &reasons).expect_err("a row is lost");
        assert!(
            err.to_string()
                .contains("rows read 10 != rows valid 6 + rows quarantined 3 (difference 1)"),
            "{err}"
        );
        let no_reason: BTreeMap<String, u64> = [("".to_string(), 3)].into();
        assert!(
            reconcile(&ok, &no_reason)
                .expect_err("no reason")
                .to_string()
                .contains("have no reason")
        );
        let mismatch: BTreeMap<String, u64> = [("a".to_string(), 2)].into();
        assert!(reconcile(&ok, &mismatch).is_err());
    }
}
