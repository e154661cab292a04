//! TLS on every listener and client of a cluster, from one `[tls]` section (or the
//! `--tls-*` / `EMBER_TLS_*` flags): the scheduler's port (gRPC and HTTP), the executors'
//! Flight port and `/metrics`, the Flight SQL endpoint, `ember serve`'s HTTP port, and the
//! `ember` commands, executors and drivers that call them.
//!
//! ```toml
//! [tls]
//! cert = "/etc/ember/node.pem"      # this process's certificate chain (PEM)
//! key = "/etc/ember/node.key"       # its private key (PEM)
//! ca = "/etc/ember/ca.pem"          # what clients trust; default: `cert` (self-signed)
//! client_ca = "/etc/ember/ca.pem"   # optional: servers also require client certificates
//! ```
//!
//! Clients present `cert`/`key` as their own certificate, so with `client_ca` set a cluster is
//! mutual TLS. A client that only calls (the `ember` commands on a user's machine) may be
//! given `ca` alone: it then speaks TLS and trusts `ca`, and presents no certificate (which a
//! mutual-TLS cluster refuses). Listeners need `cert` and `key`. A self-signed certificate for one machine (`docs/security.md`):
//! `openssl req -x509 -newkey rsa:2048 -nodes -keyout node.key -out node.pem -days 365
//! -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1
//! -addext basicConstraints=critical,CA:FALSE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Makes ring the process's rustls crypto provider (idempotent). Every `ember` process calls it
/// first: Ember's own TLS code names ring explicitly, but tonic's server TLS takes the process
/// default, and with both ring and aws-lc compiled into rustls (delta-rs's kernel brings the
/// latter) rustls cannot choose one by itself and panics. Test processes that make TLS clients
/// or servers call it too.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The PEM files of a process's TLS, read once when the settings are resolved.
#[derive(Clone)]
pub struct Tls {
    /// The certificate's path, or the CA's for a client without one (named in errors).
    cert_path: PathBuf,
    /// This process's certificate chain and key (PEM); `None` for a client that presents none.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    ca: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert_path)
            .field("identity", &self.identity.as_ref().map(|_| "***"))
            .field("mutual", &self.client_ca.is_some())
            .finish()
    }
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::InvalidSetting {
        setting: setting.to_string(),
        message: format!("{}: {e}", path.display()),
    })
}

fn bad(setting: &str, path: &Path, message: impl std::fmt::Display) -> Error {
    Error::InvalidSetting {
        setting: setting.to_string(),
        message: format!("{}: {message}", path.display()),
    }
}

impl Tls {
    /// Reads and checks the files: `cert` and `key` (PEM), `ca` (default: `cert`), and the
    /// optional `client_ca`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] naming the flag and the file that cannot be read or holds no
    /// certificate or key.
    pub fn load(
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Self> {
        let cert_pem = read("--tls-cert / [tls] cert", cert)?;
        if CertificateDer::pem_slice_iter(&cert_pem).next().is_none() {
            return Err(bad("--tls-cert / [tls] cert", cert, "no PEM certificate"));
        }
        let key_pem = read("--tls-key / [tls] key", key)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            bad(
                "--tls-key / [tls] key",
                key,
                format!("no PEM private key ({e})"),
            )
        })?;
        let ca_pem = match ca {
            Some(ca) => read("--tls-ca / [tls] ca", ca)?,
            None => cert_pem.clone(),
        };
        let client_ca = client_ca
            .map(|p| read("--tls-client-ca / [tls] client_ca", p))
            .transpose()?;
        Ok(Self {
            cert_path: cert.to_path_buf(),
            identity: Some((cert_pem, key_pem)),
            ca: ca_pem,
            client_ca,
        })
    }

    /// A client's TLS without a certificate of its own: it trusts `ca` (PEM) only.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] when `ca` cannot be read or holds no certificate.
    pub fn client_only(ca: &Path) -> Result<Self> {
        let ca_pem = read("--tls-ca / [tls] ca", ca)?;
        if CertificateDer::pem_slice_iter(&ca_pem).next().is_none() {
            return Err(bad("--tls-ca / [tls] ca", ca, "no PEM certificate"));
        }
        Ok(Self {
            cert_path: ca.to_path_buf(),
            identity: None,
            ca: ca_pem,
            client_ca: None,
        })
    }

    /// The certificate and key, or the error a listener without them gives.
    fn identity(&self) -> Result<(&[u8], &[u8])> {
        self.identity
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
            .ok_or_else(|| Error::InvalidSetting {
                setting: "--tls-cert / --tls-key / [tls]".into(),
                message: format!(
                    "a listener needs a certificate and its key; only a CA ({}) is given",
                    self.cert_path.display()
                ),
            })
    }

    /// Whether servers require client certificates.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// tonic's server configuration: this identity, client certificates when `client_ca`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a client-only TLS (no certificate).
    pub fn tonic_server(&self) -> Result<tonic::transport::ServerTlsConfig> {
        let (cert, key) = self.identity()?;
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        Ok(config)
    }

    /// tonic's client configuration: trust `ca`, present this identity if there is one.
    pub fn tonic_client(&self) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }

    /// rustls's server configuration for HTTP listeners (ALPN `h2` and `http/1.1`, so one port
    /// serves gRPC and browsers), with client certificates when `client_ca`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] when rustls refuses the certificate or key.
    pub fn rustls_server(&self) -> Result<Arc<rustls::ServerConfig>> {
        let (cert, key) = self.identity()?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad("--tls-cert / [tls] cert", &self.cert_path, e))?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| bad("--tls-key / [tls] key", &self.cert_path, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("[tls]", &self.cert_path, e))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca) {
                    let c = c.map_err(|e| {
                        bad("--tls-client-ca / [tls] client_ca", &self.cert_path, e)
                    })?;
                    roots.add(c).map_err(|e| {
                        bad("--tls-client-ca / [tls] client_ca", &self.cert_path, e)
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| bad("--tls-client-ca / [tls] client_ca", &self.cert_path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| bad("--tls-cert / --tls-key", &self.cert_path, e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// `builder` trusting `ca` and presenting this identity if there is one (the REST
    /// clients).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] when reqwest refuses the PEM files.
    pub fn reqwest_client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder> {
        let mut builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&self.ca)
            .map_err(|e| bad("--tls-ca / [tls] ca", &self.cert_path, e))?
        {
            builder = builder.add_root_certificate(cert);
        }
        let Some((cert, key)) = &self.identity else {
            return Ok(builder);
        };
        let mut identity = cert.clone();
        identity.extend_from_slice(b"\n");
        identity.extend_from_slice(key);
        let identity = reqwest::Identity::from_pem(&identity)
            .map_err(|e| bad("--tls-cert / --tls-key", &self.cert_path, e))?;
        Ok(builder.identity(identity))
    }
}
