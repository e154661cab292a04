//! Planning Ember's logical nodes into physical ones.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::exec::ParquetSinkExec;
use super::node::ParquetSinkNode;

/// Plans [`ParquetSinkNode`] into [`ParquetSinkExec`].
#[derive(Debug, Default)]
pub struct SinkPlanner;

#[async_trait]
impl ExtensionPlanner for SinkPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(sink) = node.as_any().downcast_ref::<ParquetSinkNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return datafusion::common::internal_err!("ParquetSink takes exactly one input");
        };
        Ok(Some(Arc::new(
            ParquetSinkExec::try_new(
                Arc::clone(input),
                sink.url.clone(),
                sink.partition_by.clone(),
                sink.format,
            )?
            .with_parquet(sink.parquet.clone()),
        )))
    }
}

/// DataFusion's physical planner plus Ember's extension planners. Every session Ember builds
/// uses it, so Ember's nodes plan the same in a local context, on an embedded scheduler and on
/// a cluster's scheduler.
#[derive(Debug, Default)]
pub struct EmberQueryPlanner;

#[async_trait]
impl QueryPlanner for EmberQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SinkPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
