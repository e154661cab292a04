//! A database input of a batch run: read the password, connect, learn the schema, settle the
//! rows to read (incremental range, split ranges) and register the table.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::prelude::SessionContext;
use ember_core::manifest::{DatabaseInput, IncrementalMode};

use super::connection::{Connection, Endpoint};
use super::scan::{DatabaseTable, ScanSource};
use super::sql;
use crate::error::{Error, Result};

/// The high-water mark of an incremental input ([`ember_core::report::ImportMark`]).
pub use ember_core::report::ImportMark as Mark;

/// What [`register`] registered.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The URL (without password) and what is read: `postgres://u@h:5432/shop "transactions"`.
    pub path: String,
    /// The `WHERE` of each task, in order.
    pub ranges: Vec<String>,
    /// The mark to commit with the output (incremental inputs): the new last value, or the
    /// previous one when there was nothing new.
    pub mark: Option<Mark>,
    /// The input's columns and types.
    pub schema: SchemaRef,
    /// Where and what the tasks read.
    pub source: ScanSource,
}

/// Registers database input `name` on `ctx` as table `table`: the rows after `previous`
/// (incremental) in `splits` ranges of `split_by`, one task each.
///
/// # Errors
/// [`Error::Settings`] for a password that cannot be read or a column that cannot be used;
/// [`Error::Connect`], [`Error::Authentication`], [`Error::Schema`] and [`Error::Query`] from
/// the database.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &str,
    db: &DatabaseInput,
    previous: Option<&Mark>,
) -> Result<Registered> {
    let what = format!("input `{name}`");
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
    let mut connection = endpoint.connect(&what).await?;
    let schema = match (&db.table, &db.query) {
        (Some(table), _) => connection.table_schema(table).await?,
        (None, Some(query)) => connection.query_schema(query).await?,
        (None, None) => return Err(settings("needs `table` or `query`".into())),
    };
    let from = sql::from(db.kind, db.table.as_deref(), db.query.as_deref());
    let column_type = |column: &str, what: &str| -> Result<DataType> {
        schema
            .field_with_name(column)
            .map(|f| f.data_type().clone())
            .map_err(|_| {
                settings(format!(
                    "{what} column `{column}` is not a column of {}",
                    db.table.as_deref().unwrap_or("the query")
                ))
            })
    };
    let mut base = Vec::new();
    let mut mark = None;
    if let Some(incremental) = &db.incremental {
        let column = &incremental.column;
        let data_type = column_type(column, "incremental")?;
        let ok = match incremental.mode {
            IncrementalMode::Append => data_type.is_numeric(),
            IncrementalMode::LastModified => data_type.is_temporal(),
        };
        if !ok {
            return Err(settings(format!(
                "incremental `{}` needs a {} check column; `{column}` is {data_type}",
                match incremental.mode {
                    IncrementalMode::Append => "append",
                    IncrementalMode::LastModified => "lastmodified",
                },
                match incremental.mode {
                    IncrementalMode::Append => "numeric",
                    IncrementalMode::LastModified => "date or timestamp",
                }
            )));
        }
        if let Some(previous) = previous
            && previous.column != *column
        {
            return Err(settings(format!(
                "the output's last import used check column `{}`, not `{column}`; import into a new output",
                previous.column
            )));
        }
        let quoted = sql::quote(db.kind, column);
        // The rows after the last value, up to their maximum now: one query gives the bound.
        if let Some(previous) = previous {
            base.push(format!(
                "{quoted} > {}",
                sql::literal(&data_type, &previous.value)
            ));
        }
        let upper = one_value(
            &mut connection,
            &sql::select(&[format!("max({quoted})")], &from, &base),
        )
        .await?;
        mark = match upper {
            Some(upper) => {
                base.push(format!("{quoted} <= {}", sql::literal(&data_type, &upper)));
                Some(Mark {
                    column: column.clone(),
                    value: upper,
                })
            }
            // Nothing new: no row is read and the mark stays.
            None => {
                base.push("1 = 0".to_string());
                previous.cloned()
            }
        };
    }
    let ranges = match &db.split_by {
        Some(column) if db.splits > 1 => {
            let data_type = column_type(column, "split_by")?;
            if !data_type.is_integer() {
                return Err(settings(format!(
                    "split_by column `{column}` is {data_type}; it must be an integer column"
                )));
            }
            let quoted = sql::quote(db.kind, column);
            let bounds = connection
                .rows_as_text(&sql::select(
                    &[format!("min({quoted})"), format!("max({quoted})")],
                    &from,
                    &base,
                ))
                .await?;
            let parse =
                |v: Option<&Option<String>>| v.and_then(|v| v.as_deref()?.parse::<i64>().ok());
            let row = bounds.first();
            match (
                parse(row.and_then(|r| r.first())),
                parse(row.and_then(|r| r.get(1))),
            ) {
                (Some(min), Some(max)) => sql::split_ranges(&quoted, min, max, db.splits),
                // No row (or only NULL keys): one task reads what there is.
                _ => vec![format!("{quoted} IS NULL")],
            }
        }
        _ => vec!["1 = 1".to_string()],
    };
    let ranges: Vec<String> = ranges
        .into_iter()
        .map(|r| {
            std::iter::once(r)
                .chain(base.iter().cloned())
                .collect::<Vec<_>>()
                .join(" AND ")
        })
        .collect();
    let source = ScanSource {
        input: name.to_string(),
        endpoint: endpoint.clone(),
        from: from.clone(),
        columns: ScanSource::columns_of(&schema),
    };
    let provider =
        DatabaseTable::try_new(source.clone(), ranges.clone()).map_err(|e| Error::Schema {
            what: name.to_string(),
            url: endpoint.url(),
            message: e.to_string(),
        })?;
    ctx.register_table(table, Arc::new(provider))
        .map_err(|e| settings(e.to_string()))?;
    tracing::info!(input = %name, url = %endpoint.url(), tasks = ranges.len(), "database input registered");
    Ok(Registered {
        path: format!("{} {from}", endpoint.url()),
        ranges,
        mark,
        schema,
        source,
    })
}

/// The first column of the first row of `sql`, as text.
async fn one_value(connection: &mut Connection, sql: &str) -> Result<Option<String>> {
    Ok(connection
        .rows_as_text(sql)
        .await?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten()))
}
