//! Authentication of the web UI and the REST API: when the Flight SQL endpoint has users or
//! tokens, every request needs `Authorization: Bearer <token>` (a static token, or one the
//! Flight SQL handshake issued) or `Authorization: Basic base64(user:password)`. A request
//! without gets 401 with `WWW-Authenticate: Basic`, so that a browser asks for the user name
//! and password.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;

use crate::flight_sql::auth::Auth;

/// `router` with every request checked by `auth` (nothing checked when auth is off).
pub fn guard<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    auth: Arc<Auth>,
) -> axum::Router<S> {
    if !auth.enabled() {
        return router;
    }
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let auth = Arc::clone(&auth);
            async move {
                let header = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                match auth.check_http(header) {
                    Ok(()) => next.run(request).await,
                    Err(status) => {
                        let mut response =
                            super::error(StatusCode::UNAUTHORIZED, status.message().to_string());
                        response.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            header::HeaderValue::from_static(
                                "Basic realm=\"ember\", charset=\"UTF-8\"",
                            ),
                        );
                        response.into_response()
                    }
                }
            }
        },
    ))
}
