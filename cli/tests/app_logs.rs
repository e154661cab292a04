//! File collection end to end (`jobs/app_logs`, a `[source] kind = "files"` stream, as Flume's
//! spooling directory): log files dropped into a folder while `ember run` collects them, the
//! stream killed with SIGKILL at random moments and at each crash point of a batch; every line
//! ends up once in the output or the quarantine, and a file leaves the folder only after its
//! lines were committed. No Kafka: the folder is the source. Every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ember_streaming::engine::failpoint::CRASH_AT;
use ember_testkit::util::kill_9_after;
use rand::{Rng, SeedableRng};

const JOB: &str = "jobs/app_logs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn job_command(incoming: &Path, out: &Path, trigger: &str, max_files: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    c.args(["run", JOB, "--format", "json"])
        .args(["--set", &format!("incoming={}", incoming.display())])
        .args(["--set", &format!("output={}", out.display())])
        .args(["--set", &format!("trigger={trigger}")])
        .args(["--set", &format!("max_files={max_files}")])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove(CRASH_AT);
    c
}

/// The lines of log file `f`: `lines` log lines whose message is `line F-L`, and after every
/// seventh a stack frame line `\tat frame F-L` (quarantined as malformed_line); the ids of
/// both kinds are unique over the test.
fn log_file(f: usize, lines: usize) -> Vec<String> {
    let mut out = Vec::new();
    for l in 1..=lines {
        let sep = if l % 5 == 0 { ',' } else { '.' };
        out.push(format!(
            "2024-11-{:02} {:02}:{:02}:{:02}{sep}{:03} [{}] [Service{}] line {f}-{l}",
            10 + f % 3,
            l % 24,
            l % 60,
            (f + l) % 60,
            l % 1000,
            ["INFO", "WARN", "ERROR"][l % 3],
            f % 4
        ));
        if l % 7 == 0 {
            out.push(format!("\tat frame f{f}-{l}"));
        }
    }
    out
}

/// Writes file `f` as a producer should: under a hidden name, then renamed into the folder;
/// every fourth file gzipped.
fn drop_file(incoming: &Path, f: usize, lines: &[String]) -> String {
    let gz = f % 4 == 3;
    let name = format!("app_{f:02}.log{}", if gz { ".gz" } else { "" });
    let part = incoming.join(format!(".{name}.tmp"));
    let text = lines.join("\n") + "\n";
    if gz {
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&part).expect("create"),
            flate2::Compression::fast(),
        );
        encoder.write_all(text.as_bytes()).expect("gz");
        encoder.finish().expect("gz finish");
    } else {
        std::fs::write(&part, text).expect("write");
    }
    std::fs::rename(&part, incoming.join(&name)).expect("rename into the folder");
    name
}

/// The id (`F-L`) of an output message or quarantined value.
fn id_of(text: &str) -> String {
    text.rsplit(' ').next().unwrap_or_default().to_string()
}

/// One column of Parquet files, cast to `to`, as arrays.
fn read_column(
    files: &[PathBuf],
    name: &str,
    to: &datafusion::arrow::datatypes::DataType,
) -> Vec<datafusion::arrow::array::ArrayRef> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let mut out = Vec::new();
        for f in files {
            let df = ctx
                .read_parquet(f.display().to_string().as_str(), Default::default())
                .await
                .expect("parquet")
                .select_columns(&[name])
                .expect("column");
            for b in df.collect().await.expect("collect") {
                out.push(datafusion::arrow::compute::cast(b.column(0), to).expect("cast"));
            }
        }
        out
    })
}

/// One column of Parquet files, as text.
fn column(files: &[PathBuf], name: &str) -> Vec<String> {
    read_column(files, name, &datafusion::arrow::datatypes::DataType::Utf8)
        .iter()
        .flat_map(|c| {
            datafusion::arrow::array::AsArray::as_string::<i32>(c)
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What committed batches wrote, by id with how often each occurs: the output's messages in
/// the files its sink log lists (what readers see), and the quarantine's values of the batches
/// up to the newest commit mark (older marks are deleted as the checkpoint is trimmed).
fn committed(out: &Path) -> BTreeMap<String, usize> {
    let newest_mark: Option<u64> = std::fs::read_dir(out.join("_checkpoint/commits"))
        .ok()
        .and_then(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .max()
        });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let outputs: Vec<PathBuf> = rt.block_on(async {
        let store = object_store::local::LocalFileSystem::new();
        let base = object_store::path::Path::from_filesystem_path(out).expect("path");
        let mut files: Vec<PathBuf> = ember_core::table::sink_log::committed_files(&store, &base)
            .await
            .expect("sink log")
            .into_iter()
            .map(|p| PathBuf::from(format!("/{p}")))
            .collect();
        files.sort();
        files
    });
    let quarantine: Vec<PathBuf> = (0..newest_mark.map_or(0, |n| n + 1))
        .map(|id| out.join(format!("_quarantine/part-b{id:08}.parquet")))
        .filter(|q| q.exists())
        .collect();
    let mut seen = BTreeMap::new();
    for text in column(&outputs, "message")
        .iter()
        .chain(&column(&quarantine, "value"))
    {
        *seen.entry(id_of(text)).or_insert(0) += 1;
    }
    seen
}

/// The ids of the lines of the files renamed `.COMPLETED` in `incoming` (by the names the
/// test gave them).
fn completed_ids(incoming: &Path, files: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    files
        .iter()
        .filter(|(name, _)| incoming.join(format!("{name}.COMPLETED")).exists())
        .flat_map(|(_, lines)| lines.iter().map(|l| id_of(l)))
        .collect()
}

/// Checks that every line of every completed file is in a committed batch.
fn check_completed_are_committed(
    incoming: &Path,
    out: &Path,
    files: &BTreeMap<String, Vec<String>>,
    when: &str,
) {
    let committed = committed(out);
    let missing: Vec<String> = completed_ids(incoming, files)
        .into_iter()
        .filter(|id| !committed.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{when}: {} lines of renamed files are not committed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The issue's test: 20 log files dropped while the stream runs, 3 kill -9; every line once
/// in the output or the quarantine, every file renamed only after its lines were committed.
#[test]
fn files_dropped_while_the_stream_runs_survive_kill_9_with_every_line_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (incoming, out) = (tmp.path().join("incoming"), tmp.path().join("logs"));
    std::fs::create_dir_all(&incoming).expect("incoming");
    let files: BTreeMap<String, Vec<String>> = (0..20)
        .map(|f| {
            let lines = log_file(f, 150 + f * 10);
            let name = format!("app_{f:02}.log{}", if f % 4 == 3 { ".gz" } else { "" });
            (name, lines)
        })
        .collect();
    // The producer drops a file every 150 ms (3 s in all) while the stream runs and is
    // killed.
    let writer = {
        let (incoming, files) = (incoming.clone(), files.clone());
        std::thread::spawn(move || {
            for (f, (_, lines)) in files.iter().enumerate() {
                drop_file(&incoming, f, lines);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    for round in 0..3 {
        let after = Duration::from_millis(rng.random_range(700..1600));
        kills += usize::from(kill_9_after(
            &mut job_command(&incoming, &out, "200ms", 2),
            after,
        ));
        check_completed_are_committed(&incoming, &out, &files, &format!("after kill {round}"));
    }
    assert_eq!(kills, 3, "a run on a 200 ms trigger ended by itself");
    writer.join().expect("writer");
    let run = job_command(&incoming, &out, "available-now", 2)
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    check_completed_are_committed(&incoming, &out, &files, "at the end");
    // Every file read and renamed, nothing else left in the folder.
    let left: BTreeSet<String> = std::fs::read_dir(&incoming)
        .expect("incoming")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = files.keys().map(|n| format!("{n}.COMPLETED")).collect();
    assert_eq!(left, expected);
    // Every line exactly once, in the output (log lines) or the quarantine (stack frames).
    let seen = committed(&out);
    let all: Vec<String> = files.values().flatten().map(|l| id_of(l)).collect();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "lines written twice: {twice:?}");
    let missing: Vec<_> = all.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} lines missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), all.len());
    // The stack frames are the quarantine, with their file and line number.
    // A process killed while the object store wrote a file leaves its temporary name
    // (`<name>#<n>`) behind: only the `.parquet` files are the quarantine.
    let q: Vec<PathBuf> = std::fs::read_dir(out.join("_quarantine"))
        .expect("quarantine")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let reasons = column(&q, "reason");
    let frames = files
        .values()
        .flatten()
        .filter(|l| l.starts_with('\t'))
        .count();
    assert_eq!(reasons.len(), frames);
    assert!(reasons.iter().all(|r| r == "malformed_line"), "{reasons:?}");
    let (topics, offsets, values) = (
        column(&q, "topic"),
        column(&q, "offset"),
        column(&q, "value"),
    );
    for ((topic, offset), value) in topics.iter().zip(&offsets).zip(&values) {
        let lines = &files[topic];
        let n: usize = offset.parse().expect("line number");
        assert_eq!(&lines[n - 1], value, "{topic} line {n}");
    }
}

/// Runs the job to its end (available-now, one file per batch) with `--set` `settings`, or
/// until the crash point `crash_at` fires: whether it succeeded, and its stdout.
fn run_with_crash(
    incoming: &Path,
    out: &Path,
    crash_at: Option<&str>,
    settings: &[&str],
) -> (bool, String) {
    let mut c = job_command(incoming, out, "available-now", 1);
    for s in settings {
        c.args(["--set", s]);
    }
    if let Some(at) = crash_at {
        c.env(CRASH_AT, at);
    }
    let started = Instant::now();
    let run = c.output().expect("run");
    assert!(started.elapsed() < Duration::from_secs(120));
    (
        run.status.success(),
        String::from_utf8_lossy(&run.stdout).into_owned(),
    )
}

/// A Timestamp column of Parquet files as µs since the epoch.
fn micros(files: &[PathBuf], name: &str) -> Vec<i64> {
    use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
    read_column(
        files,
        name,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .iter()
    .flat_map(|c| {
        let c = datafusion::arrow::compute::cast(c, &DataType::Int64).expect("cast");
        datafusion::arrow::array::AsArray::as_primitive::<Int64Type>(&c)
            .iter()
            .map(Option::unwrap_or_default)
            .collect::<Vec<_>>()
    })
    .collect()
}

/// Checks that every row batch `id` wrote has `ingested_at` = the batch's planned processing
/// time (its plan's `now_ms`), and with `by_arrival` lies in the partition of that day.
fn check_batch_times(out: &Path, batches: u64, by_arrival: bool) {
    for id in 0..batches {
        let plan: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("_checkpoint/offsets/{id}"))).expect("plan"),
        )
        .expect("json");
        let now_ms = plan["now_ms"].as_i64().expect("now_ms");
        let entry: ember_core::table::sink_log::SinkLogEntry = serde_json::from_slice(
            &std::fs::read(out.join(format!("_ember_sink/{id:08}.json"))).expect("entry"),
        )
        .expect("entry");
        let files: Vec<PathBuf> = entry.files.iter().map(|f| out.join(f)).collect();
        let times = micros(&files, "ingested_at");
        assert!(!times.is_empty(), "batch {id} wrote no row");
        assert!(
            times.iter().all(|t| *t == now_ms * 1000),
            "batch {id}: ingested_at {:?} is not its planned time {now_ms} ms",
            &times[..3.min(times.len())]
        );
        if by_arrival {
            let day = chrono::DateTime::from_timestamp_millis(now_ms)
                .expect("time")
                .format("date=%Y-%m-%d/")
                .to_string();
            assert!(
                entry.files.iter().all(|f| f.starts_with(&day)),
                "batch {id}: {:?} not under {day}",
                entry.files
            );
        }
    }
}

/// Each crash point of a files batch, then a run that goes on: the plan is run again with its
/// files and its processing time, a batch committed before its renames has them finished
/// first, and nothing is read twice; with `after = "delete"` the files are deleted instead,
/// and the output is partitioned by arrival date (`date_of = now()`).
#[test]
fn every_crash_point_of_a_files_batch_gives_each_line_once() {
    for (after, crash_points, date_of) in [
        (
            "rename",
            vec!["offsets:0", "files:1", "state:2", "source:3"],
            "log_time",
        ),
        ("delete", vec!["source:0", "commit:2"], "now()"),
    ] {
        let settings = [format!("after={after}"), format!("date_of={date_of}")];
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let tmp = tempfile::tempdir().expect("tmp");
        let (incoming, out) = (tmp.path().join("incoming"), tmp.path().join("logs"));
        std::fs::create_dir_all(&incoming).expect("incoming");
        let mut files = BTreeMap::new();
        for f in 0..5 {
            let lines = log_file(f, 40);
            files.insert(drop_file(&incoming, f, &lines), lines);
        }
        for at in &crash_points {
            let (ok, _) = run_with_crash(&incoming, &out, Some(at), &settings);
            assert!(!ok, "{after}: the crash point {at} did not fire");
            check_completed_are_committed(&incoming, &out, &files, at);
            if *at == "source:0" || *at == "source:3" {
                let id: u64 = at[7..].parse().expect("id");
                let plan: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(out.join(format!("_checkpoint/offsets/{id}"))).expect("plan"),
                )
                .expect("json");
                let name = plan["files"][0]["name"].as_str().expect("planned file");
                assert!(
                    incoming.join(name).exists(),
                    "{after}/{at}: {name} left the folder before the crash point after its commit"
                );
            }
        }
        let (ok, report) = run_with_crash(&incoming, &out, None, &settings);
        assert!(ok, "{after}: {report}");
        check_batch_times(&out, 5, date_of == "now()");
        let left: Vec<String> = std::fs::read_dir(&incoming)
            .expect("incoming")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        match after {
            "rename" => assert_eq!(left.len(), 5, "{left:?}"),
            _ => assert!(left.is_empty(), "{left:?}"),
        }
        assert!(left.iter().all(|n| n.ends_with(".COMPLETED")), "{left:?}");
        let seen = committed(&out);
        let all: BTreeSet<String> = files.values().flatten().map(|l| id_of(l)).collect();
        assert_eq!(
            seen.keys().cloned().collect::<BTreeSet<_>>(),
            all,
            "{after}"
        );
        assert!(seen.values().all(|n| *n == 1), "{after}: a line twice");
        // The next run finds nothing to do.
        let (ok, report) = run_with_crash(&incoming, &out, None, &settings);
        assert!(ok);
        let report: serde_json::Value = serde_json::from_str(&report).expect("report");
        assert_eq!(report["batches"], 0, "{report}");
    }
}

/// A file that grows after its batch was planned fails the run in one line naming it (exit 3);
/// once the file is as it was planned, the next run reads it.
#[test]
fn a_file_still_being_written_fails_the_batch_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (incoming, out) = (tmp.path().join("incoming"), tmp.path().join("logs"));
    std::fs::create_dir_all(&incoming).expect("incoming");
    let lines = log_file(0, 30);
    let name = drop_file(&incoming, 0, &lines);
    let (ok, _) = run_with_crash(&incoming, &out, Some("offsets:0"), &[]);
    assert!(!ok);
    let original = std::fs::read(incoming.join(&name)).expect("file");
    let mut grown = original.clone();
    grown.extend_from_slice(b"2024-11-10 00:00:00.000 [INFO] [A] line 0-999\n");
    std::fs::write(incoming.join(&name), &grown).expect("grow");
    let run = job_command(&incoming, &out, "available-now", 1)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(&name) && last.contains("bytes when the batch was planned"),
        "{stderr}"
    );
    std::fs::write(incoming.join(&name), &original).expect("put back");
    let (ok, report) = run_with_crash(&incoming, &out, None, &[]);
    assert!(ok, "{report}");
    assert_eq!(committed(&out).len(), lines.len());
}

/// The folder on HDFS (Hadoop 2.7.3, files put with `hdfs dfs -put`, which writes
/// `._COPYING_` names first), the output and checkpoint on HDFS too: a crash after a batch's
/// commit, before its renames, then a run that finishes them; every line once, every file
/// renamed `.COMPLETED` on HDFS.
#[test]
fn a_folder_on_hdfs_is_collected_once_and_renamed_there() {
    let hdfs = ember_testkit::HdfsCluster::start().expect("HDFS");
    let tmp = tempfile::tempdir().expect("tmp");
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).expect("local");
    let mut files = BTreeMap::new();
    for f in 0..4 {
        let lines = log_file(f, 60);
        files.insert(drop_file(&local, f, &lines), lines);
    }
    hdfs.fs(&["-mkdir", "-p", "/logs/incoming"]).expect("mkdir");
    for name in files.keys() {
        hdfs.fs(&[
            "-put",
            &local.join(name).display().to_string(),
            "/logs/incoming/",
        ])
        .expect("put");
    }
    let incoming = format!("{}/logs/incoming", hdfs.url());
    let out = format!("{}/logs/collected", hdfs.url());
    let run = |crash: Option<&str>| {
        let mut c = job_command(Path::new(&incoming), Path::new(&out), "available-now", 2);
        if let Some(at) = crash {
            c.env(CRASH_AT, at);
        }
        c.output().expect("run")
    };
    assert!(!run(Some("source:0")).status.success());
    let listing = hdfs.fs(&["-ls", "/logs/incoming"]).expect("ls");
    assert!(
        !listing.contains(".COMPLETED"),
        "renamed before the crash point after the commit: {listing}"
    );
    let done = run(None);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let listing = hdfs.fs(&["-ls", "/logs/incoming"]).expect("ls");
    for name in files.keys() {
        assert!(
            listing.contains(&format!("/logs/incoming/{name}.COMPLETED")),
            "{name}: {listing}"
        );
    }
    // Read back from HDFS: every log line once in the output, every frame in the quarantine.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let messages = rt
        .block_on(ember_testkit::query::parquet_rows_with(
            &format!("{out}/"),
            &["date"],
            "SELECT message FROM t",
        ))
        .expect("output on HDFS");
    let quarantined = rt
        .block_on(ember_testkit::query::parquet_rows_with(
            &format!("{out}/_quarantine/"),
            &[],
            "SELECT value FROM t",
        ))
        .expect("quarantine on HDFS");
    let mut seen: Vec<String> = messages
        .iter()
        .chain(&quarantined)
        .map(|m| id_of(m))
        .collect();
    seen.sort();
    let mut all: Vec<String> = files.values().flatten().map(|l| id_of(l)).collect();
    all.sort();
    assert_eq!(seen, all);
}

/// A file big enough for a batch's parsing to be spread over the cores (15,000 log lines and
/// their stack frames): every output row's `line_number` is the line its message is on, every
/// quarantined line's offset points back to it, so the records kept their origin and order.
#[test]
fn a_big_file_parsed_on_every_core_keeps_each_line_with_its_number() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (incoming, out) = (tmp.path().join("incoming"), tmp.path().join("logs"));
    std::fs::create_dir_all(&incoming).expect("incoming");
    let lines = log_file(0, 15_000);
    let name = drop_file(&incoming, 0, &lines);
    let (ok, report) = run_with_crash(&incoming, &out, None, &[]);
    assert!(ok, "{report}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rows = rt
        .block_on(ember_testkit::query::parquet_rows_with(
            &format!("{}/", out.display()),
            &["date"],
            "SELECT line_number, message FROM t",
        ))
        .expect("output");
    assert_eq!(rows.len(), 15_000);
    for row in &rows {
        let (number, message) = row.split_once('|').expect("two columns");
        let n: usize = number.parse().expect("line number");
        assert!(lines[n - 1].ends_with(message), "line {n}: {message}");
    }
    let quarantined = rt
        .block_on(ember_testkit::query::parquet_rows_with(
            &format!("{}/_quarantine/", out.display()),
            &[],
            "SELECT topic, \"offset\", value FROM t",
        ))
        .expect("quarantine");
    assert_eq!(quarantined.len(), lines.len() - 15_000);
    for row in &quarantined {
        let mut parts = row.splitn(3, '|');
        let (topic, offset, value) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let n: usize = offset.parse().expect("offset");
        assert_eq!((topic, lines[n - 1].as_str()), (name.as_str(), value));
    }
}

/// A job of the team's own: JSON lines in a folder, read by their declared schema (bad lines
/// quarantined by its rules), and one clear line when the folder does not exist.
#[test]
fn json_lines_are_read_by_the_declared_schema_and_a_missing_folder_is_one_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (incoming, out, job) = (
        tmp.path().join("orders"),
        tmp.path().join("out"),
        tmp.path().join("job"),
    );
    std::fs::create_dir_all(&incoming).expect("incoming");
    std::fs::create_dir_all(&job).expect("job");
    std::fs::write(
        job.join("job.toml"),
        r#"
[job]
name = "orders_from_files"

[params]
incoming = "orders"
output = "out"

[source]
kind = "files"
path = "${incoming}"
after = "delete"

[source.schema]
format = "json"
event_time = "ts"
fields = [
  { name = "ts", type = "timestamp" },
  { name = "product_id", type = "string", required = true },
  { name = "quantity", type = "int", required = true, min = 1 },
]

[stream]
trigger = "available-now"

[output]
path = "${output}"
sql = "orders.sql"
"#,
    )
    .expect("manifest");
    std::fs::write(
        job.join("orders.sql"),
        "SELECT product_id, sum(quantity) AS units, count(*) AS lines FROM events GROUP BY product_id",
    )
    .expect("sql");
    let text = [
        r#"{"ts": "2024-11-10T10:00:00Z", "product_id": "A", "quantity": 2}"#,
        r#"{"ts": "2024-11-10T10:01:00Z", "product_id": "B", "quantity": 1, "extra": true}"#,
        r#"{"ts": "2024-11-10T10:02:00Z", "product_id": "A", "quantity": 0}"#,
        r#"{"ts": "2024-11-10T10:03:00Z", "quantity": 5}"#,
        r#"{"ts": "2024-11-10T10:04:00Z", "product_id": "A", "quantity": 3"#,
        r#"{"ts": "2024-11-10T10:05:00Z", "product_id": "A", "quantity": "4"}"#,
    ]
    .join("\r\n");
    std::fs::write(incoming.join("orders-1.json"), text).expect("file");
    let run = |incoming: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(["run", &job.display().to_string(), "--format", "json"])
            .args(["--set", &format!("incoming={}", incoming.display())])
            .args(["--set", &format!("output={}", out.display())])
            .env_remove("RUST_LOG")
            .output()
            .expect("run")
    };
    let done = run(&incoming);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("report");
    assert_eq!(
        (
            &report["records"],
            &report["events"],
            &report["quarantined"]
        ),
        (
            &serde_json::json!(6),
            &serde_json::json!(3),
            &serde_json::json!({"bad_quantity": 1, "missing_product_id": 1, "not_json": 1})
        ),
        "{report}"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = rt
        .block_on(ember_testkit::query::parquet_rows_with(
            &format!("{}/", out.display()),
            &[],
            "SELECT product_id, units, lines FROM t",
        ))
        .expect("output");
    rows.sort();
    assert_eq!(rows, ["A|6|2", "B|1|1"]);
    assert!(
        std::fs::read_dir(&incoming)
            .expect("folder")
            .next()
            .is_none(),
        "after = delete"
    );
    let missing = run(&tmp.path().join("no-such-folder"));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(3), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("no-such-folder") && last.contains("no such folder"),
        "{stderr}"
    );
}
