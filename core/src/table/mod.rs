//! Tables over what Ember writes, read the way their writer committed them: a stream's output
//! through its sink log ([`sink_log`]), a Delta table through its log ([`delta`]); and a Parquet
//! input through the file list its run made ([`parquet_files`]).

pub mod delta;
pub mod delta_maintenance;
pub mod delta_revert;
pub mod delta_scan;
pub mod parquet_files;
pub mod sink_log;
