//! Finished queries of the Flight SQL endpoint and the dashboard are forgotten soon.
//!
//! Ballista keeps each finished job's execution graph for `--job-state-retention` (2 minutes):
//! its stages, tasks, their metrics and the plan with every file of its scans. Ember's job steps
//! need it (the job service reads their stages). A Flight SQL or dashboard query needs none of
//! it once its client has the results, and its graph grows with the files of the table it
//! reads. A heap profile of the 30-minute soak (BENCHMARKS.md, "Soak") showed the scheduler
//! growing by this alone: the dashboard, polled every second over a stream's output whose files
//! grow with every micro-batch that closes windows, left 2 minutes of such graphs (task metrics
//! and the scans' file statistics), ever larger, about +785 MiB per hour.
//!
//! Serving queries run under the job name [`SERVING_JOB_NAME`]; a sweep every
//! [`SWEEP_EVERY`] removes such a job's state [`SERVING_GRACE`] after it ended (its client
//! reads the result's locations as soon as the job ends; the shuffle files on the executors
//! are Ballista's to remove, after its own data retention).

use std::sync::Arc;
use std::time::Duration;

use ballista_core::serde::protobuf::job_status::Status;
use ballista_scheduler::cluster::JobState;

/// Ballista's job name (`ballista.job.name`) of the Flight SQL endpoint's queries, which the
/// dashboard's queries share.
pub const SERVING_JOB_NAME: &str = "ember serving query";

/// How long after it ended a serving query's state is kept.
pub const SERVING_GRACE: Duration = Duration::from_secs(10);

/// How often the finished serving queries are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Names the queries of `ctx` (the Flight SQL endpoint's session) as serving queries.
pub fn name_serving_queries(ctx: &datafusion::prelude::SessionContext) {
    let _ = ctx
        .state_ref()
        .write()
        .config_mut()
        .options_mut()
        .set("ballista.job.name", SERVING_JOB_NAME);
}

/// Removes, every [`SWEEP_EVERY`] until `stop` turns true, the serving queries of `jobs` that
/// ended more than [`SERVING_GRACE`] ago.
pub fn spawn_sweeper(jobs: Arc<dyn JobState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
            let now = chrono::Utc::now().timestamp_millis();
            let grace = i64::try_from(SERVING_GRACE.as_millis()).unwrap_or(i64::MAX);
            // Every job Ballista holds; only the ended ones have an end below.
            for id in jobs.get_all_jobs().await.unwrap_or_default() {
                let status = jobs.get_job_status(&id).await.ok().flatten();
                let ended = status
                    .filter(|s| s.job_name == SERVING_JOB_NAME)
                    .and_then(|s| match s.status? {
                        Status::Successful(j) => Some(j.ended_at),
                        Status::Failed(j) => Some(j.ended_at),
                        _ => None,
                    });
                let Some(ended) = ended else { continue };
                let ended = i64::try_from(ended).unwrap_or(i64::MAX);
                if now - ended >= grace
                    && let Err(e) = jobs.remove_job(&id).await
                {
                    tracing::warn!(job_id = %id, error = %e, "could not forget a finished serving query");
                }
            }
        }
    });
}
