//! Delta Lake outputs (`[output] format = "delta"`), checked by readers Ember did not write and
//! under faults, all on 127.0.0.1:
//! - every version of a table is what three readers see: delta-rs's Python package
//!   (`deltalake`, PyPI), a replay of `_delta_log/*.json` by hand, and Ember's own reader
//!   (what Flight SQL serves); each equals the job folded independently in Rust
//!   (`ember_testkit::reference`); time travel, history and vacuum;
//! - two concurrent runs: disjoint partitions both land, overlapping ones give one success and
//!   one conflict; two runs on one plain Parquet output: the second is refused by the lock;
//! - kill -9 of `ember run` and `ember cancel` of a cluster job at random moments of the write
//!   and the commit, on local disk and on HDFS: the table is always at the old or the new
//!   version, never between.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ember_core::api::JobDetail;
use ember_core::threads::block_on;
use ember_testkit::ember::{ClusterOptions, EmberCluster, EmberServe};
use ember_testkit::query::{delta_log_files, delta_rows, files_rows};
use ember_testkit::reference::Fold;
use ember_testkit::util::{output_text, python, wait_child};
use ember_testkit::versions::{DAYS, expected, inputs};
use rand::Rng;
use rstest::rstest;

const JOB: &str = "jobs/daily_revenue_by_product";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(bin());
    command
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove("EMBER_CONFIG");
    command
}

fn ember(args: &[&str]) -> Output {
    command(args).output().expect("run ember")
}

/// `ember run` of the job on `input` into `output` as a Delta table (with `extra` flags).
fn run_delta(input: &Path, output: &str, extra: &[&str]) -> Command {
    let mut c = command(&["run", JOB, "--format", "json", "--parallelism", "2"]);
    c.args(["--set", &format!("input={}", input.display())])
        .args(["--set", &format!("output={output}")])
        .args(["--set", "format=delta"])
        .args(extra);
    c
}

fn run_ok(mut c: Command) -> ember_core::report::RunReport {
    let out = c.output().expect("run ember");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).expect("the run's report")
}

/// What delta-rs's Python package reads: `rows|Σ net`, and the version.
fn deltalake_sees(table: &Path, version: Option<u64>) -> (String, u64) {
    let mut c = Command::new(python().expect("the venv's python (bash .ci/setup)"));
    c.arg(repo().join("cli/tests/python/delta_read.py"))
        .arg(table);
    if let Some(v) = version {
        c.arg(v.to_string());
    }
    let out = c.output().expect("python");
    assert!(out.status.success(), "deltalake: {}", output_text(&out));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    (
        format!(
            "{}|{}",
            seen["rows"],
            seen["net"].as_str().unwrap_or("NULL")
        ),
        seen["version"].as_u64().expect("version"),
    )
}

/// What a by-hand replay of `_delta_log/` sees: `rows|Σ net`, the version, the files.
fn log_replay_sees(location: &str) -> (String, u64, BTreeSet<String>) {
    block_on(async {
        let (version, files) = delta_log_files(location).await.expect("replay the log");
        let rows = if files.is_empty() {
            vec!["0|NULL".to_string()]
        } else {
            files_rows(&files, "SELECT count(*), sum(net_revenue) FROM t")
                .await
                .expect("read the log's files")
        };
        (rows.join(";"), version, files)
    })
}

/// What Ember's own reader (Flight SQL's) sees at `version`: `rows|Σ net`.
fn ember_sees(location: &str, version: Option<u64>) -> String {
    block_on(delta_rows(
        location,
        version,
        "SELECT count(*), sum(net_revenue) FROM t",
    ))
    .expect("Ember's reader")
    .join(";")
}

/// Every data file under the table's partition folders, as URLs.
fn files_on_disk(table: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for day in std::fs::read_dir(table).expect("table folder") {
        let day = day.expect("entry").path();
        let name = day
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !day.is_dir() || name.starts_with('_') {
            continue;
        }
        for f in std::fs::read_dir(&day).expect("partition") {
            files.insert(format!("file://{}", f.expect("file").path().display()));
        }
    }
    files
}

#[test]
fn every_version_is_what_independent_readers_see() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(tmp.path());
    let (want_x, want_y) = (expected(&inputs.fold_x), expected(&inputs.fold_y));
    assert_ne!(want_x, want_y);
    let table = tmp.path().join("daily");
    let location = table.display().to_string();

    // Version 1: x.
    let first = run_ok(run_delta(&inputs.x, &location, &[]));
    assert_eq!(
        (first.table_version, first.quarantine_version),
        (Some(1), Some(1)),
        "{first:?}"
    );
    assert_eq!(first.rows.written, inputs.fold_x.rows());
    assert_eq!(first.rows.quarantined, inputs.fold_x.invalid);
    assert_eq!(deltalake_sees(&table, None), (want_x.clone(), 1));
    let (replayed, version, files) = log_replay_sees(&location);
    assert_eq!((replayed, version), (want_x.clone(), 1));
    assert_eq!(
        files.len(),
        first.files - 1,
        "one file per day (+1 quarantine)"
    );
    assert_eq!(ember_sees(&location, None), want_x);
    let (quarantined, _) = deltalake_sees(&table.join("_quarantine"), None);
    assert!(quarantined.starts_with("1|"), "{quarantined}");

    // Version 2: y replaces every day; version 1 stays readable (time travel).
    let second = run_ok(run_delta(&inputs.y, &location, &[]));
    assert_eq!(second.table_version, Some(2));
    assert_eq!(
        second.partitions.replaced,
        DAYS.len() + 1,
        "3 days and 1 quarantine day"
    );
    assert_eq!(deltalake_sees(&table, None), (want_y.clone(), 2));
    assert_eq!(log_replay_sees(&location).0, want_y);
    assert_eq!(ember_sees(&location, None), want_y);
    assert_eq!(deltalake_sees(&table, Some(1)), (want_x.clone(), 1));
    assert_eq!(ember_sees(&location, Some(1)), want_x);

    // History: the versions, newest first, with the runs that made them.
    let out = ember(&["table", "history", &location, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let summary: Vec<(u64, String, String)> = history
        .iter()
        .map(|h| {
            (
                h["version"].as_u64().unwrap_or(99),
                h["operation"].as_str().unwrap_or_default().to_string(),
                h["run_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (2, "WRITE".to_string(), second.run_id.clone()),
            (1, "WRITE".to_string(), first.run_id.clone()),
            (0, "CREATE TABLE".to_string(), first.run_id.clone()),
        ]
    );
    assert_eq!(
        history[0]["rows_added"].as_u64(),
        Some(inputs.fold_y.rows())
    );
    assert_eq!(
        history[0]["files_removed"].as_u64(),
        Some(DAYS.len() as u64)
    );

    // Flight SQL serves the latest version, and any version as `name@vN`.
    let log = tmp.path().join("serve.log");
    let served = format!("daily={location}");
    let server = EmberServe::start(
        bin(),
        &repo(),
        &["--jobs", "/nonexistent", "--table", &served],
        &log,
    )
    .expect("ember serve");
    let flight = |sql: &str| {
        block_on(async {
            let mut client = ember_testkit::flight_sql::connect(server.address()).await?;
            ember_testkit::flight_sql::query(&mut client, sql).await
        })
    };
    assert_eq!(
        flight("SELECT count(*), sum(net_revenue) FROM daily"),
        Ok(vec![want_y.clone()])
    );
    assert_eq!(
        flight("SELECT count(*), sum(net_revenue) FROM \"daily@v1\""),
        Ok(vec![want_x.clone()])
    );
    let missing = flight("SELECT * FROM \"daily@v9\"").expect_err("no version 9");
    assert!(
        missing.contains("has no version 9: its versions are 0 to 2"),
        "{missing}"
    );
    // A filter on the partition column reads that partition's file only.
    let plan = flight(&format!(
        "EXPLAIN SELECT sum(net_revenue) FROM daily WHERE order_date = DATE '{}'",
        DAYS[1]
    ))
    .expect("explain")
    .join("\n");
    assert!(
        plan.contains(&format!("order_date={}", DAYS[1]))
            && !plan.contains(&format!("order_date={}", DAYS[0])),
        "{plan}"
    );
    drop(server);

    // Vacuum: below the 7-day minimum only with --force; it deletes the replaced days' files,
    // and afterwards the folder holds exactly the files the log references.
    let refused = ember(&["table", "vacuum", &location, "--retain", "0s"]);
    assert_eq!(refused.status.code(), Some(1), "{}", output_text(&refused));
    assert!(
        output_text(&refused).contains("--force"),
        "{}",
        output_text(&refused)
    );
    let out = ember(&[
        "table", "vacuum", &location, "--retain", "0s", "--force", "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let vacuumed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(vacuumed["files"].as_array().map(Vec::len), Some(DAYS.len()));
    let (seen, _, referenced) = log_replay_sees(&location);
    assert_eq!(seen, want_y);
    assert_eq!(files_on_disk(&table), referenced);
    // VACUUM is logged as two versions (VACUUM START, VACUUM END) that change no row.
    assert_eq!(deltalake_sees(&table, None), (want_y, 4));
}

/// Starts `ember run` on `input` into `output`; the child and its stderr file.
fn spawn(mut c: Command, log: &Path) -> Child {
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("start ember")
}

fn finish(mut child: Child, log: &Path) -> (Option<i32>, String) {
    let status = wait_child(&mut child, Duration::from_secs(300))
        .expect("wait")
        .expect("ember run ended within 300 s");
    (
        status.code(),
        std::fs::read_to_string(log).unwrap_or_default(),
    )
}

#[test]
fn concurrent_runs_land_on_disjoint_days_and_conflict_on_shared_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let day_folder = |name: &str, days: &[&str]| {
        let folder = tmp.path().join(name);
        std::fs::create_dir_all(&folder).expect("folder");
        let mut fold = Fold::default();
        for day in days {
            let source = repo().join(format!("data/online_retail_by_day/{day}.csv.gz"));
            std::fs::copy(&source, folder.join(format!("{day}.csv.gz"))).expect("copy");
            fold.add_file(&source);
        }
        (folder, fold)
    };
    // Disjoint: one run writes the first day, the other the last two; both land.
    let (a, fold_a) = day_folder("a", &DAYS[..1]);
    let (b, fold_b) = day_folder("b", &DAYS[1..]);
    let table = tmp.path().join("disjoint").display().to_string();
    let (la, lb) = (tmp.path().join("a.log"), tmp.path().join("b.log"));
    let (ca, cb) = (
        spawn(run_delta(&a, &table, &[]), &la),
        spawn(run_delta(&b, &table, &[]), &lb),
    );
    let (ra, rb) = (finish(ca, &la), finish(cb, &lb));
    assert_eq!((ra.0, rb.0), (Some(0), Some(0)), "{}\n{}", ra.1, rb.1);
    let mut both = Fold::default();
    both.days.extend(fold_a.days);
    both.days.extend(fold_b.days);
    let (seen, version, _) = log_replay_sees(&table);
    assert_eq!((seen, version), (expected(&both), 2));

    // Overlapping: both write the middle day. Both read the table before either commits, so
    // the second commit conflicts; the table is exactly the winner's.
    let (c, fold_c) = day_folder("c", &DAYS[..2]);
    let (d, fold_d) = day_folder("d", &DAYS[1..]);
    let table = tmp.path().join("overlap").display().to_string();
    let (lc, ld) = (tmp.path().join("c.log"), tmp.path().join("d.log"));
    let (cc, cd) = (
        spawn(run_delta(&c, &table, &[]), &lc),
        spawn(run_delta(&d, &table, &[]), &ld),
    );
    let (rc, rd) = (finish(cc, &lc), finish(cd, &ld));
    let (winner, loser) = match (rc.0, rd.0) {
        (Some(0), Some(3)) => (&fold_c, &rd.1),
        (Some(3), Some(0)) => (&fold_d, &rc.1),
        other => panic!(
            "expected one success and one conflict, got {other:?}\n{}\n{}",
            rc.1, rd.1
        ),
    };
    assert!(
        loser.contains("a concurrent commit conflicts with this one") && loser.lines().count() == 1,
        "{loser}"
    );
    let (seen, version, _) = log_replay_sees(&table);
    assert_eq!((seen, version), (expected(winner), 1));

    // A plain Parquet output takes one run at a time: the second is refused with the first's
    // name, and once the first is done the output is free again.
    let output = tmp.path().join("parquet").display().to_string();
    let parquet = |input: &Path| {
        let mut c = command(&["run", JOB, "--parallelism", "2"]);
        c.args(["--set", &format!("input={}", input.display())])
            .args(["--set", &format!("output={output}")]);
        c
    };
    let (le, lf) = (tmp.path().join("e.log"), tmp.path().join("f.log"));
    let first = spawn(parquet(&c), &le);
    // The first holds the lock from its start to its end.
    let lock = Path::new(&output).join("_ember_lock");
    let held = ember_testkit::util::wait_for(
        "the first run's lock",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || Ok(lock.exists().then_some(())),
    );
    assert!(
        held.is_ok(),
        "the lock never appeared: {}",
        std::fs::read_to_string(&le).unwrap_or_default()
    );
    let second = finish(spawn(parquet(&d), &lf), &lf);
    let first = finish(first, &le);
    assert_eq!(first.0, Some(0), "{}", first.1);
    assert_eq!(second.0, Some(3), "{}", second.1);
    assert!(second.1.contains("is in use by run"), "{}", second.1);
    assert!(!lock.exists(), "the lock outlived its run");
    let again = parquet(&d).output().expect("run");
    assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
}

/// Where the kill test writes.
enum Store {
    Local,
    Hdfs,
}

/// What state a table can be in after a run was killed: the old or the new version's totals.
fn assert_old_or_new(location: &str, local: Option<&Path>, want: &[String; 2], moment: &str) {
    let (seen, version, _) = log_replay_sees(location);
    assert!(
        want.contains(&seen),
        "{moment}: the log's files hold {seen}, neither {want:?} (version {version})"
    );
    assert_eq!(ember_sees(location, None), seen, "{moment}: Ember's reader");
    if let Some(table) = local {
        assert_eq!(deltalake_sees(table, None).0, seen, "{moment}: deltalake");
    }
}

#[rstest]
#[case::local(Store::Local)]
#[case::hdfs(Store::Hdfs)]
fn killed_and_cancelled_runs_leave_the_old_or_the_new_version(#[case] store: Store) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(tmp.path());
    let want = [expected(&inputs.fold_x), expected(&inputs.fold_y)];
    let hdfs = match store {
        Store::Hdfs => Some(ember_testkit::HdfsCluster::start().expect("HDFS")),
        Store::Local => None,
    };
    let (location, local) = match &hdfs {
        Some(h) => (format!("{}/warehouse/daily/", h.url()), None),
        None => {
            let path = tmp.path().join("daily");
            (path.display().to_string(), Some(path))
        }
    };
    // A first complete run, timed: the random moments fall within one run's length.
    let clock = Instant::now();
    run_ok(run_delta(&inputs.x, &location, &[]));
    let full = clock.elapsed();
    assert_old_or_new(&location, local.as_deref(), &want, "after the first run");
    let mut rng = rand::rng();
    let mut killed_at = Vec::new();
    // Six kill -9 of an embedded run. Locally, two of them the moment the quarantine table's
    // new version appears: between the run's two commits.
    for i in 0..6 {
        let input = if i % 2 == 0 { &inputs.y } else { &inputs.x };
        let log = tmp.path().join(format!("kill-{i}.log"));
        let mut child = spawn(run_delta(input, &location, &[]), &log);
        let moment = match (&local, i) {
            (Some(table), 0 | 1) => {
                let log_dir = table.join("_quarantine/_delta_log");
                let before = std::fs::read_dir(&log_dir).map(|d| d.count()).unwrap_or(0);
                let start = Instant::now();
                while start.elapsed() < full * 3
                    && std::fs::read_dir(&log_dir).map(|d| d.count()).unwrap_or(0) <= before
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                format!(
                    "kill {i} after the quarantine commit ({:?})",
                    start.elapsed()
                )
            }
            _ => {
                let delay = full.mul_f64(rng.random_range(0.2..1.1));
                std::thread::sleep(delay);
                format!("kill {i} at {delay:?} of {full:?}")
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_old_or_new(&location, local.as_deref(), &want, &moment);
        killed_at.push(moment);
    }
    // Four `ember cancel` of a job on a cluster.
    let cluster = EmberCluster::start(bin(), 2, &ClusterOptions::default()).expect("cluster");
    for i in 0..4 {
        let input = if i % 2 == 0 { &inputs.y } else { &inputs.x };
        let out = ember(&[
            "submit",
            JOB,
            "--scheduler",
            cluster.address(),
            "--set",
            &format!("input={}", input.display()),
            "--set",
            &format!("output={location}"),
            "--set",
            "format=delta",
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["id"]
            .as_str()
            .expect("job id")
            .to_string();
        let delay = full.mul_f64(rng.random_range(0.1..1.5));
        std::thread::sleep(delay);
        let cancel = ember(&["cancel", &id, "--scheduler", cluster.address()]);
        let state = ember_testkit::util::wait_for(
            "the job's end",
            Duration::from_secs(120),
            Duration::from_millis(200),
            || {
                let detail: JobDetail = serde_json::from_str(
                    &cluster
                        .get(&format!("/api/v1/jobs/{id}"))
                        .map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?;
                Ok(detail
                    .summary
                    .state
                    .is_final()
                    .then_some(detail.summary.state))
            },
        )
        .expect("the job ends");
        let moment = format!(
            "cancel {i} at {delay:?} ({state:?}; {})",
            output_text(&cancel).trim()
        );
        assert_old_or_new(&location, local.as_deref(), &want, &moment);
        killed_at.push(moment);
    }
    // The next run succeeds and is the new version.
    run_ok(run_delta(&inputs.y, &location, &[]));
    let (seen, _, referenced) = log_replay_sees(&location);
    assert_eq!(seen, want[1], "{killed_at:#?}");
    // Vacuum removes what the killed runs left: the folder then holds exactly the log's files.
    let out = ember(&["table", "vacuum", &location, "--retain", "0s", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    if let Some(table) = &local {
        assert_eq!(files_on_disk(table), referenced, "{killed_at:#?}");
    }
    assert_eq!(log_replay_sees(&location).0, want[1]);
    eprintln!("moments: {killed_at:#?}");
}
