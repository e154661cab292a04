//! The streaming job's SQL: planned against the `events` table, checked for the columns a
//! stream needs, and searched for its `hop(...)`/`tumble(...)` call, whose window shape decides
//! which events the state keeps.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::SessionContext;
use ember_core::sql_file::SqlFile;
use ember_core::udf::WindowSpec;
use ember_core::udf::window::spec_of_call;

use crate::error::{Error, Result};
use crate::event::EVENT_SCHEMA;

/// Columns every streaming query must produce (Timestamp): the window of each output row.
pub const WINDOW_COLUMNS: [&str; 2] = ["window_start", "window_end"];

fn invalid(sql: &SqlFile, message: String) -> Error {
    Error::Core(ember_core::Error::InvalidJob {
        path: sql.path.clone(),
        message,
    })
}

/// Plans `sql` over an empty `events` table and returns its window shape.
///
/// # Errors
/// The SQL's planning error (file, line, column); [`Error::Core`] when it has no or several
/// window calls, lacks `window_start`/`window_end`, or lacks a partition column.
pub async fn analyze(
    ctx: &SessionContext,
    sql: &SqlFile,
    partition_by: &[String],
) -> Result<WindowSpec> {
    let empty = MemTable::try_new(EVENT_SCHEMA.clone(), vec![vec![]])
        .map_err(|e| Error::Core(ember_core::Error::datafusion("events table", e)))?;
    let _ = ctx.deregister_table("events");
    ctx.register_table("events", Arc::new(empty))
        .map_err(|e| Error::Core(ember_core::Error::datafusion("events table", e)))?;
    let df = ctx
        .sql(&sql.text)
        .await
        .map_err(|e| Error::Core(sql.error(e)))?;
    let schema = df.schema().clone();
    for name in WINDOW_COLUMNS {
        match schema.field_with_unqualified_name(name) {
            Ok(f) if matches!(f.data_type(), DataType::Timestamp(_, _)) => {}
            Ok(f) => {
                return Err(invalid(
                    sql,
                    format!(
                        "`{name}` must be a timestamp, the query gives {}",
                        f.data_type()
                    ),
                ));
            }
            Err(_) => {
                return Err(invalid(
                    sql,
                    format!("the query must give a `{name}` column (the window of each row)"),
                ));
            }
        }
    }
    for name in partition_by {
        if schema.field_with_unqualified_name(name).is_err() {
            return Err(invalid(
                sql,
                format!("partition column `{name}` is not produced by the query"),
            ));
        }
    }
    let mut specs = Vec::new();
    let mut problem = None;
    df.logical_plan()
        .apply_with_subqueries(|node: &LogicalPlan| {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Expr::ScalarFunction(f) = e {
                        let name = f.name();
                        if name == "hop" || name == "tumble" {
                            let lengths: Option<Vec<_>> = f.args[1..]
                                .iter()
                                .map(|a| match a {
                                    Expr::Literal(v, _) => Some(v.clone()),
                                    _ => None,
                                })
                                .collect();
                            match lengths.map(|l| spec_of_call(name, &l)) {
                                Some(Ok(spec)) => specs.push(spec),
                                Some(Err(e)) => problem = Some(e.to_string()),
                                None => {
                                    problem =
                                        Some(format!("{name}: window lengths must be constants"))
                                }
                            }
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })
        .map_err(|e| Error::Core(sql.error(e)))?;
    if let Some(p) = problem {
        return Err(invalid(sql, p));
    }
    specs.dedup();
    match specs.as_slice() {
        [spec] => Ok(*spec),
        [] => Err(invalid(sql, "the query has no window: group by hop(event_time, size, slide) or tumble(event_time, size)".into())),
        _ => Err(invalid(sql, "the query has windows of different shapes; a stream has one".into())),
    }
}
