//! The database parts of job manifests: database inputs (`format = "mysql" | "postgres"` in
//! `[[input]]`, Sqoop's import) and outputs (the same in `[output]`, Sqoop's export), and
//! their rules. See `docs/jobs.md`.

use serde::{Deserialize, Serialize};

/// The database of a database input (`format = "mysql" | "postgres"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatabaseKind {
    /// MySQL or MariaDB (the MySQL protocol).
    #[serde(rename = "mysql")]
    Mysql,
    /// PostgreSQL.
    #[serde(rename = "postgres")]
    Postgres,
}

impl DatabaseKind {
    /// The name in manifests (`mysql`, `postgres`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mysql => "mysql",
            Self::Postgres => "postgres",
        }
    }
}

/// Which rows an incremental import reads, as Sqoop's `--incremental` (`append` or
/// `lastmodified`) with `--check-column`: the rows whose `column` is above the last value
/// committed with the output, up to the column's maximum when the run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// `append` (an ever-growing key such as an auto-increment id) or `lastmodified` (a
    /// timestamp set on insert and update: updated rows are imported again, appended).
    pub mode: IncrementalMode,
    /// The check column (integer, decimal, date or timestamp).
    pub column: String,
}

/// Sqoop's `--incremental` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncrementalMode {
    /// New rows by an increasing key.
    #[serde(rename = "append")]
    Append,
    /// Rows inserted or updated since the last run, by a modification timestamp.
    #[serde(rename = "lastmodified")]
    LastModified,
}

/// A database input: where to connect and what to read (a `table` or a `query`), optionally
/// in parallel key ranges (`split_by`, `splits`) and incrementally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInput {
    /// The database.
    pub kind: DatabaseKind,
    /// The connection URL with `${param}`s rendered, without the password.
    pub url: String,
    /// The environment variable (`EMBER_*`) holding the password, read by the driver.
    pub password_env: Option<String>,
    /// A file (local path or URL) holding the password, read by the driver.
    pub password_file: Option<String>,
    /// A table (optionally `schema.table`); exactly one of `table` and `query`.
    pub table: Option<String>,
    /// A `SELECT` whose rows are the input.
    pub query: Option<String>,
    /// An integer column to cut the rows into `splits` ranges of values, one task each, as
    /// Sqoop's `--split-by`.
    pub split_by: Option<String>,
    /// How many ranges (tasks); 1 reads in one task.
    pub splits: usize,
    /// Read only the rows after the last committed value of a check column.
    pub incremental: Option<Incremental>,
}

/// How a database output writes its rows (`[output] mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportMode {
    /// Plain inserts (`sqoop export`); a row whose key exists fails the run (rolled back).
    #[default]
    #[serde(rename = "insert")]
    Insert,
    /// Insert or update on `key` (`sqoop export --update-mode allowinsert --update-key`).
    #[serde(rename = "upsert")]
    Upsert,
}

/// A database output: the job's rows go into `table`, in one transaction per run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseOutput {
    /// The database.
    pub kind: DatabaseKind,
    /// The connection URL, rendered, without the password.
    pub url: String,
    /// The `EMBER_*` variable holding the password, read by the driver.
    pub password_env: Option<String>,
    /// A file (local path or URL) holding the password, read by the driver.
    pub password_file: Option<String>,
    /// The table (`schema.table` allowed); it must exist, its columns named as the output's.
    pub table: String,
    /// Insert or upsert.
    pub mode: ExportMode,
    /// The key columns of an upsert (a primary or unique key of the table).
    pub key: Vec<String>,
}

/// A database input: a URL of its kind, one of `table` and `query`, a password source at
/// most, `splits` ≥ 1 with `split_by` when above 1, variable names `EMBER_*`.
pub(crate) fn check_input(db: &DatabaseInput) -> Result<(), String> {
    let kind = db.kind.as_str();
    let scheme = db.url.split_once("://").map(|(s, _)| s);
    let schemes: &[&str] = match db.kind {
        DatabaseKind::Mysql => &["mysql", "mariadb"],
        DatabaseKind::Postgres => &["postgres", "postgresql"],
    };
    if !scheme.is_some_and(|s| schemes.contains(&s)) {
        return Err(format!(
            "`url` of a {kind} input must start with {}://",
            schemes[0]
        ));
    }
    let authority = db.url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Err("`url` must not hold the password: use `password_env` (an EMBER_* variable) or `password_file`".into());
    }
    match (&db.table, &db.query) {
        (Some(_), Some(_)) => return Err("give `table` or `query`, not both".into()),
        (None, None) => return Err(format!("a {kind} input needs `table` or `query`")),
        (Some(t), None) if t.is_empty() => return Err("`table` is empty".into()),
        _ => {}
    }
    if db.password_env.is_some() && db.password_file.is_some() {
        return Err("give `password_env` or `password_file`, not both".into());
    }
    if let Some(var) = &db.password_env
        && !var.starts_with("EMBER_")
    {
        return Err(format!(
            "`password_env` must name an EMBER_* variable, not `{var}`"
        ));
    }
    if db.splits == 0 {
        return Err("`splits` must be at least 1".into());
    }
    if db.splits > 1 && db.split_by.is_none() {
        return Err("`splits` above 1 needs `split_by` (an integer column)".into());
    }
    for column in db
        .split_by
        .iter()
        .chain(db.incremental.as_ref().map(|i| &i.column))
    {
        if !is_identifier(column) {
            return Err(format!("column `{column}` must be letters, digits and _"));
        }
    }
    Ok(())
}

/// A database output: a URL of its kind without password, a table, an `EMBER_*` password
/// variable, key columns for an upsert (and only then), no partition columns.
pub(crate) fn check_output(db: &DatabaseOutput, partition_by: &[String]) -> Result<(), String> {
    let as_input = DatabaseInput {
        kind: db.kind,
        url: db.url.clone(),
        password_env: db.password_env.clone(),
        password_file: db.password_file.clone(),
        table: Some(db.table.clone()),
        query: None,
        split_by: None,
        splits: 1,
        incremental: None,
    };
    check_input(&as_input)?;
    if !partition_by.is_empty() {
        return Err(
            "a database output has no `partition_by` (the table has its own layout)".into(),
        );
    }
    match (db.mode, db.key.is_empty()) {
        (ExportMode::Upsert, true) => Err(
            "`mode = \"upsert\"` needs `key`, the columns of a primary or unique key of the table"
                .into(),
        ),
        (ExportMode::Insert, false) => Err("`key` is for `mode = \"upsert\"`".into()),
        _ => Ok(()),
    }
}

/// Letters, digits and `_`, not starting with a digit.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Fails naming the first of `keys` that is set (`(name, set)`): keys of database inputs or
/// outputs (`what`) given to a file input or output.
pub(crate) fn only_for_databases(keys: &[(&str, bool)], what: &str) -> Result<(), String> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(format!(
            "`{key}` is for database {what} (`format = \"mysql\"` or `\"postgres\"`)"
        )),
        None => Ok(()),
    }
}
