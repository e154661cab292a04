//! The runtime environment of an executor: how much memory its tasks may use before operators
//! spill (sorts, aggregations, joins), and where spill files go.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::error::Result;
use std::num::NonZeroUsize;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// Settings of an executor's runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Memory for all running tasks, in bytes, shared fairly between spilling operators
    /// (DataFusion's `FairSpillPool`). `None`: unbounded, as DataFusion's default.
    pub memory_limit: Option<u64>,
    /// Folder for spill files. `None`: the OS temporary folder.
    pub spill_dir: Option<PathBuf>,
}

/// Builds the runtime environment for `options`.
///
/// # Errors
/// DataFusion's, if the spill folder cannot be used.
pub fn runtime_env(options: &RuntimeOptions) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new();
    if let Some(limit) = options.memory_limit {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        // Errors name the 5 largest consumers, so "out of memory" says which operator.
        let top = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
        builder = builder.with_memory_pool(Arc::new(TrackConsumersPool::new(FairSpillPool::new(limit), top)));
    }
    if let Some(dir) = &options.spill_dir {
        builder = builder.with_temp_file_path(dir.clone());
    }
    builder.build_arc()
}
