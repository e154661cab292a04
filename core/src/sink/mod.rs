//! Ember's distributed, hive-partitioned Parquet sink.
//!
//! DataFusion's file sink (`COPY … PARTITIONED BY`) needs a single input partition, so Ballista
//! runs it as one task: a job's whole output goes through one executor. Ember's sink writes in
//! every task instead. Each input partition of the last stage sorts its rows by the partition
//! columns and writes its own files into the run's staging folder. One commit step (the
//! [output committer], once every task succeeded) moves them into place.
//!
//! Pieces (each needed where the plan travels):
//! - [`ParquetSinkNode`]: the logical node the job runner builds (client side);
//! - [`SinkPlanner`] / [`EmberQueryPlanner`]: turn it into a [`ParquetSinkExec`] (scheduler side,
//!   or any local context);
//! - [`ParquetSinkExec`]: writes one partition's files (executors);
//! - [`crate::codec`]: serializes both, wrapping Ballista's codecs.
//!
//! File names are deterministic: `<col>=<value>/…/part-<task partition:05>-<n>.parquet`.
//! A retried task rewrites the same names, so a retry never leaves duplicates. Files appear
//! under their final name only when complete (object_store's multipart upload). A task killed
//! mid-write leaves at most a hidden or `#`-suffixed upload part, which the committer ignores
//! and removes. Partition values are path-escaped by `object_store` (`/` becomes `%2F`, as
//! Spark's `escapePathName` does).
//!
//! [output committer]: ../../ember_scheduler/job/committer/index.html

mod exec;
mod node;
mod planner;

pub use exec::ParquetSinkExec;
pub use node::{ParquetSinkNode, sink_schema};
pub use planner::{EmberQueryPlanner, SinkPlanner};
