//! What a run has staged before its commit, and the report's end stamp: shared by the
//! Parquet committer's path (`runner`) and the Delta commit (`delta`).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use ember_core::report::{RowCounts, RunReport};

/// Stamps the report's end time and duration.
pub(crate) fn finish(report: &mut RunReport, clock: Instant) {
    report.finished_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    report.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
}

/// What a run staged, before the commit.
pub(crate) struct Staged {
    pub(crate) inputs: Vec<ember_core::report::InputSummary>,
    /// A database output's rows, written at the commit (`ember_ingest::export`).
    pub(crate) export: Option<datafusion::prelude::DataFrame>,
    /// The marks of the incremental database inputs, to commit with the output.
    pub(crate) marks: BTreeMap<String, ember_core::report::ImportMark>,
    pub(crate) rows: RowCounts,
    pub(crate) by_reason: BTreeMap<String, u64>,
    /// Files the output's tasks reported (relative to the staging area; for Delta, their
    /// `add` actions).
    pub(crate) output_files: Vec<String>,
    /// Files the quarantine's tasks reported (likewise).
    pub(crate) quarantine_files: Vec<String>,
    /// The output rows' schema (partition columns included).
    pub(crate) output_schema: SchemaRef,
    /// The quarantine rows' schema, when the job quarantines.
    pub(crate) quarantine_schema: Option<SchemaRef>,
    /// Delta: the output's and the quarantine's table versions when the run started.
    pub(crate) read_versions: (Option<u64>, Option<u64>),
    /// Rows of each cached view.
    pub(crate) cached_views: BTreeMap<String, u64>,
}
