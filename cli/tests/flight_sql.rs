//! The Arrow Flight SQL endpoint with real clients: arrow-flight's `FlightSqlServiceClient`
//! (Rust) and the ADBC Flight SQL driver from PyPI (Python, pyarrow, pandas), against
//! `ember serve` over the daily revenue job's output on a slice of the real data. Every wait is
//! bounded; the server is killed at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use ember_testkit::ember::{EmberServe, http_request};
use ember_testkit::flight_sql::{self, query, rows_of};
use ember_testkit::query::parquet_rows;
use ember_testkit::util::python;
use tonic::Code;
use tonic::transport::Channel;

const JOB: &str = "jobs/daily_revenue_by_product";
const USER: (&str, &str) = ("analyst", "s3cret-pw");
const TOKEN: &str = "static-token-for-tests";
/// A day of the slice.
const DAY: &str = "2010-12-01";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

/// The first 30,000 rows of Online Retail (2010-12-01 to 2010-12-09), through the job.
fn job_output(dir: &Path) -> PathBuf {
    let gz = std::fs::File::open(repo().join("data/online_retail.csv.gz")).expect("data");
    let lines: Vec<String> = BufReader::new(flate2::read::GzDecoder::new(gz))
        .lines()
        .take(30_001)
        .map(|l| l.expect("line"))
        .collect();
    let input = dir.join("sales.csv");
    std::fs::write(&input, lines.join("\n") + "\n").expect("write");
    let out = dir.join("daily");
    let run = Command::new(bin())
        .args(["run", JOB, "--parallelism", "2"])
        .args(["--set", &format!("input={}", input.display())])
        .args(["--set", &format!("output={}", out.display())])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("ember run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// `ember serve` over `out`, with a user and a static token; killed on drop.
fn serve(out: &Path, log: &Path) -> EmberServe {
    serve_with(out, log, &[])
}

fn serve_with(out: &Path, log: &Path, extra: &[&str]) -> EmberServe {
    let table = format!("daily_revenue_by_product={}", out.display());
    let user = format!("{}:{}", USER.0, USER.1);
    let mut args = vec![
        "--jobs",
        "/nonexistent",
        "--parallelism",
        "2",
        "--table",
        &table,
    ];
    args.extend(["--bind-host", "127.0.0.1", "--flight-sql-user", &user]);
    args.extend(["--flight-sql-token", TOKEN]);
    args.extend(extra);
    EmberServe::start(bin(), &repo(), &args, log).unwrap_or_else(|e| panic!("{e}"))
}

async fn client(address: &str) -> FlightSqlServiceClient<Channel> {
    flight_sql::connect(address)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn expected(out: &Path, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(parquet_rows(&format!("{}/", out.display()), sql))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rust_client_authenticates_queries_binds_parameters_and_gets_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = job_output(tmp.path());
    // A view from the configuration file, over the job's table.
    let config = tmp.path().join("ember.toml");
    std::fs::write(
        &config,
        "[[flight_sql.views]]\nname = \"daily_net\"\nsql = \"SELECT order_date, SUM(net_revenue) AS net FROM daily_revenue_by_product GROUP BY order_date\"\n",
    )
    .expect("config");
    let server = serve_with(
        &out,
        &tmp.path().join("serve.log"),
        &["--config", &config.display().to_string()],
    );
    let want_days = expected(&out, "SELECT COUNT(DISTINCT order_date) FROM t");
    let want_total = expected(&out, "SELECT COUNT(*), SUM(units_sold) FROM t");
    let want_day = expected(
        &out,
        &format!(
            "SELECT product_id, CAST(net_revenue AS VARCHAR) FROM t WHERE order_date = '{DAY}' AND units_sold >= 2"
        ),
    );
    let want_all = expected(&out, "SELECT product_id, order_date FROM t");
    assert!(want_day.len() > 10, "{want_day:?}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = client(server.address()).await;
        // Without a token, and with a wrong password: UNAUTHENTICATED.
        let unauthenticated = Code::Unauthenticated.description();
        let e = query(&mut c, "SELECT 1").await.expect_err("no token");
        assert!(e.contains(unauthenticated), "{e}");
        let e = c
            .handshake(USER.0, "wrong")
            .await
            .expect_err("wrong password");
        assert!(e.to_string().contains(unauthenticated), "{e}");
        let token = c.handshake(USER.0, USER.1).await.expect("handshake");
        assert!(!token.is_empty());

        // A statement, checked against the job's output read with plain DataFusion.
        let total = query(
            &mut c,
            "SELECT COUNT(*), SUM(units_sold) FROM daily_revenue_by_product",
        )
        .await
        .expect("total");
        assert_eq!(total, want_total);
        // The whole table, streamed back.
        let all = query(
            &mut c,
            "SELECT product_id, CAST(order_date AS VARCHAR) FROM daily_revenue_by_product",
        )
        .await
        .expect("all");
        assert_eq!(all, want_all);

        // A prepared statement with two parameters.
        let mut prepared = c
            .prepare(
                "SELECT product_id, CAST(net_revenue AS VARCHAR) FROM daily_revenue_by_product \
                 WHERE order_date = CAST($1 AS DATE) AND units_sold >= $2"
                    .to_string(),
                None,
            )
            .await
            .expect("prepare");
        let params = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("$1", DataType::Utf8, true),
                Field::new("$2", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![DAY])) as ArrayRef,
                Arc::new(Int64Array::from(vec![2])),
            ],
        )
        .expect("params");
        prepared.set_parameters(params).expect("bind");
        let info = prepared.execute().await.expect("execute prepared");
        assert_eq!(rows_of(&mut c, info).await.expect("rows"), want_day);

        // Metadata: the table with its schema, partition column included.
        let info = c
            .get_tables(CommandGetTables {
                include_schema: true,
                ..CommandGetTables::default()
            })
            .await
            .expect("tables");
        let tables = rows_of(&mut c, info).await.expect("rows");
        assert!(
            tables
                .iter()
                .any(|t| t.starts_with("ember|public|daily_revenue_by_product|TABLE|")),
            "{tables:?}"
        );
        assert!(
            tables
                .iter()
                .any(|t| t.starts_with("ember|public|daily_net|VIEW|")),
            "{tables:?}"
        );
        assert_eq!(
            query(&mut c, "SELECT COUNT(*) FROM daily_net")
                .await
                .expect("view"),
            want_days
        );

        // Errors: the right status and DataFusion's message; the server keeps serving.
        for (sql, code, text) in [
            ("SELEC 1", Code::InvalidArgument, "SELEC"),
            (
                "SELECT * FROM no_such_table",
                Code::NotFound,
                "no_such_table",
            ),
            (
                "SELECT no_such_column FROM daily_revenue_by_product",
                Code::InvalidArgument,
                "no_such_column",
            ),
            (
                "CREATE TABLE x AS SELECT 1",
                Code::PermissionDenied,
                "read-only",
            ),
            (
                "COPY (SELECT 1) TO '/tmp/ember-copy.parquet'",
                Code::PermissionDenied,
                "read-only",
            ),
        ] {
            let e = query(&mut c, sql).await.expect_err(sql);
            assert!(
                e.contains(code.description()) && e.contains(text),
                "{sql}: {e}"
            );
        }
        assert_eq!(
            query(
                &mut c,
                "SELECT COUNT(*), SUM(units_sold) FROM daily_revenue_by_product"
            )
            .await
            .expect("still serving"),
            want_total
        );

        // A static token works without a handshake.
        let mut s = client(server.address()).await;
        s.set_token(TOKEN.to_string());
        assert_eq!(
            query(
                &mut s,
                "SELECT COUNT(*), SUM(units_sold) FROM daily_revenue_by_product"
            )
            .await
            .expect("token"),
            want_total
        );
    });

    // `ember serve`'s web side: the same credentials, and the dashboard over the same table.
    let http = server.http_address();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(
        http_request(http, "GET", "/api/v1/dashboard/daily", &[])
            .expect("request")
            .status,
        401
    );
    let info = http_request(http, "GET", "/api/v1/info", &auth).expect("info");
    assert!(info.body.contains("\"mode\":\"serve\""), "{}", info.body);
    let daily = http_request(http, "GET", "/api/v1/dashboard/daily", &auth).expect("daily");
    let days: Vec<serde_json::Value> = serde_json::from_str(&daily.body).expect("JSON rows");
    assert_eq!(vec![days.len().to_string()], want_days, "{}", daily.body);
    let page = http_request(http, "GET", "/ui/dashboard", &auth).expect("page");
    assert!(page.status == 200 && page.body.contains("/static/app.js"));
}

#[test]
fn adbc_driver_lists_tables_binds_parameters_and_fetches_arrow_and_pandas() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = job_output(tmp.path());
    let server = serve(&out, &tmp.path().join("serve.log"));
    let python = python().unwrap_or_else(|e| panic!("{e}"));
    let script = repo().join("cli/tests/python/flight_sql_adbc.py");
    let run = Command::new(python)
        .arg(script)
        .args([
            &format!("grpc://{}", server.address()),
            USER.0,
            USER.1,
            TOKEN,
            DAY,
        ])
        .output()
        .expect("python");
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stderr),
        std::fs::read_to_string(tmp.path().join("serve.log")).unwrap_or_default()
    );
    let seen: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");

    let columns: Vec<String> =
        serde_json::from_value(seen["tables"]["ember.public.daily_revenue_by_product"].clone())
            .unwrap_or_else(|_| panic!("table listed: {seen}"));
    for c in [
        "order_date",
        "product_id",
        "units_sold",
        "net_revenue",
        "orders",
    ] {
        assert!(columns.iter().any(|x| x == c), "{c} in {columns:?}");
    }

    let mut param_rows: Vec<String> =
        serde_json::from_value(seen["param_rows"].clone()).expect("rows");
    param_rows.sort();
    let want = expected(
        &out,
        &format!(
            "SELECT product_id, CAST(net_revenue AS VARCHAR), orders FROM t WHERE order_date = '{DAY}'"
        ),
    );
    assert!(want.len() > 10);
    assert_eq!(param_rows, want);

    let total = expected(&out, "SELECT COUNT(*), SUM(units_sold) FROM t");
    assert_eq!(
        format!("{}|{}", seen["pandas_rows"], seen["pandas_units_sold"]),
        total[0]
    );
    assert_eq!(
        seen["token_count"].to_string(),
        total[0].split('|').next().expect("count")
    );

    let errors = &seen["errors"];
    for (name, text) in [
        ("bad_sql", "SELEC"),
        ("unknown_table", "no_such_table"),
        ("write", "read-only"),
    ] {
        let e = errors[name].as_str().unwrap_or_default();
        assert!(
            e.contains(text) && !e.starts_with("no error"),
            "{name}: {e}"
        );
    }
    let wrong = seen["wrong_password"].as_str().unwrap_or_default();
    assert!(
        wrong.to_lowercase().contains("unauthenticated")
            || wrong.contains("wrong user name or password"),
        "{wrong}"
    );
}

#[test]
fn tls_serves_queries_and_refuses_plain_text_clients() {
    // The test's own TLS client takes the process's rustls provider.
    ember_core::security::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = job_output(tmp.path());
    // A self-signed certificate for localhost and 127.0.0.1.
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let openssl = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // An end-entity certificate: rustls refuses a CA certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (CI installs it)");
    assert!(
        openssl.status.success(),
        "{}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    let server = serve_with(
        &out,
        &tmp.path().join("serve.log"),
        &[
            "--flight-sql-tls-cert",
            &cert.display().to_string(),
            "--flight-sql-tls-key",
            &key.display().to_string(),
        ],
    );
    let want = expected(&out, "SELECT COUNT(*) FROM t");
    let pem = std::fs::read(&cert).expect("cert");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", server.address()))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .expect("TLS connection");
        let mut c = FlightSqlServiceClient::new(channel);
        c.handshake(USER.0, USER.1)
            .await
            .expect("handshake over TLS");
        assert_eq!(
            query(&mut c, "SELECT COUNT(*) FROM daily_revenue_by_product")
                .await
                .expect("query over TLS"),
            want
        );
        // A plain-text client gets no answer from a TLS port.
        let plain = async {
            let mut p = flight_sql::connect(server.address()).await?;
            p.handshake(USER.0, USER.1).await.map_err(|e| e.to_string())
        };
        let refused = tokio::time::timeout(Duration::from_secs(30), plain).await;
        assert!(
            !matches!(refused, Ok(Ok(_))),
            "a plain-text handshake succeeded on the TLS port"
        );
    });
}
