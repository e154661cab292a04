//! `ember-bench logs`: file collection (`jobs/app_logs`, Flume's spooling directory) of
//! `lines` application log lines written by `ember produce --log-lines` into files of 100,000
//! lines, rounds interleaved, each peer in its own process on a fresh copy of the files:
//! - `duckdb`: the venv's DuckDB (2 threads) doing the same work: the files read as lines into
//!   a temporary table, parsed once by the same regex (`regexp_extract` of the four groups) and
//!   typed, written as Parquet partitioned by date, the lines that do not match written to a
//!   quarantine file with their file name;
//! - `ember_all_files`: `ember run jobs/app_logs` with `trigger = available-now` and every file
//!   in one micro-batch;
//! - `ember_1_file_per_batch`: the same with `max_files_per_trigger = 1`, one micro-batch per
//!   file (plan, commit mark and renames each time).
//!
//! Before a time counts, each Ember run's report must show every log line written and every
//! stack frame line quarantined, and DuckDB must count the same.

use std::path::Path;
use std::process::Command;

use crate::measure;

/// DuckDB's side: `duck.py SRC OUT THREADS` prints `matched quarantined total`.
const DUCKDB_SCRIPT: &str = r#"
import duckdb, glob, os, sys
src, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
pattern = r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[.,]\d+)?) \[([A-Z]+)\] \[([^\]]+)\] (.*)$'
con = duckdb.connect()
con.execute(f"SET threads={threads}")
files = sorted(glob.glob(f"{src}/*.log"))
con.execute("CREATE TEMP TABLE lines AS SELECT line, filename FROM read_csv(?, columns={'line': 'VARCHAR'}, delim=chr(31), quote='', escape='', header=false, auto_detect=false, filename=true)", [files])
con.execute(f"""CREATE TEMP TABLE parsed AS SELECT line, filename,
  regexp_extract(line, '{pattern}', ['log_time', 'level', 'service', 'message']) AS m
  FROM lines""")
con.execute("""CREATE TEMP TABLE typed AS SELECT line, filename, m.log_time <> '' AS ok,
  try_strptime(m.log_time, ['%Y-%m-%d %H:%M:%S.%g', '%Y-%m-%d %H:%M:%S']) AS log_time,
  m.level AS level, m.service AS service, nullif(m.message, '') AS message FROM parsed""")
con.execute(f"COPY (SELECT log_time, level, service, message, current_timestamp AS ingested_at, CAST(log_time AS DATE) AS date FROM typed WHERE ok) TO '{out}/logs' (FORMAT parquet, PARTITION_BY (date), OVERWRITE_OR_IGNORE)")
con.execute(f"COPY (SELECT filename AS topic, line AS value, 'malformed_line' AS reason FROM typed WHERE NOT ok) TO '{out}/quarantine.parquet' (FORMAT parquet)")
ok, bad, total = con.execute("SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok), count(*) FROM typed").fetchone()
print(ok, bad, total)
"#;

/// A fresh copy of the files in `from` at `to`.
fn copy_folder(from: &Path, to: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, to.join(name)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Runs the benchmark; prints a Markdown table and writes JSON to `json`.
///
/// # Errors
/// A run that fails or counts other lines.
pub fn run(ember: &Path, lines: u64, runs: usize, json: &Path) -> Result<(), String> {
    // Taken at the start: the time is the run's start, the commit what was checked out then.
    let machine = crate::machine::describe();
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = scratch.path();
    let pristine = dir.join("pristine");
    let made = Command::new(ember)
        .args(["produce", "--log-lines", &pristine.display().to_string()])
        .args(["--limit", &lines.to_string(), "--lines-per-file", "100000"])
        .args(["--format", "json"])
        .output()
        .map_err(|e| e.to_string())?;
    let made: serde_json::Value = serde_json::from_slice(&made.stdout)
        .map_err(|e| format!("ember produce --log-lines: {e}"))?;
    let entries = made["entries"].as_u64().unwrap_or(0);
    let all_lines = made["lines"].as_u64().unwrap_or(0);
    let frames = all_lines - entries;
    let bytes: u64 = std::fs::read_dir(&pristine)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "{entries} log lines + {frames} stack frame lines, {bytes} bytes in {} files",
        made["files"]
    );
    let script = dir.join("duck.py");
    std::fs::write(&script, DUCKDB_SCRIPT).map_err(|e| e.to_string())?;
    let python = ember_testkit::util::python()?;
    let mut rounds = Vec::new();
    for round in 0..runs {
        let mut row = serde_json::Map::new();
        let out = dir.join("out");
        let _ = std::fs::remove_dir_all(&out);
        let mut c = Command::new(&python);
        c.arg(&script).arg(&pristine).arg(&out).arg("2");
        let (cost, said) = measure::run_capturing(c, &dir.join("duck.txt"))?;
        let counts: Vec<u64> = said
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if counts != [entries, frames, all_lines] {
            return Err(format!(
                "duckdb counted {counts:?}, expected {entries} {frames} {all_lines}"
            ));
        }
        row.insert("duckdb".into(), serde_json::json!(cost));
        for (peer, max_files) in [("ember_all_files", 1000), ("ember_1_file_per_batch", 1)] {
            let incoming = dir.join("incoming");
            copy_folder(&pristine, &incoming)?;
            let _ = std::fs::remove_dir_all(&out);
            let mut c = Command::new(ember);
            c.args(["run", "jobs/app_logs", "--format", "json"])
                .args(["--set", &format!("incoming={}", incoming.display())])
                .args(["--set", &format!("output={}", out.display())])
                .args(["--set", "trigger=available-now"])
                .args(["--set", &format!("max_files={max_files}")]);
            let (cost, said) = measure::run_capturing(c, &dir.join("ember.json"))?;
            let report: serde_json::Value =
                serde_json::from_str(&said).map_err(|e| format!("{peer}: {e}: {said}"))?;
            let written = report["rows_written"].as_u64().unwrap_or(0);
            let quarantined = report["quarantined"]["malformed_line"]
                .as_u64()
                .unwrap_or(0);
            if (written, quarantined) != (entries, frames) {
                return Err(format!(
                    "{peer}: {written} rows and {quarantined} quarantined, expected {entries} and {frames}"
                ));
            }
            row.insert(peer.into(), serde_json::json!(cost));
        }
        eprintln!("round {round}: {row:?}");
        rounds.push(serde_json::Value::Object(row));
    }
    println!("| peer | seconds (median) | lines/s | × DuckDB | peak RSS (MiB) |");
    println!("|---|---|---|---|---|");
    let median = |key: &str, what: &str| {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r[key][what].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    for peer in ["duckdb", "ember_all_files", "ember_1_file_per_batch"] {
        let s = median(peer, "seconds");
        #[allow(clippy::cast_precision_loss)]
        let rate = all_lines as f64 / s;
        println!(
            "| {peer} | {s:.2} | {rate:.0} | {:.2} | {:.0} |",
            s / median("duckdb", "seconds"),
            median(peer, "peak_rss_bytes") / 1_048_576.0
        );
    }
    let result = serde_json::json!({
        "benchmark": "logs", "log_lines": entries, "stack_frame_lines": frames, "bytes": bytes,
        "machine": machine, "rounds": rounds,
    });
    crate::write_results(json, &result)
}
