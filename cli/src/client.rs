//! HTTP client of the scheduler's REST API (`/api/v1`), for `ember submit`, `jobs`, `status`
//! and `cancel`. Every failure is one line that names the scheduler.

use std::time::Duration;

use ember_core::api::{API_PREFIX, ApiError};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    /// One line when the address is not `HOST:PORT` or the token is not header text.
    pub fn new(scheduler: &str, token: Option<&str>) -> Result<Self, String> {
        let (host, port) =
            ember_core::config::parse_host_port("--scheduler / EMBER_SCHEDULER", scheduler)
                .map_err(|e| e.to_string())?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    "--token / EMBER_TOKEN holds characters a header cannot carry".to_string()
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base: format!("http://{host}:{port}{API_PREFIX}"),
            address: format!("{host}:{port}"),
            http,
        })
    }

    fn failure(&self, e: &reqwest::Error) -> String {
        if e.is_connect() || e.is_timeout() {
            format!(
                "cannot reach the scheduler at {} ({}); is `ember scheduler` running there?",
                self.address,
                root_cause(e)
            )
        } else {
            format!("scheduler at {}: {}", self.address, root_cause(e))
        }
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, String> {
        let response = response.map_err(|e| self.failure(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.failure(&e))?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "scheduler at {} sent an unexpected answer: {e}",
                    self.address
                )
            })
        } else {
            Err(self.error_answer(status, &body))
        }
    }

    /// `GET /api/v1/<path>`.
    ///
    /// # Errors
    /// One line: unreachable scheduler, an error answer, or an unexpected body.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await;
        self.answer(response).await
    }

    /// `POST /api/v1/<path>` with a JSON body.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, String> {
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
    pub async fn send<B: Serialize>(&self, path: &str, body: &B) -> Result<(), String> {
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
    /// The one line for an error answer: its [`ApiError`] message, or its text.
    fn error_answer(&self, status: reqwest::StatusCode, body: &[u8]) -> String {
        let message = serde_json::from_slice::<ApiError>(body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
        format!(
            "scheduler at {} answered {}: {message}",
            self.address,
            status.as_u16()
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
