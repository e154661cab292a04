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
//! Files are named `<col>=<value>/…/part-<partition:05>-<attempt>-<n>.parquet`, unique per task
//! attempt. Ballista executes a task's partitions with task-local indices, and a retry may group
//! partitions differently, so no name is both stable and unique. Each task instead returns the
//! list of files it wrote (its commit message, as in Spark's commit protocol). The committer
//! moves exactly the files that the successful attempts reported. Files of a failed, killed or
//! duplicate attempt stay in staging and are removed with it, never committed, so a retry
//! leaves no duplicates. Partition values are path-escaped by `object_store` (`/` becomes
//! `%2F`, as Spark's `escapePathName` does).
//!
//! [output committer]: ../../ember_scheduler/job/committer/index.html

/// The folder name Hive and Spark use for a NULL partition value (`col=__HIVE_DEFAULT_PARTITION__`);
/// the batch job's committer and the stream sink both write it.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

mod delta;
mod exec;
mod node;
mod planner;
mod runs;
mod write;

pub use exec::ParquetSinkExec;
pub use node::{ParquetSinkNode, sink_schema};
pub use planner::{EmberQueryPlanner, SinkPlanner};
pub use write::{Written, write, write_with};
