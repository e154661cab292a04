//! HTTP client of the scheduler's REST API (`/api/v1`), for `ember submit`, `jobs`, `status`
//! and `cancel`. Every failure is one line that names the scheduler.

use std::time::Duration;

use ember_core::ErrorKind;
use ember_core::api::{API_PREFIX, ApiError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Failure, Result};

/// A scheduler's REST API.
pub struct Client {
    base: String,
    address: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the scheduler at `HOST:PORT`, sending `token` as a bearer token.
    ///
    /// # Errors
    /// A user error when the address is not `HOST:PORT` or the token is not header text.
    pub fn new(scheduler: &str, token: Option<&str>) -> Result<Self> {
        let (host, port) =
            ember_core::config::parse_host_port("--scheduler / EMBER_SCHEDULER", scheduler)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    Failure::user("--token / EMBER_TOKEN holds characters a header cannot carry")
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Failure::new(ErrorKind::Internal, e.to_string()))?;
        Ok(Self {
            base: format!("http://{host}:{port}{API_PREFIX}"),
            address: format!("{host}:{port}"),
            http,
        })
    }

    /// The scheduler did not answer, or the exchange broke: always external.
    fn failure(&self, e: &reqwest::Error) -> Failure {
        if e.is_connect() || e.is_timeout() {
            Failure::external(format!(
                "cannot reach the scheduler at {} ({}); is `ember scheduler` running there?",
                self.address,
                root_cause(e)
            ))
        } else {
            Failure::external(format!("scheduler at {}: {}", self.address, root_cause(e)))
        }
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T> {
        let response = response.map_err(|e| self.failure(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.failure(&e))?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| {
                Failure::external(format!(
                    "scheduler at {} sent an unexpected answer: {e}",
                    self.address
                ))
            })
        } else {
            Err(self.error_answer(status, &body))
        }
    }

    /// `GET /api/v1/<path>`.
    ///
    /// # Errors
    /// One line: unreachable scheduler, an error answer, or an unexpected body.
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
}

impl Client {
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
}

impl Client {
    /// The failure for an error answer: its [`ApiError`] message and kind, or its text (a 4xx
    /// the caller's, a 5xx the server's).
    fn error_answer(&self, status: reqwest::StatusCode, body: &[u8]) -> Failure {
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
        Failure::new(
            kind,
            format!(
                "scheduler at {} answered {}: {message}",
                self.address,
                status.as_u16()
            ),
        )
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
