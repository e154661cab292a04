//! A job's output written into a database table, as `sqoop export` (and Spark's
//! `df.write.jdbc`): the rows go through datafusion-table-providers' table writers, in **one
//! transaction per run**, as plain inserts or as upserts on the table's key (`mode = "upsert"`,
//! MySQL's `INSERT … ON DUPLICATE KEY UPDATE`, PostgreSQL's `INSERT … ON CONFLICT (key) DO
//! UPDATE`). A failure anywhere rolls the transaction back: the table is as it was.
//!
//! The rows pass through the driver (they are collected from the cluster, then inserted by one
//! connection), which suits aggregates such as a daily revenue table; the columns are matched
//! to the table's by name and cast to its types.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::{Constraints, DataFusionError};
use datafusion::datasource::TableProvider;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion_table_providers::mysql::MySQL;
use datafusion_table_providers::mysql::write::MySQLTableWriter;
use datafusion_table_providers::postgres::write::PostgresTableWriter;
use datafusion_table_providers::postgres::{Postgres, PostgresTableFactory};
use datafusion_table_providers::sql::db_connection_pool::mysqlpool::MySQLConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use datafusion_table_providers::util::column_reference::ColumnReference;
use datafusion_table_providers::util::on_conflict::OnConflict;
use ember_core::error::one_line;
use ember_core::manifest::{DatabaseKind, DatabaseOutput, ExportMode};

use super::connection::Endpoint;
use crate::error::{Error, Result};

/// Inserts the rows of `df` into the output's table in one transaction; returns the rows
/// inserted or upserted.
///
/// # Errors
/// [`Error::Settings`] for the password or a column the table does not have;
/// [`Error::Connect`], [`Error::Authentication`], [`Error::Schema`] (unknown table) and
/// [`Error::Query`] (a statement or the commit failed; the transaction is rolled back).
pub async fn export(ctx: &SessionContext, df: DataFrame, db: &DatabaseOutput) -> Result<u64> {
    let what = format!("output table `{}`", db.table);
    let settings = |message: String| Error::Settings {
        what: what.clone(),
        message,
    };
    let endpoint = Endpoint::resolve(
        ctx,
        &what,
        db.kind,
        &db.url,
        db.password_env.as_deref(),
        db.password_file.as_deref(),
    )
    .await?;
    // Checks the server, the user and the password with a clear error first.
    let _ = endpoint.connect(&what).await?;
    let url = endpoint.url();
    let schema_error = |message: String| Error::Schema {
        what: what.clone(),
        url: url.clone(),
        message: one_line(&message),
    };
    let query_error = |message: String| Error::Query {
        what: what.clone(),
        url: url.clone(),
        message: one_line(&message),
    };
    let on_conflict = match db.mode {
        ExportMode::Insert => None,
        ExportMode::Upsert => Some(OnConflict::Upsert(
            ColumnReference::try_from(format!("({})", db.key.join(",")).as_str())
                .map_err(|e| settings(format!("`key`: {e}")))?,
        )),
    };
    let table = TableReference::from(db.table.as_str());
    let writer: Arc<dyn TableProvider> = match db.kind {
        DatabaseKind::Mysql => {
            let pool = Arc::new(
                MySQLConnectionPool::new(endpoint.params())
                    .await
                    .map_err(|e| query_error(e.to_string()))?,
            );
            let factory =
                datafusion_table_providers::mysql::MySQLTableFactory::new(Arc::clone(&pool));
            let read = factory
                .table_provider(table.clone())
                .await
                .map_err(|e| schema_error(format!("table `{}`: {e}", db.table)))?;
            let mysql = MySQL::new(
                db.table.clone(),
                pool,
                read.schema(),
                Constraints::default(),
            );
            MySQLTableWriter::create(read, mysql, on_conflict)
        }
        DatabaseKind::Postgres => {
            let pool = Arc::new(
                PostgresConnectionPool::new(endpoint.params())
                    .await
                    .map_err(|e| query_error(e.to_string()))?,
            );
            let factory = PostgresTableFactory::new(Arc::clone(&pool));
            let read = factory
                .table_provider(table.clone())
                .await
                .map_err(|e| schema_error(format!("table `{}`: {e}", db.table)))?;
            let postgres = Postgres::new(table, pool, read.schema(), Constraints::default());
            PostgresTableWriter::create(read, postgres, on_conflict)
        }
    };
    let target = writer.schema();
    let batches = df
        .collect()
        .await
        .map_err(|e| query_error(format!("computing the rows: {}", e.strip_backtrace())))?;
    let batches = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| to_table(b, &target).map_err(&settings))
        .collect::<Result<Vec<_>>>()?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    // One stream into the writer's sink: one connection, one transaction.
    let local = SessionContext::new();
    let source = MemorySourceConfig::try_new_exec(&[batches], Arc::clone(&target), None)
        .map_err(|e| query_error(e.to_string()))?;
    let sink = writer
        .insert_into(&local.state(), source, InsertOp::Append)
        .await
        .map_err(|e| query_error(e.to_string()))?;
    datafusion::physical_plan::collect(sink, local.task_ctx())
        .await
        .map_err(|e: DataFusionError| {
            query_error(format!(
                "the transaction was rolled back: {}",
                e.strip_backtrace()
            ))
        })?;
    tracing::info!(table = %db.table, url = %url, rows, "exported");
    Ok(rows as u64)
}

/// `batch`'s columns matched to the table's by name and cast to their types.
fn to_table(batch: &RecordBatch, target: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let schema = batch.schema();
    for field in schema.fields() {
        if target.field_with_name(field.name()).is_err() {
            return Err(format!(
                "the output's column `{}` is not a column of the table",
                field.name()
            ));
        }
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let columns = target
        .fields()
        .iter()
        .map(|f| {
            let (i, _) = schema.column_with_name(f.name()).ok_or_else(|| {
                format!(
                    "the table's column `{}` is not a column of the output",
                    f.name()
                )
            })?;
            cast_with_options(batch.column(i), f.data_type(), &options).map_err(|e| {
                format!(
                    "column `{}` does not fit the table's {}: {e}",
                    f.name(),
                    f.data_type()
                )
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    RecordBatch::try_new(Arc::clone(target), columns).map_err(|e| e.to_string())
}
