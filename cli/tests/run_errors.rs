//! `ember run` as a user runs it: the binary, its exit code, and what it prints. Every user
//! error is one line on stderr that says what was wrong and where, exit code 1, and no output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The job the tests run (or copy and edit).
const JOB: &str = "jobs/daily_revenue_by_product";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A copy of jobs/daily_revenue_by_product in `dir`, with `edit` applied to one of its files.
fn job_copy(dir: &Path, file: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let src = repo().join("jobs/daily_revenue_by_product");
    let dst = dir.join("job");
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(&src).expect("job folder").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let text = std::fs::read_to_string(entry.path()).expect("read");
        let text = if name == file { edit(text) } else { text };
        std::fs::write(dst.join(&name), text).expect("write");
    }
    dst
}

fn small_input(dir: &Path) -> String {
    let path = dir.join("sales.csv");
    std::fs::write(
        &path,
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
         1,A,Apple,2,2011-01-01 10:00:00,1.50,,UK\n\
         2,A,Apple,0,2011-01-01 10:00:00,1.50,,UK\n",
    )
    .expect("write input");
    path.display().to_string()
}

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("run ember")
}

/// `ember run <job> [--set input=…] --set output=<out>`.
fn run_job(job: &str, input: Option<&str>, out: &Path) -> Output {
    let mut args = vec!["run".to_string(), job.to_string()];
    if let Some(input) = input {
        args.extend(["--set".to_string(), format!("input={input}")]);
    }
    args.extend(["--set".to_string(), format!("output={}", out.display())]);
    ember(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Asserts a failed run: exit code 1, one line on stderr containing every part of `expected`,
/// nothing on stdout, and no output folder.
fn assert_user_error(out: &Output, expected: &[&str], output_dir: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("ember: error: "), "{stderr}");
    for part in expected {
        assert!(stderr.contains(part), "`{part}` not in: {stderr}");
    }
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !output_dir.exists(),
        "no partial output at {}",
        output_dir.display()
    );
}

#[test]
fn missing_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("out");
    let missing = tmp.path().join("nope.csv");
    let out = run_job(JOB, Some(&missing.display().to_string()), &out_dir);
    assert_user_error(
        &out,
        &["input `raw_sales`", "nope.csv", "no such file"],
        &out_dir,
    );

    let glob = tmp.path().join("*.csv.gz");
    let out = run_job(JOB, Some(&glob.display().to_string()), &out_dir);
    assert_user_error(&out, &["no file matches this pattern"], &out_dir);
}

#[test]
fn unknown_manifest_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job_copy(tmp.path(), "job.toml", |t| {
        t.replacen(
            "partition_by = [\"order_date\"]\nsql = \"daily",
            "partiton_by = [\"order_date\"]\nsql = \"daily",
            1,
        )
    });
    let out_dir = tmp.path().join("out");
    let out = run_job(job.to_str().expect("path"), None, &out_dir);
    assert_user_error(
        &out,
        &[
            "job.toml:",
            "unknown field `partiton_by`",
            "expected one of",
        ],
        &out_dir,
    );
    // The line is that of the misspelt key.
    let text = std::fs::read_to_string(job.join("job.toml")).expect("read");
    let line = text
        .lines()
        .position(|l| l.starts_with("partiton_by"))
        .expect("typo present")
        + 1;
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("job.toml:{line}:1: ")));
}

#[test]
fn unknown_parameter_and_bad_setting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("out");
    let out = ember(&[
        "run",
        "jobs/daily_revenue_by_product",
        "--set",
        "inptu=x.csv",
        "--set",
        &format!("output={}", out_dir.display()),
    ]);
    assert_user_error(
        &out,
        &[
            "unknown parameter `inptu` for job daily_revenue_by_product",
            "declares: encoding, format, input, on_malformed, output, products, timestamp_format",
        ],
        &out_dir,
    );
    let out = ember(&[
        "run",
        "jobs/daily_revenue_by_product",
        "--set",
        "input",
        "--set",
        &format!("output={}", out_dir.display()),
    ]);
    assert_user_error(&out, &["bad --set `input`: expected name=value"], &out_dir);
    // `--conf` (spark-submit's): a session option DataFusion does not know, a pair without `=`.
    for (conf, expected) in [
        (
            "datafusion.execution.no_such_option=1",
            "datafusion.execution.no_such_option: ",
        ),
        ("batch_size", "batch_size: --conf takes KEY=VALUE"),
    ] {
        let out = ember(&[
            "run",
            "jobs/daily_revenue_by_product",
            "--conf",
            conf,
            "--set",
            &format!("output={}", out_dir.display()),
        ]);
        assert_user_error(&out, &[expected], &out_dir);
    }
}

#[test]
fn bad_sql_names_file_line_and_column() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = small_input(tmp.path());
    let out_dir = tmp.path().join("out");

    // A syntax error: `FORM` on line 3 of sales.sql.
    let job = job_copy(tmp.path(), "sales.sql", |t| {
        t.replacen("FROM checked_sales s", "FORM checked_sales s", 1)
    });
    let text = std::fs::read_to_string(job.join("sales.sql")).expect("read");
    let line = text
        .lines()
        .position(|l| l.starts_with("FORM"))
        .expect("edit present")
        + 1;
    let out = run_job(job.to_str().expect("path"), Some(&input), &out_dir);
    assert_user_error(&out, &[&format!("sales.sql:{line}:"), "FORM"], &out_dir);

    // A planning error: an unknown column, with its line and column.
    let job = job_copy(tmp.path(), "daily_revenue.sql", |t| {
        t.replacen(
            "max_text(category) AS category",
            "max_text(categroy) AS category",
            1,
        )
    });
    let text = std::fs::read_to_string(job.join("daily_revenue.sql")).expect("read");
    let line = text
        .lines()
        .position(|l| l.contains("categroy"))
        .expect("edit present")
        + 1;
    let column = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.find("categroy"))
        .expect("column")
        + 1;
    let out = run_job(job.to_str().expect("path"), Some(&input), &out_dir);
    assert_user_error(
        &out,
        &[&format!("daily_revenue.sql:{line}:{column}: "), "categroy"],
        &out_dir,
    );

    // An undeclared ${param} in a SQL file.
    let job = job_copy(tmp.path(), "checked_sales.sql", |t| {
        t.replacen("'${timestamp_format}'", "'${timestamp_fmt}'", 1)
    });
    let out = run_job(job.to_str().expect("path"), Some(&input), &out_dir);
    assert_user_error(
        &out,
        &["checked_sales.sql:", "unknown parameter `${timestamp_fmt}`"],
        &out_dir,
    );
}

#[test]
fn partition_column_not_produced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = small_input(tmp.path());
    let job = job_copy(tmp.path(), "job.toml", |t| {
        t.replacen(
            "[output]\npath = \"${output}\"\nformat = \"${format}\"\npartition_by = [\"order_date\"]",
            "[output]\npath = \"${output}\"\nformat = \"${format}\"\npartition_by = [\"day\"]",
            1,
        )
    });
    assert!(
        std::fs::read_to_string(job.join("job.toml"))
            .expect("read")
            .contains("[\"day\"]")
    );
    let out_dir = tmp.path().join("out");
    let out = run_job(job.to_str().expect("path"), Some(&input), &out_dir);
    assert_user_error(
        &out,
        &[
            "partition column `day` is not produced by",
            "daily_revenue.sql",
            "order_date",
        ],
        &out_dir,
    );
}

#[test]
fn success_prints_the_report_and_json_for_scripts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = small_input(tmp.path());
    let out_dir = tmp.path().join("out");
    let args = [
        "run",
        "jobs/daily_revenue_by_product",
        "--set",
        &format!("input={input}"),
        "--set",
        &format!("output={}", out_dir.display()),
        // A session option for the run (spark-submit's `--conf`), not changing its results.
        "--conf",
        "datafusion.execution.batch_size=1024",
    ];
    let out = ember(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "quiet stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rows read    2\n"), "{stdout}");
    assert!(
        stdout.contains("quarantined  1 (zero_quantity 1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("output       file://{}/", out_dir.display())),
        "{stdout}"
    );

    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let out = ember(&json_args);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["rows"]["read"], 2);
    assert_eq!(report["rows"]["written"], 1);
    assert_eq!(
        report["partitions"]["replaced"], 2,
        "the second run replaced both partitions"
    );
    let success: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("_SUCCESS")).expect("_SUCCESS"))
            .expect("json");
    assert_eq!(success["run_id"], report["run_id"]);
}

#[test]
fn rows_lost_by_a_query_fail_the_run_and_commit_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = small_input(tmp.path());
    // A "valid rows" view that silently loses rows: the reconciliation must catch it.
    let job = job_copy(tmp.path(), "sales.sql", |t| {
        t.replacen(
            "WHERE s.reason IS NULL",
            "WHERE s.reason IS NULL AND s.quantity < 2",
            1,
        )
    });
    let out_dir = tmp.path().join("out");
    let out = run_job(job.to_str().expect("path"), Some(&input), &out_dir);
    assert_user_error(
        &out,
        &[
            "row counts do not reconcile, nothing was committed",
            "rows read 2 != rows valid 0 + rows quarantined 1 (difference 1)",
        ],
        &out_dir,
    );
}
