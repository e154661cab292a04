//! `ember-bench stream`: sustained events/s of the streaming job end to end (Kafka → parse →
//! windows → Parquet, with checkpoints) against the broker's raw consume rate, on one topic
//! and one broker (tansu, started by the runner), rounds interleaved. Peers: the raw consume
//! rate, `ember run` (embedded) into Parquet with its sink log, `ember run` into a Delta table
//! (one commit per micro-batch), and `ember submit` to a scheduler with 2 executors × 1 slot
//! (`cluster-2`: the Kafka scans and the merges of the window state run on the executors, the
//! driver in the submit process), the same with 1 executor (`cluster-1`), and
//! `ember run` again keeping the open windows' events as its state (`state=events`) instead of
//! partial aggregates. Each peer's commit marks give its window stage (`phases_ms.query`, events
//! per second of it) and its largest state (bytes, events, open (window, product) groups).
//! Then `ember table optimize` on a Delta table written in small micro-batches: data files and
//! the time of an aggregate over the whole table before and after.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ember_testkit::ember::{ClusterOptions, EmberCluster};
use ember_testkit::kafka::KafkaBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::measure;

const TOPIC: &str = "bench_events";
const JOB: &str = "jobs/hourly_product_revenue";

/// Reads every message of `TOPIC` (partitions `0..partitions`) with a plain rdkafka consumer:
/// the broker's raw consume rate. Returns (messages, seconds).
fn raw_consume(brokers: &str, partitions: i32, expected: u64) -> Result<(u64, f64), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(TOPIC, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut seen = 0u64;
    while seen < expected {
        if Instant::now() > deadline {
            return Err(format!(
                "raw consume: {seen} of {expected} messages in 600 s"
            ));
        }
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            m.map_err(|e| e.to_string())?;
            seen += 1;
        }
    }
    Ok((seen, started.elapsed().as_secs_f64()))
}

/// Runs the benchmark; prints a Markdown table and writes JSON to `json`.
///
/// # Errors
/// A message when the broker, the producer or a run fails.
pub fn run(
    ember: &Path,
    events: u64,
    partitions: i32,
    runs: usize,
    json: &Path,
) -> Result<(), String> {
    // Taken at the start: the time is the run's start, the commit what was checked out then.
    let machine = crate::machine::describe();
    let broker = KafkaBroker::start()?;
    let brokers = broker.brokers();
    let produce = Command::new(ember)
        .args([
            "produce",
            "--brokers",
            &brokers,
            "--topic",
            TOPIC,
            "--format",
            "json",
        ])
        .args(["--partitions", &partitions.to_string()])
        .args(["--synthetic", &events.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    if !produce.status.success() {
        return Err(format!(
            "ember produce: {}",
            String::from_utf8_lossy(&produce.stderr)
        ));
    }
    let produced: serde_json::Value =
        serde_json::from_slice(&produce.stdout).map_err(|e| e.to_string())?;
    let produce_ms = produced["duration_ms"].as_f64().unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)]
    let produce_rate = events as f64 / (produce_ms / 1000.0);
    eprintln!(
        "produced {events} events in {:.1} s ({produce_rate:.0}/s)",
        produce_ms / 1000.0
    );
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    // The cluster peers' daemons start once, outside the timings: 2 executors and 1, one task
    // slot each.
    let start = |executors: usize| {
        EmberCluster::start(
            ember,
            executors,
            &ClusterOptions {
                task_slots: 1,
                partitions: 2,
                executor_timeout: "60s".into(),
                heartbeat_interval: "5s".into(),
                ..ClusterOptions::default()
            },
        )
    };
    let cluster = start(2)?;
    let cluster1 = start(1)?;
    let mut rounds = Vec::new();
    for round in 1..=runs {
        let (n, raw_s) = raw_consume(&brokers, partitions, events)?;
        #[allow(clippy::cast_precision_loss)]
        let raw_rate = n as f64 / raw_s;
        let mut row = serde_json::json!({
            "round": round, "raw_seconds": raw_s, "raw_msgs_per_s": raw_rate,
        });
        for (peer, command, format, state) in [
            ("ember", vec!["run"], "parquet", "auto"),
            ("ember_delta", vec!["run"], "delta", "auto"),
            (
                "cluster2",
                vec!["submit", "--scheduler", cluster.address()],
                "parquet",
                "auto",
            ),
            (
                "cluster1",
                vec!["submit", "--scheduler", cluster1.address()],
                "parquet",
                "auto",
            ),
            ("ember_events_state", vec!["run"], "parquet", "events"),
        ] {
            let out = scratch.path().join(format!("{peer}-{round}"));
            let mut cmd = Command::new(ember);
            cmd.args(&command)
                .args([JOB, "--format", "json"])
                .args(["--set", &format!("brokers={brokers}")])
                .args(["--set", &format!("topic={TOPIC}")])
                .args(["--set", &format!("output={}", out.display())])
                .args(["--set", "trigger=available-now"])
                .args(["--set", "max_records=100000"])
                .args(["--set", &format!("format={format}")])
                .args(["--set", &format!("state={state}")])
                .stdout(std::process::Stdio::null());
            let cost = measure::run(cmd)
                .map_err(|e| format!("{peer}: {e}\n{}\n{}", cluster.logs(), cluster1.logs()))?;
            let report: serde_json::Value = serde_json::from_slice(
                &std::fs::read(out.join("_checkpoint/commits").join(last_commit(&out)?))
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            #[allow(clippy::cast_precision_loss)]
            let rate = events as f64 / cost.seconds;
            eprintln!(
                "round {round}: raw consume {raw_rate:.0} msg/s ({raw_s:.2} s); {peer} {rate:.0} events/s ({:.2} s, peak RSS of the {} {} MB, last batch {})",
                cost.seconds,
                if peer.starts_with("cluster") {
                    "driver"
                } else {
                    "process"
                },
                cost.peak_rss_bytes / 1_000_000,
                report["batch_id"]
            );
            row[format!("{peer}_seconds")] = cost.seconds.into();
            row[format!("{peer}_events_per_s")] = rate.into();
            row[format!("{peer}_peak_rss_bytes")] = cost.peak_rss_bytes.into();
            row[format!("{peer}_ratio")] = (rate / raw_rate).into();
            let (window_ms, state) = window_stage(&out)?;
            #[allow(clippy::cast_precision_loss)]
            let window_rate = events as f64 / (window_ms.max(1) as f64 / 1000.0);
            row[format!("{peer}_window_stage_ms")] = window_ms.into();
            row[format!("{peer}_window_stage_events_per_s")] = window_rate.into();
            row[format!("{peer}_largest_state")] = state;
            let _ = std::fs::remove_dir_all(&out);
        }
        rounds.push(row);
    }
    let med = |k: &str| {
        let mut v: Vec<f64> = rounds.iter().filter_map(|r| r[k].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "| events | partitions | produce (events/s) | raw consume (msg/s, median) | ember run, Parquet (events/s, median) | / raw | ember run, Delta (events/s, median) | / raw | cluster-1 submit (events/s, median) | / raw | cluster-2 submit (events/s, median) | / raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {events} | {partitions} | {produce_rate:.0} | {:.0} | {:.0} | {:.2}× | {:.0} | {:.2}× | {:.0} | {:.2}× | {:.0} | {:.2}× |",
        med("raw_msgs_per_s"),
        med("ember_events_per_s"),
        med("ember_ratio"),
        med("ember_delta_events_per_s"),
        med("ember_delta_ratio"),
        med("cluster1_events_per_s"),
        med("cluster1_ratio"),
        med("cluster2_events_per_s"),
        med("cluster2_ratio"),
    );
    println!();
    println!(
        "| peer | window stage (events/s, median) | largest state: bytes | events | open (window, product) groups | bytes per group |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let last = rounds.last().cloned().unwrap_or_default();
    let groups = last["ember_largest_state"]["state_groups"]
        .as_u64()
        .unwrap_or(0);
    for peer in [
        "ember",
        "ember_delta",
        "cluster1",
        "cluster2",
        "ember_events_state",
    ] {
        let state = &last[format!("{peer}_largest_state")];
        let bytes = state["state_bytes"].as_u64().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let per_group = bytes as f64 / groups.max(1) as f64;
        println!(
            "| {peer} | {:.0} | {bytes} | {} | {} | {per_group:.1} |",
            med(&format!("{peer}_window_stage_events_per_s")),
            state["state_events"],
            state["state_groups"],
        );
    }
    let optimize = optimize(ember, &brokers, scratch.path(), events)?;
    let result = serde_json::json!({
        "benchmark": "stream", "events": events, "partitions": partitions,
        "produce_events_per_s": produce_rate, "machine": machine, "rounds": rounds,
        "optimize": optimize,
    });
    crate::write_results(json, &result)
}

/// The window stage's wall time over all of a run's batches (`phases_ms.query` of every commit
/// mark in `out/_checkpoint/commits`, ms; the checkpoint keeps the last 10) and the state of
/// the batch whose state was largest in bytes (`state_bytes`, `state_events`, `state_groups`).
fn window_stage(out: &Path) -> Result<(u64, serde_json::Value), String> {
    let dir = out.join("_checkpoint/commits");
    let mut ms = 0;
    let mut largest = serde_json::json!({"state_bytes": 0});
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some() {
            continue;
        }
        let commit: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        ms += commit["phases_ms"]["query"].as_u64().unwrap_or(0);
        if commit["state_bytes"].as_u64() > largest["state_bytes"].as_u64() {
            largest = serde_json::json!({
                "batch_id": commit["batch_id"], "state_bytes": commit["state_bytes"],
                "state_events": commit["state_events"], "state_groups": commit["state_groups"],
            });
        }
    }
    Ok((ms, largest))
}

fn last_commit(out: &Path) -> Result<String, String> {
    let dir = out.join("_checkpoint/commits");
    std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .map(|n| n.to_string())
        .ok_or_else(|| format!("{}: no commit", dir.display()))
}

/// Micro-batches of the small-file table [`optimize`] measures: events / this.
const SMALL_BATCHES: u64 = 100;

/// Median seconds of 5 runs of an aggregate over the whole Delta table at `table` (read
/// through its log, as Flight SQL reads it), and the table's data file count.
fn query_table(rt: &tokio::runtime::Runtime, table: &str) -> Result<(f64, usize), String> {
    let (_, files) = rt.block_on(ember_testkit::query::delta_log_files(table))?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let rows = rt.block_on(ember_testkit::query::delta_rows(
            table,
            None,
            "SELECT product_id, SUM(net_revenue), SUM(events) FROM t GROUP BY product_id",
        ))?;
        times.push(started.elapsed().as_secs_f64());
        if rows.is_empty() {
            return Err(format!("{table}: no rows"));
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], files.len()))
}

/// Writes the topic into a Delta table in [`SMALL_BATCHES`] micro-batches (the small files a
/// stream leaves), then runs `ember table optimize` on it: files and query time before and
/// after, and the optimize's own time. Prints a Markdown table.
fn optimize(
    ember: &Path,
    brokers: &str,
    scratch: &Path,
    events: u64,
) -> Result<serde_json::Value, String> {
    let out = scratch.join("small-batches");
    let mut cmd = Command::new(ember);
    cmd.args(["run", JOB, "--format", "json"])
        .args(["--set", &format!("brokers={brokers}")])
        .args(["--set", &format!("topic={TOPIC}")])
        .args(["--set", &format!("output={}", out.display())])
        .args(["--set", "trigger=available-now"])
        .args([
            "--set",
            &format!("max_records={}", (events / SMALL_BATCHES).max(1)),
        ])
        .args(["--set", "format=delta"])
        .stdout(std::process::Stdio::null());
    measure::run(cmd).map_err(|e| format!("small batches: {e}"))?;
    let table = format!("{}/", out.display());
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let (before_s, before_files) = query_table(&rt, &table)?;
    let mut cmd = Command::new(ember);
    cmd.args(["table", "optimize", &out.display().to_string()])
        .stdout(std::process::Stdio::null());
    let cost = measure::run(cmd).map_err(|e| format!("optimize: {e}"))?;
    let (after_s, after_files) = query_table(&rt, &table)?;
    println!(
        "\n| micro-batches | data files before | after optimize | query before (s) | after (s) | after / before | optimize (s) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {SMALL_BATCHES} | {before_files} | {after_files} | {before_s:.3} | {after_s:.3} | {:.2}× | {:.1} |",
        after_s / before_s,
        cost.seconds
    );
    Ok(serde_json::json!({
        "micro_batches": SMALL_BATCHES, "files_before": before_files, "files_after": after_files,
        "query_seconds_before": before_s, "query_seconds_after": after_s,
        "optimize_seconds": cost.seconds,
    }))
}
