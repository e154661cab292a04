//! Streaming end to end against a real Kafka-protocol broker (tansu on 127.0.0.1): the
//! `ember run` process reads micro-batches, emits windows once the watermark passes them,
//! quarantines malformed and late events, and survives kill -9 with exactly-once output.
//! Every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ember_streaming::engine::StreamReport;
use ember_streaming::engine::failpoint::CRASH_AT;
use ember_testkit::ember::{ClusterOptions, EmberCluster, EmberServe};
use ember_testkit::kafka::KafkaBroker;
use ember_testkit::query::{delta_rows, parquet_rows_with};
use ember_testkit::util::kill_9_after;
use rand::{Rng, SeedableRng};

mod common;
use common::{produce, stop_with_sigterm, wait_until};

const JOB: &str = "jobs/hourly_product_revenue";
const MIN_US: i64 = 60_000_000;
/// 2011-12-09T00:00:00Z in µs.
const DAY_US: i64 = 1_323_388_800_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

fn stream_command(broker: &KafkaBroker, topic: &str, out: &Path, max_records: u64) -> Command {
    stream_command_with(&["run"], broker, topic, out, max_records)
}

/// `ember <command…> JOB` with the test settings; `command` is `["run"]` or
/// `["submit", "--scheduler", ADDRESS]`.
fn stream_command_with(
    command: &[&str],
    broker: &KafkaBroker,
    topic: &str,
    out: &Path,
    max_records: u64,
) -> Command {
    let mut c = Command::new(bin());
    c.args(command)
        .args([JOB, "--format", "json"])
        .args(["--set", &format!("brokers={}", broker.brokers())])
        .args(["--set", &format!("topic={topic}")])
        .args(["--set", &format!("output={}", out.display())])
        .args(["--set", "trigger=available-now"])
        .args(["--set", "lateness=10m"])
        .args(["--set", "idle_timeout=1h"])
        .args(["--set", &format!("max_records={max_records}")])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove(CRASH_AT);
    c
}

fn run_to_end(mut cmd: Command) -> StreamReport {
    let out: Output = cmd.output().expect("run ember");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| panic!("report: {}", String::from_utf8_lossy(&out.stdout)))
}

fn event(minute: i64, product: &str, kind: &str, quantity: i64, price: &str) -> String {
    let t = chrono::DateTime::from_timestamp_micros(DAY_US + minute * MIN_US).expect("time");
    serde_json::json!({
        "event_time": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "store_id": "S1",
        "product_id": product,
        "transaction_type": kind,
        "quantity": quantity,
        "unit_price": price,
    })
    .to_string()
}

/// Output rows `window_start|product_id|units_sold|units_returned|gross|returns|net|events`.
/// The windows' columns, as text, in the tests' row format.
const WINDOW_COLUMNS: &str = "SELECT CAST(window_start AS VARCHAR), product_id, units_sold, \
     units_returned, CAST(gross_revenue AS VARCHAR), CAST(returns_value AS VARCHAR), \
     CAST(net_revenue AS VARCHAR), events FROM t";

fn output_rows(out: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(parquet_rows_with(
        &format!("{}/", out.display()),
        &["window_date", "window_hour"],
        WINDOW_COLUMNS,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The windows of a stream's Delta output at its latest version, read through its log.
fn delta_output_rows(out: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(delta_rows(
        &format!("{}/", out.display()),
        None,
        WINDOW_COLUMNS,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The windows of the output at `out` written with `format` (`parquet` or `delta`).
fn rows_of_format(out: &Path, format: &str) -> Vec<String> {
    if format == "delta" {
        delta_output_rows(out)
    } else {
        output_rows(out)
    }
}

fn quarantine_rows(out: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(parquet_rows_with(
        &format!("{}/_quarantine/", out.display()),
        &[],
        "SELECT reason, partition, \"offset\" FROM t",
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The windows a batch query computes over `events` (minute, product, kind, quantity, price
/// in cents): 1-hour windows every 15 minutes, only those ending at or before `watermark_min`.
fn expected_windows(events: &[(i64, &str, &str, i64, i64)], watermark_min: i64) -> Vec<String> {
    #[derive(Default)]
    struct Agg {
        sold: i64,
        returned: i64,
        gross: i64,
        returns: i64,
        events: i64,
    }
    let mut windows: BTreeMap<(i64, String), Agg> = BTreeMap::new();
    for &(minute, product, kind, q, cents) in events {
        let last = minute.div_euclid(15) * 15;
        for start in (last - 45..=last).step_by(15) {
            let a = windows.entry((start, product.to_string())).or_default();
            a.events += 1;
            if kind == "SALE" {
                a.sold += q;
                a.gross += q * cents;
            } else {
                a.returned += q;
                a.returns += q * cents;
            }
        }
    }
    let money = |cents: i64| {
        let sign = if cents < 0 { "-" } else { "" };
        format!("{sign}{}.{:02}00", cents.abs() / 100, cents.abs() % 100)
    };
    let mut rows: Vec<String> = windows
        .into_iter()
        .filter(|((start, _), _)| start + 60 <= watermark_min)
        .map(|((start, product), a)| {
            let t = chrono::DateTime::from_timestamp_micros(DAY_US + start * MIN_US)
                .expect("time")
                .format("%Y-%m-%dT%H:%M:%S");
            format!(
                "{t}|{product}|{}|{}|{}|{}|{}|{}",
                a.sold,
                a.returned,
                money(a.gross),
                money(a.returns),
                money(a.gross - a.returns),
                a.events
            )
        })
        .collect();
    rows.sort();
    rows
}

/// An event: minute after 2011-12-09T00:00Z, product, type, quantity, price in cents.
type Known = (i64, &'static str, &'static str, i64, i64);

/// The known event set of two partitions, and the messages to produce (with 3 malformed ones
/// at offsets 6, 7 and 8 of partition 0). Read 2 messages per partition per batch
/// (max_records = 4), the event at minute 540 is late and the one at 725 out of order.
fn known_events() -> (Vec<Known>, Vec<Known>, Vec<(i32, String)>) {
    let p0: Vec<(i64, &str, &str, i64, i64)> = vec![
        (600, "A", "SALE", 2, 150),
        (620, "B", "SALE", 1, 1000),
        (640, "A", "RETURN", 1, 150),
        (660, "A", "SALE", 3, 150),
        (540, "A", "SALE", 5, 150), // 09:00 in batch 2, when the watermark is 10:50 → late
        (700, "B", "SALE", 4, 1000),
        (730, "A", "SALE", 1, 150),
        (725, "B", "SALE", 2, 1000), // out of order but within the lateness → counted
        (760, "A", "SALE", 1, 150),
    ];
    let p1: Vec<(i64, &str, &str, i64, i64)> = vec![
        (605, "C", "SALE", 1, 999),
        (650, "C", "SALE", 2, 999),
        (690, "A", "SALE", 1, 150),
        (710, "C", "RETURN", 1, 999),
        (745, "C", "SALE", 1, 999),
        (770, "B", "SALE", 1, 1000),
    ];
    let price = |cents: i64| format!("{}.{:02}", cents / 100, cents % 100);
    let mut messages: Vec<(i32, String)> = Vec::new();
    for (i, &(m, prod, kind, q, c)) in p0.iter().enumerate() {
        messages.push((0, event(m, prod, kind, q, &price(c))));
        if i == 5 {
            // Malformed messages in between (offsets 6, 7 and 8 of partition 0).
            messages.push((0, "{not json".into()));
            messages.push((0, event(705, "A", "SALE", 0, "1.00"))); // zero quantity
            messages.push((0, event(706, "", "SALE", 1, "1.00"))); // no product
        }
    }
    for &(m, prod, kind, q, c) in &p1 {
        messages.push((1, event(m, prod, kind, q, &price(c))));
    }
    (p0, p1, messages)
}

/// Checks a run of [`known_events`] on a fresh output: counts, watermark, windows, quarantine.
fn check_known_run(report: &StreamReport, p0: &[Known], p1: &[Known], out: &Path) {
    assert_eq!(report.counts.records, 18, "{report:?}");
    assert_eq!(
        report.counts.quarantined.get("late"),
        Some(&1),
        "{report:?}"
    );
    assert_eq!(
        report.counts.quarantined.values().sum::<u64>(),
        4,
        "1 late + 3 malformed: {report:?}"
    );
    assert_eq!(report.counts.events, 14, "{report:?}");

    // The watermark: the smaller of the partitions' highest event times, minus 10 minutes.
    let high = |events: &[Known]| events.iter().map(|e| e.0).max();
    let watermark_min = high(p0).min(high(p1)).expect("events") - 10;
    assert_eq!(watermark_min, 750);
    let expected_wm = chrono::DateTime::from_timestamp_micros(DAY_US + watermark_min * MIN_US)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    assert_eq!(report.watermark.as_deref(), Some(expected_wm.as_str()));

    let not_late: Vec<_> = p0
        .iter()
        .chain(p1)
        .filter(|e| e.0 != 540)
        .copied()
        .collect();
    let expected = expected_windows(&not_late, watermark_min);
    assert!(expected.len() > 10, "{expected:?}");
    assert_eq!(output_rows(out), expected);
    assert_eq!(report.counts.rows_written, expected.len() as u64);

    let mut quarantine = quarantine_rows(out);
    quarantine.sort();
    assert_eq!(
        quarantine,
        [
            "bad_quantity|0|7",
            "late|0|4",
            "missing_product_id|0|8",
            "not_json|0|6"
        ]
    );
}

#[test]
fn windows_equal_a_batch_query_minus_late_events_and_the_quarantine_holds_the_rest() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let (p0, p1, messages) = known_events();
    produce(&broker, "sales", 2, &messages);

    let report = run_to_end(stream_command(&broker, "sales", &out, 4));
    check_known_run(&report, &p0, &p1, &out);

    // A second run finds nothing new: same output, no new batch.
    let expected = output_rows(&out);
    let again = run_to_end(stream_command(&broker, "sales", &out, 4));
    assert_eq!((again.batches, again.counts.records), (0, 0), "{again:?}");
    assert_eq!(output_rows(&out), expected);
}

#[test]
fn a_submitted_stream_reads_kafka_on_the_executors_and_writes_what_embedded_mode_writes() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (p0, p1, messages) = known_events();
    produce(&broker, "sales", 2, &messages);
    // One slot per executor: a batch's two range tasks run on both executors.
    let options = ClusterOptions {
        task_slots: 1,
        ..ClusterOptions::default()
    };
    let cluster = EmberCluster::start(bin(), 2, &options).expect("cluster");
    let out = tmp.path().join("cluster");
    let submit = ["submit", "--scheduler", cluster.address()];
    let report = run_to_end(stream_command_with(&submit, &broker, "sales", &out, 4));
    check_known_run(&report, &p0, &p1, &out);

    // The same job embedded writes the same windows and the same quarantine.
    let embedded = tmp.path().join("embedded");
    let local = run_to_end(stream_command(&broker, "sales", &embedded, 4));
    assert_eq!(
        (
            local.batches,
            local.counts.records,
            local.counts.events,
            &local.counts.quarantined
        ),
        (
            report.batches,
            report.counts.records,
            report.counts.events,
            &report.counts.quarantined
        )
    );
    assert_eq!(output_rows(&embedded), output_rows(&out));

    // Every message was read by a scan task on an executor, and both executors took tasks.
    let scanned: Vec<Vec<i64>> = (0..2)
        .map(|i| {
            let log = std::fs::read_to_string(cluster.executor_log(i)).unwrap_or_default();
            log.lines()
                .filter(|l| l.contains("kafka scan task"))
                .filter_map(|l| {
                    let messages = l.split("messages=").nth(1)?;
                    messages.split_whitespace().next()?.parse().ok()
                })
                .collect()
        })
        .collect();
    let per_executor: Vec<i64> = scanned.iter().map(|m| m.iter().sum()).collect();
    assert_eq!(
        per_executor.iter().sum::<i64>(),
        report.counts.records,
        "{scanned:?}\n{}",
        cluster.logs()
    );
    assert!(
        per_executor.iter().all(|&n| n > 0),
        "both executors scan: {scanned:?}\n{}",
        cluster.logs()
    );
}

/// The sink log entries of `out` (compactions left out): batch id → data files.
fn sink_log(out: &Path) -> BTreeMap<u64, Vec<String>> {
    let dir = out.join(ember_core::table::sink_log::SINK_LOG);
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| !p.to_string_lossy().ends_with(".compact.json"))
                .filter_map(|p| std::fs::read(p).ok())
                .filter_map(|b| {
                    serde_json::from_slice::<ember_core::table::sink_log::SinkLogEntry>(&b).ok()
                })
                .map(|e| (e.batch_id, e.files))
                .collect()
        })
        .unwrap_or_default()
}

/// Rows in the Parquet files `files` (relative to `out`).
fn rows_in(out: &Path, files: &[&String]) -> usize {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let mut n = 0;
        for f in files {
            let path = out.join(f).display().to_string();
            n += ctx
                .read_parquet(path.as_str(), Default::default())
                .await
                .expect("parquet")
                .count()
                .await
                .expect("count");
        }
        n
    })
}

fn served_count(address: &str) -> usize {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rows = rt
        .block_on(async {
            let mut c = ember_testkit::flight_sql::connect(address).await?;
            ember_testkit::flight_sql::query(&mut c, "SELECT COUNT(*) FROM windows").await
        })
        .unwrap_or_else(|e| panic!("{e}"));
    rows[0].parse().expect("count")
}

#[test]
fn flight_sql_serves_a_batch_once_the_sink_log_commits_it() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, _, messages) = known_events();
    produce(&broker, "sales", 2, &messages);
    // A clean run shows which batches write windows.
    let reference = tmp.path().join("reference");
    run_to_end(stream_command(&broker, "sales", &reference, 4));
    let log = sink_log(&reference);
    let k = *log
        .iter()
        .find(|(id, files)| {
            **id > 0 && !files.is_empty() && log.range(..**id).any(|(_, f)| !f.is_empty())
        })
        .expect("a later batch with windows")
        .0;
    // The same stream, aborted after batch k wrote its files and before its log entry.
    let out = tmp.path().join("out");
    let mut crash = stream_command(&broker, "sales", &out, 4);
    crash.env(CRASH_AT, format!("files:{k}"));
    let status = crash.output().expect("run").status;
    assert!(!status.success(), "the run was to abort at batch {k}");
    assert!(
        sink_log(&out).keys().all(|id| *id < k),
        "{:?}",
        sink_log(&out)
    );
    let on_disk = output_rows(&out).len();
    let committed: Vec<&String> = log.range(..k).flat_map(|(_, f)| f).collect();
    let want = rows_in(&reference, &committed);
    let table = format!("windows={}", out.display());
    let server = EmberServe::start(
        bin(),
        &repo(),
        &[
            "--jobs",
            "/nonexistent",
            "--parallelism",
            "2",
            "--table",
            &table,
        ],
        &tmp.path().join("serve.log"),
    )
    .expect("ember serve");
    let before = served_count(server.address());
    // The folders hold batch k's windows already; the table does not show them.
    assert_eq!(
        before,
        want,
        "{}",
        std::fs::read_to_string(tmp.path().join("serve.log")).unwrap_or_default()
    );
    assert!(before < on_disk, "{before} < {on_disk}");
    // The restart runs batch k again and commits it: the same table now shows everything. It
    // reports its batches to `ember serve`'s Streaming page.
    let mut restart = stream_command(&broker, "sales", &out, 4);
    restart.args(["--report-to", server.http_address()]);
    let report = run_to_end(restart);
    let after = served_count(server.address());
    let streams: Vec<ember_core::api::StreamDetail> =
        ember_testkit::ember::http_get(server.http_address(), "/api/v1/streams")
            .ok()
            .and_then(|b| serde_json::from_str::<Vec<ember_core::api::StreamSummary>>(&b).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                let body = ember_testkit::ember::http_get(
                    server.http_address(),
                    &format!("/api/v1/streams/{}", s.id),
                )
                .ok()?;
                serde_json::from_str(&body).ok()
            })
            .collect();
    drop(server);
    assert_eq!(streams.len(), 1, "one stream reported");
    let reported = &streams[0];
    assert_eq!(
        reported.summary.state,
        ember_core::api::StreamState::Stopped
    );
    assert_eq!(reported.summary.batches, report.batches);
    assert_eq!(
        reported
            .recent
            .iter()
            .map(|p| p.counts.records)
            .sum::<i64>(),
        report.counts.records
    );
    assert_eq!(after, output_rows(&reference).len());
    assert_eq!(output_rows(&out), output_rows(&reference));
}

#[test]
fn kill_9_at_random_points_gives_no_duplicate_and_no_missing_window() {
    kill_9_at_random_points("parquet");
}

/// The same with `format = "delta"`: each micro-batch is one Delta commit carrying the
/// stream's `txn`, so a replay after a crash between the commit and the commit mark adds
/// nothing; the table's log, not the folder, says what is in it.
#[test]
fn a_delta_stream_output_survives_kill_9_with_every_window_once() {
    let (_tmp, out) = kill_9_at_random_points("delta");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (version, files) = rt
        .block_on(ember_testkit::query::delta_log_files(&format!(
            "{}/",
            out.display()
        )))
        .unwrap_or_else(|e| panic!("{e}"));
    let on_disk = walk_parquet(&out);
    assert!(version > 0, "one commit per micro-batch with windows");
    assert!(
        files.len() <= on_disk,
        "the log references {} of {on_disk} files",
        files.len()
    );
}

/// Data files under `dir` (not under `_` folders): what a folder reader would read.
fn walk_parquet(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk_parquet(&p)
                    } else {
                        usize::from(p.extension().is_some_and(|x| x == "parquet"))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the crash scenario with the output in `format`; returns the crashed output's folder
/// (and the temporary folder holding it).
fn kill_9_at_random_points(format: &str) -> (tempfile::TempDir, PathBuf) {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let with_format = |mut c: Command| {
        c.args(["--set", &format!("format={format}")]);
        c
    };
    // 3000 synthetic events over ~50 minutes of event time, on 3 partitions.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let messages: Vec<(i32, String)> = (0..3000)
        .map(|i: i64| {
            let minute = i / 60;
            let cents = rng.random_range(1..5000);
            (
                i32::try_from(i % 3).expect("partition"),
                event(
                    minute,
                    &format!("P{}", rng.random_range(0..20)),
                    if rng.random_bool(0.1) {
                        "RETURN"
                    } else {
                        "SALE"
                    },
                    rng.random_range(1..5),
                    &format!("{}.{:02}", cents / 100, cents % 100),
                ),
            )
        })
        .collect();
    produce(&broker, "crash", 3, &messages);

    // Reference: one run without crashes.
    let reference_out = tmp.path().join("reference");
    let reference = run_to_end(with_format(stream_command(
        &broker,
        "crash",
        &reference_out,
        150,
    )));
    assert_eq!(reference.counts.records, 3000);
    let expected = rows_of_format(&reference_out, format);
    assert!(!expected.is_empty());

    // 1. Abort at each phase of a batch: after its plan, its files, its output commit, its
    // state; each run resumes the one before.
    let out = tmp.path().join("crashed");
    for (batch, phase) in [(1, "offsets"), (3, "files"), (5, "commit"), (7, "state")] {
        let mut run = with_format(stream_command(&broker, "crash", &out, 50));
        run.env(CRASH_AT, format!("{phase}:{batch}"));
        let status = run
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run");
        assert!(
            !status.success(),
            "the crash point {phase}:{batch} should abort the process"
        );
        assert!(
            out.join(format!("_checkpoint/offsets/{batch}")).exists(),
            "batch {batch} was planned"
        );
        assert!(
            !out.join(format!("_checkpoint/commits/{batch}")).exists(),
            "and not committed ({phase})"
        );
    }

    // 2. kill -9 at random moments, several times.
    let mut kills = 0;
    for _ in 0..8 {
        let after = Duration::from_millis(rng.random_range(100..1000));
        kills += usize::from(kill_9_after(
            &mut with_format(stream_command(&broker, "crash", &out, 50)),
            after,
        ));
    }
    assert!(
        kills >= 4,
        "only {kills} of 8 runs were still running when killed"
    );
    // 3. A run to the end.
    let last = run_to_end(with_format(stream_command(&broker, "crash", &out, 50)));
    eprintln!("{kills} kills; the last run: {last:?}");
    let rows = rows_of_format(&out, format);
    let keys: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| r.split('|').take(2).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(keys.len(), rows.len(), "a window was written twice");
    assert_eq!(
        rows, expected,
        "output after {kills} kills differs from the run without crashes ({last:?})"
    );
    (tmp, out)
}

#[test]
fn output_and_checkpoint_on_hdfs() {
    let hdfs = ember_testkit::HdfsCluster::start().expect("HDFS");
    let broker = KafkaBroker::start().expect("broker");
    let messages: Vec<(i32, String)> = (0..400_i64)
        .map(|i| {
            (
                i32::try_from(i % 2).expect("partition"),
                event(i / 2, &format!("P{}", i % 7), "SALE", 1 + i % 3, "2.50"),
            )
        })
        .collect();
    produce(&broker, "to_hdfs", 2, &messages);
    let tmp = tempfile::tempdir().expect("tempdir");
    let local = tmp.path().join("local");
    let reference = run_to_end(stream_command(&broker, "to_hdfs", &local, 60));

    // The same stream with its output and checkpoint on HDFS, stopped after batch 2 wrote
    // its output and resumed.
    let url = format!("{}/streams/hourly", hdfs.url());
    let on_hdfs = |crash: bool| {
        let mut c = stream_command(&broker, "to_hdfs", Path::new(&url), 60);
        if crash {
            c.env(CRASH_AT, "files:2")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        c
    };
    let crashed = on_hdfs(true).status().expect("run");
    assert!(!crashed.success());
    let report = run_to_end(on_hdfs(false));
    assert_eq!(report.replayed, 1, "{report:?}");
    assert!(report.checkpoint.starts_with("hdfs://"), "{report:?}");
    let listing = hdfs
        .fs(&["-ls", "-R", "/streams/hourly/_checkpoint"])
        .expect("ls");
    assert!(
        listing.contains("/commits/") && listing.contains("/state/"),
        "{listing}"
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rows = rt
        .block_on(parquet_rows_with(
            &format!("{url}/"),
            &["window_date", "window_hour"],
            "SELECT CAST(window_start AS VARCHAR), product_id, units_sold, units_returned, \
             CAST(gross_revenue AS VARCHAR), CAST(returns_value AS VARCHAR), \
             CAST(net_revenue AS VARCHAR), events FROM t",
        ))
        .expect("read back from HDFS");
    assert!(!rows.is_empty());
    assert_eq!(rows, output_rows(&local), "{reference:?}");
}

#[test]
fn stream_job_errors_are_one_clear_line() {
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .current_dir(repo())
            .env_remove("RUST_LOG")
            .output()
            .expect("run ember");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // A stream submitted to a scheduler that is not there says so, in one line.
    let (code, err) = run(&["submit", JOB, "--scheduler", "127.0.0.1:1"]);
    assert_eq!(
        code,
        Some(3),
        "an unreachable scheduler is an external failure: {err}"
    );
    assert!(
        err.contains("cannot connect to the scheduler at df://127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // An unknown key names its line.
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(repo().join(JOB).join("job.toml"))
        .expect("manifest")
        .replace(
            "idle_timeout = \"${idle_timeout}\"",
            "idle_timeout = \"${idle_timeout}\"\nwatermark = \"5m\"",
        );
    std::fs::write(tmp.path().join("job.toml"), &text).expect("write");
    std::fs::copy(
        repo().join(JOB).join("windows.sql"),
        tmp.path().join("windows.sql"),
    )
    .expect("copy");
    let line = text
        .lines()
        .position(|l| l.starts_with("watermark"))
        .expect("line")
        + 1;
    let (code, err) = run(&["run", &tmp.path().display().to_string()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("job.toml:{line}:")) && err.contains("unknown field `watermark`"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A query without a window.
    std::fs::write(
        tmp.path().join("job.toml"),
        text.replace("\nwatermark = \"5m\"", ""),
    )
    .expect("write");
    std::fs::write(
        tmp.path().join("windows.sql"),
        "SELECT event_time AS window_start, event_time AS window_end, product_id, 'd' AS window_date, 'h' AS window_hour FROM events",
    )
    .expect("write");
    let (code, err) = run(&[
        "run",
        &tmp.path().display().to_string(),
        "--set",
        "output=/tmp/none",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("windows.sql") && err.contains("has no window"),
        "{err}"
    );
}

/// Two drivers on one checkpoint: the second is refused at once with one line naming the
/// driver that holds it (exit 3, an external condition); once the first is killed -9, a new
/// driver takes over (its process is gone from this host) and finishes the stream.
#[test]
fn a_second_driver_on_one_checkpoint_is_refused_and_takes_over_after_kill_9() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, _, messages) = known_events();
    produce(&broker, "sales", 2, &messages);
    let out = tmp.path().join("out");
    // The first driver runs on a 1 s trigger until it is killed.
    let mut first = stream_command(&broker, "sales", &out, 4);
    first.args(["--set", "trigger=1s", "--set", "format=delta"]);
    let mut first = first
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let lock = out.join("_checkpoint").join("_ember_lock");
    let waited = ember_testkit::util::wait_for(
        "the first driver's lease",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || Ok(lock.exists().then_some(())),
    );
    let second = stream_command(&broker, "sales", &out, 4)
        .args(["--set", "format=delta"])
        .output()
        .expect("run");
    let _ = first.kill();
    let _ = first.wait();
    waited.unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(
        err.contains("is in use by stream driver") && err.contains("hourly_product_revenue"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The killed driver's lease is stale: a new driver finishes the stream.
    let mut last = stream_command(&broker, "sales", &out, 4);
    last.args(["--set", "format=delta"]);
    run_to_end(last);
    let reference = tmp.path().join("reference");
    let mut clean = stream_command(&broker, "sales", &reference, 4);
    clean.args(["--set", "format=delta"]);
    run_to_end(clean);
    let expected = delta_output_rows(&reference);
    assert!(!expected.is_empty());
    assert_eq!(delta_output_rows(&out), expected);
}

/// A team's own events, declared in `[source.schema]` with other types and rules than the
/// shipped job's: a store id that is a number ≥ 1, a category from a list, a day-first event
/// time, a price with 2 decimals.
const STORE_EVENTS_JOB: &str = r#"
[job]
name = "store_events"

[params]
brokers = "localhost:9092"
topic = "store_events"
output = "out"

[source]
brokers = "${brokers}"
topic = "${topic}"

[source.schema]
event_time = "event_time"
fields = [
  { name = "event_time", type = "timestamp", formats = ["%d/%m/%Y %H:%M:%S"] },
  { name = "store_id", type = "int", required = true, min = 1 },
  { name = "product_id", type = "string" },
  { name = "category", type = "string", required = true, values = ["food", "home", "garden"] },
  { name = "transaction_type", type = "string" },
  { name = "quantity", type = "int", required = true, min = 1 },
  { name = "unit_price", type = "decimal(10,2)", required = true, min = 0 },
]

[stream]
trigger = "available-now"
allowed_lateness = "0s"
idle_timeout = "1h"

[output]
path = "${output}"
partition_by = ["window_date"]
sql = "by_category.sql"
"#;

/// Revenue per category in 10-minute tumbling windows.
const STORE_EVENTS_SQL: &str = "
SELECT window_start, window_start + INTERVAL '10 minutes' AS window_end, category,
       SUM(CAST(quantity AS DECIMAL(18, 0)) * unit_price) AS revenue, COUNT(*) AS events,
       to_char(window_start, '%Y-%m-%d') AS window_date
FROM (SELECT tumble(event_time, '10 minutes') AS window_start, * FROM events)
GROUP BY window_start, category";

/// The windows of a [`STORE_EVENTS_SQL`] output, sorted: `start|category|revenue|events`.
fn category_rows(out: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(parquet_rows_with(
        &format!("{}/", out.display()),
        &["window_date"],
        "SELECT CAST(window_start AS VARCHAR), category, CAST(revenue AS VARCHAR), events FROM t",
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Writes a job folder `dir` with `manifest` and its SQL file `sql_file` holding `sql`.
fn write_job(dir: &Path, manifest: &str, sql_file: &str, sql: &str) {
    std::fs::create_dir(dir).expect("job folder");
    std::fs::write(dir.join("job.toml"), manifest).expect("manifest");
    std::fs::write(dir.join(sql_file), sql).expect("sql");
}

/// Runs the job folder `job` to the end against `broker`, reading `topic`, writing `out`.
fn run_job(job: &Path, broker: &KafkaBroker, topic: &str, out: &Path) -> StreamReport {
    run_to_end(job_command(job, broker, topic, out, &[]))
}

/// `ember run JOB --format json` against `broker`, reading `topic`, writing `out`, with more
/// `--set NAME=VALUE` `settings`.
fn job_command(
    job: &Path,
    broker: &KafkaBroker,
    topic: &str,
    out: &Path,
    settings: &[&str],
) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", &job.display().to_string(), "--format", "json"])
        .args(["--set", &format!("brokers={}", broker.brokers())])
        .args(["--set", &format!("topic={topic}")])
        .args(["--set", &format!("output={}", out.display())])
        .env_remove("RUST_LOG")
        .env_remove(CRASH_AT);
    for s in settings {
        c.args(["--set", s]);
    }
    c
}

#[test]
fn a_declared_event_schema_windows_by_category_and_quarantines_by_its_own_rules() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("store_events");
    write_job(&job, STORE_EVENTS_JOB, "by_category.sql", STORE_EVENTS_SQL);
    let out = tmp.path().join("out");

    let time = |second: i64| {
        chrono::DateTime::from_timestamp_micros(DAY_US + second * 1_000_000)
            .expect("time")
            .format("%d/%m/%Y %H:%M:%S")
            .to_string()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let categories = ["food", "home", "garden"];
    // (window start in s, category) → (revenue in cents, events): the reference fold.
    let mut fold: BTreeMap<(i64, &str), (i64, u64)> = BTreeMap::new();
    let mut rejected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut messages = Vec::new();
    for i in 0..400_i64 {
        let second = i * 7;
        let category = categories[rng.random_range(0..3)];
        let quantity: i64 = rng.random_range(1..5);
        let cents: i64 = rng.random_range(1..5000);
        let mut e = serde_json::json!({
            "event_time": time(second), "store_id": rng.random_range(1..9), "product_id": format!("P{i}"),
            "category": category, "transaction_type": "SALE", "quantity": quantity,
            "unit_price": format!("{}.{:02}", cents / 100, cents % 100),
        });
        // Every 20 events, one breaks a rule of the declaration (or has a wrong type).
        let reason = match i % 20 {
            3 => Some(("quantity", serde_json::json!("two"), "bad_quantity")),
            5 => Some(("quantity", serde_json::json!(0), "bad_quantity")),
            7 => Some(("store_id", serde_json::json!({"id": 1}), "bad_store_id")),
            9 => Some(("store_id", serde_json::Value::Null, "missing_store_id")),
            11 => Some(("category", serde_json::json!("toys"), "bad_category")),
            13 => Some(("category", serde_json::json!(""), "missing_category")),
            15 => Some(("unit_price", serde_json::json!(1.234), "bad_unit_price")),
            17 => Some((
                "event_time",
                serde_json::json!("2011-12-09T10:00:00Z"),
                "bad_event_time",
            )),
            _ => None,
        };
        match reason {
            Some((field, value, reason)) => {
                e[field] = value;
                *rejected.entry(reason).or_default() += 1;
            }
            None => {
                let w = fold
                    .entry((second.div_euclid(600) * 600, category))
                    .or_default();
                w.0 += quantity * cents;
                w.1 += 1;
            }
        }
        messages.push((0, e.to_string()));
    }
    // An event a day later closes every window above (its own stays open).
    messages.push((
        0,
        serde_json::json!({"event_time": time(86_400), "store_id": 1, "category": "food",
            "quantity": 1, "unit_price": 1})
        .to_string(),
    ));
    produce(&broker, "store_events", 1, &messages);

    let report = run_job(&job, &broker, "store_events", &out);
    let rejected: BTreeMap<String, u64> = rejected
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    assert_eq!(report.counts.quarantined, rejected, "{report:?}");
    let good: u64 = fold.values().map(|w| w.1).sum();
    assert_eq!(report.counts.events, good + 1, "{report:?}");
    assert_eq!(report.counts.records, 401, "{report:?}");

    let mut expected: Vec<String> = fold
        .iter()
        .map(|((start, category), (cents, events))| {
            let t = chrono::DateTime::from_timestamp_micros(DAY_US + start * 1_000_000)
                .expect("time")
                .format("%Y-%m-%dT%H:%M:%S");
            format!("{t}|{category}|{}.{:02}|{events}", cents / 100, cents % 100)
        })
        .collect();
    expected.sort();
    let rows = category_rows(&out);
    // 400 events 7 s apart: 5 ten-minute windows × 3 categories.
    assert!(expected.len() >= 12, "{expected:?}");
    assert_eq!(rows, expected);

    // The quarantine holds each rejected message with its reason.
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for row in quarantine_rows(&out) {
        let reason = row.split('|').next().unwrap_or_default().to_string();
        *reasons.entry(reason).or_default() += 1;
    }
    assert_eq!(reasons, report.counts.quarantined);
}

/// A stateless stream (no window): each micro-batch's filtered, enriched rows are appended at
/// once, partitioned by event date and hour, exactly once; out-of-order events are kept (no
/// window, so nothing is late), malformed ones quarantined.
#[test]
fn a_stateless_stream_appends_every_batch_rows_partitioned_by_event_hour() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("raw_archive");
    let manifest = STORE_EVENTS_JOB
        .replace("name = \"store_events\"", "name = \"raw_archive\"")
        .replace(
            "topic = \"${topic}\"",
            "topic = \"${topic}\"\nmax_records_per_trigger = 40",
        )
        .replace("[\"window_date\"]", "[\"event_date\", \"event_hour\"]")
        .replace("by_category.sql", "raw.sql");
    write_job(
        &job,
        &manifest,
        "raw.sql",
        "SELECT product_id, category, quantity, unit_price, event_time, kafka_partition, kafka_offset, \
           to_char(event_time, '%Y-%m-%d') AS event_date, to_char(event_time, '%H') AS event_hour \
         FROM events WHERE quantity < 4",
    );
    let out = tmp.path().join("out");

    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut expected = Vec::new();
    let mut messages = Vec::new();
    let mut offsets = [0_i64; 2];
    for i in 0..300_i64 {
        let partition = i32::from(rng.random_bool(0.5));
        // Event times jump back and forth over three hours: out of order on purpose.
        let second = rng.random_range(0..3 * 3600_i64);
        let quantity: i64 = rng.random_range(1..6);
        let t = chrono::DateTime::from_timestamp_micros(DAY_US + second * 1_000_000).expect("time");
        let value = if i % 50 == 7 {
            "{broken".to_string()
        } else {
            if quantity < 4 {
                expected.push(format!(
                    "P{i}|food|{quantity}|1.50|{}|{partition}|{}|{}",
                    t.format("%Y-%m-%dT%H:%M:%S"),
                    offsets[partition as usize],
                    t.format("%H"),
                ));
            }
            serde_json::json!({"event_time": t.format("%d/%m/%Y %H:%M:%S").to_string(), "store_id": 2,
                "product_id": format!("P{i}"), "category": "food", "quantity": quantity, "unit_price": "1.5"})
            .to_string()
        };
        offsets[partition as usize] += 1;
        messages.push((partition, value));
    }
    expected.sort();
    produce(&broker, "raw_events", 2, &messages);

    let run = || run_job(&job, &broker, "raw_events", &out);
    let report = run();
    assert!(
        report.batches >= 8,
        "300 messages, 40 per batch: {report:?}"
    );
    assert_eq!(
        report.counts.quarantined,
        BTreeMap::from([("not_json".to_string(), 6)]),
        "nothing is late without a window: {report:?}"
    );
    assert_eq!(report.counts.rows_written, expected.len() as u64);
    let rows = || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(parquet_rows_with(
            &format!("{}/", out.display()),
            &["event_date", "event_hour"],
            "SELECT product_id, category, quantity, CAST(unit_price AS VARCHAR), \
             CAST(event_time AS VARCHAR), kafka_partition, kafka_offset, event_hour FROM t",
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(rows(), expected);
    let hours: std::collections::BTreeSet<String> =
        std::fs::read_dir(out.join("event_date=2011-12-09"))
            .expect("the day's folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
    assert_eq!(
        hours,
        ["event_hour=00", "event_hour=01", "event_hour=02"]
            .map(String::from)
            .into()
    );

    // A second run finds nothing new and writes nothing.
    let again = run();
    assert_eq!((again.batches, again.counts.records), (0, 0), "{again:?}");
    assert_eq!(rows(), expected);
}

/// The store events job with `allowed_lateness` and `max_records_per_trigger` as parameters.
fn tunable_store_events_job() -> String {
    STORE_EVENTS_JOB
        .replace(
            "output = \"out\"",
            "output = \"out\"\nlateness = \"1h\"\nmax = \"100\"",
        )
        .replace(
            "topic = \"${topic}\"",
            "topic = \"${topic}\"\nmax_records_per_trigger = \"${max}\"",
        )
        .replace(
            "allowed_lateness = \"0s\"",
            "allowed_lateness = \"${lateness}\"",
        )
}

fn store_event(time: chrono::DateTime<chrono::Utc>) -> String {
    serde_json::json!({
        "event_time": time.format("%d/%m/%Y %H:%M:%S").to_string(),
        "store_id": 1, "category": "food", "quantity": 1, "unit_price": "2.50",
    })
    .to_string()
}

/// An event more than `max_event_time_skew` (1 day) ahead of the batch's processing time is
/// quarantined as `future_event_time` and does not move the watermark; an `allowed_lateness`
/// changed between two runs of one checkpoint takes effect in the second.
#[test]
fn a_future_event_is_quarantined_and_a_changed_lateness_takes_effect() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("store_events");
    write_job(
        &job,
        &tunable_store_events_job(),
        "by_category.sql",
        STORE_EVENTS_SQL,
    );
    let out = tmp.path().join("out");
    let t0 = chrono::DateTime::parse_from_rfc3339("2011-12-09T12:00:00Z")
        .expect("time")
        .to_utc();
    let minutes = |m: i64| t0 + chrono::Duration::minutes(m);
    let run = |settings: &[&str]| run_to_end(job_command(&job, &broker, "clock", &out, settings));
    // Run 1, lateness 1 h: one event at t0, one two days ahead of now.
    let future = chrono::Utc::now() + chrono::Duration::days(2);
    produce(
        &broker,
        "clock",
        1,
        &[(0, store_event(t0)), (0, store_event(future))],
    );
    let first = run(&[]);
    assert_eq!(
        first.counts.quarantined.get("future_event_time"),
        Some(&1),
        "{first:?}"
    );
    assert_eq!(first.counts.events, 1);
    assert_eq!(
        first.watermark.as_deref(),
        Some("2011-12-09T11:00:00.000000Z"),
        "the future event must not move the watermark"
    );
    // Run 2, lateness 0 s, one event per batch: t0+60 min moves the watermark to t0+60 min
    // (with the old 1 h, to t0), so t0+20 min in the next batch is late.
    produce(
        &broker,
        "clock",
        1,
        &[(0, store_event(minutes(60))), (0, store_event(minutes(20)))],
    );
    let second = run(&["lateness=0s", "max=1"]);
    assert_eq!(second.batches, 2, "{second:?}");
    assert_eq!(
        second.counts.quarantined.get("late"),
        Some(&1),
        "{second:?}"
    );
    assert_eq!(
        second.watermark.as_deref(),
        Some("2011-12-09T13:00:00.000000Z")
    );
}

/// Deletes `topic` (bounded wait).
fn delete_topic(broker: &KafkaBroker, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .expect("admin");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let results = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                admin.delete_topics(&[topic], &AdminOptions::new()),
            )
            .await
        })
        .expect("DeleteTopics answered in 30 s")
        .expect("DeleteTopics");
    for r in results {
        assert!(r.is_ok(), "DeleteTopics {r:?}");
    }
}

/// A checkpoint whose next offset is past the partition's end (the topic deleted and created
/// again) stops the stream with one line that says so; `on_offsets_lost = "earliest"` goes on
/// from the new topic's first offset, `"latest"` from its end, counting what it jumps over.
/// (Records deleted by retention are the rule's other case, `engine::offsets_lost`'s unit
/// test: tansu's SQLite engine does not implement DeleteRecords.)
#[test]
fn lost_offsets_stop_the_stream_with_a_reason_or_go_on_where_asked() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("store_events");
    let manifest = tunable_store_events_job().replace(
        "max_records_per_trigger = \"${max}\"",
        "max_records_per_trigger = \"${max}\"\non_offsets_lost = \"${on_lost}\"",
    );
    let manifest = manifest.replace("max = \"100\"", "max = \"100\"\non_lost = \"fail\"");
    write_job(&job, &manifest, "by_category.sql", STORE_EVENTS_SQL);
    let out = tmp.path().join("out");
    let t0 = chrono::DateTime::parse_from_rfc3339("2011-12-09T12:00:00Z")
        .expect("time")
        .to_utc();
    let events = |from: i64, n: i64| -> Vec<(i32, String)> {
        (from..from + n)
            .map(|m| (0, store_event(t0 + chrono::Duration::minutes(m))))
            .collect()
    };
    let command = |on_lost: &str| {
        job_command(
            &job,
            &broker,
            "lossy",
            &out,
            &[&format!("on_lost={on_lost}")],
        )
    };
    let fails = |on_lost: &str, expected: &str| {
        let o = command(on_lost).output().expect("run");
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert_eq!(o.status.code(), Some(3), "an external condition: {err}");
        assert!(
            err.contains("topic lossy partition 0")
                && err.contains(expected)
                && err.contains("on_offsets_lost = \"earliest\""),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    };
    produce(&broker, "lossy", 1, &events(0, 10));
    assert_eq!(run_to_end(command("fail")).counts.records, 10);
    // The topic deleted and created again, with 3 events: offsets 0..3, the checkpoint at 10.
    delete_topic(&broker, "lossy");
    produce(&broker, "lossy", 1, &events(30, 3));
    fails("fail", "the next offset 10 is past the partition's end 3");
    let recreated = run_to_end(command("earliest"));
    assert_eq!(recreated.counts.records, 3, "{recreated:?}");
    assert_eq!(recreated.counts.offsets_lost, 0, "{recreated:?}");
    // Once more, with 2 events, going on from the end: both are jumped over and counted, and
    // the next run starts there.
    delete_topic(&broker, "lossy");
    produce(&broker, "lossy", 1, &events(40, 2));
    let latest = run_to_end(command("latest"));
    assert_eq!(
        (latest.counts.records, latest.counts.offsets_lost),
        (0, 2),
        "{latest:?}"
    );
    produce(&broker, "lossy", 1, &events(50, 1));
    let after = run_to_end(command("fail"));
    assert_eq!(after.counts.records, 1, "{after:?}");
}

/// A range whose last offset holds no message ends at the range's end instead of waiting for
/// it until the read timeout, and the offset is counted as skipped. Such offsets are a
/// transaction's commit marker or a compacted tail; tansu supports neither transactions
/// (`EndTxn` is not in its API versions) nor DeleteRecords on its SQLite engine, so the test
/// makes the gap with a plan (`offsets/0`, not committed) whose range ends one offset past the
/// partition's last message: the replay reads it as it would read a marker.
#[test]
fn offsets_without_a_message_at_the_end_of_a_range_do_not_stall_the_batch() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("store_events");
    write_job(
        &job,
        &tunable_store_events_job(),
        "by_category.sql",
        STORE_EVENTS_SQL,
    );
    let t0 = chrono::DateTime::parse_from_rfc3339("2011-12-09T12:00:00Z")
        .expect("time")
        .to_utc();
    let events: Vec<(i32, String)> = (0..5)
        .map(|m| (0, store_event(t0 + chrono::Duration::minutes(m))))
        .collect();
    produce(&broker, "gap", 1, &events);
    let out = tmp.path().join("out");
    // Batch 0 is planned ([0, 5)), then the process dies.
    let mut crash = job_command(&job, &broker, "gap", &out, &[]);
    crash
        .env(CRASH_AT, "offsets:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    assert!(!crash.status().expect("run").success());
    // The plan says [0, 6): offset 5 holds no message.
    let plan_file = out.join("_checkpoint/offsets/0");
    let mut plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_file).expect("plan")).expect("json");
    assert_eq!(plan["ranges"][0]["end"], 5, "{plan}");
    plan["ranges"][0]["end"] = 6.into();
    std::fs::write(&plan_file, plan.to_string()).expect("plan");
    let report = run_job(&job, &broker, "gap", &out);
    assert_eq!(report.replayed, 1, "{report:?}");
    assert_eq!(report.counts.events, 5, "{report:?}");
    assert_eq!(
        (report.counts.records, report.counts.offsets_skipped),
        (5, 1),
        "{report:?}"
    );
}

/// A partition added to the topic while the stream runs is found at the next trigger and read
/// from its first offset: its events reach the output, and the report counts every message.
#[test]
fn a_partition_added_while_the_stream_runs_is_read_from_its_start() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("raw_archive");
    let manifest = STORE_EVENTS_JOB
        .replace("name = \"store_events\"", "name = \"raw_archive\"")
        .replace("trigger = \"available-now\"", "trigger = \"500ms\"")
        .replace("[\"window_date\"]", "[\"category\"]")
        .replace("by_category.sql", "raw.sql");
    write_job(
        &job,
        &manifest,
        "raw.sql",
        "SELECT store_id, kafka_partition, kafka_offset, category FROM events",
    );
    let out = tmp.path().join("out");
    let t0 = chrono::DateTime::parse_from_rfc3339("2011-12-09T12:00:00Z")
        .expect("time")
        .to_utc();
    let events = |partition: i32, n: i64| -> Vec<(i32, String)> {
        (0..n)
            .map(|m| (partition, store_event(t0 + chrono::Duration::minutes(m))))
            .collect()
    };
    produce(&broker, "growing", 1, &events(0, 3));
    let rows = || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(parquet_rows_with(
            &format!("{}/", out.display()),
            &["category"],
            "SELECT kafka_partition, kafka_offset FROM t",
        ))
        .unwrap_or_default()
    };
    let child = job_command(&job, &broker, "growing", &out, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(60), "partition 0's events", || {
        rows().len() == 3
    });
    // The topic grows to 3 partitions; events arrive in the new partitions 1 and 2.
    broker.add_partitions("growing", 3).expect("partitions");
    produce(
        &broker,
        "growing",
        3,
        &[events(1, 2), events(2, 4)].concat(),
    );
    wait_until(
        Duration::from_secs(60),
        "the new partitions' events",
        || rows().len() == 9,
    );
    let report = stop_with_sigterm(child);
    assert_eq!(
        rows(),
        [
            "0|0", "0|1", "0|2", "1|0", "1|1", "2|0", "2|1", "2|2", "2|3"
        ]
    );
    assert_eq!(
        (report.counts.records, report.counts.rows_written),
        (9, 9),
        "{report:?}"
    );
}

/// A windowed output whose aggregates merge keeps one row of partial sums and counts per open
/// (window, category) between micro-batches instead of the events: over many small batches and
/// three runs of one checkpoint (the first keeping events, `state = "events"`, the next turning
/// them into partial aggregates), every window equals an independent fold. A restart whose query
/// aggregates something else, or that asks for events a partial state no longer has, is refused
/// with a reason.
#[test]
fn partial_aggregates_give_every_window_of_a_fold_and_tie_the_checkpoint_to_the_query() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("store_events");
    let manifest = tunable_store_events_job()
        .replace("max = \"100\"", "max = \"100\"\nstate = \"auto\"")
        .replace(
            "sql = \"by_category.sql\"",
            "sql = \"by_category.sql\"\nstate = \"${state}\"",
        );
    write_job(&job, &manifest, "by_category.sql", STORE_EVENTS_SQL);
    let out = tmp.path().join("out");
    let t0 = chrono::DateTime::parse_from_rfc3339("2011-12-09T08:00:00Z")
        .expect("time")
        .to_utc();
    let categories = ["food", "home", "garden"];
    // One event every 20 s for 100 minutes: ten 10-minute windows × 3 categories.
    let mut fold: BTreeMap<(String, &str), (i64, u64)> = BTreeMap::new();
    let mut messages = Vec::new();
    for i in 0..300_i64 {
        let time = t0 + chrono::Duration::seconds(i * 20);
        let category = categories[usize::try_from(i * 7 % 3).expect("index")];
        let quantity = 1 + i % 4;
        let cents = 100 + i % 50 * 37;
        let start = time.timestamp().div_euclid(600) * 600;
        let start = chrono::DateTime::from_timestamp(start, 0)
            .expect("start")
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let w = fold.entry((start, category)).or_default();
        w.0 += quantity * cents;
        w.1 += 1;
        messages.push((
            0,
            serde_json::json!({
                "event_time": time.format("%d/%m/%Y %H:%M:%S").to_string(), "store_id": 1,
                "category": category, "quantity": quantity,
                "unit_price": format!("{}.{:02}", cents / 100, cents % 100),
            })
            .to_string(),
        ));
    }
    let run = |settings: &[&str]| {
        let mut all = vec!["lateness=0s", "max=37"];
        all.extend_from_slice(settings);
        job_command(&job, &broker, "partials", &out, &all)
    };
    produce(&broker, "partials", 1, &messages[..150]);
    let first = run_to_end(run(&["state=events"]));
    assert!(first.batches >= 4, "{first:?}");
    assert!(first.counts.state_events > 0, "{first:?}");
    assert_eq!(first.counts.state_groups, 0, "{first:?}");

    produce(&broker, "partials", 1, &messages[150..]);
    let second = run_to_end(run(&[]));
    assert!(second.batches >= 4, "{second:?}");
    assert_eq!(second.counts.state_events, 0, "{second:?}");
    // Watermark = the newest event (lateness 0 s): only its window is open, ≤ 3 categories.
    assert!((1..=3).contains(&second.counts.state_groups), "{second:?}");
    assert!(second.counts.state_bytes > 0, "{second:?}");

    // An event a day later closes every window (its own stays open).
    produce(
        &broker,
        "partials",
        1,
        &[(0, store_event(t0 + chrono::Duration::days(1)))],
    );
    let third = run_to_end(run(&[]));
    assert_eq!(third.counts.state_groups, 1, "{third:?}");
    let expected: Vec<String> = fold
        .iter()
        .map(|((start, category), (cents, events))| {
            format!(
                "{start}|{category}|{}.{:02}|{events}",
                cents / 100,
                cents % 100
            )
        })
        .collect();
    assert_eq!(expected.len(), 30);
    let rows = category_rows(&out);
    assert_eq!(rows, expected);

    // The checkpoint's partial sums cannot feed a query that aggregates something else, nor
    // one that needs the events.
    let refused = |settings: &[&str], sql: &str, reason: &str| {
        std::fs::write(job.join("by_category.sql"), sql).expect("sql");
        let output = run(settings).output().expect("ember run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
        assert!(stderr.contains("_checkpoint/state/"), "{stderr}");
    };
    refused(
        &[],
        &STORE_EVENTS_SQL.replace(
            "COUNT(*) AS events",
            "COUNT(*) AS events, MAX(quantity) AS most",
        ),
        "aggregates something else than when this state was written",
    );
    refused(
        &["state=events"],
        STORE_EVENTS_SQL,
        "needs the events of its open windows",
    );
}

/// A sales event as produced: minute, product, type, quantity, price in cents.
type Sale = (i64, String, &'static str, i64, i64);

/// `n` synthetic sales events (seeded) from minute `from`, one per second of event time, on 3
/// partitions: the messages and the events for [`expected_windows`].
fn synthetic_sales(seed: u64, from: i64, n: i64) -> (Vec<(i32, String)>, Vec<Sale>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut messages = Vec::new();
    let mut events = Vec::new();
    for i in 0..n {
        let minute = from + i / 60;
        let product = format!("P{}", rng.random_range(0..20));
        let kind = if rng.random_bool(0.1) {
            "RETURN"
        } else {
            "SALE"
        };
        let quantity = rng.random_range(1..5);
        let cents = rng.random_range(1..5000);
        messages.push((
            i32::try_from(i % 3).expect("partition"),
            event(
                minute,
                &product,
                kind,
                quantity,
                &format!("{}.{:02}", cents / 100, cents % 100),
            ),
        ));
        events.push((minute, product, kind, quantity, cents));
    }
    (messages, events)
}

/// Runs `command` to its end, bounded; `None` when it failed (its stderr is printed).
fn run_bounded(mut command: Command, limit: Duration) -> Option<StreamReport> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ember");
    let status = ember_testkit::util::wait_child(&mut child, limit).expect("wait");
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the stream did not end within {limit:?}");
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if !status.success() {
        eprintln!("the run failed ({status}): {stderr}");
        return None;
    }
    Some(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// The window state spread over the executors: on a cluster, each micro-batch's merge of
/// partial aggregates runs as tasks, hash-partitioned by (window, product), that write the
/// state's shards into the checkpoint. An executor killed with kill -9 mid-stream, then the
/// whole cluster stopped and started again, still give exactly the windows of an embedded run
/// and of an independent fold.
#[test]
fn window_state_shards_survive_an_executor_kill_9_and_a_cluster_restart() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (first, mut events) = synthetic_sales(11, 0, 3000);
    produce(&broker, "spread", 3, &first);
    let options = ClusterOptions {
        task_slots: 1,
        partitions: 2,
        executor_timeout: "6s".into(),
        heartbeat_interval: "1s".into(),
        ..ClusterOptions::default()
    };
    let out = tmp.path().join("cluster");
    let limit = Duration::from_secs(300);
    {
        let mut cluster = EmberCluster::start(bin(), 2, &options).expect("cluster");
        let address = cluster.address().to_string();
        let submit = ["submit", "--scheduler", address.as_str()];
        let first_report = tmp.path().join("first.json");
        let mut child = stream_command_with(&submit, &broker, "spread", &out, 150)
            .stdout(std::fs::File::create(&first_report).expect("report file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("submit");
        wait_until(Duration::from_secs(120), "batch 2 committed", || {
            out.join("_checkpoint/commits/2").exists()
        });
        cluster.kill_executor(1);
        // Both executors wrote shards of the state before one died.
        let shard_tasks = |i: usize| {
            std::fs::read_to_string(cluster.executor_log(i))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("parquet sink task") && l.contains("_checkpoint/state/"))
                .count()
        };
        assert!(
            shard_tasks(0) > 0 && shard_tasks(1) > 0,
            "{} and {} shard tasks\n{}",
            shard_tasks(0),
            shard_tasks(1),
            cluster.logs()
        );
        let status = ember_testkit::util::wait_child(&mut child, limit)
            .expect("wait")
            .unwrap_or_else(|| panic!("the stream did not end within {limit:?}"));
        // Whether the batch in flight finished on the other executor or failed, the stream
        // goes on from its checkpoint to the end of the topic.
        let mut report: Option<StreamReport> = status.success().then(|| {
            serde_json::from_slice(&std::fs::read(&first_report).expect("report"))
                .expect("report json")
        });
        for _ in 0..3 {
            if report.is_some() {
                break;
            }
            report = run_bounded(
                stream_command_with(&submit, &broker, "spread", &out, 150),
                limit,
            );
        }
        let report = report.unwrap_or_else(|| panic!("{}", cluster.logs()));
        assert!(report.counts.state_groups > 0, "{report:?}");
        assert_eq!(report.counts.state_events, 0, "{report:?}");
        // The executor still alive went on writing them.
        assert!(shard_tasks(0) > 2, "{}", cluster.logs());
    }
    // The whole cluster again, and more events: the stream resumes exactly once.
    let (second, more) = synthetic_sales(12, 50, 1500);
    produce(&broker, "spread", 3, &second);
    events.extend(more);
    let cluster = EmberCluster::start(bin(), 2, &options).expect("cluster");
    let submit = ["submit", "--scheduler", cluster.address()];
    let last = run_bounded(
        stream_command_with(&submit, &broker, "spread", &out, 150),
        limit,
    )
    .unwrap_or_else(|| panic!("{}", cluster.logs()));
    // Each shard manifest lists the files of the tasks that succeeded, which exist.
    let state = out.join("_checkpoint/state");
    let manifests: Vec<PathBuf> = std::fs::read_dir(&state)
        .expect("state folder")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(!manifests.is_empty());
    for m in &manifests {
        let shards: serde_json::Value =
            serde_json::from_slice(&std::fs::read(m).expect("manifest")).expect("json");
        for file in shards["files"].as_array().expect("files") {
            let file = file.as_str().expect("path");
            assert!(file.contains("/part-"), "{file}");
            assert!(out.join("_checkpoint").join(file).exists(), "{file}");
        }
    }

    let embedded = tmp.path().join("embedded");
    assert_windows_of_a_reference(&broker, "spread", 150, &last, &out, &embedded, &events);
}

/// `out`, written by a stream on `topic` that ended with `report`, holds the windows an
/// embedded run over the whole topic writes into `embedded` (same watermark), and those equal
/// an independent fold of `events`.
fn assert_windows_of_a_reference(
    broker: &KafkaBroker,
    topic: &str,
    max_records: u64,
    report: &StreamReport,
    out: &Path,
    embedded: &Path,
    events: &[Sale],
) {
    let reference = run_to_end(stream_command(broker, topic, embedded, max_records));
    assert_eq!(
        reference.counts.records,
        i64::try_from(events.len()).expect("count")
    );
    assert_eq!(report.watermark, reference.watermark);
    let expected = output_rows(embedded);
    assert_eq!(output_rows(out), expected);
    let watermark =
        chrono::DateTime::parse_from_rfc3339(reference.watermark.as_deref().expect("watermark"))
            .expect("time")
            .timestamp_micros();
    let folded: Vec<(i64, &str, &str, i64, i64)> = events
        .iter()
        .map(|(m, p, k, q, c)| (*m, p.as_str(), *k, *q, *c))
        .collect();
    assert_eq!(
        expected,
        expected_windows(&folded, (watermark - DAY_US) / MIN_US)
    );
}

/// A scheduler killed with SIGKILL and restarted 2 s later while a stream runs on the cluster:
/// the driver runs the micro-batch in flight again from its checkpoint once the scheduler
/// answers (executors re-register on their own) and goes on to the end of the topic in the
/// same process. Its batches are committed once each, in order, and the windows equal an
/// embedded run's and an independent fold's: no batch lost or doubled.
#[test]
fn a_stream_on_the_cluster_rides_out_a_scheduler_restart_with_every_window_once() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (messages, events) = synthetic_sales(21, 0, 3000);
    produce(&broker, "restart", 3, &messages);
    let options = ClusterOptions {
        executor_timeout: "6s".into(),
        heartbeat_interval: "1s".into(),
        ..ClusterOptions::default()
    };
    let mut cluster = EmberCluster::start(bin(), 2, &options).expect("cluster");
    let address = cluster.address().to_string();
    let submit = ["submit", "--scheduler", address.as_str()];
    let out = tmp.path().join("cluster");
    let report_file = tmp.path().join("report.json");
    let driver_log = tmp.path().join("driver.log");
    let mut child = stream_command_with(&submit, &broker, "restart", &out, 100)
        .stdout(std::fs::File::create(&report_file).expect("report file"))
        .stderr(std::fs::File::create(&driver_log).expect("log file"))
        .spawn()
        .expect("submit");
    wait_until(Duration::from_secs(120), "batch 3 committed", || {
        out.join("_checkpoint/commits/3").exists()
    });
    cluster
        .restart_scheduler(Duration::from_secs(2))
        .expect("the scheduler back");
    let limit = Duration::from_secs(300);
    let status = ember_testkit::util::wait_child(&mut child, limit)
        .expect("wait")
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the stream did not end within {limit:?}")
        });
    let log = std::fs::read_to_string(&driver_log).unwrap_or_default();
    assert!(status.success(), "{log}\n{}", cluster.logs());
    assert!(
        log.contains("running it again from the checkpoint"),
        "no batch failed across the restart: {log}"
    );
    let report: StreamReport =
        serde_json::from_slice(&std::fs::read(&report_file).expect("report")).expect("json");
    assert_eq!(report.counts.records, 3000, "{report:?}");
    assert!(report.replayed >= 1, "{report:?}");
    // Every record read once (3000 at 100 a batch: 30 batches), the batches committed in
    // order: the commit marks the checkpoint keeps are the last ones, without a gap.
    assert_eq!(report.batches, 30, "{report:?}");
    let commits: BTreeSet<u64> = std::fs::read_dir(out.join("_checkpoint/commits"))
        .expect("commits")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let first = commits.first().copied().unwrap_or_default();
    assert_eq!(commits, (first..report.batches).collect(), "{report:?}");
    let batches: BTreeSet<u64> = (0..report.batches).collect();
    let logged: BTreeSet<u64> = sink_log(&out).into_keys().collect();
    assert!(logged.is_subset(&batches), "{logged:?}");

    let embedded = tmp.path().join("embedded");
    assert_windows_of_a_reference(&broker, "restart", 100, &report, &out, &embedded, &events);
}
