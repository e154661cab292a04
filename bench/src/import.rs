//! `ember-bench import`: a database import (Sqoop's job) of the whole Online Retail table
//! (541,909 rows) from MariaDB and from PostgreSQL, both started by the runner in temporary
//! folders (`ember_testkit::database`), rounds interleaved. Peers, per database:
//! - the database's own export of the same rows to a local file: `mysqldump --tab`-free
//!   `mariadb -B -e 'SELECT …'` (the client's tab-separated dump) and psql's `\copy (SELECT …)
//!   TO` (PostgreSQL's `COPY TO` through the client) — what a plain dump costs;
//! - `ember run` of an import job with `splits = 1` and `splits = 4` (`split_by = "id"`), into
//!   Parquet partitioned by order date (what `jobs/import_sales` writes), in one process with
//!   the machine's cores as task slots.
//!
//! Every Ember run's report must say 541,909 rows written, and the dump must have 541,909
//! lines, before a time counts.

use std::path::Path;
use std::process::Command;

use ember_testkit::database::{
    MariaDb, PASSWORD, PASSWORD_VAR, Postgres, Server, TRANSACTION_COLUMNS, import_job,
    online_retail_load_file,
};

use crate::measure;

const ROWS: usize = 541_909;

/// `ember run job` into `out`; its cost after checking the rows it wrote.
fn ember_import(ember: &Path, job: &Path, out: &Path) -> Result<measure::Cost, String> {
    let _ = std::fs::remove_dir_all(out);
    let mut command = Command::new(ember);
    command
        .args(["run", &job.display().to_string(), "--format", "json"])
        .args(["--set", &format!("output={}", out.display())])
        .env(PASSWORD_VAR, PASSWORD)
        .stdout(std::process::Stdio::null());
    let cost = measure::run(command)?;
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_SUCCESS")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let written = report["rows"]["written"].as_u64().unwrap_or(0);
    if written != ROWS as u64 {
        return Err(format!(
            "{}: {written} rows written, {ROWS} expected",
            job.display()
        ));
    }
    Ok(cost)
}

/// Times `command` (a client dumping the table to `file`) and checks the file's line count.
fn dump(command: Command, file: &Path) -> Result<measure::Cost, String> {
    let cost = measure::run(command)?;
    let text = std::fs::read(file).map_err(|e| e.to_string())?;
    let lines = text.iter().filter(|b| **b == b'\n').count();
    if lines != ROWS {
        return Err(format!(
            "dump {}: {lines} lines, {ROWS} expected",
            file.display()
        ));
    }
    Ok(cost)
}

fn which(name: &str, folders: &[&str]) -> Result<std::path::PathBuf, String> {
    folders
        .iter()
        .map(|f| Path::new(f).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{name} is missing: run `bash .ci/databases.sh`"))
}

/// Runs the benchmark; prints a Markdown table and writes JSON to `json`.
///
/// # Errors
/// A server that does not start, a run that fails or writes other counts.
pub fn run(ember: &Path, runs: usize, json: &Path) -> Result<(), String> {
    // Taken at the start: the time is the run's start, the commit what was checked out then.
    let machine = crate::machine::describe();
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = scratch.path();
    let repo = std::env::current_dir().map_err(|e| e.to_string())?;
    let file = online_retail_load_file(&repo, dir, 0, ROWS, 1)?;
    let maria = MariaDb::start()?;
    let pg = Postgres::start()?;
    for db in [&maria as &dyn Server, &pg] {
        db.create_transactions()?;
        db.load_transactions(&file)?;
    }
    eprintln!("loaded {ROWS} rows into MariaDB and PostgreSQL");
    let select = format!("SELECT {TRANSACTION_COLUMNS} FROM transactions");
    let mut rounds = Vec::new();
    for round in 0..runs {
        let mut row = serde_json::Map::new();
        // MariaDB's client dump.
        let out = dir.join("maria.tsv");
        let mut c = Command::new(which("mariadb", &["/usr/bin", "/usr/local/bin"])?);
        c.arg("--no-defaults")
            .args(["-h", "127.0.0.1", "-P", &maria.port().to_string()])
            .args([
                "-u",
                "ember",
                &format!("-p{PASSWORD}"),
                "-B",
                "-N",
                "--quick",
            ])
            .args(["shop", "-e", &select])
            .stdout(std::fs::File::create(&out).map_err(|e| e.to_string())?);
        row.insert("mariadb_dump".into(), serde_json::json!(dump(c, &out)?));
        // PostgreSQL's COPY TO through psql.
        let out = dir.join("pg.tsv");
        let mut c = Command::new(which(
            "psql",
            &["/usr/lib/postgresql/15/bin", "/usr/bin", "/usr/local/bin"],
        )?);
        c.env("PGPASSWORD", PASSWORD)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port().to_string(),
                "-U",
                "ember",
                "-d",
                "shop",
            ])
            .args(["-X", "-q", "-c"])
            .arg(format!("\\copy ({select}) TO '{}'", out.display()));
        row.insert("postgres_copy_to".into(), serde_json::json!(dump(c, &out)?));
        for (kind, url) in [("mysql", maria.url()), ("postgres", pg.url())] {
            for splits in [1, 4] {
                let job = import_job(
                    dir,
                    &format!("job-{kind}-{splits}"),
                    kind,
                    &url,
                    "table = \"transactions\"",
                    &format!("split_by = \"id\"\nsplits = {splits}"),
                )?;
                let cost = ember_import(ember, &job, &dir.join("out"))?;
                row.insert(format!("ember_{kind}_{splits}"), serde_json::json!(cost));
            }
        }
        eprintln!("round {round}: {row:?}");
        rounds.push(serde_json::Value::Object(row));
    }
    println!("| peer | seconds (median) | rows/s | × the database's own dump |");
    println!("|---|---|---|---|");
    let median = |key: &str| {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r[key]["seconds"].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    for (peer, base) in [
        ("mariadb_dump", "mariadb_dump"),
        ("ember_mysql_1", "mariadb_dump"),
        ("ember_mysql_4", "mariadb_dump"),
        ("postgres_copy_to", "postgres_copy_to"),
        ("ember_postgres_1", "postgres_copy_to"),
        ("ember_postgres_4", "postgres_copy_to"),
    ] {
        let s = median(peer);
        #[allow(clippy::cast_precision_loss)]
        let rate = ROWS as f64 / s;
        println!("| {peer} | {s:.2} | {rate:.0} | {:.2} |", s / median(base));
    }
    let result = serde_json::json!({
        "benchmark": "import", "rows": ROWS, "machine": machine,
        "rounds": rounds,
    });
    crate::write_results(json, &result)
}
