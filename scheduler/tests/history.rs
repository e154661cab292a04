//! The job history's files, as a restarted scheduler reads them: replayed logs, compaction,
//! leftovers, retention (`ember_scheduler::history`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::execution::object_store::DefaultObjectStoreRegistry;
use ember_core::api::JobState;
use ember_core::error::ErrorKind;
use ember_core::manifest::Job;
use ember_scheduler::history::{History, JobEvent, JobRecord, Retention};

fn job() -> Job {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/daily_revenue_by_product");
    let manifest = ember_core::manifest::JobManifest::load(&dir).expect("manifest");
    manifest.resolve(manifest.params()).expect("job")
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn history(dir: &std::path::Path) -> History {
    History::open(
        &dir.display().to_string(),
        &DefaultObjectStoreRegistry::new(),
    )
    .expect("open")
}

#[tokio::test]
async fn a_running_job_comes_back_running_and_an_ended_one_as_it_ended() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = history(tmp.path());
    let submitted = JobEvent::Submitted {
        job: Box::new(job()),
        at: at("2026-12-05T10:00:00Z"),
    };
    let started = JobEvent::Started {
        at: at("2026-12-05T10:00:01Z"),
    };
    h.log("a", &[submitted.clone(), started.clone()])
        .await
        .expect("log a");
    h.log("b", std::slice::from_ref(&submitted))
        .await
        .expect("log b");
    let mut ended = JobRecord::replay("c", &[submitted.clone(), started.clone()]).expect("replay");
    ended.apply(&JobEvent::Ended {
        at: at("2026-12-05T10:00:09Z"),
        state: JobState::Failed,
        error: Some("input `raw_sales`: no such file".into()),
        error_kind: Some(ErrorKind::User),
        report: None,
        steps: Vec::new(),
    });
    h.log("c", &[submitted.clone(), started.clone()])
        .await
        .expect("log c");
    h.compact(&ended).await.expect("compact c");
    // A job whose log lost its last line in a crash keeps the events before it.
    std::fs::write(
        tmp.path().join("d.inprogress"),
        format!(
            "{}\n{{\"event\":\"sta",
            serde_json::to_string(&submitted).expect("json")
        ),
    )
    .expect("write d");
    std::fs::write(tmp.path().join("e.json"), "not json").expect("write e");

    let mut loaded = h.load().await.expect("load");
    loaded.records.sort_by(|x, y| x.id.cmp(&y.id));
    let states: Vec<(&str, JobState)> = loaded
        .records
        .iter()
        .map(|r| (r.id.as_str(), r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a", JobState::Running),
            ("b", JobState::Queued),
            ("c", JobState::Failed),
            ("d", JobState::Queued)
        ]
    );
    let c = &loaded.records[2];
    assert_eq!(c.error.as_deref(), Some("input `raw_sales`: no such file"));
    assert_eq!(c.error_kind, Some(ErrorKind::User));
    assert_eq!(c.finished_at, Some(at("2026-12-05T10:00:09Z")));
    assert_eq!(c.job.name, "daily_revenue_by_product");
    assert_eq!(
        loaded.records[0].started_at,
        Some(at("2026-12-05T10:00:01Z"))
    );
    assert_eq!(loaded.unreadable.len(), 1, "{:?}", loaded.unreadable);
    assert!(loaded.unreadable[0].ends_with("/e.json"));
    // Compaction removed c's event log.
    assert!(!tmp.path().join("c.inprogress").exists());
    assert!(tmp.path().join("c.json").exists());
}

#[tokio::test]
async fn a_compacted_job_wins_over_a_log_left_behind_and_an_event_after_it_is_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = history(tmp.path());
    let submitted = JobEvent::Submitted {
        job: Box::new(job()),
        at: at("2026-12-05T10:00:00Z"),
    };
    let mut record = JobRecord::replay("x", std::slice::from_ref(&submitted)).expect("replay");
    record.apply(&JobEvent::Ended {
        at: at("2026-12-05T10:00:02Z"),
        state: JobState::Cancelled,
        error: Some("cancelled".into()),
        error_kind: None,
        report: None,
        steps: Vec::new(),
    });
    h.compact(&record).await.expect("compact");
    // The job's task, aborted by the cancel, logs one more event: it is not written.
    h.log("x", std::slice::from_ref(&submitted))
        .await
        .expect("log");
    assert!(!tmp.path().join("x.inprogress").exists());
    // A crash between the record's write and the log's deletion leaves both.
    std::fs::write(
        tmp.path().join("x.inprogress"),
        serde_json::to_string(&submitted).expect("json"),
    )
    .expect("write");
    let loaded = h.load().await.expect("load");
    assert_eq!(loaded.records.len(), 1);
    assert_eq!(loaded.records[0].state, JobState::Cancelled);
    assert!(!tmp.path().join("x.inprogress").exists());
}

#[test]
fn retention_forgets_the_oldest_past_the_count_and_those_past_the_age() {
    let ended: Vec<(String, DateTime<Utc>)> = [
        ("j1", "2026-11-01T00:00:00Z"),
        ("j2", "2026-12-01T00:00:00Z"),
        ("j3", "2026-12-04T00:00:00Z"),
        ("j4", "2026-12-05T00:00:00Z"),
        ("j5", "2026-12-05T01:00:00Z"),
    ]
    .iter()
    .map(|(id, t)| (id.to_string(), at(t)))
    .collect();
    let now = at("2026-12-05T02:00:00Z");
    let by_count = Retention {
        max_jobs: 3,
        max_age: Duration::from_secs(365 * 86_400),
    };
    let mut gone = by_count.expired(&ended, now);
    gone.sort();
    assert_eq!(gone, ["j1", "j2"]);
    let by_age = Retention {
        max_jobs: 100,
        max_age: Duration::from_secs(7 * 86_400),
    };
    assert_eq!(by_age.expired(&ended, now), ["j1"]);
    let nothing = Retention {
        max_jobs: 5,
        max_age: Duration::from_secs(40 * 86_400),
    };
    assert!(nothing.expired(&ended, now).is_empty());
}
