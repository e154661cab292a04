//! Planning a job's SQL files: each must be one query, and the output's partition columns
//! become their folder names.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::functions::expr_fn::coalesce;
use datafusion::logical_expr::{Expr, LogicalPlan, cast, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use ember_core::manifest::{OutputFormat, REASON_COLUMN};
use ember_core::sink::HIVE_DEFAULT_PARTITION;
use ember_core::sql_file::SqlFile;

use crate::error::{Error, Result};

/// Plans a SQL file that must be a query (not DDL, DML or COPY).
pub(crate) async fn plan_query(ctx: &SessionContext, sql: &SqlFile) -> Result<LogicalPlan> {
    let plan = ctx
        .state()
        .create_logical_plan(&sql.text)
        .await
        .map_err(|e| sql.error(e))?;
    if matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
    ) {
        return Err(ember_core::Error::Sql {
            location: ember_core::error::Location { path: sql.path.clone(), line: 1, column: 1 },
            message: "a job's SQL file must be one query (SELECT, WITH or VALUES); tables are declared in job.toml".to_string(),
        }
        .into());
    }
    Ok(plan)
}

pub(crate) async fn query(ctx: &SessionContext, sql: &SqlFile) -> Result<DataFrame> {
    let plan = plan_query(ctx, sql).await?;
    ctx.execute_logical_plan(plan)
        .await
        .map_err(|e| sql.error(e).into())
}

/// Checks that the partition columns exist and, for plain Parquet, turns each into its folder
/// name: the value as text, or [`HIVE_DEFAULT_PARTITION`] for NULL (the files do not contain
/// partition columns, so their type is not lost; readers get it back from the folder names).
/// A Delta table keeps its partition columns typed: its log records their types and values.
pub(crate) fn hive_partitions(
    df: DataFrame,
    partition_by: &[String],
    sql: &SqlFile,
    output: &str,
    format: OutputFormat,
) -> Result<DataFrame> {
    let produced: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for p in partition_by {
        if !produced.contains(p) {
            return Err(Error::Output {
                path: output.to_string(),
                message: format!(
                    "partition column `{p}` is not produced by {} (it produces: {})",
                    sql.path.display(),
                    produced.join(", ")
                ),
            });
        }
    }
    if !partition_by.is_empty() && produced.len() == partition_by.len() {
        return Err(Error::Output {
            path: output.to_string(),
            message: format!(
                "{} produces only partition columns; files need at least one more",
                sql.path.display()
            ),
        });
    }
    if partition_by.is_empty() || format == OutputFormat::Delta {
        return Ok(df);
    }
    let exprs: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if partition_by.contains(field.name()) {
                coalesce(vec![
                    cast(column, DataType::Utf8),
                    lit(HIVE_DEFAULT_PARTITION),
                ])
                .alias(field.name())
            } else {
                column
            }
        })
        .collect();
    df.select(exprs).map_err(|e| sql.error(e).into())
}

/// Checks that the quarantine query produces a text column `reason`.
///
/// # Errors
/// [`Error::Output`] naming the SQL file when it does not.
pub(crate) fn check_reason_column(df: &DataFrame, sql: &SqlFile, output: &str) -> Result<()> {
    match df.schema().field_with_unqualified_name(REASON_COLUMN) {
        Ok(f)
            if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) =>
        {
            Ok(())
        }
        _ => Err(Error::Output {
            path: output.to_string(),
            message: format!(
                "{} must produce a text column `{REASON_COLUMN}`",
                sql.path.display()
            ),
        }),
    }
}
