//! One run of a job: its steps in order (see the crate's documentation), the report, and the
//! commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use datafusion::catalog::view::ViewTable;
use datafusion::prelude::SessionContext;
use ember_core::manifest::Job;
use ember_core::report::{PartitionCounts, RowCounts, RunReport};
use tracing::Instrument;

use crate::committer::{self, Area, Committer};
use crate::counts::{count_reasons, count_rows, reconcile};
use crate::error::{Error, Result};
use crate::plan::{check_reason_column, hive_partitions, plan_query, query};
use crate::write::write;

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
    let inputs = crate::inputs::register_all(ctx, &job.inputs, committer, &step).await?;
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
            check_reason_column(&df, &q.sql, output_path)?;
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
