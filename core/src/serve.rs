//! Serving an HTTP router (the scheduler's port with gRPC and HTTP, `ember serve`'s web UI, an
//! executor's `/metrics`) on a bound listener, in plain text or TLS (`[tls]`), until a shutdown
//! future resolves. Requests carry the caller's address (`ConnectInfo<SocketAddr>`), which the
//! cluster guard logs when it refuses a call.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::security::Tls;

/// How long a graceful shutdown waits for open connections.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (TLS when `tls`) until `shutdown` resolves; `service` names it
/// in errors (`scheduler`, `web UI`, `executor metrics`).
///
/// # Errors
/// [`Error::Bind`] for a listener that cannot be handed over, [`Error::InvalidSetting`] for TLS
/// files rustls refuses, and the server's I/O error.
pub async fn http(
    service: &'static str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<&Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let make = router.into_make_service_with_connect_info::<SocketAddr>();
    let address = listener.local_addr().map_err(|source| Error::Bind {
        service,
        address: "?".into(),
        source,
    })?;
    let io = |source| Error::Bind {
        service,
        address: address.to_string(),
        source,
    };
    match tls {
        None => axum::serve(listener, make)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(io),
        Some(tls) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.rustls_server()?);
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(DRAIN));
            });
            let std_listener = listener.into_std().map_err(io)?;
            axum_server::from_tcp_rustls(std_listener, config)
                .map_err(io)?
                .handle(handle)
                .serve(make)
                .await
                .map_err(io)
        }
    }
}
