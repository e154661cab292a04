//! Ember's batch job runner: runs a resolved job ([`ember_core::manifest::Job`]) on a session
//! (embedded Ballista, a Ballista cluster, or plain DataFusion for comparisons) and commits its
//! output atomically.
//!
//! Steps of a run, in order; any failure removes the staging folder and leaves the previous
//! output as it was:
//! 1. register inputs ([`inputs`]: files must exist; non-UTF-8 CSV re-encoded; unique keys
//!    checked);
//! 2. plan the views, the quarantine and the output (`plan`: SQL errors name file, line and
//!    column; partition columns must be produced by the output query); a view marked
//!    `cache = true` is computed once here into the staging folder (`cache`), and later
//!    queries read that copy;
//! 3. write the quarantine and the output as Parquet into `<output>/_temporary/<run_id>/`
//!    (`write`), partitioned hive-style; a NULL partition value goes to
//!    `col=__HIVE_DEFAULT_PARTITION__` (Hive's and Spark's rule) instead of DataFusion's silent
//!    misfiling;
//! 4. count (`counts`): rows read, valid rows, quarantined rows by reason, and check that
//!    `read = valid + quarantined` and that every quarantined row has a reason;
//! 5. commit with dynamic partition overwrite and write the report to `<output>/_SUCCESS`
//!    ([`committer`] for plain Parquet; one Delta commit per table for `format = "delta"`,
//!    whose tasks wrote straight into the table in step 3, see `delta`).
#![warn(missing_docs)]

mod cache;
pub mod committer;
mod counts;
mod delta;
pub mod error;
pub mod inputs;
mod plan;
mod runner;
mod staged;
mod transcode;

pub use ember_core::sink::HIVE_DEFAULT_PARTITION;
pub use error::{Error, Result};
pub use runner::{end_interrupted, name_step, new_run_id, run, run_with_id};
