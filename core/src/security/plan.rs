//! What a cluster runs, checked where it runs: an executor checks every task's plan before it
//! executes it, whatever way the plan reached the scheduler (a logical plan, a physical plan
//! or SQL over Ballista's gRPC, Ember's job service, Flight SQL). Rules:
//! - every file a plan scans, and the folder Ember's Parquet sink writes, is under
//!   `[security] allowed_paths` ([`PathPolicy`]);
//! - DataFusion's own file sinks (`COPY … TO`, `INSERT INTO` a listing table) do not run: a
//!   cluster writes only through Ember's jobs, whose output the job service checked.
//!
//! [`check_logical`] applies the same rules to a statement before it is planned, where a
//! statement enters (Flight SQL): embedded mode's executor is Ballista's own, which checks
//! nothing, and a `CREATE EXTERNAL TABLE` reads its file's header while it is planned.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;

use super::PathPolicy;
use crate::error::{Error, Result};
use crate::sink::ParquetSinkExec;

/// Checks `plan` and its children against `policy`.
///
/// # Errors
/// [`Error::PathNotAllowed`] for a scanned file or a sink folder outside the allowed paths;
/// [`Error::Refused`] for a DataFusion file sink.
pub fn check_physical(plan: &Arc<dyn ExecutionPlan>, policy: &PathPolicy) -> Result<()> {
    if plan.downcast_ref::<DataSinkExec>().is_some() {
        return Err(Error::Refused(
            "COPY and INSERT do not run on an Ember cluster: write through a job's [output]".into(),
        ));
    }
    if let Some(sink) = plan.downcast_ref::<ParquetSinkExec>() {
        policy.check("a job's output", sink.url())?;
    }
    if !policy.is_open()
        && let Some(source) = plan.downcast_ref::<DataSourceExec>()
        && let Some(files) = source.data_source().downcast_ref::<FileScanConfig>()
    {
        let store = files.object_store_url.as_str();
        let store = store.strip_suffix('/').unwrap_or(store);
        for group in &files.file_groups {
            for file in group.files() {
                policy.check(
                    "a file the plan reads",
                    &format!("{store}/{}", file.object_meta.location),
                )?;
            }
        }
    }
    for child in plan.children() {
        check_physical(child, policy)?;
    }
    Ok(())
}

/// What a statement's plan may not do wherever it is planned: `COPY … TO` and `INSERT` into a
/// file-backed table are refused; a `CREATE EXTERNAL TABLE`'s location and every file-backed
/// table the plan reads must be under `policy`'s folders.
///
/// # Errors
/// [`Error::Refused`] for `COPY` or `INSERT` into files; [`Error::PathNotAllowed`] for a
/// location outside the allowed paths.
pub fn check_logical(plan: &LogicalPlan, policy: &PathPolicy) -> Result<()> {
    let mut found = Ok(());
    let _ = plan.apply(|node| {
        found = check_node(node, policy);
        Ok(if found.is_ok() {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    found
}

fn check_node(node: &LogicalPlan, policy: &PathPolicy) -> Result<()> {
    let refused = || {
        Err(Error::Refused(
            "COPY and INSERT into files do not run on Ember: write through a job's [output]".into(),
        ))
    };
    match node {
        LogicalPlan::Copy(_) => refused(),
        LogicalPlan::Dml(dml) if listing_paths(&dml.target).is_some() => refused(),
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => {
            for location in &create.locations {
                policy.check("an external table's location", location)?;
            }
            Ok(())
        }
        LogicalPlan::TableScan(scan) => {
            for path in listing_paths(&scan.source).unwrap_or_default() {
                policy.check("a table the statement reads", &path)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The folders or files of a file-backed (listing) table, `None` for any other table.
fn listing_paths(source: &Arc<dyn datafusion::logical_expr::TableSource>) -> Option<Vec<String>> {
    let provider = datafusion::datasource::source_as_provider(source).ok()?;
    let listing = provider.downcast_ref::<datafusion::datasource::listing::ListingTable>()?;
    Some(
        listing
            .table_paths()
            .iter()
            .map(|p| p.as_str().to_string())
            .collect(),
    )
}
