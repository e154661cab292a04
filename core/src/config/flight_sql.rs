//! `[flight_sql]` of the configuration file: the Arrow Flight SQL endpoint's port, users and
//! tokens, TLS, read-only, and the tables it serves besides job outputs (the flags are
//! `ember_serving::config`'s).
//!
//! ```toml
//! [flight_sql]
//! port = 32010                 # 0: a free port
//! allow_writes = false         # DDL, DML and COPY are refused unless true
//! tls_cert = "/etc/ember/server.pem"
//! tls_key = "/etc/ember/server.key"
//! tokens = ["a-long-random-token", { token = "another", role = "submitter" }]
//!
//! [flight_sql.users]
//! analyst = "a password"                         # a reader
//! ops = { password = "another", role = "admin" }
//!
//! [[flight_sql.tables]]
//! name = "returns_2011"
//! path = "hdfs://namenode:9000/warehouse/returns_2011/"
//! format = "parquet"           # parquet (default) or csv (with a header row)
//!
//! [[flight_sql.views]]         # created once the tables it reads exist
//! name = "daily_net"
//! sql = "SELECT order_date, SUM(net_revenue) AS net FROM daily_revenue_by_product GROUP BY order_date"
//! ```
//!
//! Authentication is on as soon as one user or token is set: Flight SQL's basic handshake turns
//! a user's password into a bearer token, and a static token is a bearer token from the start.
//! Users and tokens are `reader`s unless a `role` says otherwise (`submitter`, `admin`; see
//! `ember_core::security::Role`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::security::Role;

/// A secret string (password, token): compared and used, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A user of `[flight_sql.users]`: a password (a reader), or a password and a role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UserFile {
    /// `name = "password"`: a reader.
    Password(Secret),
    /// `name = { password = "…", role = "submitter" }`.
    WithRole {
        /// The password.
        password: Secret,
        /// The role.
        role: Role,
    },
}

impl UserFile {
    /// The password and the role.
    pub fn parts(&self) -> (Secret, Role) {
        match self {
            UserFile::Password(p) => (p.clone(), Role::Reader),
            UserFile::WithRole { password, role } => (password.clone(), *role),
        }
    }
}

/// A token of `[flight_sql] tokens`: the token (a reader), or a token and a role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenFile {
    /// `"token"`: a reader.
    Token(Secret),
    /// `{ token = "…", role = "admin" }`.
    WithRole {
        /// The token.
        token: Secret,
        /// The role.
        role: Role,
    },
}

impl TokenFile {
    /// The token and the role.
    pub fn parts(&self) -> (Secret, Role) {
        match self {
            TokenFile::Token(t) => (t.clone(), Role::Reader),
            TokenFile::WithRole { token, role } => (token.clone(), *role),
        }
    }
}

/// A table declared in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFile {
    /// The table's name in SQL.
    pub name: String,
    /// A folder (or file) URL or local path; hive-style `key=value/` folders become partition
    /// columns.
    pub path: String,
    /// `parquet` (default) or `csv`.
    #[serde(default = "parquet")]
    pub format: String,
}

/// A view declared in configuration: a name and the `SELECT` it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewFile {
    /// The view's name in SQL.
    pub name: String,
    /// Its query.
    pub sql: String,
}

/// The default format of a configured table.
pub fn parquet() -> String {
    "parquet".into()
}

/// `[flight_sql]` of the configuration file; see `ember_serving::config::FlightSqlArgs` for
/// each key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FlightSqlFile {
    pub port: Option<u16>,
    pub allow_writes: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub tokens: Vec<TokenFile>,
    #[serde(default)]
    pub users: BTreeMap<String, UserFile>,
    #[serde(default)]
    pub tables: Vec<TableFile>,
    #[serde(default)]
    pub views: Vec<ViewFile>,
}
