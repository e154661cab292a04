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

/// Events whose last window ends after `watermark_us`: the state to keep. Column `time` of
/// each batch is the event time (Timestamp µs).
///
/// # Errors
/// An Arrow error (a bug: the batch is not in the events schema).
pub fn retain(
    batches: &[RecordBatch],
    time: usize,
    window: &WindowSpec,
    watermark_us: Option<i64>,
) -> std::result::Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    let Some(w) = watermark_us else {
        return Ok(batches.to_vec());
    };
    // last_end(t) > w  ⇔  t ≥ ((w − size) div slide + 1) × slide
    let threshold = ((w - window.size_us).div_euclid(window.slide_us) + 1) * window.slide_us;
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
        let kept = retain(std::slice::from_ref(&batch), 1, &spec, Some(105 * MIN)).expect("retain");
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
            retain(&[batch], 1, &spec, None).expect("all")[0].num_rows(),
            4
        );
    }
}
