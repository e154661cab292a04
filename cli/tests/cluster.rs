//! The cluster, as users run it: real `ember scheduler` and `ember executor` processes on
//! 127.0.0.1, jobs submitted with `ember submit`, inspected with `ember status`. Every wait is
//! bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ember_core::api::{JobDetail, JobState, JobSummary, Submitted};
use ember_testkit::ember::{ClusterOptions, EmberCluster, http_get};
use ember_testkit::flight_sql;
use ember_testkit::query::parquet_rows;
use ember_testkit::util::{free_port, python, wait_for};

const JOB: &str = "jobs/daily_revenue_by_product";
/// Every output column; `order_date` comes from the folder names.
const ROWS: &str = "SELECT order_date, product_id, product_name, units_sold, units_returned, \
                    gross_revenue, returns_value, net_revenue, orders FROM t";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

fn online_retail() -> String {
    repo()
        .join("data/online_retail.csv.gz")
        .display()
        .to_string()
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

/// `ember submit --wait --format json`; the job's final detail and the exit code.
fn submit_wait(cluster: &EmberCluster, input: &str, output: &str) -> (JobDetail, Option<i32>) {
    submit_wait_with(cluster, input, output, &[])
}

/// [`submit_wait`] with more `--set name=value` settings.
fn submit_wait_with(
    cluster: &EmberCluster,
    input: &str,
    output: &str,
    settings: &[&str],
) -> (JobDetail, Option<i32>) {
    let input = format!("input={input}");
    let output = format!("output={output}");
    let mut args = vec![
        "submit",
        JOB,
        "--scheduler",
        cluster.address(),
        "--set",
        &input,
        "--set",
        &output,
        "--wait",
        "--format",
        "json",
    ];
    for setting in settings {
        args.extend(["--set", setting]);
    }
    let out = ember(&args);
    let detail: JobDetail = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "submit --wait printed no job ({e}): {}\n{}",
            stderr(&out),
            cluster.logs()
        )
    });
    (detail, out.status.code())
}

/// The job's output as an embedded run writes it (the reference).
fn embedded(input: &str, output: &Path) -> Vec<String> {
    let out = ember(&[
        "run",
        JOB,
        "--set",
        &format!("input={input}"),
        "--set",
        &format!("output={}", output.display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "embedded run: {}", stderr(&out));
    block_on(parquet_rows(&output.display().to_string(), ROWS)).expect("read the embedded output")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    ember_core::threads::block_on(f)
}

/// The data files under `dir`, relative, sorted.
fn data_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .expect("under base")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The attempt token of a file `part-<partition>-<attempt>-<n>.parquet`.
fn attempt(file: &str) -> &str {
    file.rsplit('/')
        .next()
        .and_then(|name| name.split('-').nth(2))
        .unwrap_or("")
}

#[test]
fn two_executors_write_exactly_what_embedded_mode_writes() {
    let cluster = EmberCluster::start(bin(), 2, &ClusterOptions::default()).expect("cluster");
    let tmp = tempfile::tempdir().expect("tempdir");
    let reference = embedded(&online_retail(), &tmp.path().join("embedded"));
    assert_eq!(reference.len(), 280_451);

    let out = tmp.path().join("cluster");
    let (detail, code) = submit_wait(&cluster, &online_retail(), &out.display().to_string());
    assert_eq!(
        (detail.summary.state, code),
        (JobState::Succeeded, Some(0)),
        "{:?}\n{}",
        detail.summary.error,
        cluster.logs()
    );
    let rows =
        block_on(parquet_rows(&out.display().to_string(), ROWS)).expect("read the cluster output");
    assert!(
        rows == reference,
        "the cluster's output differs from the embedded run's"
    );

    let report = detail.report.expect("a succeeded job has a report");
    assert_eq!(
        (
            report.rows.read,
            report.rows.quarantined,
            report.rows.written
        ),
        (Some(541_909), 2, 280_451)
    );
    assert_eq!(report.engine, "ballista-cluster");
    // The CSV is read and typed by one step (the cached view); the quarantine, the output and
    // the counts read the cached rows, and the rows read come from the cache.
    assert_eq!(report.cached_views.get("checked_sales"), Some(&541_909));
    let steps: Vec<&str> = detail.steps.iter().map(|s| s.step.as_str()).collect();
    assert!(
        steps.contains(&"cache checked_sales")
            && steps.contains(&"output")
            && !steps.iter().any(|s| s.starts_with("count raw_sales")),
        "{steps:?}"
    );
    // Written by more than one task: each task attempt names its files with its own token.
    let files = data_files(&out);
    let data: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("order_date="))
        .collect();
    let mut attempts: Vec<&str> = data.iter().map(|f| attempt(f)).collect();
    attempts.sort_unstable();
    attempts.dedup();
    assert!(
        attempts.len() >= 2,
        "one task wrote everything: {attempts:?}"
    );
    // Each day was written by one task (the sink shuffles by partition column): one file per day.
    assert_eq!(data.len(), 305, "{data:?}");
    // `ember status` shows the distributed steps with their stages and tasks.
    let status = ember(&[
        "status",
        &detail.summary.id,
        "--scheduler",
        cluster.address(),
    ]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    assert!(
        text.contains("succeeded") && text.contains("output") && text.contains("Successful"),
        "{text}"
    );
    // The succeeded job's output is a table of the scheduler's Flight SQL endpoint, queried
    // through Ballista, with partition pruning on `order_date`.
    let sql = "SELECT COUNT(*) AS n, CAST(SUM(net_revenue) AS VARCHAR) AS net FROM daily_revenue_by_product \
               WHERE order_date BETWEEN DATE '2011-12-01' AND DATE '2011-12-09'";
    let want = block_on(parquet_rows(
        &out.display().to_string(),
        "SELECT COUNT(*), CAST(SUM(net_revenue) AS VARCHAR) FROM t \
         WHERE order_date BETWEEN '2011-12-01' AND '2011-12-09'",
    ))
    .expect("read the output");
    let got = block_on(async {
        let mut client = flight_sql::connect(cluster.flight_sql_address()).await?;
        flight_sql::query(&mut client, sql).await
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_eq!(got, want);
}

#[test]
fn a_killed_executor_does_not_fail_the_job_or_duplicate_files() {
    let options = ClusterOptions {
        executor_timeout: "8s".into(),
        ..ClusterOptions::default()
    };
    let mut cluster = EmberCluster::start(bin(), 2, &options).expect("cluster");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cluster");
    let submitted = ember(&[
        "submit",
        JOB,
        "--scheduler",
        cluster.address(),
        "--set",
        &format!("input={}", online_retail()),
        "--set",
        &format!("output={}", out.display()),
        "--format",
        "json",
    ]);
    let Submitted { id } = serde_json::from_slice(&submitted.stdout)
        .unwrap_or_else(|_| panic!("{}", stderr(&submitted)));

    // Wait until the output step is running and one executor holds shuffle files of it, then
    // kill that executor with SIGKILL.
    let victim = wait_for(
        "an executor running the output step",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let detail: JobDetail =
                serde_json::from_str(&http_get(cluster.address(), &format!("/api/v1/jobs/{id}"))?)
                    .map_err(|e| e.to_string())?;
            if detail.summary.state.is_final() {
                return Err(format!(
                    "the job ended before an executor could be killed: {:?}",
                    detail.summary
                ));
            }
            let Some(step) = detail.steps.iter().find(|s| s.step == "output") else {
                return Ok(None);
            };
            Ok((0..2).find(|&i| {
                cluster
                    .executor_work_dir(i)
                    .join(&step.ballista_job_id)
                    .exists()
            }))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    cluster.kill_executor(victim);

    let detail = wait_for(
        "the job to end",
        Duration::from_secs(300),
        Duration::from_millis(500),
        || {
            let detail: JobDetail =
                serde_json::from_str(&http_get(cluster.address(), &format!("/api/v1/jobs/{id}"))?)
                    .map_err(|e| e.to_string())?;
            Ok(detail.summary.state.is_final().then_some(detail))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_eq!(
        detail.summary.state,
        JobState::Succeeded,
        "{:?}\n{}",
        detail.summary.error,
        cluster.logs()
    );

    let reference = embedded(&online_retail(), &tmp.path().join("embedded"));
    let rows = block_on(parquet_rows(&out.display().to_string(), ROWS)).expect("read the output");
    assert!(
        rows == reference,
        "the output after an executor loss differs from the embedded run's"
    );
    // No duplicate or partial files: one Parquet file per day, the run's quarantine, _SUCCESS,
    // and nothing else (no staging, no unfinished upload).
    let files = data_files(&out);
    let days = files
        .iter()
        .filter(|f| f.starts_with("order_date="))
        .count();
    assert_eq!(days, 305, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f == "_SUCCESS" || (f.ends_with(".parquet") && !f.starts_with("_temporary"))),
        "{files:?}"
    );
    assert_eq!(detail.report.map(|r| r.files), Some(files.len() - 1));
}

#[test]
fn hdfs_input_and_output() {
    let hdfs = ember_testkit::HdfsCluster::start().expect("HDFS");
    hdfs.fs(&["-mkdir", "-p", "/landing"]).expect("mkdir");
    hdfs.fs(&["-put", &online_retail(), "/landing/online_retail.csv.gz"])
        .expect("put");
    let cluster = EmberCluster::start(bin(), 2, &ClusterOptions::default()).expect("cluster");
    let input = format!("{}/landing/online_retail.csv.gz", hdfs.url());
    let output = format!("{}/warehouse/daily_revenue_by_product/", hdfs.url());
    let (detail, code) = submit_wait(&cluster, &input, &output);
    assert_eq!(
        (detail.summary.state, code),
        (JobState::Succeeded, Some(0)),
        "{:?}\n{}",
        detail.summary.error,
        cluster.logs()
    );

    // Read back through Ember's object stores, against an embedded run on the local copy.
    let tmp = tempfile::tempdir().expect("tempdir");
    let reference = embedded(&online_retail(), &tmp.path().join("embedded"));
    let rows = block_on(parquet_rows(&output, ROWS)).expect("read the HDFS output");
    assert!(
        rows == reference,
        "the HDFS output differs from the embedded run's"
    );

    // And with software nobody here wrote: Hadoop's own client fetches the files, DuckDB reads them.
    let listing = hdfs
        .fs(&["-ls", "-R", "/warehouse/daily_revenue_by_product"])
        .expect("ls");
    assert!(
        listing.contains("_SUCCESS") && !listing.contains("_temporary"),
        "{listing}"
    );
    let local = tmp.path().join("fetched");
    hdfs.fs(&[
        "-get",
        "/warehouse/daily_revenue_by_product",
        &local.display().to_string(),
    ])
    .expect("get");
    let script = format!(
        "import duckdb; print(duckdb.sql(\"SELECT count(*), count(DISTINCT order_date), CAST(sum(net_revenue) AS VARCHAR), sum(units_sold) \
         FROM read_parquet('{}/order_date=*/*.parquet', hive_partitioning = true)\").fetchall())",
        local.display()
    );
    let duck = Command::new(python().expect("python venv"))
        .args(["-c", &script])
        .output()
        .expect("python");
    assert_eq!(duck.status.code(), Some(0), "{}", stderr(&duck));
    let expected = block_on(parquet_rows(
        &tmp.path().join("embedded").display().to_string(),
        "SELECT count(*), count(DISTINCT order_date), CAST(sum(net_revenue) AS VARCHAR), sum(units_sold) FROM t",
    ))
    .expect("reference totals");
    let fields: Vec<&str> = expected[0].split('|').collect();
    let duck_out = String::from_utf8_lossy(&duck.stdout).trim().to_string();
    assert_eq!(
        duck_out,
        format!(
            "[({}, {}, '{}', {})]",
            fields[0], fields[1], fields[2], fields[3]
        )
    );
}

#[test]
fn bad_input_gives_clear_errors_and_the_scheduler_keeps_serving() {
    // An unreachable scheduler.
    let port = free_port().expect("port").to_string();
    let nowhere = format!("127.0.0.1:{port}");
    let out = ember(&[
        "submit",
        JOB,
        "--scheduler",
        &nowhere,
        "--set",
        "output=/tmp/x",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a scheduler that does not answer is an external failure (exit code 3)"
    );
    let message = stderr(&out);
    assert!(
        message.starts_with(&format!(
            "ember: error: cannot reach the scheduler at {nowhere}"
        )) && message.lines().count() == 1,
        "{message}"
    );
    let out = ember(&["jobs", "--scheduler", &nowhere]);
    assert!(
        stderr(&out).contains("cannot reach the scheduler"),
        "{}",
        stderr(&out)
    );

    // An executor started against a wrong scheduler address gives up, bounded, with one line.
    let out = ember(&[
        "executor",
        "--scheduler",
        &nowhere,
        "--bind-host",
        "127.0.0.1",
        "--port",
        &free_port().expect("port").to_string(),
        "--grpc-port",
        &free_port().expect("port").to_string(),
        "--scheduler-connect-timeout",
        "2s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a scheduler that does not answer is an external failure (exit code 3)"
    );
    let message = stderr(&out);
    assert!(
        message.contains(&format!(
            "ember: error: cannot reach the scheduler at {nowhere} after 2 s"
        )),
        "{message}"
    );

    // A job that fails on an executor: a CSV line with too many fields, and
    // on_malformed = fail.
    let cluster = EmberCluster::start(bin(), 1, &ClusterOptions::default()).expect("cluster");
    let tmp = tempfile::tempdir().expect("tempdir");
    let header =
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";
    let broken = tmp.path().join("broken.csv");
    std::fs::write(&broken, format!("{header}1,A,Apple,1,2011-01-01 10:00:00,1.00,,UK\n2,A,Apple,1,2011-01-01 10:00:00,1.00,,UK,extra\n")).expect("write");
    let out_dir = tmp.path().join("out");
    let (detail, code) = submit_wait_with(
        &cluster,
        &broken.display().to_string(),
        &out_dir.display().to_string(),
        &["on_malformed=fail"],
    );
    assert_eq!((detail.summary.state, code), (JobState::Failed, Some(1)));
    let error = detail
        .summary
        .error
        .clone()
        .expect("a failed job has a reason");
    assert!(
        error.contains("malformed CSV line 3 of file:///")
            && error.contains("broken.csv: too many fields (9, expected 8)"),
        "{error}"
    );
    assert!(!out_dir.exists(), "no partial output");
    let status = ember(&[
        "status",
        &detail.summary.id,
        "--scheduler",
        cluster.address(),
    ]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("failed")
            && text.contains("error: ")
            && text.contains("too many fields (9, expected 8)"),
        "{text}"
    );
    // Cancelling a finished job is refused; an unknown job is a 404.
    let out = ember(&[
        "cancel",
        &detail.summary.id,
        "--scheduler",
        cluster.address(),
    ]);
    assert!(
        out.status.code() == Some(1)
            && stderr(&out).contains("answered 409")
            && stderr(&out).contains("already ended (failed)"),
        "{}",
        stderr(&out)
    );
    let out = ember(&["status", "nope", "--scheduler", cluster.address()]);
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains("answered 404: no job nope"),
        "{}",
        stderr(&out)
    );
    // The REST error body says who has to act, and whether a retry may help.
    let answer =
        ember_testkit::ember::http_request(cluster.address(), "GET", "/api/v1/jobs/nope", &[])
            .expect("answer");
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON error body");
    assert_eq!(
        (
            answer.status,
            &body["error"],
            &body["kind"],
            &body["retryable"]
        ),
        (
            404,
            &serde_json::json!("no job nope"),
            &serde_json::json!("user"),
            &serde_json::json!(false)
        )
    );
    // A failed job's summary carries its error's kind: a CSV line with too many fields is the
    // user's.
    assert_eq!(detail.summary.error_kind, Some(ember_core::ErrorKind::User));

    // The scheduler keeps serving: a good job succeeds afterwards, and `ember jobs` lists both.
    let good = tmp.path().join("good.csv");
    std::fs::write(
        &good,
        format!("{header}1,A,Apple,2,2011-01-01 10:00:00,1.50,,UK\n"),
    )
    .expect("write");
    let (detail, code) = submit_wait(
        &cluster,
        &good.display().to_string(),
        &out_dir.display().to_string(),
    );
    assert_eq!(
        (detail.summary.state, code),
        (JobState::Succeeded, Some(0)),
        "{:?}",
        detail.summary.error
    );
    let out = ember(&["jobs", "--scheduler", cluster.address(), "--format", "json"]);
    let jobs: Vec<JobSummary> = serde_json::from_slice(&out.stdout).expect("jobs json");
    let states: Vec<JobState> = jobs.iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        [JobState::Succeeded, JobState::Failed],
        "newest first"
    );
}
