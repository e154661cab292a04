//! Faults the cluster must survive, injected for real: the scheduler process killed with
//! SIGKILL in the middle of a job, then started again in the same working directory with the
//! same flags. Each test asserts what the user sees: `ember jobs`, `ember status`, the output
//! folder. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ember_core::api::{JobDetail, JobState, JobSummary, Submitted};
use ember_testkit::ember::{ClusterOptions, EmberCluster, http_get};
use ember_testkit::util::wait_for;

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

/// `ember submit` of the daily job on Online Retail into `output`; `--wait` when `wait`.
/// Returns the printed JSON and the exit code.
fn submit(cluster: &EmberCluster, output: &Path, wait: bool) -> (String, Option<i32>) {
    let input = format!(
        "input={}",
        repo().join("data/online_retail.csv.gz").display()
    );
    let output = format!("output={}", output.display());
    let mut args = vec![
        "submit",
        JOB,
        "--scheduler",
        cluster.address(),
        "--set",
        &input,
        "--set",
        &output,
        "--format",
        "json",
    ];
    if wait {
        args.push("--wait");
    }
    let out = ember(&args);
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code(),
    )
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
    let mut cluster = EmberCluster::start(bin(), 2, &ClusterOptions::default()).expect("cluster");
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = tmp.path().join("daily");

    // A job that ends before the crash.
    let (printed, code) = submit(&cluster, &output, true);
    let before: JobDetail = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("{e}: {printed}\n{}", cluster.logs()));
    assert_eq!(code, Some(0), "{:?}\n{}", before.summary, cluster.logs());
    let report = before.report.clone().expect("a succeeded job's report");
    let committed = files(&output);
    assert!(
        committed.iter().any(|(f, _)| f == "_SUCCESS"),
        "{committed:?}"
    );

    // The same job again, into the same output; the scheduler is killed while its output step
    // runs.
    let (printed, code) = submit(&cluster, &output, false);
    assert_eq!(code, Some(0), "{printed}");
    let Submitted { id } = serde_json::from_str(&printed).expect("submitted");
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
    cluster
        .restart_scheduler()
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));

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

    // The output is what the first job committed: the interrupted job's staging is gone.
    assert_eq!(files(&output), committed);

    // The history: one compacted record per job, no event log left.
    let history = cluster.scheduler_work_dir().join("history");
    let mut kept: Vec<String> = std::fs::read_dir(&history)
        .expect("history folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    kept.sort();
    let mut expected = vec![format!("{}.json", before.summary.id), format!("{id}.json")];
    expected.sort();
    assert_eq!(kept, expected);

    // The executors find the restarted scheduler, and the job submitted again succeeds.
    cluster
        .wait_for_executors(2)
        .unwrap_or_else(|e| panic!("{e}"));
    let (printed, code) = submit(&cluster, &output, true);
    let again: JobDetail = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("{e}: {printed}\n{}", cluster.logs()));
    assert_eq!(code, Some(0), "{:?}\n{}", again.summary, cluster.logs());
    assert_eq!(again.report.map(|r| r.rows), Some(report.rows));
    assert!(files(&output).iter().any(|(f, _)| f == "_SUCCESS"));
}
