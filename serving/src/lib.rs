//! Ember's serving side, shared by `ember scheduler` and `ember serve`:
//! - [`flight_sql`]: the Arrow Flight SQL endpoint (BI tools, ADBC/JDBC, notebooks) over the job
//!   outputs and configured tables;
//! - [`web`]: the web UI, the streams' progress, the dashboard's REST calls and `/metrics`, on
//!   the HTTP port;
//! - [`config`]: the Flight SQL endpoint's flags.
//!
//! Serving sees the scheduler's jobs and executors only through the [`Cluster`] trait, which the
//! scheduler implements: this crate does not depend on the scheduler.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod flight_sql;
pub mod web;

pub use error::{Error, Result};

use ember_core::api::{ExecutorSummary, JobState, JobSummary};

/// What the web side needs of a scheduler: its jobs and executors (for `/metrics`). `ember
/// serve` has none.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// All jobs, newest first; only those in `state` when given.
    async fn jobs(&self, state: Option<JobState>) -> Vec<JobSummary>;

    /// The executors, alive and lost.
    async fn executors(&self) -> Vec<ExecutorSummary>;

    /// Files of the job history that could not be read as a job's record when the scheduler
    /// started (left in place, named in its log).
    fn unreadable_history_files(&self) -> usize {
        0
    }
}
