//! What a committed batch reports (Spark's `StreamingQueryProgress`), and how a batch's
//! message budget is split over the partitions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ember_core::api::{PartitionProgress, StreamProgress};

use super::stream::{Stream, rfc3339};
use crate::checkpoint::{BatchCommit, BatchPlan};

impl Stream {
    /// Sends the progress of a committed batch, as Spark's `StreamingQueryProgress`: the input
    /// rate counts from the previous batch's start (or this one's, for the first), the process
    /// rate over this batch's wall time.
    pub(super) fn send_progress(
        &self,
        plan: &BatchPlan,
        commit: &BatchCommit,
        latest: &BTreeMap<i32, i64>,
        tick: Instant,
        last_tick: Option<Instant>,
    ) {
        let Some(sender) = &self.progress else {
            return;
        };
        #[allow(clippy::cast_precision_loss)]
        let per_second = |rows: i64, seconds: f64| {
            if seconds > 0.0 {
                rows as f64 / seconds
            } else {
                0.0
            }
        };
        let since = last_tick.unwrap_or(tick).elapsed().as_secs_f64();
        let partitions = plan
            .ranges
            .iter()
            .map(|r| {
                let end_of_partition = latest
                    .get(&r.partition)
                    .copied()
                    .unwrap_or(r.end)
                    .max(r.end);
                PartitionProgress {
                    partition: r.partition,
                    start_offset: r.start,
                    end_offset: r.end,
                    latest_offset: end_of_partition,
                    lag: end_of_partition - r.end,
                }
            })
            .collect();
        let progress = StreamProgress {
            batch_id: commit.batch_id,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            topic: plan.topic.clone(),
            counts: commit.counts.clone(),
            input_rows_per_second: per_second(commit.counts.records, since),
            processed_rows_per_second: per_second(
                commit.counts.records,
                Duration::from_millis(commit.duration_ms).as_secs_f64(),
            ),
            duration_ms: commit.duration_ms,
            phases_ms: commit.phases_ms.clone(),
            watermark: commit.watermark.current_us.map(rfc3339),
            partitions,
        };
        let _ = sender.send(progress);
    }
}
