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
use chrono::NaiveDate;
use ember_core::api::API_PREFIX;
use serde::Deserialize;

use super::{DAILY_TABLE, WINDOWS_TABLE, Web, error};

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

/// Runs `sql` over `table` in the Flight SQL session and answers its rows as a JSON array.
async fn rows(web: &Web, table: &str, sql: Result<String, String>) -> Response {
    let sql = match sql {
        Ok(sql) => sql,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ctx = web.flight_sql.context();
    if !ctx.table_exist(table).unwrap_or(false) {
        return error(
            StatusCode::NOT_FOUND,
            format!("table {table} is not served yet: its job has not written output here"),
        );
    }
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
