//! Cluster authentication on Ballista's gRPC services: every call to the scheduler's port
//! (scheduler service, Flight proxy) and to an executor's Flight port (shuffle reads, results)
//! must carry the cluster token; a call without it gets `UNAUTHENTICATED`, and the refusal is
//! logged with the caller's address.
//!
//! Ballista 55 gives one hook on every gRPC client it makes (client → scheduler, executor →
//! scheduler, executor → executor for shuffles, scheduler → executor, the Flight proxy): an
//! override of the tonic `Endpoint`. Ember's override ([`endpoint_override`]) puts the token in
//! the `user-agent` header, which tonic sends on every request of the channel, and, with TLS,
//! switches the endpoint to `https` with the cluster's CA and client identity.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use tonic::transport::Endpoint;

use super::secret::ClusterSecret;
use super::tls::Tls;

/// What precedes the token in the `user-agent` header.
pub const USER_AGENT_PREFIX: &str = "ember-cluster/";

/// The token a request presents in its `user-agent` header, if any.
fn presented(headers: &http::HeaderMap) -> Option<&str> {
    let agent = headers.get(http::header::USER_AGENT)?.to_str().ok()?;
    let start = agent.find(USER_AGENT_PREFIX)? + USER_AGENT_PREFIX.len();
    agent[start..].split_whitespace().next()
}

/// The caller's address, from the connection info tonic or axum put in the request.
fn peer<B>(request: &http::Request<B>) -> String {
    let ext = request.extensions();
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        return info.0.to_string();
    }
    if let Some(addr) = ext
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
    {
        return addr.to_string();
    }
    if let Some(addr) = ext
        .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(|i| i.get_ref().remote_addr())
    {
        return addr.to_string();
    }
    "an unknown address".to_string()
}

/// A tower layer that refuses every gRPC call without the cluster token.
#[derive(Debug, Clone)]
pub struct ClusterGuardLayer {
    secret: Arc<ClusterSecret>,
    service: &'static str,
}

impl ClusterGuardLayer {
    /// A guard for `service` (named in the log: `scheduler`, `executor flight`).
    pub fn new(secret: Arc<ClusterSecret>, service: &'static str) -> Self {
        Self { secret, service }
    }
}

impl<S> tower::Layer<S> for ClusterGuardLayer {
    type Service = ClusterGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClusterGuard {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ClusterGuardLayer`].
#[derive(Debug, Clone)]
pub struct ClusterGuard<S> {
    inner: S,
    layer: ClusterGuardLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for ClusterGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let why = match presented(request.headers()) {
            Some(token) if self.layer.secret.verifies(token) => None,
            Some(_) => Some("a wrong cluster token"),
            None => Some("no cluster token"),
        };
        if let Some(why) = why {
            tracing::warn!(
                service = self.layer.service,
                call = request.uri().path(),
                from = %peer(&request),
                "gRPC call refused: {why}"
            );
            let status = Status::unauthenticated(format!(
                "the {} needs Ember's cluster secret ({why}); give --cluster-secret-file or EMBER_CLUSTER_SECRET_FILE",
                self.layer.service
            ));
            let response = status.into_http::<R>();
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}

/// The endpoint override every Ballista gRPC client of this process gets: the cluster token in
/// `user-agent` and, with `tls`, `https` with the cluster's CA and this process's identity.
///
/// An endpoint Ballista made for `http://` is rebuilt for `https://` (Ballista 55 writes
/// `http://` for the scheduler's address), with Ballista's default timeouts and keep-alive.
pub fn endpoint_override(
    secret: Option<Arc<ClusterSecret>>,
    tls: Option<Arc<Tls>>,
) -> ballista_core::extension::EndpointOverrideFn {
    Arc::new(move |endpoint: Endpoint| {
        let mut endpoint = match &tls {
            Some(tls) => {
                let endpoint = if endpoint.uri().scheme_str() == Some("http") {
                    let https = endpoint
                        .uri()
                        .to_string()
                        .replacen("http://", "https://", 1);
                    Endpoint::from_shared(https)?
                        .connect_timeout(Duration::from_secs(20))
                        .tcp_nodelay(true)
                        .tcp_keepalive(Some(Duration::from_secs(3600)))
                        .http2_keep_alive_interval(Duration::from_secs(300))
                        .keep_alive_timeout(Duration::from_secs(20))
                        .keep_alive_while_idle(true)
                } else {
                    endpoint
                };
                endpoint.tls_config(tls.tonic_client())?
            }
            None => endpoint,
        };
        if let Some(secret) = &secret {
            endpoint = endpoint.user_agent(format!("{USER_AGENT_PREFIX}{}", secret.token()))?;
        }
        Ok(endpoint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_user_agent() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(presented(&headers), None);
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("ember-cluster/abc123 tonic/0.14.5"),
        );
        assert_eq!(presented(&headers), Some("abc123"));
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("tonic/0.14.5"),
        );
        assert_eq!(presented(&headers), None);
    }
}
