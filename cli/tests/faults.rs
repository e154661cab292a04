//! Disk and HDFS faults injected under `ember run`, each checked by what the user sees
//! (issue 20, item 4). Whatever the moment of the fault, a run either succeeds, or fails with
//! exit code 3 (external: run it again) and one `ember: error:` line that names the fault and
//! where it hit; a failed run commits nothing (the output's committed files are byte for byte
//! those of the last successful run), except on HDFS when the fault hits a plain Parquet
//! commit's renames, which leaves the folder without `_SUCCESS` and the commit's plan kept for
//! the next run to finish (README, known limits); and once the fault is gone the next run
//! succeeds and
//! writes exactly what an independent fold of its input gives (`ember_testkit::reference`),
//! leaving no staging behind.
//! - A full disk: the output on a tmpfs the test mounts (`SmallDisk`), filled to leave less
//!   and less room, so that runs fail at each step that writes (the lock, the cached view, the
//!   output, the quarantine, the commit); Parquet and Delta outputs. A Delta table's log
//!   entry, the smallest and last write, is aimed at with a full tmpfs of its own.
//! - HDFS: the DataNode killed with SIGKILL in the middle of runs, then the NameNode killed and
//!   restarted in the middle of runs.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ember_core::threads::block_on;
use ember_testkit::HdfsCluster;
use ember_testkit::query::{delta_rows, parquet_rows};
use ember_testkit::reference::Fold;
use ember_testkit::small_disk::SmallDisk;
use ember_testkit::util::{output_text, wait_child};
use ember_testkit::versions::{DAYS, Inputs, expected, inputs};
use rand::Rng;
use rstest::rstest;

const JOB: &str = "jobs/daily_revenue_by_product";
const TOTALS: &str = "SELECT count(*), sum(net_revenue) FROM t";
/// Bound on one run, fault or not.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

/// `ember run` of the job on `input` into `output` as `format`, with a JSON report, set up on
/// `command` (a plain `ember` or one in a small disk's namespace).
fn run_job(mut command: Command, input: &Path, output: &str, format: &str) -> Command {
    command
        .args(["run", JOB, "--format", "json", "--parallelism", "2"])
        .args(["--set", &format!("input={}", input.display())])
        .args(["--set", &format!("output={output}")])
        .args(["--set", &format!("format={format}")])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove("EMBER_CONFIG");
    command
}

/// Runs `command` to its end (bounded by [`RUN_TIMEOUT`]).
fn finish(mut child: Child) -> Output {
    match wait_child(&mut child, RUN_TIMEOUT) {
        Ok(Some(_)) => child.wait_with_output().expect("the run's output"),
        outcome => {
            let _ = child.kill();
            let out = child.wait_with_output().expect("the run's output");
            panic!(
                "the run did not end within {RUN_TIMEOUT:?} ({outcome:?}): {}",
                output_text(&out)
            );
        }
    }
}

fn spawn(mut command: Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ember run")
}

/// The one line a failed run gives: exit code 3 (external), exactly one `ember: error:` line
/// on stderr, no Rust debug form in it. Returns the line.
fn failure_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(3), "{}", output_text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ember: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(
        !stderr.contains("\tat org."),
        "a Java stack trace: {stderr}"
    );
    let line = lines[0].to_string();
    for debris in [
        "DataFusionError(",
        "Custom {",
        "Os { code",
        "source:",
        "DatanodeInfoProto",
    ] {
        assert!(!line.contains(debris), "{debris} in {line}");
    }
    line
}

/// The step a failure line names: what comes between "failed: " and the next ": ", without a
/// `(to …)` or `(…path…)` part.
fn step_of(line: &str) -> String {
    let after = line.split_once("failed: ").map_or(line, |(_, rest)| rest);
    let step = after.split(": ").next().unwrap_or(after);
    step.split(" (").next().unwrap_or(step).to_string()
}

/// Every file under `root` but the staging folder: relative path → (size, hash of the bytes).
fn committed_files(root: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut files = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if relative.starts_with("_temporary") {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read a file");
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                files.insert(relative, (bytes.len() as u64, hasher.finish()));
            }
        }
    }
    files
}

/// What differs between two [`committed_files`] listings: `+name` for a file added or changed,
/// `-name` for one removed.
fn changes(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(name, file)| before.get(*name) != Some(file))
        .map(|(name, _)| format!("+{name}"))
        .chain(
            before
                .keys()
                .filter(|name| !after.contains_key(*name))
                .map(|name| format!("-{name}")),
        )
        .collect()
}

/// Files left in the staging folder `<root>/_temporary`.
fn staging_left(root: &Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    let mut folders = vec![root.join("_temporary")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten() {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                left.push(path);
            }
        }
    }
    left
}

/// `rows|Σ net` of the output at `location` (a folder or URL) as plain DataFusion reads it.
fn output_sees(location: &str, format: &str) -> String {
    let rows = match format {
        "delta" => block_on(delta_rows(location, None, TOTALS)),
        _ => block_on(parquet_rows(location, TOTALS)),
    };
    rows.expect("read the output").join(";")
}

/// [`output_sees`] of a folder on a small disk, read from a copy in `scratch` (readers that
/// resolve a path's links, as delta-rs does, would leave `/proc/<pid>/root`).
fn small_disk_sees(seen: &Path, scratch: &Path, format: &str) -> String {
    let copy = copy_out(seen, scratch);
    output_sees(&copy.path().display().to_string(), format)
}

/// A copy of the folder `seen` (on a small disk) in `scratch`.
fn copy_out(seen: &Path, scratch: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir_in(scratch).expect("a copy's folder");
    let mut folders = vec![PathBuf::new()];
    while let Some(relative) = folders.pop() {
        std::fs::create_dir_all(copy.path().join(&relative)).expect("mkdir");
        for entry in std::fs::read_dir(seen.join(&relative)).expect("list") {
            let entry = entry.expect("entry");
            let name = relative.join(entry.file_name());
            if entry.path().is_dir() {
                folders.push(name);
            } else {
                std::fs::copy(entry.path(), copy.path().join(&name)).expect("copy");
            }
        }
    }
    copy
}

/// The quarantine table of the output `seen` (on a small disk): rows by day, reason and
/// product (the test inputs' rejected row names its version: `BADX`, `BADY`).
fn quarantine_sees(seen: &Path, scratch: &Path) -> String {
    let copy = copy_out(&seen.join("_quarantine"), scratch);
    block_on(delta_rows(
        &copy.path().display().to_string(),
        None,
        "SELECT CAST(order_date AS VARCHAR), reason, \"StockCode\", count(*) FROM t GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    ))
    .expect("read the quarantine")
    .join(";")
}

/// The input of the next run: the other version than the output holds.
fn other(inputs: &Inputs, holds_x: bool) -> (&Path, String) {
    if holds_x {
        (&inputs.y, expected(&inputs.fold_y))
    } else {
        (&inputs.x, expected(&inputs.fold_x))
    }
}

#[rstest]
#[case::parquet("parquet")]
#[case::delta("delta")]
fn a_full_disk_fails_the_run_with_one_line_and_commits_nothing_until_space_is_freed(
    #[case] format: &str,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(tmp.path());
    let disk = SmallDisk::new(32 << 20).expect("a 32 MiB tmpfs");
    let output = disk.path().join("daily");
    let location = output.display().to_string();
    // The harness reads the output through /proc/<pid>/root.
    let seen = disk.outside(&output);
    let run = |input: &Path| run_job(disk.command(bin()), input, &location, format);

    let first = run(&inputs.x).output().expect("run");
    assert_eq!(first.status.code(), Some(0), "{}", output_text(&first));
    let mut holds_x = true;
    let mut committed = committed_files(&seen);
    assert_eq!(
        small_disk_sees(&seen, tmp.path(), format),
        expected(&inputs.fold_x)
    );
    // Leave less and less room, from 32 times what the output takes down to none: each run
    // fails at whichever write first finds the disk full (its staged view, the output, the
    // quarantine, the commit, the lock), or succeeds.
    let size: u64 = committed.values().map(|(bytes, _)| bytes).sum();
    let mut fractions: Vec<f64> = std::iter::successors(Some(32.0), |f| Some(f * 0.7))
        .take_while(|f| *f > 0.01)
        .collect();
    fractions.push(0.0);
    let mut failures = Vec::new();
    for fraction in fractions {
        let room = disk
            .fill_leaving((size as f64 * fraction) as u64)
            .expect("fill the disk");
        let (input, want) = other(&inputs, holds_x);
        let out = run(input).output().expect("run");
        if out.status.success() {
            assert_eq!(
                small_disk_sees(&seen, tmp.path(), format),
                want,
                "{room} bytes free"
            );
            holds_x = !holds_x;
            committed = committed_files(&seen);
        } else {
            let line = failure_line(&out);
            assert!(line.contains("No space left on device"), "{line}");
            let changed = changes(&committed, &committed_files(&seen));
            assert!(
                changed.is_empty(),
                "{room} bytes free: a failed run changed the output: {changed:?} ({line})"
            );
            failures.push((room, line));
        }
        if format == "parquet" {
            assert_eq!(
                staging_left(&seen),
                Vec::<PathBuf>::new(),
                "{room} bytes free"
            );
        }
    }
    let steps: BTreeSet<String> = failures.iter().map(|(_, line)| step_of(line)).collect();
    eprintln!("failures (bytes free, line): {failures:#?}");
    assert!(
        failures.len() >= 3 && steps.len() >= 2,
        "runs should fail at several steps as the room shrinks: {failures:#?}"
    );
    // Space freed: the next run succeeds and is exactly its input.
    disk.unfill().expect("free the disk");
    let (input, want) = other(&inputs, holds_x);
    let out = run(input).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(small_disk_sees(&seen, tmp.path(), format), want);
    assert_eq!(staging_left(&seen), Vec::<PathBuf>::new());
}

/// A Delta commit that cannot be written: the table's `_delta_log` gets its own tmpfs, filled,
/// so every data file of the run is written (on the roomy disk) and only the log entry fails,
/// which the room sweep above cannot aim at (the entry is the run's last and smallest write).
/// The run fails with one line; the table reads as before and keeps its files byte for byte
/// (the data files the run wrote are removed); the quarantine table, committed first, gets its
/// commit reverted (one more version, its rows as before); and once the log has room the next
/// run commits.
#[test]
fn a_delta_commit_whose_log_cannot_be_written_fails_in_one_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(tmp.path());
    let disk = SmallDisk::new(64 << 20).expect("a 64 MiB tmpfs");
    let output = disk.path().join("daily");
    let location = output.display().to_string();
    let seen = disk.outside(&output);
    let run = |input: &Path| run_job(disk.command(bin()), input, &location, "delta");

    let first = run(&inputs.x).output().expect("run");
    assert_eq!(first.status.code(), Some(0), "{}", output_text(&first));

    // The log moves onto a tmpfs of its own, with a page more room than its files take.
    let log = seen.join("_delta_log");
    let saved = tmp.path().join("saved_log");
    std::fs::create_dir(&saved).expect("mkdir");
    let mut log_bytes = 0;
    for entry in std::fs::read_dir(&log).expect("list the log") {
        let entry = entry.expect("entry");
        log_bytes += entry.metadata().expect("stat").len().div_ceil(4096) * 4096;
        std::fs::copy(entry.path(), saved.join(entry.file_name())).expect("copy");
    }
    let mounted = disk
        .command("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={}", log_bytes + 8192)])
        .arg("ember-delta-log")
        .arg(output.join("_delta_log"))
        .output()
        .expect("run mount");
    assert!(mounted.status.success(), "{}", output_text(&mounted));
    for entry in std::fs::read_dir(&saved).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), log.join(entry.file_name())).expect("copy back");
    }
    // Filled: written until the log's disk refuses a byte more.
    let filler = log.join(".filler");
    {
        let mut file = std::fs::File::create(&filler).expect("create the filler");
        let page = [0xA5u8; 4096];
        while std::io::Write::write_all(&mut file, &page).is_ok() {}
        let _ = std::io::Write::write_all(&mut file, &[0xA5]);
    }
    let output_files = |seen: &Path| {
        let mut files = committed_files(seen);
        files.retain(|name, _| !name.starts_with("_quarantine/"));
        files
    };
    let before = output_files(&seen);
    let quarantine_before = quarantine_sees(&seen, tmp.path());
    assert!(quarantine_before.contains("BADX"), "{quarantine_before}");

    let out = run(&inputs.y).output().expect("run");
    let line = failure_line(&out);
    assert!(
        line.contains("_delta_log/: writing the commit: ")
            && line.contains("No space left on device"),
        "{line}"
    );
    assert_eq!(
        changes(&before, &output_files(&seen)),
        Vec::<String>::new(),
        "a failed commit changed the table ({line})"
    );
    assert_eq!(
        quarantine_sees(&seen, tmp.path()),
        quarantine_before,
        "the quarantine after the failed run"
    );
    let last_entry = std::fs::read_dir(seen.join("_quarantine/_delta_log"))
        .expect("list the quarantine's log")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max()
        .expect("a log entry");
    let entry = std::fs::read_to_string(&last_entry).expect("read the entry");
    assert!(entry.contains("ember.reverts_version"), "{entry}");
    std::fs::remove_file(&filler).expect("free the log");
    assert_eq!(
        small_disk_sees(&seen, tmp.path(), "delta"),
        expected(&inputs.fold_x),
        "the table after the failed commit"
    );

    // Both logs on one tmpfs with one free page: the quarantine's commit takes it, then the
    // output's commit and the revert of the quarantine's both fail. The line says so.
    let both = output.with_file_name("both-logs");
    std::fs::create_dir(disk.outside(&both)).expect("mkdir");
    let mounted = disk
        .command("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "ember-both-logs"])
        .arg(&both)
        .output()
        .expect("run mount");
    assert!(mounted.status.success(), "{}", output_text(&mounted));
    for (name, log) in [
        ("output", "_delta_log"),
        ("quarantine", "_quarantine/_delta_log"),
    ] {
        let from = seen.join(log);
        let to = disk.outside(&both.join(name));
        std::fs::create_dir(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("list a log") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
        let bound = disk
            .command("mount")
            .arg("--bind")
            .arg(both.join(name))
            .arg(output.join(log))
            .output()
            .expect("run mount");
        assert!(bound.status.success(), "{}", output_text(&bound));
    }
    let filler = disk.outside(&both.join(".filler"));
    {
        let mut file = std::fs::File::create(&filler).expect("create the filler");
        let page = [0xA5u8; 4096];
        let mut written = 0u64;
        while std::io::Write::write_all(&mut file, &page).is_ok() {
            written += 4096;
        }
        file.set_len(written - 4096).expect("free one page");
    }
    let before = output_files(&seen);
    let out = run(&inputs.y).output().expect("run");
    let line = failure_line(&out);
    assert!(
        line.contains("_delta_log/: writing the commit: ")
            && line.contains("No space left on device")
            && line.contains("/_quarantine/ keeps this run's rejected rows (its version ")
            && line.contains("): undoing that commit failed: "),
        "{line}"
    );
    assert_eq!(
        changes(&before, &output_files(&seen)),
        Vec::<String>::new(),
        "a failed commit changed the table ({line})"
    );
    let kept = quarantine_sees(&seen, tmp.path());
    assert!(kept.contains("BADY") && !kept.contains("BADX"), "{kept}");
    std::fs::remove_file(&filler).expect("free the logs");

    let out = run(&inputs.y).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        small_disk_sees(&seen, tmp.path(), "delta"),
        expected(&inputs.fold_y)
    );
}

/// A plain Parquet commit that fails after writing its plan (`_temporary/<run>/_COMMIT`) keeps
/// its staging, and the next run finishes it before its own: the fault here is `_SUCCESS`
/// turned into a folder, so the commit fails at its first step (deleting `_SUCCESS`). The next
/// run writes only the first day, so the other two days show whether the failed run's commit
/// was finished (its version) or dropped (the first run's).
#[test]
fn a_parquet_commit_that_fails_after_its_plan_is_finished_by_the_next_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(tmp.path());
    let output = tmp.path().join("daily");
    let location = output.display().to_string();
    let run = |input: &Path| run_job(Command::new(bin()), input, &location, "parquet");

    let first = run(&inputs.x).output().expect("run");
    assert_eq!(first.status.code(), Some(0), "{}", output_text(&first));
    let success = output.join("_SUCCESS");
    std::fs::remove_file(&success).expect("rm _SUCCESS");
    std::fs::create_dir_all(success.join("in-the-way")).expect("a folder as _SUCCESS");

    let failed = run(&inputs.y).output().expect("run");
    let line = failure_line(&failed);
    assert!(
        line.contains("deleting") && line.contains("_SUCCESS"),
        "{line}"
    );
    let plans: Vec<PathBuf> = staging_left(&output)
        .into_iter()
        .filter(|p| p.ends_with(ember_batch::committer::COMMIT_FILE))
        .collect();
    assert_eq!(plans.len(), 1, "the failed run's plan is kept: {plans:?}");

    // The fault is gone; the next run holds the first day only (as recorded).
    std::fs::remove_dir_all(&success).expect("rm the folder");
    let day = tmp.path().join("day");
    std::fs::create_dir_all(&day).expect("mkdir");
    let first_day = format!("{}.csv", DAYS[0]);
    std::fs::copy(inputs.x.join(&first_day), day.join(&first_day)).expect("copy a day");
    let next = run(&day).output().expect("run");
    assert_eq!(next.status.code(), Some(0), "{}", output_text(&next));
    assert!(
        String::from_utf8_lossy(&next.stderr)
            .contains("finishing the commit of an interrupted run"),
        "{}",
        output_text(&next)
    );
    // Day 1 as recorded (the last run), days 2 and 3 doubled (the failed run, finished).
    let mut want = Fold::default();
    want.add_file(&inputs.x.join(&first_day));
    for d in &DAYS[1..] {
        want.add_file(&inputs.y.join(format!("{d}.csv")));
    }
    assert_eq!(output_sees(&location, "parquet"), expected(&want));
    assert!(
        staging_left(&output).is_empty(),
        "{:?}",
        staging_left(&output)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&success).expect("_SUCCESS")).expect("JSON");
    assert_eq!(
        report["partitions"]["written"],
        serde_json::json!([format!("order_date={}", DAYS[0])]),
        "{report}"
    );
}

/// Whether an [`hdfs_files`] entry is the output's `_SUCCESS`.
fn is_success(entry: &str) -> bool {
    entry.starts_with("/warehouse/daily/_SUCCESS ")
}

/// The [`hdfs_files`] entries but `_SUCCESS`: the output's data files with their sizes.
fn data_files(files: &BTreeSet<String>) -> BTreeSet<&String> {
    files.iter().filter(|f| !is_success(f)).collect()
}

/// Every file under `/warehouse/daily` on `hdfs` but the staging folder and the writer lock,
/// with its size. A run that fails while the NameNode is down cannot remove its lock and
/// leaves it; the next run takes it over (its process is gone from this host), as this test's
/// last run shows.
fn hdfs_files(hdfs: &HdfsCluster) -> BTreeSet<String> {
    let listing = hdfs
        .fs(&["-ls", "-R", "/warehouse/daily"])
        .expect("list the output");
    listing
        .lines()
        .filter(|l| l.starts_with('-') && !l.contains("/_temporary") && !l.contains("/_ember_lock"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.len() >= 8).then(|| format!("{} {}", fields[7], fields[4]))
        })
        .collect()
}

#[test]
fn hdfs_faults_fail_the_run_with_one_line_and_the_next_run_succeeds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(tmp.path());
    let mut hdfs = HdfsCluster::start().expect("HDFS");
    let location = format!("{}/warehouse/daily/", hdfs.url());
    let run = |input: &Path| run_job(Command::new(bin()), input, &location, "parquet");

    let clock = Instant::now();
    let first = run(&inputs.x).output().expect("run");
    let full = clock.elapsed();
    assert_eq!(first.status.code(), Some(0), "{}", output_text(&first));
    let mut holds_x = true;
    let mut committed = hdfs_files(&hdfs);
    // Whether the output is a whole version (false after a fault inside a commit).
    let mut readable = true;
    let mut rng = rand::rng();
    // Each fault's moment and the failure line of its run (None: the run succeeded).
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    // Three runs whose DataNode is killed, then three whose NameNode is restarted, each at a
    // random moment of a run's length.
    for i in 0..6 {
        let (input, want) = other(&inputs, holds_x);
        let child = spawn(run(input));
        let delay = full.mul_f64(rng.random_range(0.15..0.9));
        std::thread::sleep(delay);
        let fault = if i < 3 {
            hdfs.kill_datanode();
            let out = finish(child);
            hdfs.start_datanode().expect("the DataNode back");
            ("DataNode killed", out)
        } else {
            // The run goes on while the NameNode is down (2 s) and after it is back.
            let restarted = std::thread::scope(|s| {
                let waiter = s.spawn(move || finish(child));
                hdfs.restart_namenode(Duration::from_secs(2))
                    .expect("the NameNode back");
                waiter.join().expect("the run's waiter")
            });
            ("NameNode restarted", restarted)
        };
        let (what, out) = fault;
        let moment = format!("{what} at {delay:.1?} of {full:.1?}");
        if out.status.success() {
            assert_eq!(output_sees(&location, "parquet"), want, "{moment}");
            holds_x = !holds_x;
            committed = hdfs_files(&hdfs);
            readable = true;
            seen.push((moment, None));
        } else {
            let line = failure_line(&out);
            let now = hdfs_files(&hdfs);
            let has_success = now.iter().any(|f| is_success(f));
            if data_files(&now) == data_files(&committed) {
                // No data file moved. `_SUCCESS` alone may differ: a `_SUCCESS` that a killed
                // DataNode left under construction (listed with 0 bytes) gets its length when
                // the restarted NameNode recovers its lease; or this run finished an earlier
                // commit whose renames were all done and only `_SUCCESS` was missing.
                if readable {
                    let (_, kept) = other(&inputs, !holds_x);
                    assert_eq!(output_sees(&location, "parquet"), kept, "{moment}: {line}");
                } else if has_success {
                    assert_eq!(output_sees(&location, "parquet"), want, "{moment}: {line}");
                    holds_x = !holds_x;
                    readable = true;
                }
                committed = now;
            } else if has_success {
                // A commit ended before the fault: this run's own (the fault hit its cleanup),
                // or the one an earlier run began in the same input and this run finished.
                let changed: Vec<&String> = now.symmetric_difference(&committed).collect();
                assert_eq!(
                    output_sees(&location, "parquet"),
                    want,
                    "{moment}: {line}; files that changed (path size): {changed:?}"
                );
                holds_x = !holds_x;
                committed = now;
                readable = true;
            } else {
                // The fault hit the commit's renames or its `_SUCCESS` (a plain Parquet commit
                // is a sequence of renames; README, known limits): `_SUCCESS` is then absent,
                // so no reader takes the folder as complete, and the plan is kept for the next
                // run to finish.
                assert!(
                    ["_SUCCESS", "moving ", "deleting "]
                        .iter()
                        .any(|step| line.contains(step)),
                    "{moment}: the output changed outside the commit: {line}"
                );
                let staging = hdfs
                    .fs(&["-ls", "-R", "/warehouse/daily/_temporary"])
                    .expect("list the staging");
                assert!(
                    staging.contains(&format!("/{}", ember_batch::committer::COMMIT_FILE)),
                    "{moment}: {line}: the commit's plan is gone: {staging}"
                );
                committed = now;
                readable = false;
            }
            seen.push((moment, Some(line)));
        }
    }
    eprintln!("faults: {seen:#?}");
    let failed = |what: &str| {
        seen.iter()
            .any(|(moment, line)| moment.starts_with(what) && line.is_some())
    };
    assert!(
        failed("DataNode"),
        "no run failed when its DataNode was killed: {seen:#?}"
    );
    // The faults are gone: the next run succeeds, is exactly its input, and removed what the
    // failed runs could not clean up.
    let (input, want) = other(&inputs, holds_x);
    let out = run(input).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(output_sees(&location, "parquet"), want);
    let listing = hdfs
        .fs(&["-ls", "-R", "/warehouse/daily"])
        .expect("list the output");
    assert!(!listing.contains("/_temporary/"), "{listing}");
}
