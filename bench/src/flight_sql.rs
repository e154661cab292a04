//! `ember-bench flight-sql`: 32 concurrent Flight SQL clients × 20 queries each over the daily
//! revenue table, against `ember serve` (embedded scheduler + executor, started by the runner),
//! in one run over the same rows written twice by the job on `data/`: as a plain Parquet
//! folder (listed at each query) and as a Delta table (read through its log). Peer: the same
//! queries with the same concurrency on a plain in-process DataFusion context over the folder's
//! files, the ceiling without Flight, Ballista and the network. Each query is one of a few
//! shapes a dashboard sends (a day range's top products, a day's totals, a product's
//! history), with varying days.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember_testkit::ember::EmberServe;
use ember_testkit::flight_sql;

/// Query `i` of client `c` over table `t`: shapes and days vary.
fn query(t: &str, c: usize, i: usize) -> String {
    let day = 1 + (c * 7 + i) % 9;
    match i % 3 {
        0 => format!(
            "SELECT product_id, SUM(net_revenue) AS net FROM {t} \
             WHERE order_date BETWEEN DATE '2011-11-01' AND DATE '2011-11-0{day}' \
             GROUP BY product_id ORDER BY net DESC LIMIT 10"
        ),
        1 => format!(
            "SELECT COUNT(*) AS products, SUM(units_sold) AS units, SUM(net_revenue) AS net \
             FROM {t} WHERE order_date = DATE '2011-12-0{day}'"
        ),
        _ => format!(
            "SELECT order_date, SUM(net_revenue) AS net FROM {t} \
             WHERE product_id = '85123A' GROUP BY order_date ORDER BY order_date"
        ),
    }
}

/// Latencies of `clients` × `per_client` queries over table `t` run by `run` concurrently;
/// errors counted.
async fn load<F, Fut>(
    t: &'static str,
    clients: usize,
    per_client: usize,
    run: F,
) -> (Vec<Duration>, usize, Duration)
where
    F: Fn(usize, usize, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<usize, String>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..per_client {
                    let sent = Instant::now();
                    let r = run(c, i, query(t, c, i)).await;
                    out.push((sent.elapsed(), r));
                }
                out
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        for (d, r) in t.await.unwrap_or_default() {
            match r {
                Ok(_) => latencies.push(d),
                Err(e) => {
                    if errors == 0 {
                        eprintln!("first error: {e}");
                    }
                    errors += 1;
                }
            }
        }
    }
    latencies.sort();
    (latencies, errors, started.elapsed())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The tables the runner serves: the job's output as a Parquet folder and as a Delta table.
const FOLDER: &str = "daily_folder";
const DELTA: &str = "daily_delta";

/// Runs the daily revenue job on `data/` into `out` with `format`.
fn write(ember: &Path, out: &Path, format: &str) -> Result<(), String> {
    let job = Command::new(ember)
        .args(["run", crate::JOB])
        .args(["--set", &format!("output={}", out.display())])
        .args(["--set", &format!("format={format}")])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if job.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ember run: {}",
            String::from_utf8_lossy(&job.stderr)
        ))
    }
}

/// Runs the benchmark; prints a Markdown table and writes JSON to `json`.
///
/// # Errors
/// A message when the job, the server or the peer fails.
pub fn run(ember: &Path, clients: usize, per_client: usize, json: &Path) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (folder, delta) = (scratch.path().join("folder"), scratch.path().join("delta"));
    write(ember, &folder, "parquet")?;
    write(ember, &delta, "delta")?;
    let tables = [
        format!("{FOLDER}={}", folder.display()),
        format!("{DELTA}={}", delta.display()),
    ];
    let server = EmberServe::start(
        ember,
        Path::new("."),
        &[
            "--jobs",
            "/nonexistent",
            "--table",
            &tables[0],
            "--table",
            &tables[1],
        ],
        &scratch.path().join("serve.log"),
    )?;
    measure(server.address(), &folder, clients, per_client, json)
}

/// `clients` × `per_client` queries over `t` on the Flight SQL endpoint at `address`, one
/// connection per client opened before the clock starts.
async fn flight_load(
    address: &str,
    t: &'static str,
    clients: usize,
    per_client: usize,
) -> Result<(Vec<Duration>, usize, Duration), String> {
    let mut pool = Vec::new();
    for _ in 0..clients {
        pool.push(Arc::new(tokio::sync::Mutex::new(
            flight_sql::connect(address).await?,
        )));
    }
    let pool = Arc::new(pool);
    Ok(load(t, clients, per_client, move |c, _, sql| {
        let pool = Arc::clone(&pool);
        async move {
            let mut client = pool[c].lock().await;
            flight_sql::query(&mut client, &sql).await.map(|r| r.len())
        }
    })
    .await)
}

fn measure(
    address: &str,
    out: &Path,
    clients: usize,
    per_client: usize,
    json: &Path,
) -> Result<(), String> {
    // Taken at the start: the time is the run's start, the commit what was checked out then.
    let machine = crate::machine::describe();
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let folder = rt.block_on(flight_load(address, FOLDER, clients, per_client))?;
    let delta = rt.block_on(flight_load(address, DELTA, clients, per_client))?;
    let ctx = SessionContext::new();
    let location = format!("{}/", out.display());
    let peer = rt.block_on(async {
        ctx.register_parquet(
            FOLDER,
            &location,
            ParquetReadOptions::default().table_partition_cols(vec![(
                "order_date".into(),
                datafusion::arrow::datatypes::DataType::Date32,
            )]),
        )
        .await
        .map_err(|e| e.to_string())?;
        let ctx = Arc::new(ctx);
        Ok::<_, String>(
            load(FOLDER, clients, per_client, move |_, _, sql| {
                let ctx = Arc::clone(&ctx);
                async move {
                    let batches = ctx
                        .sql(&sql)
                        .await
                        .map_err(|e| e.to_string())?
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(batches.iter().map(|b| b.num_rows()).sum())
                }
            })
            .await,
        )
    })?;
    let queries = clients * per_client;
    #[allow(clippy::cast_precision_loss)]
    let qps = |(_, _, wall): &(Vec<Duration>, usize, Duration)| queries as f64 / wall.as_secs_f64();
    println!("| peer | clients × queries | errors | queries/s | p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("ember serve, Delta table", &delta),
        ("ember serve, Parquet folder", &folder),
        ("DataFusion in-process (folder)", &peer),
    ] {
        println!(
            "| {name} | {clients} × {per_client} | {} | {:.1} | {:.1} | {:.1} |",
            r.1,
            qps(r),
            pct(&r.0, 0.5),
            pct(&r.0, 0.99)
        );
    }
    println!(
        "\nDelta / folder (queries/s): {:.2}×; Delta / in-process DataFusion: {:.2}×",
        qps(&delta) / qps(&folder),
        qps(&delta) / qps(&peer)
    );
    let row = |r: &(Vec<Duration>, usize, Duration)| {
        serde_json::json!({
            "errors": r.1, "queries_per_s": qps(r), "p50_ms": pct(&r.0, 0.5),
            "p99_ms": pct(&r.0, 0.99), "wall_s": r.2.as_secs_f64(),
        })
    };
    let result = serde_json::json!({
        "benchmark": "flight-sql", "clients": clients, "queries_per_client": per_client,
        "machine": machine, "ember_delta": row(&delta),
        "ember_folder": row(&folder), "datafusion": row(&peer),
    });
    crate::write_results(json, &result)
}
