//! The web UI's pages and assets, compiled into the binary (no CDN: it works offline). Every
//! page is the same small HTML shell; `app.js` draws the page its path names from the REST API
//! and polls it every 2 s. Charts are uPlot 1.6.32 (MIT, from npm, vendored in
//! `scheduler/ui/vendor/`).
//!
//! | path | page |
//! |---|---|
//! | `/` | redirects to `/ui/jobs` |
//! | `/ui/jobs`, `/ui/jobs/{id}` | jobs, a job's stages, tasks, plans and error |
//! | `/ui/executors` | executors: slots, tasks, memory, heartbeat, lost ones |
//! | `/ui/streaming`, `/ui/streaming/{id}` | streams: rates, batch duration, watermark, lag, last batches |
//! | `/ui/dashboard` | daily net revenue, top products, live window revenue |

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
const UPLOT_JS: &str = include_str!("../../ui/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../ui/vendor/uPlot.min.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// The UI's routes (state-free, so any router can merge them).
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/ui/jobs") }))
        .route("/ui", get(|| async { Redirect::to("/ui/jobs") }))
        .route("/ui/{*page}", get(page))
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/static/uPlot.iife.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }),
        )
        .route(
            "/static/uPlot.min.css",
            get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }),
        )
}
