//! One Kafka message → one event of the declared [`EventSchema`], or the reason it is
//! quarantined: the first field, in declared order, that is missing or wrong gives it.
//!
//! | type | accepted (strings are trimmed; a blank string, JSON `null` or an absent key is absent) |
//! |---|---|
//! | `string` | a string, or a number or boolean as its text; with `values`, one of them in any case (stored as declared) |
//! | `int` | a whole JSON number, or a string holding one |
//! | `double` | a finite JSON number, or a string holding one |
//! | `bool` | `true`/`false`, also as a string in any case |
//! | `decimal(p,s)` | a number or string with at most `s` decimal places and no exponent, fitting `p` digits |
//! | `timestamp` | the field's `formats`, in order (epoch forms take numbers or digit strings) |
//!
//! `min`/`max` then apply to numbers. A message that is not UTF-8 JSON object text is
//! `not_json`; a CSV message that is not UTF-8 or has more columns than declared fields is
//! `not_csv`; a line a `regex` schema's pattern does not match (or that is not UTF-8) is
//! `malformed_line`, and a group that did not take part in the match is absent. Unknown JSON
//! keys are ignored.

use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::compute::kernels::cast_utils::parse_decimal;
use datafusion::arrow::datatypes::Decimal128Type;
use serde_json::Value;

use super::schema::{EventSchema, FieldSpec, Format, Kind, Limit, MALFORMED_LINE, TimeFormat};

/// A parsed value, in its field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent (an optional field).
    Null,
    /// `string`.
    Str(String),
    /// `int`.
    Int(i64),
    /// `double`.
    Double(f64),
    /// `bool`.
    Bool(bool),
    /// `decimal(p,s)`, in units of 10^-s.
    Decimal(i128),
    /// `timestamp`, µs since the epoch (UTC).
    Time(i64),
}

/// One valid event: its event time and a cell per declared field.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event time, µs since the epoch (UTC).
    pub event_time_us: i64,
    /// The fields' values, in declared order.
    pub cells: Vec<Cell>,
}

/// A field's raw value before typing.
enum Raw<'a> {
    Absent,
    Text(&'a str),
    Number(&'a serde_json::Number),
    Bool(bool),
    Other,
}

/// Parses one message. The error is the quarantine reason.
pub fn parse<'s>(schema: &'s EventSchema, payload: &[u8]) -> Result<Event, &'s str> {
    let cells = match schema.decl.format {
        Format::Json => {
            let text = std::str::from_utf8(payload).map_err(|_| "not_json")?;
            let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
                return Err("not_json");
            };
            schema
                .fields
                .iter()
                .map(|f| {
                    let raw = match obj.get(&f.name) {
                        None | Some(Value::Null) => Raw::Absent,
                        Some(Value::String(s)) => Raw::Text(s),
                        Some(Value::Number(n)) => Raw::Number(n),
                        Some(Value::Bool(b)) => Raw::Bool(*b),
                        Some(_) => Raw::Other,
                    };
                    cell(f, raw)
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Format::Csv => {
            let text = std::str::from_utf8(payload).map_err(|_| "not_csv")?;
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(schema.delimiter)
                .flexible(true)
                .from_reader(text.trim_end_matches(['\r', '\n']).as_bytes());
            let mut record = csv::StringRecord::new();
            let read = reader.read_record(&mut record).map_err(|_| "not_csv")?;
            if !read || record.len() > schema.fields.len() {
                return Err("not_csv");
            }
            schema
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| cell(f, record.get(i).map_or(Raw::Absent, Raw::Text)))
                .collect::<Result<Vec<_>, _>>()?
        }
        Format::Regex => {
            let pattern = schema.pattern.as_ref().ok_or(MALFORMED_LINE)?;
            let text = std::str::from_utf8(payload).map_err(|_| MALFORMED_LINE)?;
            let caps = pattern
                .regex
                .captures(text.trim_end_matches(['\r', '\n']))
                .ok_or(MALFORMED_LINE)?;
            schema
                .fields
                .iter()
                .zip(&pattern.groups)
                .map(|(f, &g)| {
                    cell(
                        f,
                        caps.get(g).map_or(Raw::Absent, |m| Raw::Text(m.as_str())),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let Cell::Time(event_time_us) = cells[schema.time_index] else {
        // The event time is required and a timestamp (checked with the schema).
        return Err(&schema.fields[schema.time_index].missing);
    };
    Ok(Event {
        event_time_us,
        cells,
    })
}

/// Types `raw` as field `f`.
fn cell<'s>(f: &'s FieldSpec, raw: Raw<'_>) -> Result<Cell, &'s str> {
    let raw = match raw {
        Raw::Text(t) if t.trim().is_empty() => Raw::Absent,
        Raw::Text(t) => Raw::Text(t.trim()),
        r => r,
    };
    if matches!(raw, Raw::Absent) {
        return if f.required {
            Err(&f.missing)
        } else {
            Ok(Cell::Null)
        };
    }
    let bad = f.invalid.as_str();
    let value = match f.kind {
        Kind::String => {
            let text = match raw {
                Raw::Text(t) => t.to_string(),
                Raw::Number(n) => n.to_string(),
                Raw::Bool(b) => b.to_string(),
                _ => return Err(bad),
            };
            if f.values.is_empty() {
                Cell::Str(text)
            } else {
                let v = f
                    .values
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(&text))
                    .ok_or(bad)?;
                Cell::Str(v.clone())
            }
        }
        Kind::Int => Cell::Int(match raw {
            Raw::Number(n) => n.as_i64().ok_or(bad)?,
            Raw::Text(t) => t.parse().map_err(|_| bad)?,
            _ => return Err(bad),
        }),
        Kind::Double => {
            let v: f64 = match raw {
                Raw::Number(n) => n.as_f64().ok_or(bad)?,
                Raw::Text(t) => t.parse().map_err(|_| bad)?,
                _ => return Err(bad),
            };
            if !v.is_finite() {
                return Err(bad);
            }
            Cell::Double(v)
        }
        Kind::Bool => Cell::Bool(match raw {
            Raw::Bool(b) => b,
            Raw::Text(t) if t.eq_ignore_ascii_case("true") => true,
            Raw::Text(t) if t.eq_ignore_ascii_case("false") => false,
            _ => return Err(bad),
        }),
        Kind::Decimal(p, s) => {
            let text = match raw {
                Raw::Number(n) => n.to_string(),
                Raw::Text(t) => t.to_string(),
                _ => return Err(bad),
            };
            Cell::Decimal(decimal(&text, p, s).ok_or(bad)?)
        }
        Kind::Timestamp => Cell::Time(
            f.formats
                .iter()
                .find_map(|form| time(form, &raw))
                .ok_or(bad)?,
        ),
    };
    let within = |v: Limit| {
        use std::cmp::Ordering::{Greater, Less};
        f.min.is_none_or(|m| order(v, m).is_some_and(|o| o != Less))
            && f.max
                .is_none_or(|m| order(v, m).is_some_and(|o| o != Greater))
    };
    let ok = match value {
        Cell::Int(v) => within(Limit::Int(v)),
        Cell::Double(v) => within(Limit::Float(v)),
        Cell::Decimal(v) => within(Limit::Decimal(v)),
        _ => true,
    };
    if ok { Ok(value) } else { Err(bad) }
}

/// How `a` compares with `b`, both of one field's type.
fn order(a: Limit, b: Limit) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Limit::Int(a), Limit::Int(b)) => Some(a.cmp(&b)),
        (Limit::Float(a), Limit::Float(b)) => a.partial_cmp(&b),
        (Limit::Decimal(a), Limit::Decimal(b)) => Some(a.cmp(&b)),
        _ => None,
    }
}

/// A decimal with at most `s` places (trailing zeros aside) and no exponent, in units of
/// 10^-s; `None` when it does not fit `p` digits.
fn decimal(text: &str, p: u8, s: i8) -> Option<i128> {
    if text.contains(['e', 'E']) {
        return None;
    }
    let places = text
        .split_once('.')
        .map_or(0, |(_, frac)| frac.trim_end_matches('0').len());
    if places > usize::from(s.unsigned_abs()) {
        return None;
    }
    parse_decimal::<Decimal128Type>(text, p, s).ok()
}

/// `raw` read as `form`, µs since the epoch.
fn time(form: &TimeFormat, raw: &Raw<'_>) -> Option<i64> {
    let whole = || match raw {
        Raw::Number(n) => n.as_i64(),
        Raw::Text(t) if t.bytes().all(|b| b.is_ascii_digit() || b == b'-') => t.parse().ok(),
        _ => None,
    };
    match form {
        TimeFormat::EpochMs => whole()?.checked_mul(1_000),
        TimeFormat::EpochS => whole()?.checked_mul(1_000_000),
        TimeFormat::Rfc3339 => match raw {
            Raw::Text(t) => DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|d| d.timestamp_micros()),
            _ => None,
        },
        TimeFormat::Pattern(p) => match raw {
            Raw::Text(t) if p.contains("%z") || p.contains("%:z") => DateTime::parse_from_str(t, p)
                .ok()
                .map(|d| d.timestamp_micros()),
            Raw::Text(t) => NaiveDateTime::parse_from_str(t, p)
                .ok()
                .map(|d| d.and_utc().timestamp_micros()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SchemaDecl;

    fn schema(toml_text: &str) -> EventSchema {
        toml::from_str::<SchemaDecl>(toml_text)
            .expect("declaration")
            .check()
            .expect("schema")
    }

    /// The issue's store events: category, store and a double, declared rather than compiled.
    const STORE: &str = r#"
        event_time = "ts"
        fields = [
          { name = "ts", type = "timestamp", formats = ["%d/%m/%Y %H:%M", "epoch_s"] },
          { name = "store_id", type = "int", required = true, min = 1 },
          { name = "category", type = "string", required = true, values = ["food", "home"] },
          { name = "weight", type = "double", max = 100 },
          { name = "promo", type = "bool" },
          { name = "amount", type = "decimal(10,2)", required = true, min = "-500.00" },
        ]"#;

    #[test]
    fn a_declared_schema_types_each_field() {
        let s = schema(STORE);
        let e = parse(
            &s,
            br#"{"ts":"09/12/2011 12:50","store_id":"7","category":"FOOD","weight":2.5,"promo":"TRUE","amount":-12.5}"#,
        )
        .expect("valid");
        assert_eq!(
            e.cells,
            [
                Cell::Time(1_323_435_000_000_000),
                Cell::Int(7),
                Cell::Str("food".into()),
                Cell::Double(2.5),
                Cell::Bool(true),
                Cell::Decimal(-1250),
            ]
        );
        let e = parse(
            &s,
            br#"{"ts":1323435000,"store_id":7,"category":"home","amount":"3"}"#,
        )
        .expect("epoch seconds, optional fields absent");
        assert_eq!(e.event_time_us, 1_323_435_000_000_000);
        assert_eq!((&e.cells[3], &e.cells[4]), (&Cell::Null, &Cell::Null));
    }

    #[test]
    fn wrong_types_and_broken_rules_are_reasons_not_crashes() {
        let s = schema(STORE);
        let ok = r#""ts":1323435000,"store_id":7,"category":"home","amount":1"#;
        for (payload, reason) in [
            (
                r#"{"ts":"2011-12-09","store_id":7,"category":"home","amount":1}"#.to_string(),
                "bad_ts",
            ),
            (
                r#"{"store_id":7,"category":"home","amount":1}"#.to_string(),
                "missing_ts",
            ),
            (format!(r#"{{{ok},"store_id":{{"a":1}}}}"#), "bad_store_id"),
            (
                r#"{"ts":1323435000,"store_id":0,"category":"home","amount":1}"#.into(),
                "bad_store_id",
            ),
            (
                r#"{"ts":1323435000,"store_id":7,"category":"toys","amount":1}"#.into(),
                "bad_category",
            ),
            (
                r#"{"ts":1323435000,"store_id":7,"category":["home"],"amount":1}"#.into(),
                "bad_category",
            ),
            (format!(r#"{{{ok},"weight":100.5}}"#), "bad_weight"),
            (format!(r#"{{{ok},"weight":"heavy"}}"#), "bad_weight"),
            (format!(r#"{{{ok},"promo":1}}"#), "bad_promo"),
            (
                r#"{"ts":1323435000,"store_id":7,"category":"home","amount":-500.01}"#.into(),
                "bad_amount",
            ),
            (
                r#"{"ts":1323435000,"store_id":7,"category":"home","amount":1.005}"#.into(),
                "bad_amount",
            ),
            (
                r#"{"ts":1323435000,"store_id":7,"category":"home","amount":123456789.5}"#.into(),
                "bad_amount",
            ),
            (
                r#"{"ts":1323435000,"store_id":7,"category":"home"}"#.into(),
                "missing_amount",
            ),
        ] {
            assert_eq!(parse(&s, payload.as_bytes()), Err(reason), "{payload}");
            assert!(
                s.reasons().iter().any(|r| r == reason),
                "{reason} not listed"
            );
        }
    }

    #[test]
    fn csv_messages_read_fields_by_position() {
        let s = schema(
            r#"
            format = "csv"
            delimiter = ";"
            event_time = "t"
            fields = [
              { name = "t", type = "timestamp" },
              { name = "sku", type = "string", required = true },
              { name = "qty", type = "int" },
            ]"#,
        );
        let e = parse(&s, b"2011-12-09T12:50:00Z;\"A;1\";3\n").expect("valid");
        assert_eq!(e.cells[1..], [Cell::Str("A;1".into()), Cell::Int(3)]);
        let e = parse(&s, b"2011-12-09T12:50:00Z;B").expect("fewer columns: absent");
        assert_eq!(e.cells[2], Cell::Null);
        assert_eq!(parse(&s, b"2011-12-09T12:50:00Z;B;1;extra"), Err("not_csv"));
        assert_eq!(parse(&s, b"\xff;B"), Err("not_csv"));
        assert_eq!(parse(&s, b"2011-12-09T12:50:00Z;;1"), Err("missing_sku"));
        assert_eq!(parse(&s, b"2011-12-09T12:50:00Z;B;x"), Err("bad_qty"));
    }

    #[test]
    fn bad_declarations_say_which_field_and_why() {
        for (toml_text, says) in [
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "timestamp" }, { name = "n", type = "decimal(40,2)" }]"#,
                "field `n`: \"decimal(40,2)\"",
            ),
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "timestamp" }, { name = "n", type = "money" }]"#,
                "field `n`: unknown type \"money\"",
            ),
            (
                r#"event_time = "x"
                fields = [{ name = "t", type = "timestamp" }]"#,
                "event_time `x` is not a declared field",
            ),
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "string" }]"#,
                "event_time `t` must be a timestamp field",
            ),
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "timestamp" }, { name = "t", type = "int" }]"#,
                "field `t`: declared twice",
            ),
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "timestamp" }, { name = "kafka_offset", type = "int" }]"#,
                "a column Ember adds",
            ),
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "timestamp" }, { name = "s", type = "string", min = 1 }]"#,
                "field `s`: min and max are for",
            ),
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "timestamp" }, { name = "n", type = "int", min = 1.5 }]"#,
                "field `n`: 1.5 is not a whole number",
            ),
            (
                r#"event_time = "t"
                fields = [{ name = "t", type = "timestamp", missing = "No Time" }]"#,
                "reason \"No Time\" must be snake_case",
            ),
        ] {
            let decl: SchemaDecl = toml::from_str(toml_text).expect("declaration");
            let e = decl.check().expect_err(toml_text);
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
    }
}
