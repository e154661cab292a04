//! Security settings every role shares (`docs/security.md` has the threat model):
//! - [`secret`]: the cluster secret, which executors, drivers and clients present on every gRPC
//!   call ([`grpc`]) and which the reporting endpoints of the REST API take;
//! - [`tls`]: TLS on every listener and client;
//! - [`paths`]: the folders jobs, streams and tables may use;
//! - [`Role`]: what a Flight SQL / REST user or token may do.
//!
//! ```toml
//! [security]
//! cluster_secret_file = "/etc/ember/cluster.secret"  # EMBER_CLUSTER_SECRET_FILE
//! allowed_paths = ["hdfs://nn:9000/warehouse/", "/data/"]  # EMBER_SECURITY_ALLOWED_PATHS
//!
//! [tls]
//! cert = "/etc/ember/node.pem"   # EMBER_TLS_CERT
//! key = "/etc/ember/node.key"    # EMBER_TLS_KEY
//! ca = "/etc/ember/ca.pem"       # EMBER_TLS_CA
//! client_ca = "/etc/ember/ca.pem"  # EMBER_TLS_CLIENT_CA (mutual TLS)
//! ```

pub mod grpc;
pub mod paths;
pub mod plan;
pub mod secret;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::config::ConfigFile;
use crate::error::{Error, Result};

pub use paths::PathPolicy;
pub use secret::ClusterSecret;
pub use tls::Tls;

/// What a user or token of the Flight SQL endpoint and the REST API may do; each role may do
/// what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Flight SQL queries, the web UI's pages, every `GET` of the REST API.
    Reader,
    /// Also submits and cancels jobs.
    Submitter,
    /// Also the reporting endpoints of executors and streams, and table maintenance.
    Admin,
}

impl Role {
    /// The role's name, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Submitter => "submitter",
            Role::Admin => "admin",
        }
    }
}

/// The security flags every process and command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// The cluster secret file [default: $EMBER_HOME/cluster.secret, EMBER_HOME defaulting to
    /// ~/.config/ember; `ember scheduler` creates it when missing].
    #[arg(long, env = "EMBER_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// A folder (local or URL) jobs, streams and tables may use (repeatable; the variable takes
    /// a comma-separated list) [default: any].
    #[arg(
        long = "allowed-path",
        env = "EMBER_SECURITY_ALLOWED_PATHS",
        value_name = "PATH",
        value_delimiter = ','
    )]
    pub allowed_paths: Vec<String>,
    /// This process's TLS certificate chain (PEM): every listener speaks TLS, every client
    /// uses it.
    #[arg(long, env = "EMBER_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "EMBER_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The certificates clients trust (PEM) [default: --tls-cert]; alone (without --tls-cert),
    /// a client speaks TLS without a certificate of its own.
    #[arg(long, env = "EMBER_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Servers also require client certificates signed by these (PEM): mutual TLS.
    #[arg(long, env = "EMBER_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

/// How a process uses the cluster secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUse {
    /// `ember scheduler`: reads it, or creates it when there is none.
    Create,
    /// `ember executor`: must have it.
    Require,
    /// The `ember` commands: present it when there is one.
    IfPresent,
    /// `--check-config`: only say which file it would be; read nothing, create nothing (the
    /// scheduler may create it later).
    Check,
}

/// Resolved security settings.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// The cluster secret (`None`: a command without one, or embedded mode).
    pub cluster_secret: Option<Arc<ClusterSecret>>,
    /// Whether the secret file was created by this process.
    pub created_secret: bool,
    /// The secret's file, whether or not it was read.
    pub secret_file: Option<PathBuf>,
    /// TLS, when configured.
    pub tls: Option<Arc<Tls>>,
    /// The allowed folders.
    pub paths: PathPolicy,
}

impl SecuritySettings {
    /// Flags and variables over the file's `[security]` and `[tls]` over defaults.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for half a TLS pair, a file that cannot be read, a missing
    /// secret where it is required, a bad allowed path.
    pub fn resolve(args: &SecurityArgs, file: &ConfigFile, secret: SecretUse) -> Result<Self> {
        let explicit = args
            .cluster_secret_file
            .clone()
            .or_else(|| file.security.cluster_secret_file.clone());
        let path = explicit.clone().or_else(secret::default_path);
        let secret_file = path.clone();
        let (cluster_secret, created_secret) = match (secret, path) {
            (SecretUse::Check, _) => (None, false),
            (SecretUse::Create, Some(path)) => {
                let (s, created) = ClusterSecret::load_or_create(&path)?;
                (Some(Arc::new(s)), created)
            }
            (SecretUse::Require, Some(path)) => {
                if !path.exists() {
                    return Err(Error::InvalidSetting {
                        setting: "--cluster-secret-file / EMBER_CLUSTER_SECRET_FILE".into(),
                        message: format!(
                            "no cluster secret at {}: copy the file `ember scheduler` created (it prints where) or name it",
                            path.display()
                        ),
                    });
                }
                (Some(Arc::new(ClusterSecret::load(&path)?)), false)
            }
            (SecretUse::IfPresent, Some(path)) if explicit.is_some() || path.exists() => {
                (Some(Arc::new(ClusterSecret::load(&path)?)), false)
            }
            (SecretUse::IfPresent, _) => (None, false),
            (_, None) => {
                return Err(Error::InvalidSetting {
                    setting: "--cluster-secret-file / EMBER_CLUSTER_SECRET_FILE".into(),
                    message: "no HOME or EMBER_HOME to keep the cluster secret in: name the file"
                        .into(),
                });
            }
        };
        let cert = args.tls_cert.clone().or_else(|| file.tls.cert.clone());
        let key = args.tls_key.clone().or_else(|| file.tls.key.clone());
        let ca = args.tls_ca.clone().or_else(|| file.tls.ca.clone());
        let client_ca = args
            .tls_client_ca
            .clone()
            .or_else(|| file.tls.client_ca.clone());
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(
                &cert,
                &key,
                ca.as_deref(),
                client_ca.as_deref(),
            )?)),
            (None, None) => match (ca, client_ca) {
                (None, None) => None,
                // A client that only calls: it trusts `ca`, presents no certificate.
                (Some(ca), None) => Some(Arc::new(Tls::client_only(&ca)?)),
                (_, Some(_)) => {
                    return Err(Error::InvalidSetting {
                        setting: "--tls-client-ca / [tls] client_ca".into(),
                        message: "requiring client certificates needs this server's own --tls-cert and --tls-key".into(),
                    });
                }
            },
            _ => {
                return Err(Error::InvalidSetting {
                    setting: "--tls-cert / --tls-key / [tls]".into(),
                    message: "give the certificate and the key together (with optionally ca, client_ca), or only ca for a client".into(),
                });
            }
        };
        let mut allowed = file.security.allowed_paths.clone();
        allowed.extend(args.allowed_paths.iter().cloned());
        Ok(Self {
            cluster_secret,
            created_secret,
            secret_file,
            tls,
            paths: PathPolicy::new(&allowed)?,
        })
    }

    /// The URL scheme of this cluster's HTTP listeners: `https` with TLS.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}
