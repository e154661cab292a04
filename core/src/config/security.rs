//! The `[security]` and `[tls]` sections of the configuration file; `crate::security` resolves
//! them with the flags (`docs/security.md`).

use std::path::PathBuf;

use serde::Deserialize;

/// `[security]` of the configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SecurityFile {
    pub cluster_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub allowed_paths: Vec<String>,
}

/// `[tls]` of the configuration file; see `crate::security::tls`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TlsFile {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}
