//! Authentication and roles of the Flight SQL endpoint and the HTTP port (web UI, REST API),
//! as Arrow Flight's basic handshake specifies: a `Handshake` call with
//! `authorization: Basic base64(user:password)` returns `authorization: Bearer <token>`, and
//! every later call carries that bearer token. Static tokens from the configuration are valid
//! bearer tokens from the start. The cluster token (`ember_core::security::secret`) is a
//! bearer token too: it is what executors and stream drivers present, and it may do what an
//! `admin` may.
//!
//! Every caller is an [`Identity`] with a [`Role`]. With no user and no token configured, a
//! caller without credentials is an anonymous `reader`; anything more needs the cluster token.
//!
//! [`AuthLayer`] checks every Flight call but `Handshake` before it reaches the service: with
//! users or tokens, a call without a valid token gets `UNAUTHENTICATED`, whatever its method.
//! The caller's identity travels to the service in the request's extensions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::prelude::{BASE64_STANDARD, BASE64_STANDARD_NO_PAD};
use ember_core::config::Secret;
use ember_core::security::secret::same;
use ember_core::security::{ClusterSecret, Role};
use futures::future::BoxFuture;
use tonic::Status;

use crate::config::FlightSqlSettings;

/// How long a token issued by the handshake stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// gRPC path of Flight's `Handshake`, the one call allowed without a token.
const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Who a caller is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name, `token` for a static token, `cluster` for the cluster token,
    /// `anonymous` without credentials.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Identity {
    /// The caller without credentials when no user or token is configured.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Reader,
        }
    }

    /// Whether it may do what `role` may.
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }

    /// `PERMISSION_DENIED` saying who needs which role for `what`.
    pub fn denied(&self, what: &str, needs: Role) -> Status {
        Status::permission_denied(format!(
            "{} ({}) may not {what}: it needs the {} role",
            self.name,
            self.role.as_str(),
            needs.as_str()
        ))
    }
}

/// Users, static tokens, the tokens issued by handshakes, and the cluster secret.
#[derive(Debug)]
pub struct Auth {
    users: HashMap<String, (Secret, Role)>,
    tokens: Vec<(Secret, Role)>,
    cluster: Option<Arc<ClusterSecret>>,
    issued: Mutex<HashMap<String, (Identity, Instant)>>,
}

impl Auth {
    /// The users and tokens of `settings`, and the cluster secret when the process has one.
    pub fn new(settings: &FlightSqlSettings, cluster: Option<Arc<ClusterSecret>>) -> Self {
        Self {
            users: settings
                .users
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tokens: settings.tokens.clone(),
            cluster,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Whether calls need a token (some user or token is configured).
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
        tracing::info!(user = %user.name, role = user.role.as_str(), "Flight SQL handshake: token issued");
        issued.insert(token.clone(), (user, now));
        Ok(token)
    }

    /// The user of basic credentials (`base64(user:password)`) whose password is right.
    fn basic_user(&self, encoded: &str) -> Result<Identity, Status> {
        // Clients differ in padding (Go's ADBC driver sends none).
        let decoded = [&BASE64_STANDARD, &BASE64_STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(encoded.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::unauthenticated("the basic credentials are not base64 text"))?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            Status::unauthenticated("the basic credentials are not user:password")
        })?;
        match self.users.get(user) {
            Some((p, role)) if same(p.expose().as_bytes(), password.as_bytes()) => Ok(Identity {
                name: user.to_string(),
                role: *role,
            }),
            _ => {
                tracing::warn!(user, "sign-in refused");
                Err(Status::unauthenticated("wrong user name or password"))
            }
        }
    }

    /// The identity of an HTTP request to the web UI or the REST API: `Bearer <token>` as
    /// [`Auth::check`], or `Basic base64(user:password)` (browsers).
    ///
    /// # Errors
    /// `UNAUTHENTICATED` with what was wrong.
    pub fn check_http(&self, header: Option<&str>) -> Result<Identity, Status> {
        match header.and_then(|h| h.strip_prefix("Basic ")) {
            Some(encoded) => self.basic_user(encoded),
            None => self.check(header),
        }
    }

    /// The identity of an `authorization: Bearer …` header; without a header, the anonymous
    /// reader when no user or token is configured.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` with what was wrong (missing while auth is on, not bearer, unknown or
    /// expired).
    pub fn check(&self, header: Option<&str>) -> Result<Identity, Status> {
        let Some(header) = header else {
            if self.enabled() {
                return Err(Status::unauthenticated(
                    "no `authorization` header: authenticate with the handshake (user and password) or a bearer token",
                ));
            }
            return Ok(Identity::anonymous());
        };
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                Status::unauthenticated("the `authorization` header is not `Bearer <token>`")
            })?
            .trim();
        if self.cluster.as_ref().is_some_and(|c| c.verifies(token)) {
            return Ok(Identity {
                name: "cluster".into(),
                role: Role::Admin,
            });
        }
        if let Some((_, role)) = self
            .tokens
            .iter()
            .find(|(t, _)| same(t.expose().as_bytes(), token.as_bytes()))
        {
            return Ok(Identity {
                name: "token".into(),
                role: *role,
            });
        }
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get(token) {
            Some((user, at)) if at.elapsed() < TOKEN_LIFETIME => Ok(user.clone()),
            Some(_) => Err(Status::unauthenticated(
                "the token expired: authenticate again",
            )),
            None => Err(Status::unauthenticated(
                "unknown token: not one of this server's tokens, nor its cluster secret's (a cluster process needs the scheduler's secret file)",
            )),
        }
    }
}

/// A tower layer that runs [`Auth::check`] on every call but `Handshake`, and hands the
/// caller's [`Identity`] to the service in the request's extensions.
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if request.uri().path() != HANDSHAKE_PATH {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match self.auth.check(header) {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                }
                Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
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
            users: [(
                "ana".to_string(),
                (Secret::new("pw:with:colons"), Role::Submitter),
            )]
            .into(),
            tokens: vec![(Secret::new("static-1"), Role::Reader)],
            tls: None,
            allow_writes: false,
            tables: Vec::new(),
            views: Vec::new(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (cluster, _) =
            ClusterSecret::load_or_create(&dir.path().join("secret")).expect("secret");
        let auth = Auth::new(&settings, Some(Arc::new(cluster.clone())));
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
        let ana = auth
            .check(Some(&format!("Bearer {token}")))
            .expect("issued");
        assert_eq!((ana.name.as_str(), ana.role), ("ana", Role::Submitter));
        assert_eq!(
            auth.check(Some("Bearer static-1")).expect("static").role,
            Role::Reader
        );
        let node = auth
            .check(Some(&format!("Bearer {}", cluster.token())))
            .expect("cluster");
        assert!(node.may(Role::Admin));
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
        // With no user or token, a caller without credentials is an anonymous reader.
        let open = Auth::new(
            &FlightSqlSettings {
                users: Default::default(),
                tokens: Vec::new(),
                ..settings
            },
            None,
        );
        assert_eq!(open.check(None).expect("anonymous"), Identity::anonymous());
        assert!(open.check(Some("Bearer x")).is_err());
    }
}
