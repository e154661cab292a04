//! `ember-bench soak`: the streaming job (`jobs/hourly_product_revenue`) on a cluster (a
//! scheduler and 2 executors) for a long time at a 1 s trigger, with synthetic events produced
//! at a steady rate and the web UI's pages and the dashboard's REST calls polled every second,
//! as a browser left open would. Every 10 s the resident memory (`VmRSS`) of the scheduler,
//! each executor and the stream's driver (`ember submit`) is sampled. The result per process:
//! its RSS after the warm-up (the first sixth of the run) and at the end, and the slope of the
//! least-squares line through its samples after the warm-up, in MiB per hour: a leak shows as
//! a slope that stays positive however long the run. The slope of each 5-minute segment is
//! given too, since a cache filling to its limit shows as growth that stops. `RssAnon` (the
//! heap, thread stacks and other anonymous memory) is sampled beside `VmRSS`, which also counts
//! the pages of the binary and libraries the process has touched (`RssFile`). Errors counted:
//! HTTP answers that are not 2xx, `ERROR` lines in the daemons' and the driver's logs, and the
//! driver's exit status when it is stopped (SIGTERM) at the end.
//!
//! The synthetic events are a second of event time apart by default, so at 100 events/s event
//! time passes a hundred times faster than wall time: a window sliding every 15 minutes closes
//! every 9 s and the output gains files a hundred times faster than a real shop's (a stress of its
//! growth). With `--real-pace` they are `1000 / rate` ms apart, so event time passes as fast
//! as wall time, as a live shop's events do.
//!
//! With `--embedded` the stream runs in one process (`ember run`, its own embedded scheduler
//! and executor), the driver is that process, and nothing is polled (`ember run` serves no UI).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_testkit::ember::{ClusterOptions, EmberCluster};
use ember_testkit::kafka::KafkaBroker;

const TOPIC: &str = "soak_events";
const JOB: &str = "jobs/hourly_product_revenue";
/// What a browser on the UI and the dashboard asks, every second.
const POLLED: [&str; 7] = [
    "/ui/streams",
    "/ui/dashboard",
    "/api/v1/streams",
    "/api/v1/dashboard/windows",
    "/api/v1/jobs",
    "/api/v1/executors",
    "/metrics",
];
/// Answers that are not failures: the dashboard's windows before the stream's first output is
/// served (404 "not served yet").
const NOT_YET: &str = "not served yet";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The length of a segment whose own slope is reported, in seconds: 5 minutes.
const SEGMENT_SECS: f64 = 300.0;

/// One process's memory over the run.
#[derive(Debug, serde::Serialize)]
struct Memory {
    process: String,
    /// (seconds since the start, RSS in bytes).
    samples: Vec<(f64, u64)>,
    /// RSS at the end of the warm-up, MiB.
    after_warm_up_mib: f64,
    /// RSS at the end, MiB.
    end_mib: f64,
    /// The largest sample, MiB.
    max_mib: f64,
    /// Least-squares slope after the warm-up, MiB per hour.
    slope_mib_per_hour: f64,
    /// The least-squares slope of RSS within each 5-minute segment of the run, MiB per hour.
    segment_slopes_mib_per_hour: Vec<f64>,
    /// (seconds since the start, `RssAnon` in bytes): anonymous memory, without the binary's
    /// and libraries' pages.
    anon_samples: Vec<(f64, u64)>,
    /// `RssAnon` at the end, MiB.
    anon_end_mib: f64,
    /// Least-squares slope of `RssAnon` after the warm-up, MiB per hour.
    anon_slope_mib_per_hour: f64,
}

/// Runs the soak for `minutes`, producing `rate` events per second (event time passing as fast
/// as wall time when `real_pace`, else a second per event), on a cluster (polling the UI and
/// the dashboard when `poll`) or `embedded`; prints a Markdown table and writes JSON (every
/// sample) to `json`.
///
/// # Errors
/// A message when the broker, the cluster or a process cannot start, or the driver dies.
pub fn run(
    ember: &Path,
    minutes: f64,
    rate: u64,
    real_pace: bool,
    poll: bool,
    embedded: bool,
    json: &Path,
) -> Result<(), String> {
    let step_ms = if real_pace {
        (1000 / rate.max(1)).max(1)
    } else {
        1000
    };
    // Taken at the start: the time is the run's start, the commit what was checked out then.
    let machine = crate::machine::describe();
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let warm_up = duration.as_secs_f64() / 6.0;
    let broker = KafkaBroker::start()?;
    let cluster = if embedded {
        None
    } else {
        Some(EmberCluster::start(ember, 2, &ClusterOptions::default())?)
    };
    let poll = poll && cluster.is_some();
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    // The topic with one event, before the stream starts: `ember run` asks for the topic at
    // once (a cluster takes long enough to start that the producer has made it by then).
    let made = Command::new(ember)
        .args(["produce", "--brokers", &broker.brokers(), "--topic", TOPIC])
        .args(["--partitions", "3", "--synthetic", "1"])
        .stdout(Stdio::null())
        .stderr(log_file(scratch.path(), "topic.log")?)
        .status()
        .map_err(|e| format!("ember produce: {e}"))?;
    if !made.success() {
        return Err(format!("ember produce (the topic) ended with {made}"));
    }
    let events = (rate as f64 * duration.as_secs_f64() * 1.2) as u64;
    let mut producer = Command::new(ember)
        .args(["produce", "--brokers", &broker.brokers(), "--topic", TOPIC])
        .args(["--partitions", "3", "--synthetic", &events.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--event-time-step", &format!("{step_ms}ms")])
        .stdout(Stdio::null())
        .stderr(log_file(scratch.path(), "producer.log")?)
        .spawn()
        .map_err(|e| format!("ember produce: {e}"))?;
    // Named as the job's default output, so that the scheduler serves it as the dashboard's
    // windows table (`hourly_product_revenue`).
    let output = scratch.path().join("hourly_product_revenue");
    let driver_log = scratch.path().join("driver.log");
    let mut driver = Command::new(ember);
    match &cluster {
        Some(cluster) => driver.args(["submit", JOB, "--scheduler", cluster.address()]),
        None => driver.args(["run", JOB]),
    };
    let mut driver = driver
        .args(["--format", "json"])
        .args(["--set", &format!("brokers={}", broker.brokers())])
        .args(["--set", &format!("topic={TOPIC}")])
        .args(["--set", &format!("output={}", output.display())])
        .args(["--set", "trigger=1s"])
        .stdout(log_file(scratch.path(), "report.json")?)
        .stderr(log_file(scratch.path(), "driver.log")?)
        .spawn()
        .map_err(|e| format!("ember submit: {e}"))?;

    let stop = Arc::new(AtomicBool::new(false));
    let (polls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let poller = {
        let (stop, polls, failed) = (stop.clone(), polls.clone(), failed.clone());
        let address = cluster
            .as_ref()
            .map(|c| c.address().to_string())
            .unwrap_or_default();
        std::thread::spawn(move || {
            while poll && !stop.load(Ordering::Relaxed) {
                for path in POLLED {
                    polls.fetch_add(1, Ordering::Relaxed);
                    match ember_testkit::ember::http_get(&address, path) {
                        Err(e) if !e.contains(NOT_YET) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("soak: GET {path}: {e}");
                        }
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    let mut names: Vec<String> = Vec::new();
    let mut pids = Vec::new();
    if let Some(cluster) = &cluster {
        names.push("scheduler".into());
        names.extend((0..cluster.pids().len() - 1).map(|i| format!("executor {i}")));
        pids = cluster.pids();
    }
    names.push(
        if embedded {
            "embedded (ember run)"
        } else {
            "driver"
        }
        .into(),
    );
    pids.push(driver.id());
    let mut samples: Vec<Vec<(f64, u64)>> = vec![Vec::new(); pids.len()];
    let mut anon: Vec<Vec<(f64, u64)>> = vec![Vec::new(); pids.len()];
    let started = Instant::now();
    let mut died = None;
    while started.elapsed() < duration {
        let at = started.elapsed().as_secs_f64();
        for (i, pid) in pids.iter().enumerate() {
            samples[i].push((at, crate::measure::proc_status_bytes(*pid, "VmRSS:")));
            anon[i].push((at, crate::measure::proc_status_bytes(*pid, "RssAnon:")));
        }
        if let Ok(Some(status)) = driver.try_wait() {
            died = Some(status);
            break;
        }
        eprintln!(
            "soak: {:.0} s of {:.0}: RSS MiB {:?}",
            at,
            duration.as_secs_f64(),
            samples
                .iter()
                .map(|s| mib(s.last().map_or(0, |x| x.1)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(SAMPLE_EVERY);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    // How the dashboard's calls were answered (kept answers or queries), before anything stops.
    let answers = cluster
        .as_ref()
        .and_then(|c| ember_testkit::ember::http_get(c.address(), "/metrics").ok())
        .and_then(|text| dashboard_answers(&text));
    let _ = producer.kill();
    let _ = producer.wait();
    let status = match died {
        Some(status) => status,
        None => sigterm_and_wait(&mut driver)?,
    };
    let report = std::fs::read_to_string(scratch.path().join("report.json")).unwrap_or_default();
    let driver_text = std::fs::read_to_string(&driver_log).unwrap_or_default();
    let errors =
        error_lines(&driver_text) + cluster.as_ref().map_or(0, |c| error_lines(&c.full_logs()));
    let report_json = serde_json::from_str::<serde_json::Value>(&report).ok();
    let batches = report_json
        .as_ref()
        .and_then(|r| r["batches"].as_u64())
        .unwrap_or(0);

    let memory: Vec<Memory> = names
        .into_iter()
        .zip(samples.into_iter().zip(anon))
        .map(|(process, (samples, anon))| summarize(process, samples, anon, warm_up))
        .collect();
    println!(
        "\n{:.0} min, {}, {rate} events/s produced ({step_ms} ms of event time apart), trigger 1 s: \
         {batches} micro-batches committed; \
         {} HTTP polls, {} failed; {errors} ERROR log lines; driver stopped with {status}\n",
        minutes,
        if embedded { "embedded" } else { "cluster" },
        polls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    if let Some((cache, query)) = answers {
        println!("dashboard calls: {cache} from kept answers, {query} by their query\n");
    }
    println!(
        "| process | RSS after warm-up (MiB) | RSS at end (MiB) | max (MiB) | slope (MiB/h) | \
         RssAnon at end (MiB) | RssAnon slope (MiB/h) | RSS slope per 5-minute segment (MiB/h) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for m in &memory {
        let segments: Vec<String> = m
            .segment_slopes_mib_per_hour
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect();
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:+.2} | {:.1} | {:+.2} | {} |",
            m.process,
            m.after_warm_up_mib,
            m.end_mib,
            m.max_mib,
            m.slope_mib_per_hour,
            m.anon_end_mib,
            m.anon_slope_mib_per_hour,
            segments.join(", ")
        );
    }
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let result = serde_json::json!({
        "machine": machine,
        "minutes": minutes,
        "rate": rate,
        "event_time_step_ms": step_ms,
        "polled": poll,
        "embedded": embedded,
        "batches": batches,
        "polls": polls.load(Ordering::Relaxed),
        "failed_polls": failed.load(Ordering::Relaxed),
        "dashboard_answers": answers.map(|(cache, query)| serde_json::json!({
            "cache": cache,
            "query": query,
        })),
        "error_log_lines": errors,
        "driver_exit": status.code(),
        "driver_report": report_json,
        "memory": memory,
    });
    std::fs::write(
        json,
        serde_json::to_string_pretty(&result).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", json.display()))?;
    if died.is_some() || !status.success() {
        return Err(format!(
            "the driver ended with {status} before the soak's end:\n{driver_text}"
        ));
    }
    Ok(())
}

/// The scheduler's `ember_dashboard_answers_total` by `from` in `/metrics` text: (from kept
/// answers, by their query); `None` from a scheduler without the counter.
fn dashboard_answers(metrics: &str) -> Option<(u64, u64)> {
    let count = |from: &str| {
        let name = format!("ember_dashboard_answers_total{{from=\"{from}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name.as_str())?.trim().parse::<u64>().ok())
    };
    Some((count("cache")?, count("query")?))
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::File::create(dir.join(name)).map_err(|e| format!("{name}: {e}"))
}

/// SIGTERM (the driver commits the batch in flight and stops), waited for at most 60 s.
fn sigterm_and_wait(child: &mut Child) -> Result<std::process::ExitStatus, String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    // SAFETY: kill(2) with our own child's pid and a valid signal number.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    match ember_testkit::util::wait_child(child, Duration::from_secs(60)) {
        Ok(Some(status)) => Ok(status),
        _ => {
            let _ = child.kill();
            child.wait().map_err(|e| e.to_string())
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn error_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains(" ERROR ")).count()
}

/// The process's memory figures, its slope fitted on the samples after `warm_up` seconds.
fn summarize(
    process: String,
    samples: Vec<(f64, u64)>,
    anon: Vec<(f64, u64)>,
    warm_up: f64,
) -> Memory {
    let after = |series: &[(f64, u64)]| -> Vec<(f64, f64)> {
        series
            .iter()
            .filter(|(t, _)| *t >= warm_up)
            .map(|(t, b)| (*t / 3600.0, mib(*b)))
            .collect()
    };
    let kept = after(&samples);
    let anon_kept = after(&anon);
    Memory {
        process,
        after_warm_up_mib: kept.first().map_or(0.0, |s| s.1),
        end_mib: kept.last().map_or(0.0, |s| s.1),
        max_mib: samples.iter().map(|s| mib(s.1)).fold(0.0, f64::max),
        slope_mib_per_hour: slope(&kept),
        segment_slopes_mib_per_hour: segment_slopes(&samples, SEGMENT_SECS),
        samples,
        anon_end_mib: anon_kept.last().map_or(0.0, |s| s.1),
        anon_slope_mib_per_hour: slope(&anon_kept),
        anon_samples: anon,
    }
}

/// The slope of each whole segment of `segment` seconds of `samples` (seconds, bytes), in MiB
/// per hour, from the first segment on; a segment with fewer than 3 samples ends the list.
fn segment_slopes(samples: &[(f64, u64)], segment: f64) -> Vec<f64> {
    let end = samples.last().map_or(0.0, |s| s.0);
    let mut slopes = Vec::new();
    let mut from = 0.0;
    // A segment counts when it is whole, give or take one sample interval.
    while from + segment <= end + SAMPLE_EVERY.as_secs_f64() {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= from + segment)
            .map(|(t, b)| (*t / 3600.0, mib(*b)))
            .collect();
        if points.len() < 3 {
            break;
        }
        slopes.push(slope(&points));
        from += segment;
    }
    slopes
}

/// The least-squares slope of `y` over `x`; 0 with fewer than 2 points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dashboard_answers_are_read_from_metrics() {
        let text = "# TYPE ember_dashboard_answers counter\n\
                    ember_dashboard_answers_total{from=\"query\"} 30\n\
                    ember_dashboard_answers_total{from=\"cache\"} 105\n";
        assert_eq!(super::dashboard_answers(text), Some((105, 30)));
        assert_eq!(
            super::dashboard_answers("ember_info{mode=\"scheduler\"} 1\n"),
            None
        );
    }

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 + 2.0 * f64::from(i)))
            .collect();
        assert!((super::slope(&line) - 2.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 5.0)).collect();
        assert_eq!(super::slope(&flat), 0.0);
    }

    #[test]
    fn segment_slopes_show_growth_that_stops() {
        // 10 minutes every 10 s: +1 MiB a minute for 5 minutes, then flat.
        let samples: Vec<(f64, u64)> = (0..=60)
            .map(|i| {
                let t = f64::from(i) * 10.0;
                let mib = 100.0 + t.min(300.0) / 60.0;
                (t, (mib * 1024.0 * 1024.0) as u64)
            })
            .collect();
        let slopes = super::segment_slopes(&samples, 300.0);
        assert_eq!(slopes.len(), 2, "{slopes:?}");
        assert!((slopes[0] - 60.0).abs() < 1e-6, "{slopes:?}");
        assert!(slopes[1].abs() < 1e-6, "{slopes:?}");
        assert_eq!(super::slope(&[(1.0, 1.0)]), 0.0);
    }
}
