//! One run of a job: its steps in order (see the crate's documentation), the report, and the
//! commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::view::ViewTable;
use datafusion::prelude::SessionContext;
use ember_core::manifest::{Job, OutputFormat};
use ember_core::report::{ImportMark, PartitionCounts, RowCounts, RunReport};
use ember_core::storage::lease::{Holder, LOCK_FILE, Lease};
use tracing::Instrument;

use crate::committer::{self, Area, Committer};
use crate::counts::{count_reasons, count_rows, reconcile};
use crate::error::{Error, Result};
use crate::plan::{check_reason_column, hive_partitions, plan_query, query};
use crate::staged::{Staged, finish};
use ember_core::sink::write;

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
    let lock = lock_and_recover(&committer, job).await?.0;
    let result = run_locked(ctx, job, engine, &committer, started, clock).await;
    if let Some(lock) = lock {
        lock.release().await;
        committer.remove_empty_root();
    }
    result
}

/// Takes the output's lock (a plain Parquet output takes one writer at a time; Delta commits
/// concurrently) and finishes the commits that killed runs began (their `_COMMIT` plans).
/// Returns the lock (Parquet) and the run ids whose commits were finished.
///
/// # Errors
/// [`Error::Locked`] naming the run that holds the output; storage errors.
async fn lock_and_recover(
    committer: &Committer,
    job: &Job,
) -> Result<(Option<Lease>, Vec<String>)> {
    match job.output.format {
        OutputFormat::Parquet => {
            let what = format!("output {}", committer.output_url());
            let url = format!("{}{LOCK_FILE}", committer.output_url());
            let holder = Holder {
                what: &what,
                url: &url,
                kind: "run",
                id: committer.run_id(),
                job: &job.name,
                hint: "try again when it has finished (a Delta output allows concurrent runs)",
            };
            let path = committer.output_path(LOCK_FILE)?;
            let lease = Lease::acquire(Arc::clone(committer.store()), path, holder).await?;
            // A run killed during its renames left its commit's plan: finish it first.
            match committer.recover().await {
                Ok(finished) => Ok((Some(lease), finished)),
                Err(e) => {
                    lease.release().await;
                    Err(e)
                }
            }
        }
        OutputFormat::Delta => Ok((None, Vec::new())),
    }
}

/// Ends run `run_id` of `job`, whose process stopped in the middle (a scheduler killed while
/// the job ran): takes the output's lock as a new run would (a lock left by a process gone
/// from this host is taken over), finishes the commit the run had begun if it left its plan,
/// and removes its staging folder. Returns whether the run's commit was finished (its output
/// is then in place).
///
/// # Errors
/// [`Error::Locked`] when a live run holds the output; storage errors.
pub async fn end_interrupted(ctx: &SessionContext, job: &Job, run_id: &str) -> Result<bool> {
    // Recovery skips its own run's plan: it runs under a new run id, as the next run would.
    let recovering = Committer::new(ctx, &job.output.path, &new_run_id())?;
    let (lock, finished) = lock_and_recover(&recovering, job).await?;
    let cleaned = Committer::new(ctx, &job.output.path, run_id)?
        .cleanup()
        .await;
    if let Some(lock) = lock {
        lock.release().await;
        recovering.remove_empty_root();
    }
    cleaned?;
    Ok(finished.iter().any(|id| id == run_id))
}

async fn run_locked(
    ctx: &SessionContext,
    job: &Job,
    engine: &str,
    committer: &Committer,
    started: chrono::DateTime<Utc>,
    clock: Instant,
) -> Result<RunReport> {
    let run_id = committer.run_id().to_string();
    // Delta files the run's steps wrote straight into the tables: unreferenced until the
    // commit, deleted when the run fails before it.
    let mut written = Vec::new();
    let mut result = execute(ctx, job, committer, true, &mut written).await;
    let split_error = match &result {
        Err(e) if e.to_string().contains(ember_core::csv::SPLIT_INSIDE_QUOTES) => {
            Some(e.to_string())
        }
        _ => None,
    };
    let whole_files = split_error.is_some();
    if let Some(error) = split_error {
        // A quoted line end fell on a byte range's start: read every CSV file in one task.
        tracing::warn!(%error, "reading the CSV inputs again with one task per file");
        crate::delta::discard_written(committer, std::mem::take(&mut written)).await;
        committer.cleanup().await?;
        for name in job
            .inputs
            .iter()
            .map(|i| &i.name)
            .chain(job.views.iter().map(|v| &v.name))
        {
            ctx.deregister_table(name.as_str())
                .map_err(|e| Error::execution(format!("forgetting table `{name}`"), e))?;
        }
        result = execute(ctx, job, committer, false, &mut written).await;
    }
    let mut staged = match result {
        Ok(staged) => staged,
        Err(e) => {
            crate::delta::discard_written(committer, written).await;
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
        inputs: staged.inputs.clone(),
        rows: staged.rows.clone(),
        quarantined_by_reason: staged.by_reason.clone(),
        partitions: PartitionCounts::default(),
        files: 0,
        bytes: 0,
        table_version: None,
        quarantine_version: None,
        incremental: staged.marks.clone(),
        cached_views: staged.cached_views.clone(),
        csv_read_whole_files: whole_files,
    };
    let exported = match (&job.output.database, staged.export.take()) {
        (Some(db), Some(df)) => {
            name_step(ctx, &job.name, &report.run_id, "export");
            ember_ingest::export(ctx, df, db)
                .await
                .map(|rows| report.rows.written = rows)
                .map_err(|e| Error::Database(Box::new(e)))
        }
        _ => Ok(()),
    };
    if let Err(e) = exported {
        if let Err(cleanup) = committer.cleanup().await {
            tracing::warn!(error = %cleanup, "could not remove the staging folder of a failed run");
        }
        return Err(e);
    }
    let commit = match job.output.format {
        OutputFormat::Parquet => {
            let mut areas = vec![(Area::Data, staged.output_files)];
            if job.quarantine.is_some() {
                areas.push((Area::Quarantine, staged.quarantine_files));
            }
            committer
                .commit(&areas, appends(job), |summary| {
                    fill(&mut report, summary, clock);
                    serde_json::to_vec_pretty(&report).unwrap_or_default()
                })
                .await
                .map(|summary| fill(&mut report, &summary, clock))
        }
        OutputFormat::Delta => {
            crate::delta::commit(ctx, job, committer, staged, &mut report, clock).await
        }
    };
    match commit {
        Ok(()) => Ok(report),
        Err(e) => {
            if committer.commit_begun().await {
                tracing::warn!(
                    run_id = committer.run_id(),
                    "the commit began: its plan and staged files are kept, and the next run of the output finishes it"
                );
            } else if let Err(cleanup) = committer.cleanup().await {
                tracing::warn!(error = %cleanup, "could not remove the staging folder after a failed commit");
            }
            Err(e)
        }
    }
}

/// Whether some SQL of the job (a view, the quarantine, the output) names `_corrupt_record`,
/// the column that carries malformed CSV lines.
fn reads_corrupt_record(job: &Job) -> bool {
    let column = ember_core::csv::CORRUPT_RECORD_COLUMN;
    job.views.iter().any(|v| v.text.contains(column))
        || job
            .quarantine
            .as_ref()
            .is_some_and(|q| q.sql.text.contains(column))
        || job.output.sql.text.contains(column)
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
    finish(report, clock);
}

/// Where the output's and the quarantine's tasks write: the run's staging folder for plain
/// Parquet (the committer moves the files), the tables themselves for Delta (the commit
/// references the files).
fn write_urls(job: &Job, committer: &Committer) -> (String, String) {
    match job.output.format {
        OutputFormat::Parquet => (
            committer.staging_url(Area::Data),
            committer.staging_url(Area::Quarantine),
        ),
        OutputFormat::Delta => (
            committer.output_url().to_string(),
            crate::delta::quarantine_url(committer),
        ),
    }
}

/// Whether the job appends to its output (an incremental database import) instead of
/// replacing the partitions it writes.
fn appends(job: &Job) -> bool {
    job.inputs
        .iter()
        .any(|i| i.database.as_ref().is_some_and(|d| d.incremental.is_some()))
}

/// The marks of the incremental inputs committed with the output (`_SUCCESS`), after
/// finishing a commit a killed run left half done.
async fn previous_marks(job: &Job, committer: &Committer) -> Result<BTreeMap<String, ImportMark>> {
    if !appends(job) {
        return Ok(BTreeMap::new());
    }
    if job.output.format != OutputFormat::Parquet {
        return Err(Error::Output {
            path: job.output.path.clone(),
            message: "an incremental import writes a parquet output (a delta output is not supported yet)".into(),
        });
    }
    let Some(bytes) = committer.last_success().await? else {
        return Ok(BTreeMap::new());
    };
    let report: RunReport = serde_json::from_slice(&bytes).map_err(|e| Error::Output {
        path: job.output.path.clone(),
        message: format!("_SUCCESS cannot be read ({e}); the last imported values are unknown"),
    })?;
    Ok(report.incremental)
}

/// Runs the job's queries into the staging folder. `split`: CSV files are read in byte ranges
/// (else one task per file).
/// Runs the job's steps up to its commit. Each Delta write that succeeded is added to
/// `written` (the table's URL and the `add` actions its tasks reported), so that a failure of
/// a later step can delete files nothing will reference.
async fn execute(
    ctx: &SessionContext,
    job: &Job,
    committer: &Committer,
    split: bool,
    written_to_tables: &mut Vec<(String, Vec<String>)>,
) -> Result<Staged> {
    let step = |label: &str| name_step(ctx, &job.name, committer.run_id(), label);
    // Delta: the versions this run starts from, before it reads anything.
    let read_versions = match job.output.format {
        OutputFormat::Parquet => (None, None),
        OutputFormat::Delta => {
            let runtime = ctx.runtime_env();
            let output = committer.output_url().to_string();
            (
                ember_core::table::delta::read_version(&runtime, &output).await?,
                ember_core::table::delta::read_version(
                    &runtime,
                    &crate::delta::quarantine_url(committer),
                )
                .await?,
            )
        }
    };
    let previous = previous_marks(job, committer).await?;
    let reading = crate::inputs::CsvReading {
        split,
        routes_malformed: reads_corrupt_record(job),
    };
    let (inputs, marks) =
        crate::inputs::register_all(ctx, &job.inputs, committer, &previous, &reading, &step)
            .await?;
    // Row counts known without counting: cached views, and tables a cached view has one row
    // per row of.
    let mut known_rows = BTreeMap::new();
    let mut cached_views = BTreeMap::new();
    for view in &job.views {
        let plan = plan_query(ctx, view).await?;
        if job.cached_views.contains(&view.name) {
            step(&format!("cache {}", view.name));
            let clock = Instant::now();
            let cached = crate::cache::cache_view(ctx, committer, view, plan).await?;
            tracing::info!(view = %view.name, rows = cached.rows, ms = clock.elapsed().as_millis() as u64, "view cached");
            known_rows.insert(view.name.clone(), cached.rows);
            cached_views.insert(view.name.clone(), cached.rows);
            if let Some(table) = cached.one_row_per_row_of {
                known_rows.insert(table, cached.rows);
            }
            continue;
        }
        ctx.register_table(
            view.name.as_str(),
            Arc::new(ViewTable::new(plan, Some(view.text.clone()))),
        )
        .map_err(|e| view.error(e))?;
    }
    let output_path = &job.output.path;
    let format = job.output.format;
    let output = hive_partitions(
        query(ctx, &job.output.sql).await?,
        &job.output.partition_by,
        &job.output.sql,
        output_path,
        format,
    )?;
    let quarantine = match &job.quarantine {
        Some(q) => {
            let df = query(ctx, &q.sql).await?;
            check_reason_column(&df, &q.sql, output_path)?;
            Some(hive_partitions(
                df,
                &q.partition_by,
                &q.sql,
                output_path,
                format,
            )?)
        }
        None => None,
    };
    let output_schema: SchemaRef = Arc::new(output.schema().as_arrow().clone());
    let quarantine_schema: Option<SchemaRef> = quarantine
        .as_ref()
        .map(|df| Arc::new(df.schema().as_arrow().clone()));
    let (data_url, quarantine_url) = write_urls(job, committer);

    let mut rows = RowCounts::default();
    let mut quarantine_files = Vec::new();
    let clock = Instant::now();
    if let Some(df) = quarantine {
        step("quarantine");
        let written = write(
            ctx,
            df,
            &quarantine_url,
            job.quarantine
                .as_ref()
                .map(|q| q.partition_by.clone())
                .unwrap_or_default(),
            format,
        )
        .await
        .map_err(|e| Error::writing("writing the quarantine", &quarantine_url, e))?;
        rows.quarantined = written.rows;
        quarantine_files = written.paths;
        if format == OutputFormat::Delta {
            written_to_tables.push((quarantine_url.clone(), quarantine_files.clone()));
        }
        tracing::info!(
            rows = rows.quarantined,
            ms = clock.elapsed().as_millis() as u64,
            "quarantine written"
        );
    }
    let clock = Instant::now();
    // A database output is written at the commit, in the database's transaction.
    let (output_files, export) = if job.output.database.is_some() {
        (Vec::new(), Some(output))
    } else {
        step("output");
        let written = write(
            ctx,
            output,
            &data_url,
            job.output.partition_by.clone(),
            format,
        )
        .await
        .map_err(|e| Error::writing("writing the output", &data_url, e))?;
        rows.written = written.rows;
        if format == OutputFormat::Delta {
            written_to_tables.push((data_url.clone(), written.paths.clone()));
        }
        tracing::info!(
            rows = rows.written,
            ms = clock.elapsed().as_millis() as u64,
            "output written"
        );
        (written.paths, None)
    };

    let clock = Instant::now();
    let by_reason = if rows.quarantined > 0 {
        step("quarantine reasons");
        let files = match format {
            OutputFormat::Parquet => quarantine_files.clone(),
            OutputFormat::Delta => crate::delta::paths(&quarantine_url, &quarantine_files)?,
        };
        count_reasons(ctx, &quarantine_url, &files).await?
    } else {
        BTreeMap::new()
    };
    if let Some(checks) = &job.checks {
        for (table, into) in [
            (&checks.rows_read, &mut rows.read),
            (&checks.rows_valid, &mut rows.valid),
        ] {
            *into = Some(match known_rows.get(table) {
                Some(n) => *n,
                None => {
                    step(&format!("count {table}"));
                    count_rows(ctx, table).await?
                }
            });
        }
    }
    tracing::info!(ms = clock.elapsed().as_millis() as u64, "rows counted");
    reconcile(&rows, &by_reason)?;
    Ok(Staged {
        inputs,
        marks,
        export,
        rows,
        by_reason,
        output_files,
        quarantine_files,
        output_schema,
        quarantine_schema,
        read_versions,
        cached_views,
    })
}
