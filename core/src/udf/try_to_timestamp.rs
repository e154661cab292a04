//! `try_to_timestamp(text [, format …])`: parses text into a timestamp without time zone, and
//! gives NULL instead of an error when the text does not parse, so that a job can quarantine
//! the row (DataFusion's `to_timestamp` fails the whole query on the first bad value).

use std::sync::Arc;

use chrono::format::{Item, Parsed, StrftimeItems};
use datafusion::arrow::array::{Array, ArrayRef, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// Formats tried when the call gives none: ISO 8601 with a space or `T`, optional fraction,
/// and a bare date (midnight).
pub const DEFAULT_FORMATS: [&str; 3] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d"];

/// The `try_to_timestamp` scalar function.
///
/// Arguments: a text column (Utf8, LargeUtf8 or Utf8View), then zero or more constant chrono
/// format strings (`%Y-%m-%d %H:%M:%S`, `%m/%d/%Y %H:%M`, …), tried in order; a format without
/// time fields parses a date at midnight. Leading and trailing spaces are ignored. Returns
/// `Timestamp(Microsecond, None)` (Spark's precision); NULL for NULL, empty or unparseable text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TryToTimestamp {
    signature: Signature,
}

impl TryToTimestamp {
    /// The function with its signature: one or more arguments of any type, checked at planning.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for TryToTimestamp {
    fn default() -> Self {
        Self::new()
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// A format string parsed once per batch into chrono's items (parsing it again for every
/// value was a tenth of the daily job's time).
struct Format(Vec<Item<'static>>);

impl Format {
    /// # Errors
    /// A DataFusion execution error naming the format when chrono cannot read it.
    fn new(format: &str) -> Result<Self> {
        match StrftimeItems::new(format).parse_to_owned() {
            Ok(items) => Ok(Self(items)),
            Err(e) => exec_err!("try_to_timestamp: format '{format}' is not a chrono format: {e}"),
        }
    }

    /// As `NaiveDateTime::parse_from_str`, else `NaiveDate::parse_from_str` at midnight.
    fn parse(&self, text: &str) -> Option<i64> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text, self.0.iter()).ok()?;
        parsed
            .to_naive_datetime_with_offset(0)
            .ok()
            .or_else(|| parsed.to_naive_date().ok()?.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros())
    }
}

/// Parses one value with the first format that matches.
fn parse(text: &str, formats: &[Format]) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    formats.iter().find_map(|f| f.parse(text))
}

impl ScalarUDFImpl for TryToTimestamp {
    fn name(&self) -> &str {
        "try_to_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.is_empty() || !arg_types.iter().all(is_text) {
            return plan_err!(
                "try_to_timestamp(text [, format ...]) takes text arguments, got ({})",
                arg_types
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut formats = Vec::with_capacity(args.args.len().saturating_sub(1));
        for (i, arg) in args.args.iter().enumerate().skip(1) {
            match arg {
                ColumnarValue::Scalar(s) => match s {
                    ScalarValue::Utf8(Some(f))
                    | ScalarValue::LargeUtf8(Some(f))
                    | ScalarValue::Utf8View(Some(f)) => formats.push(Format::new(f)?),
                    _ => return exec_err!("try_to_timestamp: format {i} is NULL"),
                },
                ColumnarValue::Array(_) => {
                    return exec_err!("try_to_timestamp: format {i} must be a constant string");
                }
            }
        }
        if formats.is_empty() {
            formats = DEFAULT_FORMATS
                .iter()
                .map(|f| Format::new(f))
                .collect::<Result<_>>()?;
        }
        let text = match &args.args[0] {
            ColumnarValue::Array(a) => cast(a, &DataType::Utf8)?,
            ColumnarValue::Scalar(s) => cast(&s.to_array()?, &DataType::Utf8)?,
        };
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("cast to Utf8".into()))?;
        let parsed: TimestampMicrosecondArray = text
            .iter()
            .map(|v| v.and_then(|s| parse(s, &formats)))
            .collect();
        let parsed: ArrayRef = Arc::new(parsed);
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&parsed, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(parsed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats(f: &[&str]) -> Vec<Format> {
        f.iter().map(|f| Format::new(f).expect("format")).collect()
    }

    #[test]
    fn parses_with_formats_in_order() {
        let iso = formats(&DEFAULT_FORMATS);
        assert_eq!(
            parse("2010-12-01 08:26:00", &iso),
            Some(1_291_191_960_000_000)
        );
        assert_eq!(
            parse(" 2010-12-01T08:26:00.5 ", &iso),
            Some(1_291_191_960_500_000)
        );
        assert_eq!(parse("2010-12-01", &iso), Some(1_291_161_600_000_000));
        let us = formats(&["%m/%d/%Y %H:%M"]);
        assert_eq!(parse("12/1/2010 8:26", &us), Some(1_291_191_960_000_000));
    }

    #[test]
    fn bad_text_is_none_not_an_error() {
        let iso = formats(&DEFAULT_FORMATS);
        for bad in [
            "",
            "   ",
            "2010-13-01 00:00:00",
            "yesterday",
            "2010-12-01 25:00:00",
        ] {
            assert_eq!(parse(bad, &iso), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn works_in_sql() -> Result<()> {
        let ctx = datafusion::prelude::SessionContext::new();
        for f in super::super::scalar_functions() {
            ctx.register_udf((*f).clone());
        }
        let batches = ctx
            .sql("SELECT try_to_timestamp(s, '%d.%m.%Y') AS t FROM (VALUES ('01.12.2010'), ('x'), (NULL)) v(s)")
            .await?
            .collect()
            .await?;
        let col = batches[0].column(0);
        assert_eq!(
            col.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(col.null_count(), 2);
        let err = ctx
            .sql("SELECT try_to_timestamp(1)")
            .await
            .expect_err("not text");
        assert!(err.to_string().contains("takes text arguments"), "{err}");
        let err = ctx
            .sql("SELECT try_to_timestamp('2010-12-01', '%Y-%Q')")
            .await?
            .collect()
            .await
            .expect_err("not a chrono format");
        assert!(err.to_string().contains("format '%Y-%Q'"), "{err}");
        Ok(())
    }
}
