//! The engine's pure rules, with no I/O: how a batch's message budget is split over the
//! partitions, and which events a batch keeps in the state for the windows still open.

use std::collections::BTreeMap;

use datafusion::arrow::array::{RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{filter_record_batch, kernels::cmp};
use ember_core::udf::WindowSpec;

/// Splits `budget` messages over partitions with `available` messages each: an equal share,
/// then what is left to the partitions that have more, in partition order.
pub fn split_budget(available: &BTreeMap<i32, i64>, budget: i64) -> BTreeMap<i32, i64> {
    let mut take: BTreeMap<i32, i64> = available.keys().map(|&p| (p, 0)).collect();
    let mut left = budget.max(0);
    let n = i64::try_from(available.len().max(1)).unwrap_or(1);
    let share = left / n;
    for (&p, &a) in available {
        let t = a.max(0).min(share);
        take.insert(p, t);
        left -= t;
    }
    for (&p, &a) in available {
        if left == 0 {
            break;
        }
        let t = take.get(&p).copied().unwrap_or(0);
        let more = (a.max(0) - t).min(left);
        take.insert(p, t + more);
        left -= more;
    }
    take
}

/// What a stream does when a partition's next offset (from its checkpoint) is no longer in
/// the topic: records deleted by retention or `DeleteRecords`, or a topic deleted and created
/// again (Spark's `failOnDataLoss`, with a choice of where to go on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOffsetsLost {
    /// Stop with an error that says what happened (the default).
    #[default]
    Fail,
    /// Go on from the first offset still in the partition.
    Earliest,
    /// Go on from the partition's end.
    Latest,
}

/// Where a partition whose next offset is `start` goes on, given the offsets `[low, high)` it
/// holds now: `Ok(None)` when `start` is within `[low, high]`; else `Ok(Some((new start,
/// offsets skipped)))` as `on` says, the skipped offsets being those of the partition the
/// stream will never read (`low − start` after retention when going on from the earliest).
///
/// # Errors
/// With [`OnOffsetsLost::Fail`], what happened, in words.
pub fn offsets_lost(
    start: i64,
    (low, high): (i64, i64),
    on: OnOffsetsLost,
) -> std::result::Result<Option<(i64, i64)>, String> {
    let retention = start < low;
    if !retention && start <= high {
        return Ok(None);
    }
    match on {
        OnOffsetsLost::Fail if retention => Err(format!(
            "the next offset {start} is gone: the partition starts at {low} (records deleted by retention, compaction or DeleteRecords)"
        )),
        OnOffsetsLost::Fail => Err(format!(
            "the next offset {start} is past the partition's end {high}: the topic was deleted and created again, or truncated"
        )),
        OnOffsetsLost::Earliest => Ok(Some((low, if retention { low - start } else { 0 }))),
        OnOffsetsLost::Latest => Ok(Some((
            high,
            if retention { high - start } else { high - low },
        ))),
    }
}

/// Events whose last window, of any of `windows` (one per windowed output), ends after
/// `watermark_us`: the state to keep. None without windows (stateless outputs only). Column
/// `time` of each batch is the event time (Timestamp µs).
///
/// # Errors
/// An Arrow error (a bug: the batch is not in the events schema).
pub fn retain(
    batches: &[RecordBatch],
    time: usize,
    windows: &[WindowSpec],
    watermark_us: Option<i64>,
) -> std::result::Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let Some(w) = watermark_us else {
        return Ok(batches.to_vec());
    };
    // last_end(t) > w  ⇔  t ≥ ((w − size) div slide + 1) × slide; the earliest such t of all
    // windows.
    let Some(threshold) = windows
        .iter()
        .map(|window| ((w - window.size_us).div_euclid(window.slide_us) + 1) * window.slide_us)
        .min()
    else {
        return Ok(Vec::new());
    };
    let scalar = TimestampMicrosecondArray::new_scalar(threshold);
    batches
        .iter()
        .map(|b| {
            let mask = cmp::gt_eq(b.column(time), &scalar)?;
            filter_record_batch(b, &mask)
        })
        .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{self, Origin};

    #[test]
    fn budget_is_shared_then_filled() {
        let avail: BTreeMap<i32, i64> = [(0, 100), (1, 5), (2, 0)].into();
        assert_eq!(split_budget(&avail, 30), [(0, 25), (1, 5), (2, 0)].into());
        assert_eq!(
            split_budget(&avail, 1000),
            [(0, 100), (1, 5), (2, 0)].into()
        );
        assert_eq!(split_budget(&avail, 0), [(0, 0), (1, 0), (2, 0)].into());
    }

    #[test]
    fn lost_offsets_fail_or_go_on_where_asked() {
        use OnOffsetsLost::{Earliest, Fail, Latest};
        for start in [10, 15, 20] {
            assert_eq!(offsets_lost(start, (10, 20), Fail), Ok(None));
        }
        // Retention removed offsets 5..10.
        let e = offsets_lost(5, (10, 20), Fail).expect_err("fail");
        assert!(e.contains("the partition starts at 10"), "{e}");
        assert_eq!(offsets_lost(5, (10, 20), Earliest), Ok(Some((10, 5))));
        assert_eq!(offsets_lost(5, (10, 20), Latest), Ok(Some((20, 15))));
        // The topic was created again: it has offsets 0..3, the checkpoint was at 40.
        let e = offsets_lost(40, (0, 3), Fail).expect_err("fail");
        assert!(e.contains("deleted and created again"), "{e}");
        assert_eq!(offsets_lost(40, (0, 3), Earliest), Ok(Some((0, 0))));
        assert_eq!(offsets_lost(40, (0, 3), Latest), Ok(Some((3, 3))));
    }

    #[test]
    fn the_state_keeps_events_of_open_windows_only() {
        const MIN: i64 = 60_000_000;
        let spec = WindowSpec::new(60 * MIN, 15 * MIN).expect("spec");
        // The event time is the second column here.
        let schema: event::SchemaDecl = toml::from_str(
            r#"event_time = "ts"
               fields = [{ name = "product_id", type = "string" }, { name = "ts", type = "timestamp" }]"#,
        )
        .expect("declaration");
        let schema = schema.check().expect("schema");
        let e = |t: i64| {
            (
                Origin {
                    partition: 0,
                    offset: t,
                },
                event::Event {
                    event_time_us: t * MIN,
                    cells: vec![event::Cell::Str("A".into()), event::Cell::Time(t * MIN)],
                },
            )
        };
        let batch = event::to_batch(&schema, &[e(0), e(44), e(45), e(100)]).expect("batch");
        // Watermark 105 min: the last window of t=44 is [30, 90) → closed; t=45's is [45, 105)
        // → closed at 105; t=100's is [90, 150) → open. Only events with last end > 105 stay.
        let kept =
            retain(std::slice::from_ref(&batch), 1, &[spec], Some(105 * MIN)).expect("retain");
        let times: Vec<i64> = kept
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .map(|a| a.values().to_vec())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(times, [100 * MIN]);
        for t in [0, 44, 45, 100] {
            assert_eq!(
                spec.last_end(t * MIN) > 105 * MIN,
                times.contains(&(t * MIN)),
                "t={t}"
            );
        }
        assert_eq!(
            retain(std::slice::from_ref(&batch), 1, &[spec], None).expect("all")[0].num_rows(),
            4
        );
        // With a second, longer window, events its open windows need stay too: the 2-hour
        // tumbling window [0, 120) of t=44, 45 and 100 is open at 105.
        let long = WindowSpec::new(120 * MIN, 120 * MIN).expect("spec");
        let kept = retain(
            std::slice::from_ref(&batch),
            1,
            &[spec, long],
            Some(105 * MIN),
        )
        .expect("retain");
        assert_eq!(kept.iter().map(RecordBatch::num_rows).sum::<usize>(), 4);
        assert!(
            retain(&[batch], 1, &[], Some(105 * MIN))
                .expect("none")
                .is_empty()
        );
    }
}
