//! Counts the tasks an executor runs, for its `/metrics` and the scheduler's Executors page
//! (Ballista 55 keeps its executor's slot use private), and refuses the ones whose plan reads
//! or writes outside the allowed paths. [`CountingEngine`] wraps Ballista's default execution
//! engine: each task's stage executor counts itself running while it runs, then succeeded or
//! failed.
//!
//! Ballista's own default engine keeps a pool of shuffle-fetch clients, but its pool type is
//! private in Ballista 55; the wrapped engine fetches without the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ballista_core::serde::protobuf::ShuffleWritePartition;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::SessionConfig;
use ember_core::security::PathPolicy;

/// Task counts since the executor started.
#[derive(Debug, Default)]
pub struct TaskCounters {
    running: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

impl TaskCounters {
    /// Tasks running now.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Tasks finished successfully.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Tasks failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Ballista's default engine, with every task counted in [`TaskCounters`] and every task's
/// plan checked against the executor's [`PathPolicy`] before it runs
/// (`ember_core::security::plan`).
#[derive(Default)]
pub struct CountingEngine {
    inner: DefaultExecutionEngine,
    counters: Arc<TaskCounters>,
    paths: PathPolicy,
}

impl CountingEngine {
    /// An engine counting into `counters` and refusing plans `paths` does not allow.
    pub fn new(counters: Arc<TaskCounters>, paths: PathPolicy) -> Self {
        Self {
            inner: DefaultExecutionEngine::new(),
            counters,
            paths,
        }
    }
}

impl ExecutionEngine for CountingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: ballista_core::JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        if let Err(e) = ember_core::security::plan::check_physical(&plan, &self.paths) {
            tracing::warn!(job_id = %job_id, stage_id, error = %e, "task refused");
            // As text: Ballista sends a failed task's error to the scheduler as its Debug form.
            return Err(datafusion::error::DataFusionError::Execution(e.to_string()));
        }
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(Counted {
            inner,
            counters: Arc::clone(&self.counters),
        }))
    }
}

/// A stage executor that counts its task.
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn QueryStageExecutor>,
    counters: Arc<TaskCounters>,
}

impl std::fmt::Display for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

/// Decrements `running` when dropped, so that a cancelled task (its future dropped) stops
/// counting as running too.
struct Running<'a>(&'a TaskCounters);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for Counted {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        self.counters.running.fetch_add(1, Ordering::Relaxed);
        let _running = Running(&self.counters);
        let result = self.inner.execute_query_stage(task_id, context).await;
        let counter = if result.is_ok() {
            &self.counters.succeeded
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(
        &self,
    ) -> Vec<ballista_core::serde::protobuf::RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(
        &self,
    ) -> Result<Vec<ballista_core::serde::protobuf::WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<ballista_core::serde::protobuf::TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}
