//! Event-time windows in SQL, as Spark's `window(event_time, "1 hour", "15 minutes")`:
//!
//! - `hop(ts, size, slide)`: the starts of the hopping windows holding `ts`, a
//!   `List<Timestamp(µs)>` to `unnest`: `size / slide` windows per row (rounded up);
//! - `tumble(ts, size)`: the start of the one tumbling window holding `ts`, `Timestamp(µs)`.
//!
//! `size` and `slide` are constants: strings (`'1 hour'`, `'15 minutes'`, `'1h'`, `'15m'`) or
//! SQL intervals without months (`INTERVAL '1 hour'`). Windows are aligned to the Unix epoch
//! (Spark's default `startTime` of 0) and half-open: `[start, start + size)`. A window's end is
//! `window_start + size`, written in the SQL (`window_start + INTERVAL '1 hour' AS window_end`).
//! A NULL `ts` gives NULL (no window).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ListBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// Microseconds in one second.
const MICROS_PER_SECOND: i64 = 1_000_000;

/// A window shape: `size` and `slide` in microseconds (`slide == size` for tumbling windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    /// Window length, µs (> 0).
    pub size_us: i64,
    /// Distance between window starts, µs (> 0, ≤ size).
    pub slide_us: i64,
}

/// A window shape that cannot be: the user's SQL names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A length is zero or negative.
    #[error("window size and slide must be positive (got {size_us} µs, {slide_us} µs)")]
    NotPositive {
        /// Size, µs.
        size_us: i64,
        /// Slide, µs.
        slide_us: i64,
    },
    /// The slide is longer than the size: events between windows would be lost.
    #[error(
        "window slide ({slide_us} µs) is longer than its size ({size_us} µs): events between windows would be lost"
    )]
    SlideLongerThanSize {
        /// Size, µs.
        size_us: i64,
        /// Slide, µs.
        slide_us: i64,
    },
}

impl WindowSpec {
    /// A checked window shape.
    ///
    /// # Errors
    /// [`ShapeError`] when a length is not positive or the slide is longer than the size (gaps
    /// between windows would drop events).
    pub fn new(size_us: i64, slide_us: i64) -> std::result::Result<Self, ShapeError> {
        if size_us <= 0 || slide_us <= 0 {
            return Err(ShapeError::NotPositive { size_us, slide_us });
        }
        if slide_us > size_us {
            return Err(ShapeError::SlideLongerThanSize { size_us, slide_us });
        }
        Ok(Self { size_us, slide_us })
    }

    /// Starts of the windows holding `t` (µs), oldest first.
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + use<> {
        let slide = self.slide_us;
        let last = t.div_euclid(slide) * slide;
        let first = (t - self.size_us).div_euclid(slide) * slide + slide;
        (0..)
            .map(move |k| first + k * slide)
            .take_while(move |s| *s <= last)
    }

    /// End (exclusive, µs) of the last window holding `t`: once the watermark reaches it, no
    /// window of `t` is open any more.
    pub fn last_end(&self, t: i64) -> i64 {
        t.div_euclid(self.slide_us) * self.slide_us + self.size_us
    }
}

/// Parses a window length argument: a string (`'1 hour'`, `'15m'`) or an interval without
/// months. Microseconds.
fn length(name: &str, value: &ScalarValue) -> Result<i64> {
    let micros = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            let compact: String = s.split_whitespace().collect::<Vec<_>>().join("");
            match humantime::parse_duration(&compact) {
                Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
                Err(e) => return plan_err!("{name}: cannot read window length '{s}': {e}"),
            }
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400 * MICROS_PER_SECOND + v.nanoseconds / 1_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400 * MICROS_PER_SECOND + i64::from(v.milliseconds) * 1_000
        }
        other => {
            return plan_err!(
                "{name}: a window length is a constant string ('1 hour') or an interval without months, got {other}"
            );
        }
    };
    Ok(micros)
}

/// The window shape of a `hop(ts, size, slide)` or `tumble(ts, size)` call from its constant
/// arguments (all but the first).
///
/// # Errors
/// A planning error naming the function when a length is not a constant or not valid.
pub fn spec_of_call(function: &str, lengths: &[ScalarValue]) -> Result<WindowSpec> {
    let spec = match (function, lengths) {
        ("hop", [size, slide]) => {
            WindowSpec::new(length(function, size)?, length(function, slide)?)
        }
        ("tumble", [size]) => {
            let size = length(function, size)?;
            WindowSpec::new(size, size)
        }
        _ => return plan_err!("{function}: wrong number of window lengths"),
    };
    spec.or_else(|e| plan_err!("{function}: {e}"))
}

fn constants(function: &str, args: &[ColumnarValue]) -> Result<Vec<ScalarValue>> {
    args.iter()
        .skip(1)
        .map(|a| match a {
            ColumnarValue::Scalar(s) => Ok(s.clone()),
            ColumnarValue::Array(_) => exec_err!("{function}: window lengths must be constants"),
        })
        .collect()
}

fn timestamps(arg: &ColumnarValue, rows: usize) -> Result<TimestampMicrosecondArray> {
    let array = arg.to_array(rows)?;
    let array = cast(&array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(array
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("cast to Timestamp(µs)".into())
        })?
        .clone())
}

fn check_types(function: &str, arg_types: &[DataType], lengths: usize) -> Result<()> {
    if arg_types.len() != lengths + 1 {
        return plan_err!(
            "{function} takes {} arguments (event time{}), got {}",
            lengths + 1,
            if lengths == 2 {
                ", size, slide"
            } else {
                ", size"
            },
            arg_types.len()
        );
    }
    if !matches!(arg_types[0], DataType::Timestamp(_, _) | DataType::Null) {
        return plan_err!(
            "{function}: the event time must be a timestamp, got {}",
            arg_types[0]
        );
    }
    Ok(())
}

/// `hop(ts, size, slide)`: see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Hop {
    signature: Signature,
}

impl Hop {
    /// The function (three arguments of any type, checked at planning).
    pub fn new() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl Default for Hop {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Hop {
    fn name(&self) -> &str {
        "hop"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_types("hop", arg_types, 2)?;
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let spec = spec_of_call("hop", &constants("hop", &args.args)?)?;
        let ts = timestamps(&args.args[0], args.number_rows)?;
        let mut out = ListBuilder::new(TimestampMicrosecondBuilder::new());
        for t in ts.iter() {
            match t {
                Some(t) => {
                    for s in spec.starts(t) {
                        out.values().append_value(s);
                    }
                    out.append(true);
                }
                None => out.append(false),
            }
        }
        let out: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(out))
    }
}

/// `tumble(ts, size)`: see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Tumble {
    signature: Signature,
}

impl Tumble {
    /// The function (two arguments of any type, checked at planning).
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for Tumble {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Tumble {
    fn name(&self) -> &str {
        "tumble"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_types("tumble", arg_types, 1)?;
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let spec = spec_of_call("tumble", &constants("tumble", &args.args)?)?;
        let ts = timestamps(&args.args[0], args.number_rows)?;
        let out: TimestampMicrosecondArray = ts
            .iter()
            .map(|t| t.map(|t| t.div_euclid(spec.size_us) * spec.size_us))
            .collect();
        let out: ArrayRef = Arc::new(out);
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * MICROS_PER_SECOND;

    #[test]
    fn hopping_starts_cover_the_event_and_are_aligned() {
        let spec = WindowSpec::new(60 * MIN, 15 * MIN).expect("spec");
        // 10:20 → windows starting 09:30, 09:45, 10:00, 10:15.
        let t = 10 * 60 * MIN + 20 * MIN;
        let starts: Vec<i64> = spec.starts(t).collect();
        assert_eq!(
            starts,
            [570, 585, 600, 615].map(|m| m * MIN).to_vec(),
            "{starts:?}"
        );
        assert!(starts.iter().all(|s| *s <= t && t < s + spec.size_us));
        assert_eq!(spec.last_end(t), (615 + 60) * MIN);
        // An event exactly on a boundary belongs to the window starting there, not the one
        // ending there.
        let on = 10 * 60 * MIN;
        assert_eq!(spec.starts(on).last(), Some(on));
        assert_eq!(spec.starts(on).next(), Some(on - 45 * MIN));
        // Before the epoch too.
        assert_eq!(spec.starts(-1).count(), 4);
    }

    #[test]
    fn tumbling_and_bad_shapes() {
        let spec = WindowSpec::new(60 * MIN, 60 * MIN).expect("spec");
        assert_eq!(spec.starts(61 * MIN).collect::<Vec<_>>(), [60 * MIN]);
        assert!(WindowSpec::new(10, 20).is_err());
        assert!(WindowSpec::new(0, 0).is_err());
    }

    #[tokio::test]
    async fn hop_and_tumble_in_sql() -> Result<()> {
        let ctx = datafusion::prelude::SessionContext::new();
        for f in super::super::scalar_functions() {
            ctx.register_udf((*f).clone());
        }
        let sql = "SELECT CAST(unnest(hop(t, '1 hour', INTERVAL '15 minutes')) AS VARCHAR) AS s, \
                   CAST(tumble(t, '1h') AS VARCHAR) AS u \
                   FROM (VALUES (TIMESTAMP '2011-12-09 10:20:00')) v(t) ORDER BY s";
        let batches = ctx.sql(sql).await?.collect().await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        assert!(text.contains("2011-12-09T09:30:00"), "{text}");
        assert!(text.contains("2011-12-09T10:15:00"), "{text}");
        // Four rows of u (one tumbling window) plus the hopping window starting at 10:00.
        assert_eq!(text.matches("2011-12-09T10:00:00 |").count(), 5, "{text}");
        let err = ctx
            .sql("SELECT hop(t, '15 minutes', '1 hour') FROM (VALUES (TIMESTAMP '2011-12-09 10:20:00')) v(t)")
            .await?
            .collect()
            .await
            .expect_err("slide > size");
        assert!(err.to_string().contains("longer than its size"), "{err}");
        Ok(())
    }
}
