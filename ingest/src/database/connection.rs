//! Where a database input connects, with which password, and the connections themselves
//! (datafusion-table-providers' pools: `mysql_async` for MySQL/MariaDB, `tokio-postgres` with
//! bb8 for PostgreSQL).
//!
//! The URL is the manifest's (`mysql://user@host:3306/db?sslmode=disabled`,
//! `postgres://user@host:5432/db?sslmode=disable`); it may not hold a password. The password
//! comes from an `EMBER_*` environment variable or a file, read by the driver (the `ember run`
//! process, or the scheduler for `ember submit`), and travels to the executors inside the
//! job's plan (over TLS when the cluster has `[tls]`). `Debug` and every message print the URL
//! without it. `sslmode` is the drivers' own: MySQL `disabled | preferred | required`
//! (default `required`), PostgreSQL `disable | prefer | require | verify-ca | verify-full`
//! (default `verify-full`).

use std::collections::HashMap;
use std::fmt;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::mysqlpool::{self, MySQLConnectionPool};
use datafusion_table_providers::sql::db_connection_pool::postgrespool::{
    self, PostgresConnectionPool,
};
use ember_core::error::one_line;
use ember_core::manifest::DatabaseKind;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A database to connect to: the URL's parts and the password. Serialized into plans (the
/// executors connect with it); never printed with the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The database.
    pub kind: DatabaseKind,
    /// Host name or address.
    pub host: String,
    /// TCP port; the database's default (3306, 5432) when absent.
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Database name (the URL's path).
    pub database: Option<String>,
    /// The URL's `sslmode` query parameter, as the driver takes it.
    pub sslmode: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url())
    }
}

impl Endpoint {
    /// The endpoint of `url` (a manifest's, without password) with `password`.
    ///
    /// # Errors
    /// A message when the URL cannot be parsed or has no host.
    pub fn parse(
        kind: DatabaseKind,
        url: &str,
        password: Option<String>,
    ) -> std::result::Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("`url` {url}: {e}"))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`url` {url} has no host"))?
            .to_string();
        let decode =
            |s: &str| percent_decode(s).map_err(|()| format!("`url` {url}: bad percent-encoding"));
        let user = Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(decode)
            .transpose()?;
        let database = Some(parsed.path().trim_start_matches('/'))
            .filter(|d| !d.is_empty())
            .map(decode)
            .transpose()?;
        let mut sslmode = None;
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => sslmode = Some(value.into_owned()),
                other => {
                    return Err(format!(
                        "`url` {url}: unknown parameter `{other}` (only `sslmode` is read)"
                    ));
                }
            }
        }
        Ok(Self {
            kind,
            host,
            port: parsed.port(),
            user,
            database,
            sslmode,
            password,
        })
    }

    /// The endpoint of `url` with the password read from `password_env` or `password_file`
    /// (see [`read_password`]), for `what` (`input \`x\``) in messages.
    ///
    /// # Errors
    /// [`Error::Settings`] naming `what` for a password that cannot be read or a bad URL.
    pub async fn resolve(
        ctx: &datafusion::prelude::SessionContext,
        what: &str,
        kind: DatabaseKind,
        url: &str,
        password_env: Option<&str>,
        password_file: Option<&str>,
    ) -> Result<Self> {
        let settings = |message: String| Error::Settings {
            what: what.to_string(),
            message,
        };
        let password = read_password(ctx, password_env, password_file)
            .await
            .map_err(settings)?;
        Self::parse(kind, url, password).map_err(settings)
    }

    /// The URL without password, for messages: `mysql://user@host:port/db`.
    pub fn url(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let db = self.database.as_deref().unwrap_or_default();
        format!("{}://{user}{}{port}/{db}", self.kind.as_str(), self.host)
    }

    /// The parameters of datafusion-table-providers' pools (the password among them).
    pub(crate) fn params(&self) -> HashMap<String, SecretString> {
        let mut params = HashMap::new();
        let mut put = |k: &str, v: &str| {
            params.insert(k.to_string(), SecretString::from(v.to_string()));
        };
        put("host", &self.host);
        if let Some(user) = &self.user {
            put("user", user);
        }
        if let Some(db) = &self.database {
            put("db", db);
        }
        if let Some(password) = &self.password {
            put("pass", password);
        }
        if let Some(port) = self.port {
            let key = match self.kind {
                DatabaseKind::Mysql => "tcp_port",
                DatabaseKind::Postgres => "port",
            };
            put(key, &port.to_string());
        }
        if let Some(mode) = &self.sslmode {
            put("sslmode", mode);
        }
        // One connection per task: a task reads one range at a time.
        put("pool_min", "1");
        put("pool_max", "2");
        params
    }

    /// Opens a connection (a pool of one), checking the server, the user and the password.
    ///
    /// # Errors
    /// [`Error::Connect`] when the server cannot be reached, [`Error::Authentication`] when it
    /// refuses the user or password, [`Error::Schema`] for an unknown database,
    /// [`Error::Settings`] for a wrong `sslmode`.
    pub async fn connect(&self, input: &str) -> Result<Connection> {
        let url = self.url();
        let settings = |message: String| Error::Settings {
            what: input.to_string(),
            message,
        };
        let connect = |message: String| Error::Connect {
            what: input.to_string(),
            url: url.clone(),
            message: one_line(&message),
        };
        let auth = || Error::Authentication {
            what: input.to_string(),
            url: url.clone(),
        };
        let inner = match self.kind {
            DatabaseKind::Mysql => {
                let pool = MySQLConnectionPool::new(self.params())
                    .await
                    .map_err(|e| match e {
                        mysqlpool::Error::InvalidUsernameOrPassword => auth(),
                        mysqlpool::Error::InvalidParameterError { parameter_name } => {
                            settings(format!("invalid `{parameter_name}` in the url"))
                        }
                        mysqlpool::Error::UnknownMySQLDatabase { message } => Error::Schema {
                            what: input.to_string(),
                            url: url.clone(),
                            message: one_line(&message),
                        },
                        mysqlpool::Error::InvalidHostOrPortError { host, port, .. } => {
                            connect(format!("nothing answers on {host}:{port}"))
                        }
                        other => connect(other.to_string()),
                    })?;
                let conn = pool.connect().await.map_err(|e| connect(e.to_string()))?;
                Inner::Mysql(conn)
            }
            DatabaseKind::Postgres => {
                let pool =
                    PostgresConnectionPool::new(self.params())
                        .await
                        .map_err(|e| match e {
                            postgrespool::Error::InvalidUsernameOrPassword { .. } => auth(),
                            postgrespool::Error::InvalidParameterError { parameter_name } => {
                                settings(format!("invalid `{parameter_name}` in the url"))
                            }
                            postgrespool::Error::InvalidHostOrPortError { host, port, .. } => {
                                connect(format!("nothing answers on {host}:{port}"))
                            }
                            other => connect(other.to_string()),
                        })?;
                let conn = pool.connect().await.map_err(|e| connect(e.to_string()))?;
                Inner::Postgres(conn)
            }
        };
        Ok(Connection {
            input: input.to_string(),
            url,
            inner,
        })
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

enum Inner {
    Mysql(Box<datafusion_table_providers::mysql::DynMySQLConnection>),
    Postgres(Box<datafusion_table_providers::postgres::DynPostgresConnection>),
}

/// An open connection of one input.
pub struct Connection {
    input: String,
    url: String,
    inner: Inner,
}

/// Runs `$body` with `$c` bound to the connection's async interface, whatever the database.
/// The methods take `&mut self`: the drivers' connections are `Send` but not `Sync`.
macro_rules! with_async {
    ($self:ident, $c:ident => $body:expr) => {
        match &mut $self.inner {
            Inner::Mysql(conn) => {
                let Some($c) = conn.as_async() else {
                    return Err(query_error(
                        &$self.input,
                        &$self.url,
                        "the MySQL connection is not asynchronous",
                    ));
                };
                $body
            }
            Inner::Postgres(conn) => {
                let Some($c) = conn.as_async() else {
                    return Err(query_error(
                        &$self.input,
                        &$self.url,
                        "the PostgreSQL connection is not asynchronous",
                    ));
                };
                $body
            }
        }
    };
}

fn query_error(input: &str, url: &str, message: impl fmt::Display) -> Error {
    Error::Query {
        what: input.to_string(),
        url: url.to_string(),
        message: one_line(&message.to_string()),
    }
}

impl Connection {
    fn query_error(&self, message: impl fmt::Display) -> Error {
        query_error(&self.input, &self.url, message)
    }

    fn schema_error(&self, message: impl fmt::Display) -> Error {
        Error::Schema {
            what: self.input.clone(),
            url: self.url.clone(),
            message: one_line(&message.to_string()),
        }
    }

    /// The Arrow schema of `table` (`[schema.]name`), by the library's type mapping.
    ///
    /// # Errors
    /// [`Error::Schema`] naming the table when it does not exist or a column's type has no
    /// Arrow type.
    pub async fn table_schema(&mut self, table: &str) -> Result<SchemaRef> {
        let reference = TableReference::from(table);
        let (input, url) = (self.input.clone(), self.url.clone());
        with_async!(self, c => c.get_schema(&reference).await.map_err(|e| Error::Schema {
            what: input,
            url,
            message: one_line(&format!("table `{table}`: {e}")),
        }))
    }

    /// The Arrow schema of the rows of `query`: the query becomes a temporary view (PostgreSQL)
    /// or an empty temporary table (MySQL) whose columns the library maps.
    ///
    /// # Errors
    /// [`Error::Schema`] when the query does not run or a column has no Arrow type.
    pub async fn query_schema(&mut self, query: &str) -> Result<SchemaRef> {
        const PROBE: &str = "ember_query_schema";
        let mysql = matches!(self.inner, Inner::Mysql(_));
        match mysql {
            true => {
                self.execute(&format!("DROP TEMPORARY TABLE IF EXISTS {PROBE}"))
                    .await?;
                self.execute(&format!(
                    "CREATE TEMPORARY TABLE {PROBE} AS SELECT * FROM ({query}) AS q LIMIT 0"
                ))
                .await
                .map_err(|e| self.schema_error(format!("query: {e}")))?;
                let schema = self.table_schema(PROBE).await;
                self.execute(&format!("DROP TEMPORARY TABLE IF EXISTS {PROBE}"))
                    .await?;
                schema
            }
            false => {
                self.execute(&format!("CREATE OR REPLACE TEMP VIEW {PROBE} AS {query}"))
                    .await
                    .map_err(|e| self.schema_error(format!("query: {e}")))?;
                let rows = self
                    .rows_as_text(
                        "SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()",
                    )
                    .await?;
                let namespace = rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .ok_or_else(|| self.query_error("no temporary schema"))?;
                self.table_schema(&format!("{namespace}.{PROBE}")).await
            }
        }
    }

    /// Runs a statement that returns no rows.
    ///
    /// # Errors
    /// [`Error::Query`] with the server's reason.
    pub async fn execute(&mut self, sql: &str) -> Result<u64> {
        let (input, url) = (self.input.clone(), self.url.clone());
        with_async!(self, c => c.execute(sql, &[]).await.map_err(|e| query_error(&input, &url, e)))
    }

    /// The rows of `sql` as record batches; `schema` (when given) is the one the library
    /// converts to. A query with no rows yields no batch.
    ///
    /// # Errors
    /// [`Error::Query`] with the server's reason.
    pub async fn query(
        &mut self,
        sql: &str,
        schema: Option<SchemaRef>,
    ) -> Result<SendableRecordBatchStream> {
        let (input, url) = (self.input.clone(), self.url.clone());
        with_async!(self, c => c.query_arrow(sql, &[], schema).await.map_err(|e| query_error(&input, &url, e)))
    }

    /// The rows of `sql` as text (NULL as `None`), for small answers (bounds, names).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn rows_as_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
        use futures::TryStreamExt;
        let batches: Vec<_> = self
            .query(sql, None)
            .await?
            .try_collect()
            .await
            .map_err(|e| self.query_error(e))?;
        let options = FormatOptions::default();
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.query_error(e))?;
            for row in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(c, f)| (!c.is_null(row)).then(|| f.value(row).to_string()))
                        .collect(),
                );
            }
        }
        Ok(rows)
    }
}

/// The password: from the environment variable `env` (unset is an error) or the file `file`
/// (a local path or a URL of a store the session has, e.g. `hdfs://`; one trailing newline
/// removed), or none.
///
/// # Errors
/// A message naming the variable or the file.
pub async fn read_password(
    ctx: &datafusion::prelude::SessionContext,
    env: Option<&str>,
    file: Option<&str>,
) -> std::result::Result<Option<String>, String> {
    use object_store::ObjectStoreExt;
    if let Some(var) = env {
        return std::env::var(var).map(Some).map_err(|_| {
            format!("`password_env`: {var} is not set in the environment of the driver")
        });
    }
    let Some(file) = file else {
        return Ok(None);
    };
    let bad = |e: &dyn fmt::Display| format!("`password_file` {file}: {e}");
    let text = if file.contains("://") {
        let url = url::Url::parse(file).map_err(|e| bad(&e))?;
        let store_url = datafusion::execution::object_store::ObjectStoreUrl::parse(
            &url[..url::Position::BeforePath],
        )
        .map_err(|e| bad(&e))?;
        let store = ctx
            .runtime_env()
            .object_store(store_url)
            .map_err(|e| bad(&e))?;
        let path = object_store::path::Path::from_url_path(url.path()).map_err(|e| bad(&e))?;
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| bad(&e))?
            .bytes()
            .await
            .map_err(|e| bad(&e))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad(&"not UTF-8"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| bad(&e))?
    };
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Some(text.strip_suffix('\r').unwrap_or(text).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_parsed_and_printed_without_the_password() {
        let e = Endpoint::parse(
            DatabaseKind::Mysql,
            "mysql://shop%20user@127.0.0.1:3307/shop?sslmode=disabled",
            Some("s3cret".into()),
        )
        .expect("url");
        assert_eq!(e.user.as_deref(), Some("shop user"));
        assert_eq!(e.port, Some(3307));
        assert_eq!(e.database.as_deref(), Some("shop"));
        assert_eq!(e.sslmode.as_deref(), Some("disabled"));
        let shown = format!("{e:?} {}", e.url());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(e.url(), "mysql://shop user@127.0.0.1:3307/shop");
        let bad = Endpoint::parse(DatabaseKind::Postgres, "postgres://h/db?timeout=3", None)
            .expect_err("unknown parameter");
        assert!(bad.contains("unknown parameter `timeout`"), "{bad}");
    }
}
