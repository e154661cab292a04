//! Event-time watermarks, per Kafka partition with an idle timeout (Flink's model; Spark keeps
//! one global maximum and has no idleness).
//!
//! - Each partition's *event-time high mark* is the largest event time it has delivered.
//! - The watermark is `min(high mark of every active partition) − allowed lateness`, never
//!   moving back. A partition is *active* when it delivered an event within `idle_timeout` of
//!   processing time, or has never delivered one while others have not either.
//! - A partition that stays silent longer than `idle_timeout` stops holding the watermark back
//!   (Flink's `withIdleness`); it counts again as soon as it delivers.
//! - An event is **late** when its event time is below the watermark in force when it arrives
//!   (the watermark after the previous micro-batch). Every window that holds a non-late event
//!   ends after that watermark, so no such window has been emitted yet: the emitted windows are
//!   exactly what a batch query computes over the non-late events.
//!
//! Times are microseconds since the Unix epoch (event time) and milliseconds (processing time).
//! Nothing here reads a clock: callers pass `now_ms`, which keeps tests deterministic.

use std::collections::BTreeMap;

/// What the tracker needs to know about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionMark {
    /// Largest event time delivered, µs; `None` before the first event.
    pub high_us: Option<i64>,
    /// Processing time of the last delivery with at least one event, ms.
    pub last_active_ms: i64,
}

/// The watermark state of a stream: saved with every micro-batch in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    /// Allowed lateness, µs.
    pub lateness_us: i64,
    /// Idle timeout, ms of processing time.
    pub idle_timeout_ms: i64,
    /// Per Kafka partition.
    pub partitions: BTreeMap<i32, PartitionMark>,
    /// The current watermark, µs; `None` until the first event.
    pub current_us: Option<i64>,
}

impl Watermark {
    /// A tracker with no events seen.
    pub fn new(lateness_us: i64, idle_timeout_ms: i64) -> Self {
        Self {
            lateness_us,
            idle_timeout_ms,
            partitions: BTreeMap::new(),
            current_us: None,
        }
    }

    /// Applies the job's `allowed_lateness` and `idle_timeout` to a watermark restored from a
    /// checkpoint, and says what changed (one line per setting; empty when nothing did). The
    /// new values take effect from the next micro-batch; the watermark never moves back, so a
    /// longer lateness holds it where it is until the event times catch up, and a shorter one
    /// moves it on at the next batch.
    pub fn reconfigure(&mut self, lateness_us: i64, idle_timeout_ms: i64) -> Vec<String> {
        let said = |name: &str, from: std::time::Duration, to: std::time::Duration| {
            format!(
                "{name} {} → {}",
                humantime::format_duration(from),
                humantime::format_duration(to)
            )
        };
        let us = |v: i64| std::time::Duration::from_micros(v.max(0).unsigned_abs());
        let ms = |v: i64| std::time::Duration::from_millis(v.max(0).unsigned_abs());
        let mut changed = Vec::new();
        if self.lateness_us != lateness_us {
            changed.push(said(
                "allowed_lateness",
                us(self.lateness_us),
                us(lateness_us),
            ));
            self.lateness_us = lateness_us;
        }
        if self.idle_timeout_ms != idle_timeout_ms {
            changed.push(said(
                "idle_timeout",
                ms(self.idle_timeout_ms),
                ms(idle_timeout_ms),
            ));
            self.idle_timeout_ms = idle_timeout_ms;
        }
        changed
    }

    /// Whether an event at `event_us` is late: below the current watermark.
    pub fn is_late(&self, event_us: i64) -> bool {
        self.current_us.is_some_and(|w| event_us < w)
    }

    /// Makes `partitions` known (from the topic's metadata) so that a partition that never
    /// delivers holds the watermark back until `idle_timeout` passed since `now_ms`.
    pub fn track(&mut self, partitions: impl IntoIterator<Item = i32>, now_ms: i64) {
        for p in partitions {
            self.partitions.entry(p).or_insert(PartitionMark {
                high_us: None,
                last_active_ms: now_ms,
            });
        }
    }

    /// Records one micro-batch: the largest event time of the non-late events each partition
    /// delivered (partitions absent delivered none), at processing time `now_ms`; then moves
    /// the watermark and returns it.
    pub fn advance(&mut self, delivered: &BTreeMap<i32, i64>, now_ms: i64) -> Option<i64> {
        for (&p, &max_us) in delivered {
            let mark = self.partitions.entry(p).or_insert(PartitionMark {
                high_us: None,
                last_active_ms: now_ms,
            });
            mark.high_us = Some(mark.high_us.map_or(max_us, |h| h.max(max_us)));
            mark.last_active_ms = now_ms;
        }
        let active = self
            .partitions
            .values()
            .filter(|m| now_ms - m.last_active_ms <= self.idle_timeout_ms);
        // An active partition without events holds the watermark where it is.
        let mut low: Option<i64> = None;
        let mut blocked = false;
        let mut any = false;
        for m in active {
            any = true;
            match m.high_us {
                Some(h) => low = Some(low.map_or(h, |l| l.min(h))),
                None => blocked = true,
            }
        }
        if !any {
            // Every partition is idle: the highest mark of all of them is complete.
            low = self.partitions.values().filter_map(|m| m.high_us).max();
        } else if blocked {
            low = None;
        }
        if let Some(low) = low {
            let candidate = low.saturating_sub(self.lateness_us);
            self.current_us = Some(self.current_us.map_or(candidate, |w| w.max(candidate)));
        }
        self.current_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_US: i64 = 60_000_000;

    fn batch(items: &[(i32, i64)]) -> BTreeMap<i32, i64> {
        items.iter().copied().collect()
    }

    #[test]
    fn minimum_of_partitions_minus_lateness_and_never_back() {
        let mut w = Watermark::new(10 * MIN_US, 60_000);
        w.track([0, 1], 0);
        assert_eq!(
            w.advance(&batch(&[(0, 100 * MIN_US)]), 1_000),
            None,
            "partition 1 has delivered nothing yet"
        );
        assert_eq!(
            w.advance(&batch(&[(1, 50 * MIN_US)]), 2_000),
            Some(40 * MIN_US)
        );
        assert!(w.is_late(39 * MIN_US));
        assert!(!w.is_late(40 * MIN_US));
        assert_eq!(
            w.advance(&batch(&[(1, 120 * MIN_US)]), 3_000),
            Some(90 * MIN_US)
        );
        // An out-of-order batch does not move it back.
        assert_eq!(
            w.advance(&batch(&[(0, 10 * MIN_US), (1, 10 * MIN_US)]), 4_000),
            Some(90 * MIN_US)
        );
    }

    #[test]
    fn an_idle_partition_stops_holding_the_watermark_back() {
        let mut w = Watermark::new(0, 60_000);
        w.track([0, 1], 0);
        w.advance(&batch(&[(0, 10 * MIN_US), (1, 5 * MIN_US)]), 0);
        assert_eq!(w.current_us, Some(5 * MIN_US));
        // Partition 1 is silent; within the idle timeout it still holds the watermark.
        assert_eq!(
            w.advance(&batch(&[(0, 30 * MIN_US)]), 59_000),
            Some(5 * MIN_US)
        );
        // Past the timeout it no longer does.
        assert_eq!(
            w.advance(&batch(&[(0, 31 * MIN_US)]), 61_000),
            Some(31 * MIN_US)
        );
        // When it delivers again it counts again (the watermark stays where it was).
        assert_eq!(
            w.advance(&batch(&[(1, 20 * MIN_US)]), 62_000),
            Some(31 * MIN_US)
        );
        assert!(w.is_late(20 * MIN_US));
    }

    #[test]
    fn a_changed_lateness_takes_effect_at_the_next_batch_and_never_moves_back() {
        let mut w = Watermark::new(60 * MIN_US, 60_000);
        w.advance(&batch(&[(0, 120 * MIN_US)]), 0);
        assert_eq!(w.current_us, Some(60 * MIN_US));
        assert!(w.reconfigure(60 * MIN_US, 60_000).is_empty());
        assert_eq!(
            w.reconfigure(10 * MIN_US, 60_000),
            ["allowed_lateness 1h → 10m"]
        );
        w.advance(&BTreeMap::new(), 0);
        assert_eq!(w.current_us, Some(110 * MIN_US));
        // Longer again: held, not moved back.
        w.reconfigure(120 * MIN_US, 1_000);
        w.advance(&batch(&[(0, 125 * MIN_US)]), 0);
        assert_eq!(w.current_us, Some(110 * MIN_US));
        assert_eq!(w.idle_timeout_ms, 1_000);
    }

    #[test]
    fn all_partitions_idle_uses_the_highest_mark() {
        let mut w = Watermark::new(MIN_US, 1_000);
        w.track([0, 1, 2], 0);
        w.advance(&batch(&[(0, 10 * MIN_US)]), 0);
        assert_eq!(
            w.current_us, None,
            "1 and 2 never delivered and are not idle yet"
        );
        assert_eq!(w.advance(&batch(&[]), 5_000), Some(9 * MIN_US));
    }
}
