//! The revenue dashboard's data (what the seeds' Flask and Streamlit dashboards showed), read
//! from the job outputs through the Flight SQL endpoint's session, the same query path a BI
//! tool takes. Answers are JSON arrays of rows; money stays exact (decimals as JSON numbers
//! written from the Decimal values, never through a float).
//!
//! | path | rows |
//! |---|---|
//! | `/api/v1/dashboard/daily?from=&to=` | `order_date`, `net_revenue`, `gross_revenue`, `returns_value`, `units_sold`, `orders`, by day |
//! | `/api/v1/dashboard/top-products?from=&to=&limit=` | `product_id`, `product_name` (the name most of its days with sales give it, `most_frequent`), `net_revenue`, `units_sold`, best first (limit 1–100, default 10) |
//! | `/api/v1/dashboard/windows?limit=` | `window_start`, `window_end`, `net_revenue`, `units_sold`, `events`: the latest windows over all products, oldest first (limit 1–500, default 96) |
//!
//! `from` and `to` are days (`YYYY-MM-DD`, both included); without them, all days. Errors:
//! 400 for a bad parameter, 404 while the table is not served yet (its job has not
//! succeeded), 500 with DataFusion's message.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::NaiveDate;
use ember_core::api::API_PREFIX;
use serde::Deserialize;

use super::{DAILY_TABLE, WINDOWS_TABLE, Web, error};
use crate::flight_sql::catalog::committed_state;

/// The dashboard's routes.
pub fn routes() -> axum::Router<Arc<Web>> {
    axum::Router::new()
        .route(&format!("{API_PREFIX}/dashboard/daily"), get(daily))
        .route(
            &format!("{API_PREFIX}/dashboard/top-products"),
            get(top_products),
        )
        .route(&format!("{API_PREFIX}/dashboard/windows"), get(windows))
}

/// Query parameters of the dashboard's calls.
#[derive(Debug, Deserialize)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

impl Params {
    /// `WHERE` clause for the day range (validated dates, so the SQL holds literals only).
    fn days(&self) -> Result<String, String> {
        let day = |name: &str, v: &Option<String>| -> Result<Option<NaiveDate>, String> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|_| format!("`{name}` must be a day as YYYY-MM-DD, not `{s}`")),
            }
        };
        let mut clauses = vec!["TRUE".to_string()];
        if let Some(d) = day("from", &self.from)? {
            clauses.push(format!("order_date >= DATE '{d}'"));
        }
        if let Some(d) = day("to", &self.to)? {
            clauses.push(format!("order_date <= DATE '{d}'"));
        }
        Ok(clauses.join(" AND "))
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, String> {
        match self.limit.as_deref() {
            None | Some("") => Ok(default),
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    format!("`limit` must be a whole number from 1 to {max}, not `{s}`")
                }),
        }
    }
}

/// Answers `sql` over `table` as a JSON array of rows: the answer kept since the table last
/// committed ([`super::answers`]), else the query's, run in the Flight SQL session.
async fn rows(web: &Web, table: &str, sql: Result<String, String>) -> Response {
    let sql = match sql {
        Ok(sql) => sql,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ctx = web.flight_sql.context();
    let Some(provider) = ctx.table_provider(table).await.ok() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("table {table} is not served yet: its job has not written output here"),
        );
    };
    // Taken before the query, so a commit while it runs is seen by the next call.
    let state = match committed_state(ctx.runtime_env().as_ref(), provider.as_ref()).await {
        Ok(state) => state,
        Err(e) => {
            tracing::debug!(table, error = %e, "no committed state: the dashboard's answer is not kept");
            None
        }
    };
    if let Some(state) = &state
        && let Some(body) = web.answers.get(&sql, &provider, state)
    {
        return json(body);
    }
    web.answers.queried();
    let batches = match ctx.sql(&sql).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "dashboard query on {table}: {}",
                    e.to_string().replace('\n', " ")
                ),
            );
        }
    };
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    let written = batches
        .iter()
        .try_for_each(|b| writer.write(b))
        .and_then(|()| writer.finish());
    if let Err(e) = written {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("JSON of {table}: {e}"),
        );
    }
    let mut body = writer.into_inner();
    if body.is_empty() {
        body = b"[]".to_vec();
    }
    let body = Bytes::from(body);
    if let Some(state) = state {
        web.answers.put(&sql, provider, state, body.clone());
    }
    json(body)
}

fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn daily(State(web): State<Arc<Web>>, Query(p): Query<Params>) -> Response {
    let sql = p.days().map(|days| {
        format!(
            "SELECT order_date, SUM(net_revenue) AS net_revenue, SUM(gross_revenue) AS gross_revenue, \
             SUM(returns_value) AS returns_value, SUM(units_sold) AS units_sold, SUM(orders) AS orders \
             FROM {DAILY_TABLE} WHERE {days} GROUP BY order_date ORDER BY order_date"
        )
    });
    rows(&web, DAILY_TABLE, sql).await
}

async fn top_products(State(web): State<Arc<Web>>, Query(p): Query<Params>) -> Response {
    let sql = p.days().and_then(|days| {
        let limit = p.limit(10, 100)?;
        Ok(format!(
            "SELECT product_id, most_frequent(product_name, units_sold > 0) AS product_name, \
             SUM(net_revenue) AS net_revenue, \
             SUM(units_sold) AS units_sold FROM {DAILY_TABLE} WHERE {days} \
             GROUP BY product_id ORDER BY net_revenue DESC, product_id LIMIT {limit}"
        ))
    });
    rows(&web, DAILY_TABLE, sql).await
}

async fn windows(State(web): State<Arc<Web>>, Query(p): Query<Params>) -> Response {
    let sql = p.limit(96, 500).map(|limit| {
        format!(
            "SELECT * FROM (SELECT window_start, window_end, SUM(net_revenue) AS net_revenue, \
             SUM(units_sold) AS units_sold, SUM(events) AS events FROM {WINDOWS_TABLE} \
             GROUP BY window_start, window_end ORDER BY window_start DESC LIMIT {limit}) \
             ORDER BY window_start"
        )
    });
    rows(&web, WINDOWS_TABLE, sql).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: &str, to: &str, limit: &str) -> Params {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Params {
            from: some(from),
            to: some(to),
            limit: some(limit),
        }
    }

    /// Writes one window's row as batch `batch` of a stream's output under `dir`, and logs it
    /// in its sink log (commits it) when `commit`, as the stream's sink does.
    async fn write_window(dir: &std::path::Path, batch: u64, hour: u32, commit: bool) {
        let ctx = datafusion::prelude::SessionContext::new();
        let file = format!("window_date=2011-12-09/part-{batch}.parquet");
        let sql = format!(
            "COPY (SELECT TIMESTAMP '2011-12-09 {hour:02}:00:00' AS window_start, \
             TIMESTAMP '2011-12-09 {hour:02}:59:59' AS window_end, 'A' AS product_id, \
             CAST(2.50 AS DECIMAL(18, 2)) AS net_revenue, 3 AS units_sold, 1 AS events) \
             TO '{}/{file}'",
            dir.display()
        );
        ctx.sql(&sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("copy");
        if !commit {
            return;
        }
        let output = ember_core::storage::Dir::open(
            &dir.display().to_string(),
            ctx.runtime_env().object_store_registry.as_ref(),
        )
        .expect("output");
        ember_core::table::sink_log::log_batch(&output, batch, vec![file])
            .await
            .expect("log");
    }

    #[tokio::test]
    async fn an_answer_is_kept_until_the_stream_commits_a_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_window(dir.path(), 0, 10, true).await;
        let settings = crate::config::FlightSqlSettings {
            port: 0,
            users: Default::default(),
            tokens: Vec::new(),
            tls: None,
            allow_writes: false,
            tables: Vec::new(),
            views: Vec::new(),
        };
        // Ember's runtime: without DataFusion's listing cache, as every Ember session.
        let runtime = ember_core::runtime::runtime_env(&Default::default(), 1).expect("runtime");
        let ctx = datafusion::prelude::SessionContext::new_with_config_rt(
            datafusion::prelude::SessionConfig::new(),
            runtime,
        );
        let flight_sql = crate::flight_sql::serve(
            &settings,
            &ember_core::security::SecuritySettings::default(),
            "127.0.0.1",
            ctx,
            std::future::pending(),
        )
        .await
        .expect("endpoint");
        let web = Arc::new(Web {
            cluster: None,
            streams: Arc::default(),
            flight_sql,
            mode: "serve",
            answers: super::super::answers::Answers::default(),
        });
        let windows_now = || async {
            let response = windows(State(Arc::clone(&web)), Query(params("", "", ""))).await;
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON");
            rows.len()
        };
        let missing = windows(State(Arc::clone(&web)), Query(params("", "", ""))).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        web.flight_sql
            .register(WINDOWS_TABLE, &dir.path().display().to_string(), "parquet")
            .await
            .expect("register");
        assert_eq!(windows_now().await, 1);
        assert_eq!(windows_now().await, 1);
        assert_eq!(web.answers.counts(), (1, 1), "the second call is kept");
        // A data file no batch committed yet changes nothing; the batch's log entry does.
        write_window(dir.path(), 1, 11, false).await;
        assert_eq!(windows_now().await, 1);
        assert_eq!(web.answers.counts(), (2, 1));
        write_window(dir.path(), 1, 11, true).await;
        assert_eq!(windows_now().await, 2);
        assert_eq!(windows_now().await, 2);
        assert_eq!(web.answers.counts(), (3, 2));
        // Another limit is another query.
        let response = windows(State(Arc::clone(&web)), Query(params("", "", "1"))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(web.answers.counts(), (3, 3));
        assert_eq!(web.answers.len(), 2);
    }

    #[test]
    fn day_ranges_and_limits_are_checked() {
        assert_eq!(params("", "", "").days().as_deref(), Ok("TRUE"));
        assert_eq!(
            params("2011-12-01", "2011-12-09", "").days().as_deref(),
            Ok("TRUE AND order_date >= DATE '2011-12-01' AND order_date <= DATE '2011-12-09'")
        );
        let bad = params("2011-12-01'; DROP TABLE x; --", "", "").days();
        assert!(bad.is_err_and(|e| e.contains("`from` must be a day")));
        assert_eq!(params("", "", "").limit(10, 100), Ok(10));
        assert_eq!(params("", "", "5").limit(10, 100), Ok(5));
        assert!(params("", "", "0").limit(10, 100).is_err());
        assert!(params("", "", "101").limit(10, 100).is_err());
    }
}
