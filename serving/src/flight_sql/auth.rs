//! Authentication of the Flight SQL endpoint, as Arrow Flight's basic handshake specifies: a
//! `Handshake` call with `authorization: Basic base64(user:password)` returns
//! `authorization: Bearer <token>`, and every later call carries that bearer token. Static
//! tokens from the configuration are valid bearer tokens from the start.
//!
//! [`AuthLayer`] checks every call but `Handshake` before it reaches the service: with auth on,
//! a call without a valid token gets `UNAUTHENTICATED`, whatever its method.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::prelude::{BASE64_STANDARD, BASE64_STANDARD_NO_PAD};
use ember_core::config::Secret;

use crate::config::FlightSqlSettings;
use futures::future::BoxFuture;
use tonic::Status;

/// How long a token issued by the handshake stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// gRPC path of Flight's `Handshake`, the one call allowed without a token.
const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Users, static tokens and the tokens issued by handshakes.
#[derive(Debug)]
pub struct Auth {
    users: HashMap<String, Secret>,
    tokens: Vec<Secret>,
    issued: Mutex<HashMap<String, (String, Instant)>>,
}

/// Constant-time equality of two byte strings (no early exit on the first difference).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// The users and tokens of `settings`.
    pub fn new(settings: &FlightSqlSettings) -> Self {
        Self {
            users: settings
                .users
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tokens: settings.tokens.clone(),
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Whether calls need a token.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// Checks an `authorization: Basic …` header and issues a bearer token.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a missing or malformed header, an unknown user or a wrong
    /// password (the same message for both, so that user names cannot be probed).
    pub fn handshake(&self, header: Option<&str>) -> Result<String, Status> {
        let encoded = header
            .and_then(|h| h.strip_prefix("Basic "))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the handshake needs `authorization: Basic base64(user:password)`",
                )
            })?;
        let user = self.basic_user(encoded)?;
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        issued.retain(|_, (_, at)| now.duration_since(*at) < TOKEN_LIFETIME);
        issued.insert(token.clone(), (user.clone(), now));
        tracing::info!(user, "Flight SQL handshake: token issued");
        Ok(token)
    }

    /// The user of basic credentials (`base64(user:password)`) whose password is right.
    fn basic_user(&self, encoded: &str) -> Result<String, Status> {
        // Clients differ in padding (Go's ADBC driver sends none).
        let decoded = [&BASE64_STANDARD, &BASE64_STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(encoded.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::unauthenticated("the basic credentials are not base64 text"))?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            Status::unauthenticated("the basic credentials are not user:password")
        })?;
        let known = self
            .users
            .get(user)
            .is_some_and(|p| same(p.expose().as_bytes(), password.as_bytes()));
        if !known {
            tracing::warn!(user, "sign-in refused");
            return Err(Status::unauthenticated("wrong user name or password"));
        }
        Ok(user.to_string())
    }

    /// Checks the `Authorization` header of an HTTP request to the web UI or the REST API:
    /// `Bearer <token>` as [`Auth::check`], or `Basic base64(user:password)` (browsers).
    ///
    /// # Errors
    /// `UNAUTHENTICATED` with what was wrong.
    pub fn check_http(&self, header: Option<&str>) -> Result<(), Status> {
        match header.and_then(|h| h.strip_prefix("Basic ")) {
            Some(encoded) => self.basic_user(encoded).map(|_| ()),
            None => self.check(header),
        }
    }

    /// Checks an `authorization: Bearer …` header.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` with what was wrong (missing, not bearer, unknown or expired).
    pub fn check(&self, header: Option<&str>) -> Result<(), Status> {
        let header = header.ok_or_else(|| {
            Status::unauthenticated(
                "no `authorization` header: authenticate with the handshake (user and password) or a bearer token",
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                Status::unauthenticated("the `authorization` header is not `Bearer <token>`")
            })?
            .trim();
        if self
            .tokens
            .iter()
            .any(|t| same(t.expose().as_bytes(), token.as_bytes()))
        {
            return Ok(());
        }
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get(token) {
            Some((_, at)) if at.elapsed() < TOKEN_LIFETIME => Ok(()),
            Some(_) => Err(Status::unauthenticated(
                "the token expired: authenticate again",
            )),
            None => Err(Status::unauthenticated("unknown token")),
        }
    }
}

/// A tower layer that runs [`Auth::check`] on every call but `Handshake`.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    /// A layer checking against `auth`.
    pub fn new(auth: Arc<Auth>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.auth.enabled() && request.uri().path() != HANDSHAKE_PATH {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if let Err(status) = self.auth.check(header) {
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_handshake_issues_tokens_and_static_tokens_work() {
        let settings = FlightSqlSettings {
            port: 0,
            users: [("ana".to_string(), Secret::new("pw:with:colons"))].into(),
            tokens: vec![Secret::new("static-1")],
            tls: None,
            allow_writes: false,
            tables: Vec::new(),
            views: Vec::new(),
        };
        let auth = Auth::new(&settings);
        assert!(auth.enabled());
        let basic = |s: &str| format!("Basic {}", BASE64_STANDARD.encode(s));
        let unpadded = format!(
            "Basic {}",
            BASE64_STANDARD_NO_PAD.encode("ana:pw:with:colons")
        );
        assert!(auth.handshake(Some(&unpadded)).is_ok());
        let token = auth
            .handshake(Some(&basic("ana:pw:with:colons")))
            .expect("token");
        assert!(auth.check(Some(&format!("Bearer {token}"))).is_ok());
        assert!(auth.check(Some("Bearer static-1")).is_ok());
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Basic abc"),
            Some(token.as_str()),
        ] {
            let e = auth.check(bad).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        for bad in [
            basic("ana:wrong"),
            basic("bob:pw:with:colons"),
            "Bearer x".into(),
        ] {
            let e = auth.handshake(Some(&bad)).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
    }
}
