//! The trigger loop of a stream whose source is a folder of files ([`crate::spool`]): each
//! planned batch lists the files it reads (name and size) in `offsets/<id>`, runs like a Kafka
//! batch (parse, quarantine, windows, outputs, state, commit mark), then renames or deletes its
//! files. A restart first finishes the files of the last committed batch, then runs an
//! uncommitted plan again with exactly its files.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::failpoint::{Phase, crash_point};
use super::stream::{Input, Stream, StreamReport, now_ms, rfc3339};
use crate::checkpoint::{BatchPlan, Resume};
use crate::error::{Error, Result};
use crate::manifest::Trigger;
use crate::watermark::Watermark;

impl Stream {
    /// Runs a `files` stream until its trigger says stop (available-now: the files in the
    /// folder at the start are read) or `stop` resolves (between batches).
    pub(super) async fn run_files(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
        report: &mut StreamReport,
    ) -> Result<()> {
        let Input::Files(spool) = &self.input else {
            return Err(Error::Checkpoint {
                path: self.checkpoint.url().to_string(),
                message: "a Kafka stream has no folder to read (a bug)".into(),
            });
        };
        let spool = spool.clone();
        tokio::pin!(stop);
        if self
            .wait(Some(Duration::ZERO), Instant::now(), &mut stop)
            .await
        {
            return Ok(());
        }
        let lateness = self.job.allowed_lateness_us;
        let idle = self.job.idle_timeout_ms;
        let (mut next_plan, mut watermark, mut state, mut next_id) =
            match self.checkpoint.resume().await? {
                Resume::Fresh => (None, Watermark::new(lateness, idle), self.empty_state(), 0),
                Resume::Replay { plan } => {
                    tracing::info!(
                        batch_id = plan.batch_id,
                        files = plan.files.len(),
                        "running an uncommitted batch again with its planned files"
                    );
                    let state = self.load_state(plan.batch_id.checked_sub(1)).await?;
                    let (wm, id) = (plan.watermark.clone(), plan.batch_id);
                    (Some(plan), wm, state, id)
                }
                Resume::Continue { last, plan } => {
                    // The last batch committed, but the process may have died before its
                    // files left the folder.
                    let finished = spool.finish(&plan.files).await?;
                    if finished > 0 {
                        tracing::info!(
                            batch_id = plan.batch_id,
                            files = finished,
                            "finished the files of the last committed batch"
                        );
                    }
                    let state = self.load_state(Some(last.batch_id)).await?;
                    (None, last.watermark, state, last.batch_id + 1)
                }
            };
        for change in watermark.reconfigure(lateness, idle) {
            tracing::warn!(
                next_batch = next_id,
                "{change}: takes effect from this batch on"
            );
        }
        let interval = match self.job.trigger {
            Trigger::ProcessingTime(d) => Some(d),
            Trigger::AvailableNow => None,
        };
        // Available-now reads the files there now (Spark's Trigger.AvailableNow), in as many
        // batches as max_files_per_trigger takes.
        let limit: Option<BTreeSet<String>> = match self.job.trigger {
            Trigger::AvailableNow => Some(
                spool
                    .pending_all()
                    .await?
                    .into_iter()
                    .map(|f| f.name)
                    .collect(),
            ),
            Trigger::ProcessingTime(_) => None,
        };
        let mut replay = next_plan.is_some();
        let mut last_tick = None;
        loop {
            let tick = Instant::now();
            let plan = match next_plan.take() {
                Some(plan) => plan,
                None => {
                    let mut files = spool.pending().await?;
                    if let Some(limit) = &limit {
                        files.retain(|f| limit.contains(&f.name));
                    }
                    if files.is_empty() {
                        if limit.is_some() || self.wait(interval, tick, &mut stop).await {
                            break;
                        }
                        continue;
                    }
                    let now = now_ms();
                    let mut wm = watermark.clone();
                    wm.reconfigure(lateness, idle);
                    wm.track([0], now);
                    let plan = BatchPlan {
                        batch_id: next_id,
                        topic: spool.url().to_string(),
                        ranges: Vec::new(),
                        watermark: wm,
                        now_ms: now,
                        offsets_lost: 0,
                        files,
                    };
                    self.checkpoint.plan(&plan).await?;
                    crash_point(Phase::Offsets, plan.batch_id, false);
                    plan
                }
            };
            let commit = self
                .run_and_record(
                    &plan,
                    &mut state,
                    replay,
                    report,
                    &BTreeMap::new(),
                    tick,
                    last_tick,
                )
                .await?;
            last_tick = Some(tick);
            replay = false;
            watermark = commit.watermark;
            next_id = plan.batch_id + 1;
            if self.wait(interval, tick, &mut stop).await {
                break;
            }
        }
        report.watermark = watermark.current_us.map(rfc3339);
        Ok(())
    }
}
