//! A Flight SQL client for tests: arrow-flight's `FlightSqlServiceClient` on a plain channel
//! with bounded timeouts, and query results as sorted `a|b|c` rows.

use std::time::Duration;

use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use futures::TryStreamExt;
use tonic::transport::Channel;

/// A client of the endpoint at `HOST:PORT` (plain HTTP/2), connected within 10 s; each call
/// may take 120 s.
///
/// # Errors
/// The connection's error.
pub async fn connect(address: &str) -> Result<FlightSqlServiceClient<Channel>, String> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .connect()
        .await
        .map_err(|e| format!("connect to {address}: {e}"))?;
    Ok(FlightSqlServiceClient::new(channel))
}

/// Rows of `sql`: `a|b|c`, sorted.
///
/// # Errors
/// The client's error text (it holds the gRPC code's description and the server's message).
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<String>, String> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    rows_of(client, info).await
}

/// Rows of every endpoint of `info`: `a|b|c`, sorted.
///
/// # Errors
/// The client's error text.
pub async fn rows_of(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<String>, String> {
    let mut rows = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("an endpoint without ticket")?;
        let batches: Vec<RecordBatch> = client
            .do_get(ticket)
            .await
            .map_err(|e| e.to_string())?
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        for b in &batches {
            for r in 0..b.num_rows() {
                let cells: Result<Vec<String>, _> = (0..b.num_columns())
                    .map(|c| array_value_to_string(b.column(c), r))
                    .collect();
                rows.push(cells.map_err(|e| e.to_string())?.join("|"));
            }
        }
    }
    rows.sort();
    Ok(rows)
}
