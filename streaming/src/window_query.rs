//! The streaming job's SQL: planned against the `events` table, checked for the columns a
//! stream needs, and searched for its `hop(...)`/`tumble(...)` call, whose window shape decides
//! which events the state keeps, and cut at its aggregate when that can be merged
//! ([`crate::partial`]). A query with no window call and no window columns is stateless
//! (filter, project, enrich): each micro-batch's rows are written at once.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::SessionContext;
use ember_core::sql_file::SqlFile;
use ember_core::udf::WindowSpec;
use ember_core::udf::window::spec_of_call;

use crate::error::{Error, Result};

/// A windowed query's shape.
#[derive(Debug, Clone)]
pub struct Windowed {
    /// Its window.
    pub spec: WindowSpec,
    /// What its state keeps: `Ok(schema)` of its partial-aggregate rows
    /// ([`crate::partial::Split::state_schema`]), or `Err(why)` its windows' events must be
    /// kept (e.g. "count(DISTINCT …) needs every event").
    pub state: std::result::Result<SchemaRef, String>,
}

/// Columns every streaming query must produce (Timestamp): the window of each output row.
pub const WINDOW_COLUMNS: [&str; 2] = ["window_start", "window_end"];

fn invalid(sql: &SqlFile, message: String) -> Error {
    Error::Core(ember_core::Error::InvalidJob {
        path: sql.path.clone(),
        message,
    })
}

/// Plans `sql` over an empty `events` table of `events` (the declared event schema's table)
/// and returns its window shape; `None` for a stateless query (no window call, no
/// `window_start`/`window_end` columns).
///
/// # Errors
/// The SQL's planning error (file, line, column); [`Error::Core`] when it has window columns
/// but no window call, several window shapes, a window call without `window_start`/
/// `window_end` columns, or lacks a partition column.
pub async fn analyze(
    ctx: &SessionContext,
    sql: &SqlFile,
    partition_by: &[String],
    events: SchemaRef,
) -> Result<Option<Windowed>> {
    let empty = MemTable::try_new(events, vec![vec![]])
        .map_err(|e| Error::Core(ember_core::Error::datafusion("events table", e)))?;
    let _ = ctx.deregister_table("events");
    ctx.register_table("events", Arc::new(empty))
        .map_err(|e| Error::Core(ember_core::Error::datafusion("events table", e)))?;
    let df = ctx
        .sql(&sql.text)
        .await
        .map_err(|e| Error::Core(sql.error(e)))?;
    let schema = df.schema().clone();
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
    let has_window_columns = WINDOW_COLUMNS
        .iter()
        .any(|name| schema.field_with_unqualified_name(name).is_ok());
    let spec = match specs.as_slice() {
        [] if !has_window_columns => return Ok(None),
        [spec] => *spec,
        [] => return Err(invalid(sql, "the query gives window columns but has no window: group by hop(event_time, size, slide) or tumble(event_time, size), or drop window_start/window_end for a stateless query".into())),
        _ => return Err(invalid(sql, "the query has windows of different shapes; a stream has one".into())),
    };
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
    let state = crate::partial::Split::new(df.logical_plan()).map(|s| s.state_schema());
    Ok(Some(Windowed { spec, state }))
}
