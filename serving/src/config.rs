//! Settings of the Arrow Flight SQL endpoint (`ember scheduler`, `ember serve`): flags and
//! `EMBER_FLIGHT_SQL_*` variables over the configuration file's `[flight_sql]` (documented in
//! `ember_core::config`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use ember_core::config::{FlightSqlFile, Secret, TableFile, ViewFile, invalid, parquet};
use ember_core::error::Result;
use ember_core::security::Role;

/// Flags of the Flight SQL endpoint.
#[derive(Debug, Clone, Default, Args)]
pub struct FlightSqlArgs {
    /// Port of the Arrow Flight SQL endpoint; 0 picks a free port [default: 32010].
    #[arg(long, env = "EMBER_FLIGHT_SQL_PORT")]
    pub flight_sql_port: Option<u16>,
    /// A user of the basic handshake, NAME:PASSWORD, a reader (repeatable; the variable takes a
    /// comma-separated list; roles are set in [flight_sql.users]). Any user or token turns
    /// authentication on.
    #[arg(
        long = "flight-sql-user",
        env = "EMBER_FLIGHT_SQL_USERS",
        value_name = "NAME:PASSWORD",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub flight_sql_users: Vec<String>,
    /// A static bearer token, a reader (repeatable; the variable takes a comma-separated list;
    /// roles are set in [flight_sql] tokens).
    #[arg(
        long = "flight-sql-token",
        env = "EMBER_FLIGHT_SQL_TOKENS",
        value_name = "TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub flight_sql_tokens: Vec<String>,
    /// PEM certificate chain: serve Flight SQL over TLS (with --flight-sql-tls-key).
    #[arg(long, env = "EMBER_FLIGHT_SQL_TLS_CERT", value_name = "FILE")]
    pub flight_sql_tls_cert: Option<PathBuf>,
    /// PEM private key of --flight-sql-tls-cert.
    #[arg(long, env = "EMBER_FLIGHT_SQL_TLS_KEY", value_name = "FILE")]
    pub flight_sql_tls_key: Option<PathBuf>,
    /// Accept DDL, DML and COPY statements (refused with PERMISSION_DENIED by default).
    #[arg(long, env = "EMBER_FLIGHT_SQL_ALLOW_WRITES")]
    pub flight_sql_allow_writes: bool,
    /// A Parquet table to serve, NAME=PATH (repeatable; the variable takes a comma-separated
    /// list).
    #[arg(
        long = "table",
        env = "EMBER_FLIGHT_SQL_TABLES",
        value_name = "NAME=PATH",
        value_delimiter = ','
    )]
    pub tables: Vec<String>,
}

/// Resolved settings of the Flight SQL endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightSqlSettings {
    /// Port (0: a free one).
    pub port: u16,
    /// Users of the basic handshake: name → password and role.
    pub users: BTreeMap<String, (Secret, Role)>,
    /// Static bearer tokens and their roles.
    pub tokens: Vec<(Secret, Role)>,
    /// TLS certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Whether DDL, DML and COPY are accepted.
    pub allow_writes: bool,
    /// Tables declared in configuration.
    pub tables: Vec<TableFile>,
    /// Views declared in configuration.
    pub views: Vec<ViewFile>,
}

impl FlightSqlSettings {
    /// Default port (Dremio's, which BI tools' Flight SQL connectors suggest).
    pub const DEFAULT_PORT: u16 = 32010;

    /// Whether calls need a token.
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// Resolves flags and variables over `[flight_sql]` of the file over defaults. Users,
    /// tokens and tables of both are kept (a flag's user replaces the file's of that name).
    ///
    /// # Errors
    /// [`ember_core::Error::InvalidSetting`] for a user without `:`, a table without `=`, a format
    /// other than parquet or csv, or half a TLS pair.
    pub fn resolve(args: &FlightSqlArgs, file: &FlightSqlFile) -> Result<Self> {
        let mut users: BTreeMap<String, (Secret, Role)> = file
            .users
            .iter()
            .map(|(name, user)| (name.clone(), user.parts()))
            .collect();
        for user in &args.flight_sql_users {
            let (name, password) = user.split_once(':').ok_or_else(|| {
                invalid(
                    "--flight-sql-user / EMBER_FLIGHT_SQL_USERS",
                    "expected NAME:PASSWORD",
                )
            })?;
            users.insert(
                name.trim().to_string(),
                (Secret::new(password), Role::Reader),
            );
        }
        let mut tokens: Vec<(Secret, Role)> = file.tokens.iter().map(|t| t.parts()).collect();
        tokens.extend(
            args.flight_sql_tokens
                .iter()
                .map(|t| (Secret::new(t), Role::Reader)),
        );
        if tokens.iter().any(|(t, _)| t.expose().trim().is_empty()) {
            return Err(invalid(
                "--flight-sql-token / EMBER_FLIGHT_SQL_TOKENS",
                "a token is empty",
            ));
        }
        let cert = args
            .flight_sql_tls_cert
            .clone()
            .or_else(|| file.tls_cert.clone());
        let key = args
            .flight_sql_tls_key
            .clone()
            .or_else(|| file.tls_key.clone());
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "--flight-sql-tls-cert / --flight-sql-tls-key",
                    "give both the certificate and the key, or neither",
                ));
            }
        };
        let mut tables = file.tables.clone();
        for table in &args.tables {
            let (name, path) = table.split_once('=').ok_or_else(|| {
                invalid("--table / EMBER_FLIGHT_SQL_TABLES", "expected NAME=PATH")
            })?;
            tables.push(TableFile {
                name: name.trim().to_string(),
                path: path.trim().to_string(),
                format: parquet(),
            });
        }
        if let Some(t) = tables
            .iter()
            .find(|t| !matches!(t.format.as_str(), "parquet" | "csv"))
        {
            return Err(invalid(
                "[[flight_sql.tables]] format",
                format!("table {}: `{}` is not parquet or csv", t.name, t.format),
            ));
        }
        Ok(Self {
            port: args
                .flight_sql_port
                .or(file.port)
                .unwrap_or(Self::DEFAULT_PORT),
            users,
            tokens,
            tls,
            allow_writes: args.flight_sql_allow_writes || file.allow_writes.unwrap_or(false),
            tables,
            views: file.views.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_add_to_the_file_and_secrets_are_not_printed() {
        let file: FlightSqlFile = toml::from_str(
            "port = 1\ntokens = [\"t1\", { token = \"t3\", role = \"admin\" }]\n[users]\na = \"pa\"\nops = { password = \"pw-ops-91\", role = \"submitter\" }\n[[tables]]\nname = \"x\"\npath = \"/x\"\n",
        )
        .expect("file");
        let args = FlightSqlArgs {
            flight_sql_users: vec!["b:pw-b-37".into(), "a:new".into()],
            flight_sql_tokens: vec!["tok-2-58".into()],
            tables: vec!["y=/y".into()],
            ..FlightSqlArgs::default()
        };
        let s = FlightSqlSettings::resolve(&args, &file).expect("settings");
        assert_eq!(s.port, 1);
        assert!(s.auth_enabled());
        assert_eq!(s.users["a"].0.expose(), "new");
        assert_eq!(s.users["a"].1, Role::Reader);
        assert_eq!(s.users["ops"].1, Role::Submitter);
        assert_eq!(
            s.tokens.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
            [Role::Reader, Role::Admin, Role::Reader]
        );
        assert_eq!(
            s.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["x", "y"]
        );
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("pw-b-37")
                && !debug.contains("tok-2-58")
                && !debug.contains("pw-ops-91"),
            "{debug}"
        );
        let none = FlightSqlSettings::resolve(&FlightSqlArgs::default(), &FlightSqlFile::default())
            .expect("defaults");
        assert!(!none.auth_enabled() && !none.allow_writes);
        assert_eq!(none.port, FlightSqlSettings::DEFAULT_PORT);
        let half = FlightSqlArgs {
            flight_sql_tls_cert: Some("c.pem".into()),
            ..FlightSqlArgs::default()
        };
        assert!(FlightSqlSettings::resolve(&half, &FlightSqlFile::default()).is_err());
        let bad = FlightSqlArgs {
            flight_sql_users: vec!["nopassword".into()],
            ..FlightSqlArgs::default()
        };
        assert!(FlightSqlSettings::resolve(&bad, &FlightSqlFile::default()).is_err());
    }
}
