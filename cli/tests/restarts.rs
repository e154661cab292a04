//! Faults the cluster must survive, injected for real: the scheduler process killed with
//! SIGKILL in the middle of a job, then started again in the same working directory with the
//! same flags; a stream's driver killed with SIGKILL. Each test asserts what the user sees:
//! `ember jobs`, `ember status`, the output folder, the streams' REST API and `/metrics`.
//! Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ember_core::api::{JobDetail, JobState, JobSummary, StreamState, StreamSummary};
use ember_testkit::ember::{ClusterOptions, EmberCluster, http_get};
use ember_testkit::util::{wait_child, wait_for};

const JOB: &str = "jobs/daily_revenue_by_product";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
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

/// `ember submit --wait --format json` of the daily job on Online Retail into `output`.
/// Returns the printed JSON and the exit code.
fn submit_wait(cluster: &EmberCluster, output: &Path) -> (String, Option<i32>) {
    let out = ember(&[
        "submit",
        JOB,
        "--scheduler",
        cluster.address(),
        "--set",
        &format!("input={}", online_retail()),
        "--set",
        &format!("output={}", output.display()),
        "--wait",
        "--format",
        "json",
    ]);
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code(),
    )
}

fn online_retail() -> String {
    repo()
        .join("data/online_retail.csv.gz")
        .display()
        .to_string()
}

fn detail(cluster: &EmberCluster, id: &str) -> Result<JobDetail, String> {
    serde_json::from_str(&http_get(cluster.address(), &format!("/api/v1/jobs/{id}"))?)
        .map_err(|e| e.to_string())
}

/// Every file under `dir`, relative, sorted, with its size in bytes.
fn files(dir: &Path) -> Vec<(String, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((rel.display().to_string(), size));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn a_scheduler_killed_during_a_job_lists_it_failed_after_restart_and_keeps_earlier_jobs() {
    // Ballista forgets a finished step after 10 s: the job's record still has every step.
    let options = ClusterOptions {
        scheduler_args: vec!["--job-state-retention".into(), "10s".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = EmberCluster::start(bin(), 2, &options).expect("cluster");
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = tmp.path().join("daily");

    // A job that ends before the crash.
    let (printed, code) = submit_wait(&cluster, &output);
    let before: JobDetail = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("{e}: {printed}\n{}", cluster.logs()));
    assert_eq!(code, Some(0), "{:?}\n{}", before.summary, cluster.logs());
    let report = before.report.clone().expect("a succeeded job's report");
    let committed = files(&output);
    assert!(
        committed.iter().any(|(f, _)| f == "_SUCCESS"),
        "{committed:?}"
    );

    // The same job again, into the same output, followed by `ember submit --wait`; the
    // scheduler is killed while its output step runs, and is down for 3 s.
    let waiting_out = tmp.path().join("waiting.json");
    let waiting_err = tmp.path().join("waiting.err");
    let mut waiting = Command::new(bin())
        .args(["submit", JOB, "--scheduler", cluster.address()])
        .args([
            "--set",
            &format!(
                "input={}",
                repo().join("data/online_retail.csv.gz").display()
            ),
            "--set",
            &format!("output={}", output.display()),
        ])
        .args(["--wait", "--format", "json"])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&waiting_out).expect("stdout file"))
        .stderr(std::fs::File::create(&waiting_err).expect("stderr file"))
        .spawn()
        .expect("ember submit --wait");
    let id = wait_for(
        "the second job to be submitted",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let jobs: Vec<JobSummary> =
                serde_json::from_str(&http_get(cluster.address(), "/api/v1/jobs")?)
                    .map_err(|e| e.to_string())?;
            Ok(jobs
                .into_iter()
                .find(|j| j.id != before.summary.id)
                .map(|j| j.id))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    wait_for(
        "the second job's output step",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || {
            let d = detail(&cluster, &id)?;
            if d.summary.state.is_final() {
                return Err(format!(
                    "the job ended before the scheduler was killed: {:?}",
                    d.summary
                ));
            }
            Ok(d.steps.iter().any(|s| s.step == "output").then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    // A file in the history that is no job's record: left in place, counted in /metrics.
    let stray = cluster.scheduler_work_dir().join("history/not-a-job.json");
    std::fs::write(&stray, "{ cut short").expect("a stray history file");
    cluster
        .restart_scheduler(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));

    // `ember submit --wait` rode out the restart: it reports the job as the restarted
    // scheduler knows it, and exits with the external failure's code (3).
    let status = wait_child(&mut waiting, Duration::from_secs(120))
        .expect("wait for ember submit")
        .unwrap_or_else(|| {
            let _ = waiting.kill();
            panic!("ember submit --wait did not end after the restart")
        });
    let said = std::fs::read_to_string(&waiting_err).unwrap_or_default();
    assert_eq!(status.code(), Some(3), "{said}");
    let followed: JobDetail = serde_json::from_str(
        &std::fs::read_to_string(&waiting_out).expect("submit --wait's output"),
    )
    .unwrap_or_else(|e| panic!("{e}: {said}"));
    assert_eq!(followed.summary.id, id);
    assert_eq!(followed.summary.state, JobState::Failed);
    assert!(said.contains("asking again every second"), "{said}");
    assert!(said.contains("the scheduler answers again"), "{said}");
    assert!(said.contains("scheduler restarted: "), "{said}");

    // `ember jobs` after the restart: the interrupted job failed, the earlier one as it ended.
    let out = ember(&["jobs", "--scheduler", cluster.address(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let jobs: Vec<JobSummary> = serde_json::from_slice(&out.stdout).expect("jobs as JSON");
    let states: Vec<(&str, JobState)> = jobs.iter().map(|j| (j.id.as_str(), j.state)).collect();
    assert_eq!(
        states,
        [
            (id.as_str(), JobState::Failed),
            (before.summary.id.as_str(), JobState::Succeeded)
        ],
        "{jobs:?}"
    );
    let metrics = cluster.get("/metrics").expect("/metrics");
    assert!(
        metrics.lines().any(|l| {
            l.strip_prefix("ember_history_unreadable_files")
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                == Some(1.0)
        }),
        "{metrics}"
    );
    assert!(stray.exists(), "the stray file was removed");
    let interrupted = &jobs[0];
    let error = interrupted.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("scheduler restarted: "), "{error}");
    assert_eq!(
        interrupted.error_kind,
        Some(ember_core::ErrorKind::External)
    );
    assert!(interrupted.finished_at.is_some());
    assert_eq!(jobs[1].rows_written, Some(report.rows.written));
    // `ember jobs` as a table names the failure too.
    let table = ember(&["jobs", "--scheduler", cluster.address()]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("failed"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );

    // `ember status` of the earlier job: its counts, steps and stages as they ended.
    let old = detail(&cluster, &before.summary.id).expect("status of the earlier job");
    assert_eq!(old.report.as_ref(), Some(&report));
    assert_eq!(old.summary.stages_done, before.summary.stages_done);
    assert!(old.summary.stages_done > 0);
    let steps: Vec<&str> = old.steps.iter().map(|s| s.step.as_str()).collect();
    let steps_before: Vec<&str> = before.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, steps_before);
    for step in ["cache checked_sales", "quarantine", "output"] {
        assert!(steps_before.contains(&step), "{step}: {steps_before:?}");
    }

    // The output is what the first job committed: the interrupted job's staging is gone.
    assert_eq!(files(&output), committed);

    // The history: one compacted record per job, no event log left, the stray file untouched.
    let history = cluster.scheduler_work_dir().join("history");
    let mut kept: Vec<String> = std::fs::read_dir(&history)
        .expect("history folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    kept.sort();
    let mut expected = vec![
        format!("{}.json", before.summary.id),
        format!("{id}.json"),
        "not-a-job.json".to_string(),
    ];
    expected.sort();
    assert_eq!(kept, expected);

    // The executors find the restarted scheduler, and the job submitted again succeeds.
    cluster
        .wait_for_executors(2)
        .unwrap_or_else(|e| panic!("{e}"));
    let (printed, code) = submit_wait(&cluster, &output);
    let again: JobDetail = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("{e}: {printed}\n{}", cluster.logs()));
    assert_eq!(code, Some(0), "{:?}\n{}", again.summary, cluster.logs());
    assert_eq!(again.report.map(|r| r.rows), Some(report.rows));
    assert!(files(&output).iter().any(|(f, _)| f == "_SUCCESS"));
}

/// The streams the scheduler lists.
fn streams(cluster: &EmberCluster) -> Result<Vec<StreamSummary>, String> {
    serde_json::from_str(&http_get(cluster.address(), "/api/v1/streams")?)
        .map_err(|e| e.to_string())
}

/// `ember submit` of the log-folder stream (jobs/app_logs) reading `incoming` into `output`,
/// reporting every second.
fn stream_driver(cluster: &EmberCluster, incoming: &Path, output: &Path, trigger: &str) -> Command {
    let mut c = Command::new(bin());
    c.args(["submit", "jobs/app_logs", "--scheduler", cluster.address()])
        .args(["--set", &format!("incoming={}", incoming.display())])
        .args(["--set", &format!("output={}", output.display())])
        .args(["--set", &format!("trigger={trigger}")])
        .args(["--heartbeat-interval", "1s"])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

#[test]
fn a_killed_stream_driver_is_shown_lost_within_the_stream_timeout_and_an_ended_one_stopped() {
    let timeout = Duration::from_secs(4);
    let options = ClusterOptions {
        scheduler_args: vec!["--stream-timeout".into(), "4s".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = EmberCluster::start(bin(), 1, &options).expect("cluster");
    let tmp = tempfile::tempdir().expect("tempdir");
    let incoming = tmp.path().join("incoming");
    std::fs::create_dir_all(&incoming).expect("incoming");
    std::fs::write(
        incoming.join("app_1.log"),
        "2024-11-10 15:30:45.123 [INFO] [PaymentService] Payment authorized\n\
         2024-11-10 15:30:46.000 [WARN] [PaymentService] Retry\n",
    )
    .expect("log file");
    let log = std::fs::File::create(tmp.path().join("driver.log")).expect("driver log");
    let mut driver = stream_driver(&cluster, &incoming, &tmp.path().join("logs"), "1s")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the driver");
    let driver_log = || std::fs::read_to_string(tmp.path().join("driver.log")).unwrap_or_default();

    // Running, with its first micro-batch committed.
    let running = wait_for(
        "the stream's first micro-batch",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let listed = streams(&cluster)?;
            Ok(listed
                .into_iter()
                .find(|s| s.name == "app_logs" && s.batches >= 1))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", driver_log(), cluster.logs()));
    assert_eq!(running.state, StreamState::Running);
    // Idle for longer than the timeout (no new files): its heartbeats keep it running.
    std::thread::sleep(timeout + Duration::from_secs(2));
    let idle = streams(&cluster).expect("streams");
    assert_eq!(
        idle.iter().find(|s| s.id == running.id).map(|s| s.state),
        Some(StreamState::Running),
        "{idle:?}\n{}",
        driver_log()
    );

    // SIGKILL: no goodbye. Shown lost once the timeout has passed, and not before the driver
    // could have missed a heartbeat.
    driver.kill().expect("kill the driver");
    let killed = Instant::now();
    let _ = driver.wait();
    let lost = wait_for(
        "the stream to be shown lost",
        timeout + Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let listed = streams(&cluster)?;
            Ok(listed
                .into_iter()
                .find(|s| s.id == running.id && s.state == StreamState::Lost))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let after = killed.elapsed();
    assert!(
        after >= timeout - Duration::from_secs(1),
        "lost after {after:?}"
    );
    assert!(lost.batches >= running.batches);
    let metrics = http_get(cluster.address(), "/metrics").expect("metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ember_stream_lost{") && l.contains(&running.id))
        .unwrap_or_else(|| panic!("no ember_stream_lost for the stream:\n{metrics}"));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0);
    assert!((value - 1.0).abs() < f64::EPSILON, "{line}");

    // The driver started again on the same output and checkpoint (the killed driver's lock is
    // taken over), to the end of what is there (available-now): a new stream entry, stopped.
    // (Another output could not report as `app_logs`: the scheduler serves that table from
    // the first stream's output and refuses a takeover.)
    let out = stream_driver(
        &cluster,
        &incoming,
        &tmp.path().join("logs"),
        "available-now",
    )
    .output()
    .expect("run the driver");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("cannot report"), "{said}");
    let listed = streams(&cluster).expect("streams");
    let states: Vec<StreamState> = listed.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [StreamState::Stopped, StreamState::Lost],
        "{listed:?}"
    );

    // The stream history survives a scheduler restart: both streams are listed again, the
    // ended one stopped with its batches, the killed one lost again once the timeout passed.
    let saved = cluster.scheduler_work_dir().join("history/streams");
    wait_for(
        "the stream history on disk",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let texts: Vec<String> = listed
                .iter()
                .map(|s| {
                    std::fs::read_to_string(saved.join(format!("{}.json", s.id)))
                        .unwrap_or_default()
                })
                .collect();
            Ok(
                (texts[0].contains("\"state\":\"stopped\"") && texts[1].contains("\"batches\":"))
                    .then_some(()),
            )
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    cluster
        .restart_scheduler(Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let again = streams(&cluster).expect("streams after the restart");
    let ids: Vec<&str> = again.iter().map(|s| s.id.as_str()).collect();
    let ids_before: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ids_before, "{again:?}");
    assert_eq!(again[0].state, StreamState::Stopped);
    assert_eq!(again[1].batches, listed[1].batches);
    wait_for(
        "the killed stream to be shown lost again",
        timeout + Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            Ok(streams(&cluster)?
                .into_iter()
                .any(|s| s.id == running.id && s.state == StreamState::Lost)
                .then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
}
