//! Authentication and roles of the web UI and the REST API (the scheduler's HTTP port and
//! `ember serve`'s). A request's [`Identity`] comes from `Authorization: Bearer <token>` (a
//! static token, one the Flight SQL handshake issued, or the cluster token) or
//! `Authorization: Basic base64(user:password)` (browsers); with no user or token configured,
//! a request without credentials is an anonymous reader.
//!
//! What each request needs ([`required_role`]):
//!
//! | request | role |
//! |---|---|
//! | `GET /api/v1/health` | none |
//! | any other `GET` or `HEAD` (pages, `/api/v1/*`, Ballista's `/api/*`, `/metrics`) | `reader` |
//! | `POST /api/v1/jobs`, `POST /api/v1/jobs/{id}/cancel` | `submitter` |
//! | anything else (the reporting endpoints `POST /api/v1/executors/{id}/status` and `POST /api/v1/streams/{id}`, Ballista's `PATCH /api/job/{id}`) | `admin` (or the cluster token) |
//!
//! Without credentials while some are needed: 401 with `WWW-Authenticate: Basic`, so that a
//! browser asks for the user name and password. With a role too small: 403.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use ember_core::api::API_PREFIX;
use ember_core::security::Role;

use crate::flight_sql::auth::{Auth, Identity};

/// The role `method path` needs; `None`: open to anyone.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    let path = path.trim_end_matches('/');
    if path == format!("{API_PREFIX}/health") {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(Role::Reader);
    }
    let jobs = format!("{API_PREFIX}/jobs");
    let is_cancel = path
        .strip_prefix(&format!("{jobs}/"))
        .is_some_and(|rest| rest.ends_with("/cancel") && rest.matches('/').count() == 1);
    if method == Method::POST && (path == jobs || is_cancel) {
        return Some(Role::Submitter);
    }
    Some(Role::Admin)
}

/// `router` with every request checked by `auth` against [`required_role`]; the identity goes
/// to the handlers in the request's extensions.
pub fn guard<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    auth: Arc<Auth>,
) -> axum::Router<S> {
    router.layer(axum::middleware::from_fn(
        move |mut request: Request, next: Next| {
            let auth = Arc::clone(&auth);
            async move {
                let Some(needs) = required_role(request.method(), request.uri().path()) else {
                    return next.run(request).await;
                };
                let header = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let identity = match auth.check_http(header) {
                    Ok(identity) => identity,
                    Err(status) => return unauthorized(status.message()),
                };
                if !identity.may(needs) {
                    if identity == Identity::anonymous() {
                        return unauthorized(&format!(
                            "{} {} needs the {} role: authenticate",
                            request.method(),
                            request.uri().path(),
                            needs.as_str()
                        ));
                    }
                    let what = format!("{} {}", request.method(), request.uri().path());
                    tracing::warn!(user = %identity.name, role = identity.role.as_str(), request = %what, "request refused: role too small");
                    return super::error(
                        StatusCode::FORBIDDEN,
                        identity.denied(&what, needs).message().to_string(),
                    );
                }
                request.extensions_mut().insert(identity);
                next.run(request).await
            }
        },
    ))
}

/// 401 with `WWW-Authenticate: Basic`.
fn unauthorized(message: &str) -> axum::response::Response {
    let mut response = super::error(StatusCode::UNAUTHORIZED, message.to_string());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"ember\", charset=\"UTF-8\""),
    );
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_role() {
        let cases = [
            (Method::GET, "/api/v1/health", None),
            (Method::GET, "/ui/jobs", Some(Role::Reader)),
            (Method::GET, "/api/v1/jobs", Some(Role::Reader)),
            (Method::GET, "/metrics", Some(Role::Reader)),
            (Method::POST, "/api/v1/jobs", Some(Role::Submitter)),
            (Method::POST, "/api/v1/jobs/x/cancel", Some(Role::Submitter)),
            (Method::POST, "/api/v1/jobs/x/y/cancel", Some(Role::Admin)),
            (Method::POST, "/api/v1/streams/x", Some(Role::Admin)),
            (
                Method::POST,
                "/api/v1/executors/x/status",
                Some(Role::Admin),
            ),
            (Method::PATCH, "/api/job/x", Some(Role::Admin)),
            (Method::DELETE, "/api/v1/jobs", Some(Role::Admin)),
        ];
        for (method, path, role) in cases {
            assert_eq!(required_role(&method, path), role, "{method} {path}");
        }
    }
}
