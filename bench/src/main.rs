//! `ember-bench`: the benchmarks behind BENCHMARKS.md. Run from the repository root:
//!
//! ```sh
//! cargo build --release -p ember-cli -p ember-bench
//! cargo run --release -p ember-bench -- generate --rows 10000000 --out data/generated/retail_10m.csv
//! cargo run --release -p ember-bench -- daily-revenue --input data/generated/retail_10m.csv --runs 3
//! ```
//!
//! `daily-revenue` runs, interleaved, in separate processes so each has its own peak RSS:
//! - `ember`: the `ember run` binary (embedded Ballista scheduler + executor);
//! - `datafusion`: the same job (same manifest, SQL, runner and commit) on plain single-process
//!   DataFusion, which isolates what Ballista costs;
//! - `datafusion-output-only`: plain DataFusion writing only the output (no quarantine, no
//!   row-count checks), which shows what the guarantees cost;
//! - `cluster-1` / `cluster-2`: `ember submit --wait` to an `ember scheduler` with one executor
//!   (task slots = cores) or two (task slots = cores / 2 each), started fresh for every run and
//!   not timed while starting; peak RSS is the sum of the scheduler's and executors' `VmHWM`;
//! - `duckdb` / `duckdb-output-only`: DuckDB with the same rules and guarantees, and writing the
//!   output only (see `duckdb_daily.rs`).
//!
//! After every run, DuckDB reads the peer's output back and computes its fingerprint (rows,
//! sums, a hash of every row's date, product, name and net revenue): all peers must agree.
//!
//! `stream` times the streaming job against a plain Kafka consumer (see `stream.rs`).
//! `flight-sql` loads the Flight SQL endpoint with concurrent clients (see `flight_sql.rs`).
//! `import` times a database import (MariaDB, PostgreSQL) against the databases' own dumps (see
//! `import.rs`). `logs` times the collection of log files (`jobs/app_logs`) against DuckDB doing
//! the same in one SQL pass (see `logs.rs`). `soak` runs the stream on a cluster for 30 minutes
//! and reports each process's memory slope (see `soak.rs`).

mod cluster;
mod duckdb_daily;
mod flight_sql;
mod generate;
mod import;
mod logs;
mod machine;
mod measure;
mod soak;
mod stream;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};
use ember_core::codec::Codecs;
use ember_core::manifest::JobManifest;
use ember_core::params::Params;
use ember_core::report::RunReport;
use ember_core::session::SessionBuilder;

/// Ember's benchmark runner.
#[derive(Debug, Parser)]
#[command(name = "ember-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write N synthetic rows in the Online Retail layout (deterministic; ~1% dirty).
    Generate {
        /// Rows to write.
        #[arg(long)]
        rows: u64,
        /// The CSV file to write.
        #[arg(long)]
        out: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Time the daily revenue job: ember (embedded Ballista) vs plain DataFusion.
    DailyRevenue {
        /// The input CSV.
        #[arg(long)]
        input: PathBuf,
        /// Rounds; each round runs every peer once.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Scratch folder for outputs (removed after each run).
        #[arg(long, default_value = "data/generated/bench-out")]
        scratch: PathBuf,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench/results/daily_revenue.json")]
        json: PathBuf,
        /// Peers to run (comma-separated); the first is the one ratios are taken against.
        #[arg(long, value_delimiter = ',', default_values_t = PEERS.map(String::from))]
        peers: Vec<String>,
    },
    /// Streaming job end to end (Kafka → windows → Parquet) vs the broker's raw consume rate.
    Stream {
        /// Synthetic events to produce.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Partitions of the topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Rounds.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench/results/stream.json")]
        json: PathBuf,
    },
    /// The streaming job on a cluster for a long time at a 1 s trigger, the dashboard polled:
    /// the memory of the scheduler, the executors and the driver over time (slope, MiB/h).
    Soak {
        /// How long, in minutes.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Events produced per second.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Event time passes as fast as wall time (events `1000 / rate` ms of event time
        /// apart), as a live shop's do; without it each event is a second later, a hundredfold
        /// faster at the default rate.
        #[arg(long)]
        real_pace: bool,
        /// Where to write the JSON results (every sample).
        #[arg(long, default_value = "bench/results/soak.json")]
        json: PathBuf,
        /// Do not poll the web UI and the dashboard (to tell their cost from the stream's).
        #[arg(long)]
        no_poll: bool,
        /// Run the stream embedded (`ember run`, one process) instead of on a cluster.
        #[arg(long)]
        embedded: bool,
    },
    /// Concurrent Flight SQL clients against `ember serve` over the daily revenue table.
    FlightSql {
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Queries per client.
        #[arg(long, default_value_t = 20)]
        queries: usize,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench/results/flight_sql.json")]
        json: PathBuf,
    },
    /// A database import of Online Retail (MariaDB, PostgreSQL; 1 and 4 splits) vs the
    /// databases' own dumps.
    Import {
        /// Rounds.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench/results/import.json")]
        json: PathBuf,
    },
    /// File collection: `jobs/app_logs` over generated log files vs DuckDB.
    Logs {
        /// Log lines to generate (100,000 per file).
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
        /// Rounds.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench/results/logs.json")]
        json: PathBuf,
    },
    /// Run the daily revenue job on plain DataFusion and print its report (a peer; used by
    /// `daily-revenue`).
    RunLocal {
        /// The input CSV.
        #[arg(long)]
        input: PathBuf,
        /// The output folder.
        #[arg(long)]
        output: PathBuf,
        /// Skip the quarantine and the row-count checks.
        #[arg(long)]
        output_only: bool,
    },
}

const JOB: &str = "jobs/daily_revenue_by_product";
const PEERS: [&str; 7] = [
    "ember",
    "duckdb",
    "duckdb-output-only",
    "datafusion",
    "datafusion-output-only",
    "cluster-1",
    "cluster-2",
];

fn main() -> ExitCode {
    ember_core::telemetry::init(false);
    let result = match Cli::parse().command {
        Cmd::Generate { rows, out, seed } => generate::generate(&out, rows, seed)
            .map(|bytes| println!("wrote {rows} rows, {bytes} bytes to {}", out.display()))
            .map_err(|e| format!("{}: {e}", out.display())),
        Cmd::DailyRevenue {
            input,
            runs,
            scratch,
            json,
            peers,
        } => daily_revenue(&input, runs, &scratch, &json, &peers),
        Cmd::Stream {
            events,
            partitions,
            runs,
            json,
        } => std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|me| {
                stream::run(&me.with_file_name("ember"), events, partitions, runs, &json)
            }),
        Cmd::Soak {
            minutes,
            rate,
            real_pace,
            json,
            no_poll,
            embedded,
        } => std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|me| {
                soak::run(
                    &me.with_file_name("ember"),
                    minutes,
                    rate,
                    real_pace,
                    !no_poll,
                    embedded,
                    &json,
                )
            }),
        Cmd::Import { runs, json } => std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|me| import::run(&me.with_file_name("ember"), runs, &json)),
        Cmd::Logs { lines, runs, json } => std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|me| logs::run(&me.with_file_name("ember"), lines, runs, &json)),
        Cmd::FlightSql {
            clients,
            queries,
            json,
        } => std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|me| flight_sql::run(&me.with_file_name("ember"), clients, queries, &json)),
        Cmd::RunLocal {
            input,
            output,
            output_only,
        } => run_local(&input, &output, output_only),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ember-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_local(input: &Path, output: &Path, output_only: bool) -> Result<(), String> {
    let manifest = JobManifest::load(JOB).map_err(|e| e.to_string())?;
    let mut params: Params = manifest.params();
    params
        .apply(&[
            ("input".into(), input.display().to_string()),
            ("output".into(), output.display().to_string()),
        ])
        .map_err(|e| e.to_string())?;
    let mut job = manifest.resolve(params).map_err(|e| e.to_string())?;
    if output_only {
        // The output alone, its view typed within the output's own scan.
        job.quarantine = None;
        job.checks = None;
        job.cached_views.clear();
    }
    let runtime = ember_core::threads::tokio_runtime().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let ctx = SessionBuilder::new(Codecs::ember())
            .local()
            .map_err(|e| e.to_string())?;
        let report = ember_batch::run(&ctx, &job, "datafusion")
            .await
            .map_err(|e| e.to_string())?;
        println!("{report}");
        Ok(())
    })
}

#[derive(serde::Serialize)]
struct Sample {
    peer: String,
    round: usize,
    #[serde(flatten)]
    cost: measure::Cost,
    rows_read: Option<u64>,
    /// The output's fingerprint read back by DuckDB (`duckdb_daily.rs`).
    fingerprint: String,
}

/// One run of `peer`: its cost, the rows read its `_SUCCESS` report says (DuckDB: what its
/// script printed), and the fingerprint of the output it left in `out`.
fn sample(
    duck: &duckdb_daily::Duck,
    peer: &str,
    round: usize,
    cost: measure::Cost,
    out: &Path,
    rows_read: Option<u64>,
) -> Result<Sample, String> {
    let rows_read = match rows_read {
        Some(n) => Some(n),
        None if peer.starts_with("duckdb") => None,
        None => {
            let report: RunReport = serde_json::from_slice(
                &std::fs::read(out.join("_SUCCESS"))
                    .map_err(|e| format!("{peer}: no _SUCCESS: {e}"))?,
            )
            .map_err(|e| e.to_string())?;
            report.rows.read
        }
    };
    let fingerprint = duck.fingerprint(out)?;
    eprintln!(
        "round {round} {peer:<24} {:>7.2} s  peak RSS {:>6} MB  output {fingerprint}",
        cost.seconds,
        cost.peak_rss_bytes / 1_000_000,
    );
    Ok(Sample {
        peer: peer.to_string(),
        round,
        cost,
        rows_read,
        fingerprint,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn daily_revenue(
    input: &Path,
    runs: usize,
    scratch: &Path,
    json: &Path,
    peers: &[String],
) -> Result<(), String> {
    if let Some(unknown) = peers.iter().find(|p| !PEERS.contains(&p.as_str())) {
        return Err(format!(
            "unknown peer {unknown}; known: {}",
            PEERS.join(", ")
        ));
    }
    let base = peers.first().ok_or("no peers given")?.clone();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let ember = me.with_file_name("ember");
    if !ember.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p ember-cli`",
            ember.display()
        ));
    }
    let input_bytes = std::fs::metadata(input)
        .map_err(|e| format!("{}: {e}", input.display()))?
        .len();
    let machine = machine::describe();
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let duck = duckdb_daily::Duck::new(scratch)?;
    let input = &std::fs::canonicalize(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut samples = Vec::new();
    for round in 1..=runs {
        for peer in peers {
            let peer = peer.as_str();
            let out = scratch.join(peer);
            let _ = std::fs::remove_dir_all(&out);
            if let Some(executors) = peer.strip_prefix("cluster-") {
                let executors: usize = executors.parse().map_err(|e| format!("{peer}: {e}"))?;
                let cost = cluster::run(&ember, executors, machine.cores, input, &out)?;
                samples.push(sample(&duck, peer, round, cost, &out, None)?);
                let _ = std::fs::remove_dir_all(&out);
                continue;
            }
            if let Some(mode) = peer.strip_prefix("duckdb") {
                let mode = if mode.is_empty() {
                    "full"
                } else {
                    "output-only"
                };
                let (cost, said) = measure::run_capturing(
                    duck.command(input, &out, mode),
                    &scratch.join("duck_stdout.txt"),
                )?;
                let read = said.split_whitespace().next().and_then(|n| n.parse().ok());
                samples.push(sample(&duck, peer, round, cost, &out, read)?);
                let _ = std::fs::remove_dir_all(&out);
                continue;
            }
            let mut cmd = if peer == "ember" {
                let mut c = Command::new(&ember);
                c.args(["run", JOB, "--set"])
                    .arg(format!("input={}", input.display()));
                c.arg("--set").arg(format!("output={}", out.display()));
                c
            } else {
                let mut c = Command::new(&me);
                c.args(["run-local", "--input"])
                    .arg(input)
                    .arg("--output")
                    .arg(&out);
                if peer == "datafusion-output-only" {
                    c.arg("--output-only");
                }
                c
            };
            cmd.stdout(std::process::Stdio::null());
            let cost = measure::run(cmd)?;
            samples.push(sample(&duck, peer, round, cost, &out, None)?);
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    if let Some(other) = samples
        .iter()
        .find(|s| s.fingerprint != samples[0].fingerprint)
    {
        return Err(format!(
            "{} wrote another output than {}: {} != {}",
            other.peer, samples[0].peer, other.fingerprint, samples[0].fingerprint
        ));
    }
    let read: Vec<u64> = samples.iter().filter_map(|s| s.rows_read).collect();
    if read.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("peers disagree on rows read: {read:?}"));
    }
    let med = |peer: &str, f: &dyn Fn(&Sample) -> f64| {
        median(samples.iter().filter(|s| s.peer == peer).map(f).collect())
    };
    let seconds = |s: &Sample| s.cost.seconds;
    let rss = |s: &Sample| s.cost.peak_rss_bytes as f64;
    println!(
        "\ninput {} ({input_bytes} bytes), {runs} rounds, machine: {} cores, {}",
        input.display(),
        machine.cores,
        machine.cpu
    );
    // Ratios are taken within a round (the same minutes of a shared, noisy machine), then the
    // median of those ratios is reported.
    let ratio = |peer: &str| {
        let per_round = (1..=runs).filter_map(|round| {
            let at = |p: &str| {
                samples
                    .iter()
                    .find(|s| s.peer == p && s.round == round)
                    .map(|s| s.cost.seconds)
            };
            Some(at(&base)? / at(peer)?)
        });
        median(per_round.collect())
    };
    println!(
        "| peer | median wall time (s) | {base} / peer (median of per-round ratios) | median peak RSS (MB) |"
    );
    println!("|---|---:|---:|---:|");
    for peer in peers {
        let peer = peer.as_str();
        let s = med(peer, &seconds);
        println!(
            "| {peer} | {s:.2} | {:.2}× | {:.0} |",
            ratio(peer),
            med(peer, &rss) / 1e6
        );
    }
    let result = serde_json::json!({
        "benchmark": "daily_revenue",
        "input": input.display().to_string(),
        "input_bytes": input_bytes,
        "rows_read": samples.first().and_then(|s| s.rows_read),
        "output_fingerprint": samples.first().map(|s| s.fingerprint.clone()),
        "machine": machine,
        "samples": samples,
    });
    write_results(json, &result)
}

/// Writes a benchmark's JSON results (creating the folder) and says where.
fn write_results(json: &Path, result: &serde_json::Value) -> Result<(), String> {
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        json,
        serde_json::to_vec_pretty(result).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", json.display()))?;
    println!("results: {}", json.display());
    Ok(())
}
