//! The report of a job run: printed by `ember run` and written as JSON to `<output>/_SUCCESS`.
//!
//! Shape of `_SUCCESS` (all counts in rows, sizes in bytes, durations in milliseconds):
//! ```json
//! { "job": "daily_revenue_by_product", "run_id": "20261121T054100Z-1a2b3c4d",
//!   "engine": "ballista-embedded", "started_at": "2026-11-21T05:41:00.123Z",
//!   "finished_at": "…", "duration_ms": 4123, "output": "file:///…/",
//!   "params": { "input": "…" }, "inputs": [ { "name": "raw_sales", "path": "…", "files": 1, "bytes": 7611818 } ],
//!   "rows": { "read": 541909, "valid": 540455, "quarantined": 1454, "written": 290603 },
//!   "quarantined_by_reason": { "zero_quantity": 0 },
//!   "partitions": { "written": ["order_date=2010-12-01"], "replaced": 0, "quarantine": [] },
//!   "files": 306, "bytes": 5123456,
//!   "table_version": 3, "quarantine_version": 3 }   // a Delta output only
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What was registered for one input (part of the run report).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputSummary {
    /// The table name.
    pub name: String,
    /// The path as given (after parameters).
    pub path: String,
    /// Matching files (0 for an absent optional input).
    pub files: usize,
    /// Their total size, in bytes (compressed size for `.gz`).
    pub bytes: u64,
    /// The encoding the files were re-encoded from, when not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reencoded_from: Option<String>,
    /// The files the run read (URLs), listed once when the run started: a file that arrived
    /// later is not among them and is read by the next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
}

/// Row counts of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows of the `checks.rows_read` table (absent without `[checks]`).
    pub read: Option<u64>,
    /// Rows of the `checks.rows_valid` table (absent without `[checks]`).
    pub valid: Option<u64>,
    /// Rows written to the quarantine.
    pub quarantined: u64,
    /// Rows written to the output.
    pub written: u64,
}

/// Partitions a run committed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionCounts {
    /// Output partition folders written (e.g. `order_date=2011-12-09`), sorted.
    pub written: Vec<String>,
    /// How many partitions (output and quarantine) replaced existing files.
    pub replaced: usize,
    /// Quarantine partition folders written, sorted.
    pub quarantine: Vec<String>,
}

/// The report of one committed run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunReport {
    /// The job's name.
    pub job: String,
    /// Unique id of the run: UTC start time and 8 random hex digits.
    pub run_id: String,
    /// What executed the SQL: `ballista-embedded` or `datafusion` (benchmarks).
    pub engine: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC.
    pub finished_at: String,
    /// Wall time from start to commit, in milliseconds.
    pub duration_ms: u64,
    /// The output folder, as a URL.
    pub output: String,
    /// The parameters in effect.
    pub params: BTreeMap<String, String>,
    /// The inputs read.
    pub inputs: Vec<InputSummary>,
    /// Row counts.
    pub rows: RowCounts,
    /// Quarantined rows per reason.
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Partitions committed.
    pub partitions: PartitionCounts,
    /// Files committed (output and quarantine).
    pub files: usize,
    /// Bytes committed (output and quarantine).
    pub bytes: u64,
    /// The Delta table version the run committed (a `delta` output only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<u64>,
    /// The quarantine table's version the run committed (a `delta` output only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_version: Option<u64>,
    /// Per incremental database input, the last value of its check column that this run
    /// (or an earlier one) imported: where the next run starts (Sqoop's `--last-value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incremental: BTreeMap<String, ImportMark>,
    /// Rows of each view computed once per run (`cache = true`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cached_views: BTreeMap<String, u64>,
    /// The CSV inputs were read with one task per file: the first attempt, in byte ranges,
    /// met a quoted field (with a line end in it) across a range's start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub csv_read_whole_files: bool,
}

/// The high-water mark of an incremental database input, committed with the output: the check
/// column and the largest value imported, as the database printed it (`42`,
/// `2011-12-09T12:50:00`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMark {
    /// The check column.
    pub column: String,
    /// Its last value imported.
    pub value: String,
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for RunReport {
    /// The human summary `ember run` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.rows;
        writeln!(
            f,
            "job {} run {} succeeded in {:.1} s ({})",
            self.job,
            self.run_id,
            self.duration_ms as f64 / 1000.0,
            self.engine
        )?;
        writeln!(f, "  output       {}", self.output)?;
        for input in &self.inputs {
            if input.path.is_empty() {
                writeln!(f, "  input        {} (optional, not given)", input.name)?;
                continue;
            }
            let reencoded = match &input.reencoded_from {
                Some(encoding) => format!(", decoded from {encoding}"),
                None => String::new(),
            };
            writeln!(
                f,
                "  input        {} = {} ({} files, {} bytes{reencoded})",
                input.name,
                input.path,
                input.files,
                thousands(input.bytes)
            )?;
            // A folder or a glob: which files it was (all of them in `--format json`).
            if input.read.len() > 1 {
                const SHOWN: usize = 5;
                let names: Vec<&str> = input
                    .read
                    .iter()
                    .take(SHOWN)
                    .map(|u| u.rsplit('/').next().unwrap_or(u))
                    .collect();
                let more = match input.read.len().saturating_sub(SHOWN) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                writeln!(f, "               read {}{more}", names.join(", "))?;
            }
        }
        if self.csv_read_whole_files {
            writeln!(
                f,
                "               read again one task per file: a quoted line end fell on a byte range's start"
            )?;
        }
        for (view, rows) in &self.cached_views {
            writeln!(f, "  cached       {view} ({} rows)", thousands(*rows))?;
        }
        if let Some(read) = r.read {
            writeln!(f, "  rows read    {}", thousands(read))?;
        }
        if let Some(valid) = r.valid {
            writeln!(f, "  rows valid   {}", thousands(valid))?;
        }
        let reasons = self
            .quarantined_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect::<Vec<_>>()
            .join(", ");
        if reasons.is_empty() {
            writeln!(f, "  quarantined  {}", thousands(r.quarantined))?;
        } else {
            writeln!(f, "  quarantined  {} ({reasons})", thousands(r.quarantined))?;
        }
        writeln!(f, "  rows written {}", thousands(r.written))?;
        write!(
            f,
            "  partitions   {} written ({} replaced), {} quarantine; {} files, {} bytes",
            self.partitions.written.len(),
            self.partitions.replaced,
            self.partitions.quarantine.len(),
            self.files,
            thousands(self.bytes)
        )?;
        if let Some(version) = self.table_version {
            write!(f, "\n  delta        table version {version}")?;
            if let Some(q) = self.quarantine_version {
                write!(f, ", quarantine version {q}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(541_909), "541,909");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}
