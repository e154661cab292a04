//! The scheduler's web UI and the REST API behind it, against a real cluster (scheduler and
//! executors as processes), a real Kafka-protocol broker (tansu) and a stream submitted with
//! `ember submit`; the pages are checked in headless Chromium (Selenium and ChromeDriver, from
//! `.ci/setup`), with a screenshot of each page saved under the test's target folder
//! (`web-ui-screenshots/`). Every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ember_core::api::{ExecutorSummary, JobDetail, JobState, StreamDetail, StreamSummary};
use ember_testkit::ember::{ClusterOptions, EmberCluster, http_get, http_request};
use ember_testkit::kafka::KafkaBroker;
use ember_testkit::util::{python, wait_child, wait_for};

const JOB: &str = "jobs/daily_revenue_by_product";
const STREAM: &str = "jobs/hourly_product_revenue";
const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

fn ember(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("run ember")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `ember submit --wait` with the output in `format`; the job's final detail.
fn submit_wait(cluster: &EmberCluster, input: &Path, output: &Path, format: &str) -> JobDetail {
    let input = format!("input={}", input.display());
    let output = format!("output={}", output.display());
    let format = format!("format={format}");
    // A broken CSV line fails the run (instead of being quarantined), for the failed job.
    let out = ember(&[
        "submit",
        JOB,
        "--scheduler",
        cluster.address(),
        "--set",
        &input,
        "--set",
        &output,
        "--set",
        &format,
        "--set",
        "on_malformed=fail",
        "--wait",
        "--format",
        "json",
    ]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "submit --wait printed no job ({e}): {}\n{}",
            stderr(&out),
            cluster.logs()
        )
    })
}

/// Sales over three days, with a return; net revenue per day in cents by a plain fold (not
/// Ember's SQL), and the product with the most net revenue.
fn sales(path: &Path) -> (BTreeMap<String, i64>, String) {
    let lines: Vec<(&str, &str, i64, &str, i64)> = vec![
        // (invoice, product, quantity, day, price in cents)
        ("1", "A", 10, "2011-12-08", 250),
        ("1", "B", 2, "2011-12-08", 1000),
        ("2", "C", 1, "2011-12-08", 399),
        ("3", "A", 4, "2011-12-09", 250),
        ("C4", "A", -2, "2011-12-09", 250),
        ("5", "B", 7, "2011-12-09", 1000),
        ("6", "C", 30, "2011-12-10", 399),
        ("7", "B", 1, "2011-12-10", 1000),
    ];
    let mut csv = HEADER.to_string();
    let mut net: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_product: BTreeMap<&str, i64> = BTreeMap::new();
    for (invoice, product, quantity, day, cents) in &lines {
        csv.push_str(&format!(
            "{invoice},{product},Product {product},{quantity},{day} 10:00:00,{}.{:02},17850,United Kingdom\n",
            cents / 100,
            cents % 100
        ));
        *net.entry((*day).to_string()).or_default() += quantity * cents;
        *by_product.entry(product).or_default() += quantity * cents;
    }
    std::fs::write(path, csv).expect("write sales");
    let top = by_product
        .iter()
        .max_by_key(|(_, v)| **v)
        .map(|(k, _)| (*k).to_string())
        .expect("a product");
    (net, top)
}

/// Cents of a decimal written as JSON (`"12.3400"` or `12.34`).
fn cents(value: &serde_json::Value) -> i64 {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, "0"));
    let frac = format!("{frac:0<2}");
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    whole.parse::<i64>().expect("whole") * 100 + sign * frac[..2].parse::<i64>().expect("cents")
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_json<T: serde::de::DeserializeOwned>(cluster: &EmberCluster, path: &str) -> T {
    let body = cluster
        .get(path)
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

#[test]
fn web_ui_shows_jobs_executors_a_stream_and_revenue_in_a_real_browser() {
    let broker = KafkaBroker::start().expect("broker");
    let options = ClusterOptions {
        task_slots: 1,
        executor_timeout: "8s".into(),
        heartbeat_interval: "1s".into(),
        // Ballista keeps the jobs' steps; the dashboard's queries are forgotten anyway.
        scheduler_args: vec!["--job-state-retention".into(), "10m".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = EmberCluster::start(bin(), 3, &options).expect("cluster");
    // One executor goes away: the scheduler forgets it after the timeout, the UI shows it lost.
    cluster.kill_executor(2);

    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("sales.csv");
    let (net_by_day, top_product) = sales(&input);
    // The dashboard reads this Delta table through its log; the job's page shows its version.
    let done = submit_wait(&cluster, &input, &tmp.path().join("daily"), "delta");
    assert_eq!(
        done.summary.state,
        JobState::Succeeded,
        "{:?}",
        done.summary.error
    );
    let broken = tmp.path().join("broken.csv");
    std::fs::write(
        &broken,
        format!("{HEADER}1,A,Apple,1,2011-01-01 10:00:00,1.00,,UK\n2,A,Apple,1,2011-01-01 10:00:00,1.00,,UK,extra\n"),
    )
    .expect("write");
    let failed = submit_wait(&cluster, &broken, &tmp.path().join("broken_out"), "parquet");
    assert_eq!(failed.summary.state, JobState::Failed);
    let failed_error = failed
        .summary
        .error
        .clone()
        .expect("a failed job has an error");

    // 12,000 synthetic events (one per second of event time: 3 h 20 min) on 2 partitions,
    // then a stream of 1,500 messages per 1 s trigger: 8 batches.
    let out = ember(&[
        "produce",
        "--brokers",
        &broker.brokers(),
        "--topic",
        "web",
        "--partitions",
        "2",
        "--synthetic",
        "12000",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stream_log = tmp.path().join("stream.log");
    let stream_out = tmp.path().join("hourly");
    let stream = Guard(
        Command::new(bin())
            .args(["submit", STREAM, "--scheduler", cluster.address()])
            .args(["--set", &format!("brokers={}", broker.brokers())])
            .args(["--set", "topic=web"])
            .args(["--set", &format!("output={}", stream_out.display())])
            .args(["--set", "trigger=1s", "--set", "max_records=1500"])
            .args(["--set", "lateness=10m", "--set", "idle_timeout=1h"])
            .current_dir(repo())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stream_log).expect("log"))
            .spawn()
            .expect("start the stream"),
    );
    let stream_id = wait_for(
        "8 batches of the stream reported",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let list: Vec<StreamSummary> =
                serde_json::from_str(&cluster.get("/api/v1/streams").unwrap_or_default())
                    .unwrap_or_default();
            Ok(list
                .into_iter()
                .next()
                .and_then(|s| (s.batches >= 8).then_some(s.id)))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}",
            ember_testkit::util::tail_lines(&stream_log, 30),
            cluster.logs()
        )
    });

    // The stream's progress: what was read adds up, the lag falls to 0, the watermark moves.
    let detail: StreamDetail = get_json(&cluster, &format!("/api/v1/streams/{stream_id}"));
    assert_eq!(detail.summary.name, "hourly_product_revenue");
    assert_eq!(detail.summary.state, ember_core::api::StreamState::Running);
    let read: i64 = detail.recent.iter().map(|p| p.counts.records).sum();
    assert_eq!(read, 12_000);
    let lag = |i: usize| -> i64 { detail.recent[i].partitions.iter().map(|p| p.lag).sum() };
    assert_eq!(lag(0), 12_000 - 1_500, "{:?}", detail.recent[0]);
    assert_eq!(lag(detail.recent.len() - 1), 0);
    for p in &detail.recent {
        assert_eq!(p.partitions.len(), 2);
        for part in &p.partitions {
            assert_eq!(part.lag, part.latest_offset - part.end_offset);
        }
        assert!(
            p.processed_rows_per_second > 0.0 && p.duration_ms > 0,
            "{p:?}"
        );
    }
    let last = detail.summary.last.clone().expect("a last batch");
    assert!(
        last.watermark
            .as_deref()
            .is_some_and(|w| w.starts_with("2011-12-09T03:")),
        "{last:?}"
    );

    // Executors: two alive with their task counts, the killed one lost.
    let executors: Vec<ExecutorSummary> = wait_for(
        "the killed executor shown as lost",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let list: Vec<ExecutorSummary> =
                serde_json::from_str(&cluster.get("/api/v1/executors").unwrap_or_default())
                    .unwrap_or_default();
            Ok((list.iter().filter(|e| e.state == "lost").count() == 1
                && list.iter().filter(|e| e.state == "alive").count() == 2
                && list
                    .iter()
                    .filter(|e| e.state == "alive")
                    .all(|e| e.tasks_succeeded.is_some()))
            .then_some(list))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let alive: Vec<&ExecutorSummary> = executors.iter().filter(|e| e.state == "alive").collect();
    assert!(
        alive
            .iter()
            .all(|e| e.task_slots == 1 && e.memory_bytes.unwrap_or(0) > 0)
    );
    let succeeded: u64 = alive.iter().filter_map(|e| e.tasks_succeeded).sum();
    assert!(succeeded > 0, "{executors:?}");

    // /metrics of the scheduler and of an executor.
    let metrics = cluster.get("/metrics").expect("metrics");
    for line in [
        "ember_jobs{state=\"succeeded\"} 1",
        "ember_jobs{state=\"failed\"} 1",
        "ember_executors{state=\"alive\"} 2",
        "ember_executors{state=\"lost\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(metrics.contains(&format!(
        "ember_stream_lag_messages{{stream=\"hourly_product_revenue\",id=\"{stream_id}\",topic=\"web\",partition=\"0\"}} 0"
    )), "{metrics}");
    assert!(metrics.contains("ember_stream_batches_total{"), "{metrics}");
    let executor_metrics = (0..2)
        .filter_map(|i| http_get(&cluster.executor_metrics_address(i), "/metrics").ok())
        .collect::<Vec<_>>()
        .join("\n");
    let tasks_on_executors: u64 = executor_metrics
        .lines()
        .filter(|l| l.starts_with("ember_executor_tasks_succeeded_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(tasks_on_executors >= succeeded, "{executor_metrics}");
    // Each process tells how much its footer cache holds (docs/operations.md).
    let has = |text: &str, name: &str| text.lines().any(|l| l.starts_with(name));
    assert!(
        has(&metrics, "ember_metadata_cache_bytes")
            && has(&executor_metrics, "ember_executor_metadata_cache_bytes{"),
        "{metrics}\n{executor_metrics}"
    );

    // The dashboard's data equals the fold over the CSV.
    let daily: Vec<serde_json::Value> = get_json(&cluster, "/api/v1/dashboard/daily");
    let got: BTreeMap<String, i64> = daily
        .iter()
        .map(|r| {
            (
                r["order_date"].as_str().unwrap_or_default().to_string(),
                cents(&r["net_revenue"]),
            )
        })
        .collect();
    assert_eq!(got, net_by_day);
    let one_day: Vec<serde_json::Value> = get_json(
        &cluster,
        "/api/v1/dashboard/daily?from=2011-12-09&to=2011-12-09",
    );
    assert_eq!(one_day.len(), 1);
    let top: Vec<serde_json::Value> = get_json(&cluster, "/api/v1/dashboard/top-products?limit=2");
    assert_eq!(top.len(), 2);
    assert_eq!(top[0]["product_id"], top_product.as_str());
    let bad = http_request(
        cluster.address(),
        "GET",
        "/api/v1/dashboard/daily?from=yesterday",
        &[],
    )
    .expect("request");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("`from` must be a day"), "{}", bad.body);
    let windows: Vec<serde_json::Value> = get_json(&cluster, "/api/v1/dashboard/windows");
    assert!(!windows.is_empty());
    // Asked again with no commit since (the stream has read everything): the kept answer,
    // no query; the four calls before ran theirs (the bad one was refused before any).
    let again: Vec<serde_json::Value> = get_json(&cluster, "/api/v1/dashboard/windows");
    assert_eq!(again, windows);
    let metrics = cluster.get("/metrics").expect("metrics");
    for line in [
        "ember_dashboard_answers_total{from=\"cache\"} 1",
        "ember_dashboard_answers_total{from=\"query\"} 4",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    // Ballista forgets the dashboard's finished queries within seconds (their graphs grow with
    // the tables' files), and keeps the jobs' steps for the job-state retention.
    let ballista_jobs = || -> (usize, BTreeSet<String>) {
        let jobs: Vec<serde_json::Value> = get_json(&cluster, "/api/jobs");
        let serving = jobs
            .iter()
            .filter(|j| j["job_name"] == "ember serving query")
            .count();
        let steps = jobs
            .iter()
            .filter(|j| j["job_name"] != "ember serving query")
            .map(|j| j["job_id"].to_string())
            .collect();
        (serving, steps)
    };
    let (serving, steps) = ballista_jobs();
    assert!(serving > 0, "the dashboard's queries are Ballista jobs");
    let forgotten = Instant::now();
    while ballista_jobs().0 > 0 {
        assert!(
            forgotten.elapsed() < Duration::from_secs(40),
            "serving queries still kept: {:?}",
            ballista_jobs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        ballista_jobs().1.is_superset(&steps),
        "a job's step was forgotten"
    );

    // The pages, in headless Chromium.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-ui-screenshots");
    let expect = serde_json::json!({
        "succeeded": done.summary.id,
        "table_version": done.report.as_ref().and_then(|r| r.table_version),
        "failed": failed.summary.id,
        "failed_error": failed_error.chars().take(60).collect::<String>(),
        "stream": stream_id,
        "days": net_by_day.len(),
        "top_product": top_product,
        "executors_alive": 2,
        "executors_lost": 1,
    });
    let mut browser = Command::new(python().expect("the venv's python"))
        .arg(repo().join("cli/tests/python/web_ui.py"))
        .arg(format!("http://{}", cluster.address()))
        .arg(&shots)
        .arg(expect.to_string())
        .env("SE_OFFLINE", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the browser check");
    let status = wait_child(&mut browser, Duration::from_secs(300)).expect("wait");
    let output = browser.wait_with_output().expect("output");
    assert!(
        status.is_some_and(|s| s.success()),
        "browser check: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    eprintln!(
        "browser saw {}; screenshots in {}",
        String::from_utf8_lossy(&output.stdout).trim(),
        shots.display()
    );
    for page in [
        "jobs",
        "job-succeeded",
        "job-failed",
        "executors",
        "streaming",
        "stream",
        "dashboard",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "screenshot {page}"
        );
    }
    drop(stream);
}

#[test]
fn with_auth_on_the_ui_and_rest_api_need_the_flight_sql_credentials() {
    let options = ClusterOptions {
        scheduler_args: vec![
            "--flight-sql-token".into(),
            "t0ken-s3cret".into(),
            "--flight-sql-user".into(),
            "ana:pa55word".into(),
        ],
        ..ClusterOptions::default()
    };
    let cluster = EmberCluster::start(bin(), 0, &options).expect("cluster");
    let address = cluster.address();
    for path in [
        "/ui/jobs",
        "/api/v1/jobs",
        "/api/v1/streams",
        "/metrics",
        "/api/jobs",
    ] {
        let answer = http_request(address, "GET", path, &[]).expect("request");
        assert_eq!(answer.status, 401, "{path}: {}", answer.body);
        assert!(
            answer
                .head
                .contains("www-authenticate: Basic realm=\"ember\""),
            "{path}: {}",
            answer.head
        );
    }
    let wrong = http_request(
        address,
        "GET",
        "/api/v1/jobs",
        &[("Authorization", "Bearer nope")],
    )
    .expect("request");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("unknown token"), "{}", wrong.body);
    // The static token, and a browser's basic credentials (ana:pa55word).
    for credentials in ["Bearer t0ken-s3cret", "Basic YW5hOnBhNTV3b3Jk"] {
        for path in [
            "/ui/jobs",
            "/api/v1/jobs",
            "/api/v1/info",
            "/metrics",
            "/static/app.js",
        ] {
            let answer =
                http_request(address, "GET", path, &[("Authorization", credentials)]).expect("ok");
            assert_eq!(
                answer.status, 200,
                "{path} with {credentials}: {}",
                answer.body
            );
            assert!(
                !answer.body.contains("t0ken-s3cret") && !answer.body.contains("pa55word"),
                "{path} shows a secret"
            );
        }
    }
    let health = http_request(address, "GET", "/api/v1/health", &[]).expect("health");
    assert_eq!(health.status, 200);
    // The command line sends the token. (A user's machine without the cluster secret: this
    // machine's default secret, which the test cluster uses, would authenticate it.)
    let no_secret = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin())
        .args(["jobs", "--scheduler", address])
        .env("EMBER_HOME", no_secret.path())
        .env_remove("EMBER_CLUSTER_SECRET_FILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run ember");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("answered 401"), "{}", stderr(&out));
    let out = ember(&["jobs", "--scheduler", address, "--token", "t0ken-s3cret"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
