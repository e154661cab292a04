//! S3 end to end, against a real S3-protocol server (s3s-fs on 127.0.0.1, installed by
//! `.ci/s3.sh`), reached with the standard AWS variables as AWS S3 or MinIO would be: the main
//! job reads its input from `s3://` and writes its output there, as a Delta table and as a
//! plain Parquet folder; Flight SQL serves both; each equals the same job run on local disk.
//! Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ember_core::report::RunReport;
use ember_testkit::ember::EmberServe;
use ember_testkit::s3::S3Server;

const JOB: &str = "jobs/daily_revenue_by_product";
const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

/// 600 sales lines over 6 days and 12 products, with returns, plus 2 lines the job
/// quarantines (a bad date, a negative price).
fn sales() -> String {
    let mut csv = HEADER.to_string();
    for i in 0..600u32 {
        let quantity = if i % 13 == 0 {
            -1
        } else {
            i64::from(1 + i % 5)
        };
        csv.push_str(&format!(
            "{}{},P{},Product {},{quantity},2011-12-{:02} 1{}:00:00,{}.{:02},17850,United Kingdom\n",
            if quantity < 0 { "C" } else { "" },
            1000 + i / 3,
            i % 12,
            i % 12,
            4 + (i / 12) % 6,
            i % 10,
            1 + i % 40,
            (i * 7) % 100
        ));
    }
    csv.push_str("9001,P1,Product 1,1,not a date,1.00,17850,United Kingdom\n");
    csv.push_str("9002,P2,Product 2,3,2011-12-05 10:00:00,-1.00,17850,United Kingdom\n");
    csv
}

fn run(input: &str, output: &str, format: &str, env: &[(String, String)]) -> Output {
    Command::new(bin())
        .args(["run", JOB, "--format", "json"])
        .args(["--set", &format!("input={input}")])
        .args(["--set", &format!("output={output}")])
        .args(["--set", &format!("format={format}")])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run ember")
}

fn served(address: &str, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = rt
        .block_on(async {
            let mut c = ember_testkit::flight_sql::connect(address).await?;
            ember_testkit::flight_sql::query(&mut c, sql).await
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.sort();
    rows
}

#[test]
fn the_main_job_reads_and_writes_s3_and_flight_sql_serves_it() {
    let s3 = S3Server::start().expect("s3s-fs");
    let env = s3.env();
    let bucket = s3.bucket("warehouse").expect("bucket");
    s3.put("warehouse", "landing/sales.csv", sales().into_bytes())
        .expect("upload the input");
    let tmp = tempfile::tempdir().expect("tempdir");
    let local_input = tmp.path().join("sales.csv");
    std::fs::write(&local_input, sales()).expect("write");
    let input = format!("{bucket}/landing/sales.csv");

    let mut tables = Vec::new();
    for format in ["delta", "parquet"] {
        let on_s3 = format!("{bucket}/daily_{format}");
        let out = run(&input, &on_s3, format, &env);
        assert!(
            out.status.success(),
            "{format} on S3: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s3.logs()
        );
        let report: RunReport = serde_json::from_slice(&out.stdout).expect("the run's report");
        assert_eq!(
            (report.rows.read, report.rows.quarantined),
            (Some(602), 2),
            "{report:?}"
        );
        let local = tmp.path().join(format!("daily_{format}"));
        let out = run(
            &local_input.display().to_string(),
            &local.display().to_string(),
            format,
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tables.push(format!("s3_{format}={on_s3}"));
        tables.push(format!("local_{format}={}", local.display()));
    }
    let mut args = vec!["--jobs", "/nonexistent"];
    for t in &tables {
        args.extend(["--table", t.as_str()]);
    }
    let log = tmp.path().join("serve.log");
    let server = EmberServe::start_with_env(bin(), &repo(), &args, &log, &env)
        .unwrap_or_else(|e| panic!("{e}\n{}", s3.logs()));
    for format in ["delta", "parquet"] {
        let sql = |t: &str| {
            format!(
                "SELECT CAST(order_date AS VARCHAR), product_id, units_sold, \
                 CAST(net_revenue AS VARCHAR) FROM {t}_{format}"
            )
        };
        let want = served(server.address(), &sql("local"));
        assert!(want.len() > 50, "{want:?}");
        assert_eq!(
            served(server.address(), &sql("s3")),
            want,
            "{format}: S3 and local disk differ\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}
