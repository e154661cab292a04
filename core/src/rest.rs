//! The HTTP client of Ember's REST API (`/api/v1`): `ember submit`, `jobs`, `status` and
//! `cancel`, executors reporting their status, stream drivers reporting their batches. Every
//! failure is one line that names the server.
//!
//! A client sends one credential as a bearer token: a user's token (`--token`), or else the
//! cluster token when the process has the cluster secret (executors and drivers always do).
//! With `[tls]`, it speaks `https` and trusts the cluster's CA.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ErrorKind;
use crate::api::{API_PREFIX, ApiError};
use crate::error::{Error, Result};
use crate::security::SecuritySettings;

/// The REST API of a scheduler (or of `ember serve`).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    address: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `HOST:PORT` (the flag that named it: `setting`), sending
    /// `token`, else the cluster token of `security`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] when the address is not `HOST:PORT`, the token is not header
    /// text, or the TLS files cannot be used.
    pub fn new(
        setting: &str,
        server: &str,
        token: Option<&str>,
        security: &SecuritySettings,
    ) -> Result<Self> {
        let (host, port) = crate::config::parse_host_port(setting, server)?;
        let mut headers = reqwest::header::HeaderMap::new();
        let credential = token.map(str::to_string).or_else(|| {
            security
                .cluster_secret
                .as_ref()
                .map(|s| s.token().to_string())
        });
        if let Some(credential) = credential {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {credential}"))
                .map_err(|_| Error::InvalidSetting {
                    setting: "--token / EMBER_TOKEN".into(),
                    message: "holds characters a header cannot carry".into(),
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        if let Some(tls) = &security.tls {
            builder = tls.reqwest_client(builder)?;
        }
        let http = builder.build().map_err(|e| Error::InvalidSetting {
            setting: "[tls]".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            base: format!("{}://{host}:{port}{API_PREFIX}", security.http_scheme()),
            address: format!("{host}:{port}"),
            http,
        })
    }

    /// The server did not answer, or the exchange broke: always external.
    fn failure(&self, e: &reqwest::Error) -> Error {
        let message = if e.is_connect() || e.is_timeout() {
            format!(
                "cannot reach the scheduler at {} ({}); is `ember scheduler` running there?",
                self.address,
                root_cause(e)
            )
        } else {
            format!("scheduler at {}: {}", self.address, root_cause(e))
        };
        Error::Remote {
            kind: ErrorKind::External,
            message,
        }
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        response: std::result::Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T> {
        let response = response.map_err(|e| self.failure(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.failure(&e))?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| Error::Remote {
                kind: ErrorKind::External,
                message: format!(
                    "scheduler at {} sent an unexpected answer: {e}",
                    self.address
                ),
            })
        } else {
            Err(self.error_answer(status, &body))
        }
    }

    /// `GET /api/v1/<path>`.
    ///
    /// # Errors
    /// [`Error::Remote`]: unreachable server, an error answer (with its kind), or an unexpected
    /// body.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await;
        self.answer(response).await
    }

    /// `POST /api/v1/<path>` with a JSON body.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await;
        self.answer(response).await
    }

    /// `POST /api/v1/<path>` with a JSON body, for calls answered with no body (204).
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn send<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| self.failure(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(self.error_answer(status, &body))
    }

    /// The error of an error answer: its [`ApiError`] message and kind, or its text (a 4xx
    /// the caller's, a 5xx the server's).
    fn error_answer(&self, status: reqwest::StatusCode, body: &[u8]) -> Error {
        let (message, kind) = match serde_json::from_slice::<ApiError>(body) {
            Ok(e) => (e.error, e.kind),
            Err(_) => (
                String::from_utf8_lossy(body).trim().to_string(),
                if status.is_client_error() {
                    ErrorKind::User
                } else {
                    ErrorKind::External
                },
            ),
        };
        Error::Remote {
            kind,
            message: format!(
                "scheduler at {} answered {}: {message}",
                self.address,
                status.as_u16()
            ),
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
