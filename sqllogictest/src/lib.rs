//! Ember's SQL behaviour, tested at the SQL level: a [sqllogictest] database over Ember's
//! session ([`EmberDb`]), as DataFusion's own `datafusion/sqllogictest` runs its `.slt` files.
//! The suites are in `test_files/*.slt`; `tests/slt.rs` runs each of them on a plain local
//! session and on embedded Ballista (an in-process scheduler and executor).
//!
//! Besides SQL, an `.slt` file may load a job's SQL:
//!
//! ```text
//! statement ok
//! LOAD JOB 'jobs/daily_revenue_by_product' WITH timestamp_format = '%d/%m/%Y %H:%M'
//! ```
//!
//! loads the job's manifest from the repository (its `[params]`, overridden by the `WITH`
//! list, as `ember run --set` does) and registers, over the tables the file created itself
//! (the job's inputs are not read): each `[[view]]` under its name, the output query as the
//! view `job_output` and the quarantine query as `job_quarantine`. So the job's own SQL files
//! are what the suite checks, not a copy.
//!
//! Results are compared as text: NULL is `NULL`, an empty string `(empty)`, other values as
//! Arrow displays them (timestamps `2011-12-09T10:15:00`, decimals with their scale). Column
//! types: `I` integers, `R` decimals and floats, `T` everything else; they are checked.
//!
//! [sqllogictest]: https://www.sqlite.org/sqllogictest/doc/trunk/about.wiki
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use ember_core::codec::Codecs;
use ember_core::manifest::JobManifest;
use ember_core::params::Params;
use ember_core::session::SessionBuilder;
use sqllogictest::{DBOutput, DefaultColumnType};

/// Where a suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Plain DataFusion in this process, with Ember's session.
    Local,
    /// Embedded Ballista: an in-process scheduler and executor (`ember run`'s session).
    Standalone,
}

/// Errors of a statement: DataFusion's, or a `LOAD JOB` that cannot be done. The message is
/// what `statement error <regex>` matches.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// DataFusion's error, without its backtrace.
    #[error("{0}")]
    DataFusion(String),
    /// Ember's (a manifest, a parameter, a SQL file).
    #[error(transparent)]
    Core(#[from] ember_core::Error),
    /// A `LOAD JOB` statement that does not parse.
    #[error("LOAD JOB: {0}")]
    Load(String),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::DataFusion(ember_core::error::one_line(&e.strip_backtrace()))
    }
}

/// A sqllogictest database over one Ember session.
pub struct EmberDb {
    ctx: SessionContext,
    repo: PathBuf,
}

impl EmberDb {
    /// A fresh session on `engine` (2 partitions per stage), with `LOAD JOB` paths relative to
    /// `repo`.
    ///
    /// # Errors
    /// The session's (embedded Ballista that does not start).
    pub async fn new(engine: Engine, repo: &Path) -> Result<Self, Error> {
        let builder = SessionBuilder::new(Codecs::ember()).with_parallelism(2);
        let ctx = match engine {
            Engine::Local => builder.local()?,
            Engine::Standalone => builder.standalone().await?,
        };
        Ok(Self {
            ctx,
            repo: repo.to_path_buf(),
        })
    }

    /// `LOAD JOB 'path' [WITH name = 'value', …]`: registers the job's views (see the crate's
    /// documentation).
    async fn load_job(&self, path: &str, settings: &[(String, String)]) -> Result<(), Error> {
        let manifest = JobManifest::load(self.repo.join(path))?;
        let mut params: Params = manifest.params();
        params.apply(settings)?;
        let job = manifest.resolve(params)?;
        let mut queries: Vec<(String, &ember_core::sql_file::SqlFile)> =
            job.views.iter().map(|v| (v.name.clone(), v)).collect();
        queries.push(("job_output".into(), &job.output.sql));
        if let Some(q) = &job.quarantine {
            queries.push(("job_quarantine".into(), &q.sql));
        }
        for (name, sql) in queries {
            let view = self
                .ctx
                .sql(&sql.text)
                .await
                .map_err(|e| Error::Core(sql.error(e)))?
                .into_view();
            let _ = self.ctx.deregister_table(name.as_str())?;
            self.ctx.register_table(name.as_str(), view)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for EmberDb {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        if let Some((path, settings)) = parse_load_job(sql)? {
            self.load_job(&path, &settings).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let df = self.ctx.sql(sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: rows(&batches)?,
        })
    }

    fn engine_name(&self) -> &str {
        "ember"
    }

    async fn shutdown(&mut self) {}
}

/// The sqllogictest type of a column: `I`, `R` or `T`.
fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// Every value as text: `NULL`, `(empty)`, or Arrow's display.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, Error> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut cells = Vec::with_capacity(batch.num_columns());
            for column in batch.columns() {
                let cell = if column.is_null(row) {
                    "NULL".to_string()
                } else {
                    let text = array_value_to_string(column, row)
                        .map_err(|e| Error::DataFusion(e.to_string()))?;
                    if text.is_empty() {
                        "(empty)".to_string()
                    } else {
                        text
                    }
                };
                cells.push(cell);
            }
            out.push(cells);
        }
    }
    Ok(out)
}

/// A `LOAD JOB` statement: the job folder and its parameter settings.
type LoadJob = (String, Vec<(String, String)>);

/// Parses `LOAD JOB 'path' [WITH name = 'value', …]`; `None` for any other statement.
fn parse_load_job(sql: &str) -> Result<Option<LoadJob>, Error> {
    let text = sql.trim().trim_end_matches(';').trim();
    let Some(rest) = strip_keywords(text, &["LOAD", "JOB"]) else {
        return Ok(None);
    };
    let (path, rest) = quoted(rest)?;
    let mut settings = Vec::new();
    let rest = rest.trim();
    if !rest.is_empty() {
        let mut list = strip_keywords(rest, &["WITH"])
            .ok_or_else(|| Error::Load(format!("expected WITH after the path, found `{rest}`")))?;
        loop {
            let (name, after) = list
                .trim_start()
                .split_once('=')
                .ok_or_else(|| Error::Load(format!("expected name = 'value' in `{list}`")))?;
            let (value, after) = quoted(after)?;
            settings.push((name.trim().to_string(), value));
            let after = after.trim_start();
            match after.strip_prefix(',') {
                Some(next) => list = next,
                None if after.is_empty() => break,
                None => return Err(Error::Load(format!("unexpected `{after}`"))),
            }
        }
    }
    Ok(Some((path, settings)))
}

/// `text` after the keywords (any case, separated by white space), or `None`.
fn strip_keywords<'a>(mut text: &'a str, keywords: &[&str]) -> Option<&'a str> {
    for keyword in keywords {
        text = text.trim_start();
        let head = text.get(..keyword.len())?;
        if !head.eq_ignore_ascii_case(keyword) {
            return None;
        }
        text = &text[keyword.len()..];
        if !text.starts_with(char::is_whitespace) {
            return None;
        }
    }
    Some(text)
}

/// A single-quoted string at the start of `text` (`''` is a quote) and what follows it.
fn quoted(text: &str) -> Result<(String, &str), Error> {
    let text = text.trim_start();
    let mut chars = text.char_indices();
    if !matches!(chars.next(), Some((_, '\''))) {
        return Err(Error::Load(format!("expected a quoted string at `{text}`")));
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if text[i + 1..].starts_with('\'') {
                value.push('\'');
                chars.next();
            } else {
                return Ok((value, &text[i + 1..]));
            }
        } else {
            value.push(c);
        }
    }
    Err(Error::Load(format!("unterminated string at `{text}`")))
}

/// Runs the `.slt` file at `path` on a fresh session of `engine`.
///
/// # Errors
/// The first record whose result differs, with its file and line, as sqllogictest reports it.
pub async fn run_file(engine: Engine, repo: &Path, path: &Path) -> Result<(), String> {
    let repo = repo.to_path_buf();
    let mut runner = sqllogictest::Runner::new(move || {
        let repo = repo.clone();
        async move { EmberDb::new(engine, &repo).await }
    });
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(false).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_job_statements_parse() {
        assert_eq!(parse_load_job("SELECT 1").expect("other"), None);
        let (path, settings) = parse_load_job("load job 'jobs/x' WITH a = '1', b = 'it''s';")
            .expect("parses")
            .expect("a load");
        assert_eq!(path, "jobs/x");
        assert_eq!(
            settings,
            [("a".into(), "1".into()), ("b".into(), "it's".into())]
        );
        assert!(parse_load_job("LOAD JOB 'x' WITH a = 1").is_err());
        assert!(parse_load_job("LOAD JOB 'x' extra").is_err());
        assert!(parse_load_job("LOAD JOB x").is_err());
    }
}
