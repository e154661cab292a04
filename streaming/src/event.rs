//! Sales events as Kafka messages: JSON objects in the shape of the seeds' producers, parsed
//! into Arrow, or rejected with a reason.
//!
//! ```json
//! {"event_time": "2011-12-09T12:50:00Z", "store_id": "United Kingdom", "product_id": "22423",
//!  "category": "home", "transaction_type": "SALE", "quantity": 2, "unit_price": "12.75"}
//! ```
//!
//! | field | JSON | rule (first failing rule is the reason) |
//! |---|---|---|
//! | `event_time` | string or integer | RFC 3339 (`2011-12-09T12:50:00Z`, any offset), `YYYY-MM-DD HH:MM:SS[.f]` read as UTC, or epoch milliseconds; else `missing_event_time` / `bad_event_time` |
//! | `product_id` | string or integer | not empty; else `missing_product_id` |
//! | `transaction_type` | string | `SALE` or `RETURN` (any case); else `bad_transaction_type` |
//! | `quantity` | integer | > 0 (a return has a positive quantity and type RETURN); else `bad_quantity` |
//! | `unit_price` | number or string | ≥ 0, at most 4 decimal places; else `bad_unit_price` |
//! | `store_id`, `category` | string, optional | NULL when absent |
//!
//! A message that is not UTF-8 JSON object text is `not_json`. Unknown fields are ignored.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::array::{
    ArrayRef, Decimal128Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

/// Precision and scale of `unit_price`: Decimal(18, 4), as the batch job's canonical schema.
pub const PRICE_PRECISION: u8 = 18;
/// See [`PRICE_PRECISION`].
pub const PRICE_SCALE: i8 = 4;

/// The event's own columns, in order: `event_time` Timestamp(µs, UTC as no time zone),
/// `store_id` Utf8?, `product_id` Utf8, `category` Utf8?, `transaction_type` Utf8 (`SALE` |
/// `RETURN`), `quantity` Int64 (> 0), `unit_price` Decimal(18,4). [`EVENT_SCHEMA`] and the Kafka
/// scan's rows (`crate::scan::SCAN_SCHEMA`, nullable there) are both made of them.
pub static EVENT_FIELDS: LazyLock<Vec<Field>> = LazyLock::new(|| {
    vec![
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("store_id", DataType::Utf8, true),
        Field::new("product_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, true),
        Field::new("transaction_type", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new(
            "unit_price",
            DataType::Decimal128(PRICE_PRECISION, PRICE_SCALE),
            false,
        ),
    ]
});

/// Schema of parsed events, the `events` table a streaming job's SQL reads: the
/// [`EVENT_FIELDS`], then `kafka_partition` Int32 and `kafka_offset` Int64.
pub static EVENT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = EVENT_FIELDS.clone();
    fields.push(Field::new("kafka_partition", DataType::Int32, false));
    fields.push(Field::new("kafka_offset", DataType::Int64, false));
    Arc::new(Schema::new(fields))
});

/// Schema of quarantined messages (`<output>/_quarantine/`): `topic` Utf8, `partition` Int32,
/// `offset` Int64, `value` Utf8 (the raw message, invalid UTF-8 replaced), `reason` Utf8,
/// `event_time` Timestamp(µs)? (set for `late` events).
pub static QUARANTINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]))
});

/// Every quarantine reason: the rules of the table above, then `late` (an event older than the
/// watermark, see [`crate::watermark`]).
pub const REASONS: [&str; 8] = [
    "not_json",
    "missing_event_time",
    "bad_event_time",
    "missing_product_id",
    "bad_transaction_type",
    "bad_quantity",
    "bad_unit_price",
    "late",
];

/// One valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Event time, µs since the epoch (UTC).
    pub event_time_us: i64,
    /// Store (optional).
    pub store_id: Option<String>,
    /// Product.
    pub product_id: String,
    /// Category (optional).
    pub category: Option<String>,
    /// `SALE` or `RETURN`.
    pub transaction_type: &'static str,
    /// Units, > 0.
    pub quantity: i64,
    /// Price per unit in ten-thousandths (Decimal(18,4)).
    pub unit_price: i128,
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Kafka partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// Parses one message. The error is the quarantine reason.
pub fn parse(payload: &[u8]) -> Result<Event, &'static str> {
    let text = std::str::from_utf8(payload).map_err(|_| "not_json")?;
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return Err("not_json");
    };
    let event_time_us = match obj.get("event_time") {
        None | Some(Value::Null) => return Err("missing_event_time"),
        Some(v) => parse_time(v).ok_or("bad_event_time")?,
    };
    let product_id = match obj.get("product_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing_product_id"),
    };
    let transaction_type = match obj.get("transaction_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("SALE") => "SALE",
        Some(t) if t.eq_ignore_ascii_case("RETURN") => "RETURN",
        _ => return Err("bad_transaction_type"),
    };
    let quantity = match obj.get("quantity").and_then(Value::as_i64) {
        Some(q) if q > 0 => q,
        _ => return Err("bad_quantity"),
    };
    let unit_price = match obj.get("unit_price") {
        Some(Value::Number(n)) => parse_price(&n.to_string()),
        Some(Value::String(s)) => parse_price(s.trim()),
        _ => None,
    }
    .ok_or("bad_unit_price")?;
    let text_field = |name: &str| match obj.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(Event {
        event_time_us,
        store_id: text_field("store_id"),
        product_id,
        category: text_field("category"),
        transaction_type,
        quantity,
        unit_price,
    })
}

fn parse_time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().and_then(|ms| ms.checked_mul(1_000)),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.timestamp_micros());
            }
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .map(|t| t.and_utc().timestamp_micros())
        }
        _ => None,
    }
}

/// A non-negative decimal with at most [`PRICE_SCALE`] places, in ten-thousandths.
fn parse_price(s: &str) -> Option<i128> {
    if s.starts_with('-') || s.contains(['e', 'E']) {
        return None;
    }
    let places = s
        .split_once('.')
        .map_or(0, |(_, frac)| frac.trim_end_matches('0').len());
    if places > PRICE_SCALE as usize {
        return None;
    }
    datafusion::arrow::compute::kernels::cast_utils::parse_decimal::<Decimal128Type>(
        s,
        PRICE_PRECISION,
        PRICE_SCALE,
    )
    .ok()
}

/// Builders of an event's own columns, in [`EVENT_SCHEMA`] order: `event_time`, `store_id`,
/// `product_id`, `category`, `transaction_type`, `quantity`, `unit_price`. Shared by the events
/// table and the Kafka scan's rows ([`crate::scan::SCAN_SCHEMA`]).
pub(crate) struct EventColumns {
    time: TimestampMicrosecondBuilder,
    store: StringBuilder,
    product: StringBuilder,
    category: StringBuilder,
    kind: StringBuilder,
    quantity: Int64Builder,
    price: Decimal128Builder,
}

impl EventColumns {
    /// Builders for about `n` rows.
    pub(crate) fn with_capacity(n: usize) -> Result<Self, datafusion::arrow::error::ArrowError> {
        Ok(Self {
            time: TimestampMicrosecondBuilder::with_capacity(n),
            store: StringBuilder::new(),
            product: StringBuilder::new(),
            category: StringBuilder::new(),
            kind: StringBuilder::new(),
            quantity: Int64Builder::with_capacity(n),
            price: Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(PRICE_PRECISION, PRICE_SCALE)?,
        })
    }

    /// Appends an event.
    pub(crate) fn append(&mut self, e: &Event) {
        self.time.append_value(e.event_time_us);
        self.store.append_option(e.store_id.as_deref());
        self.product.append_value(&e.product_id);
        self.category.append_option(e.category.as_deref());
        self.kind.append_value(e.transaction_type);
        self.quantity.append_value(e.quantity);
        self.price.append_value(e.unit_price);
    }

    /// Appends a row with no event, only its event time when known.
    pub(crate) fn append_none(&mut self, event_time_us: Option<i64>) {
        self.time.append_option(event_time_us);
        self.store.append_null();
        self.product.append_null();
        self.category.append_null();
        self.kind.append_null();
        self.quantity.append_null();
        self.price.append_null();
    }

    /// The seven columns.
    pub(crate) fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.time.finish()),
            Arc::new(self.store.finish()),
            Arc::new(self.product.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.price.finish()),
        ]
    }
}

/// Builds the [`EVENT_SCHEMA`] batch of `events`.
///
/// # Errors
/// An Arrow error if the columns do not fit the schema (a bug).
pub fn to_batch(
    events: &[(Origin, Event)],
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let n = events.len();
    let mut columns = EventColumns::with_capacity(n)?;
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    for (o, e) in events {
        columns.append(e);
        partition.append_value(o.partition);
        offset.append_value(o.offset);
    }
    let mut columns = columns.finish();
    columns.push(Arc::new(partition.finish()));
    columns.push(Arc::new(offset.finish()));
    RecordBatch::try_new(EVENT_SCHEMA.clone(), columns)
}

/// One quarantined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Where it came from.
    pub origin: Origin,
    /// The raw message (invalid UTF-8 replaced by U+FFFD).
    pub value: String,
    /// Why: a rule of the table above, or `late`.
    pub reason: &'static str,
    /// The event time of a `late` event, µs.
    pub event_time_us: Option<i64>,
}

/// Builds the [`QUARANTINE_SCHEMA`] batch of `rejected` messages of `topic`.
///
/// # Errors
/// An Arrow error if the columns do not fit the schema (a bug).
pub fn quarantine_batch(
    topic: &str,
    rejected: &[Rejected],
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let mut topics = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut value = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut time = TimestampMicrosecondBuilder::new();
    for r in rejected {
        topics.append_value(topic);
        partition.append_value(r.origin.partition);
        offset.append_value(r.origin.offset);
        value.append_value(&r.value);
        reason.append_value(r.reason);
        time.append_option(r.event_time_us);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(topics.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(value.finish()),
        Arc::new(reason.finish()),
        Arc::new(time.finish()),
    ];
    RecordBatch::try_new(QUARANTINE_SCHEMA.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_event() {
        let e = parse(br#"{"event_time":"2011-12-09T12:50:00Z","store_id":"UK","product_id":"22423","category":"home","transaction_type":"sale","quantity":2,"unit_price":12.75,"extra":1}"#)
            .expect("valid");
        assert_eq!(e.event_time_us, 1_323_435_000_000_000);
        assert_eq!(e.transaction_type, "SALE");
        assert_eq!(e.unit_price, 127_500);
        assert_eq!(e.store_id.as_deref(), Some("UK"));
        let e = parse(br#"{"event_time":"2011-12-09 13:50:00","product_id":85123,"transaction_type":"RETURN","quantity":1,"unit_price":"0"}"#)
            .expect("valid");
        assert_eq!(e.event_time_us, 1_323_438_600_000_000);
        assert_eq!(e.product_id, "85123");
        assert_eq!(e.category, None);
        let e = parse(br#"{"event_time":1323435000000,"product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":"1.2500"}"#)
            .expect("epoch ms");
        assert_eq!(
            (e.event_time_us, e.unit_price),
            (1_323_435_000_000_000, 12_500)
        );
    }

    #[test]
    fn every_reason() {
        let base = r#""product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":1"#;
        let cases: [(&[u8], &str); 12] = [
            (b"\xff\xfe", "not_json"),
            (b"[1,2]", "not_json"),
            (b"{\"event_time\":", "not_json"),
            (format!("{{{base}}}").as_bytes().to_vec().leak(), "missing_event_time"),
            (format!("{{\"event_time\":\"yesterday\",{base}}}").into_bytes().leak(), "bad_event_time"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":" ","transaction_type":"SALE","quantity":1,"unit_price":1}"#, "missing_product_id"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"REFUND","quantity":1,"unit_price":1}"#, "bad_transaction_type"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":0,"unit_price":1}"#, "bad_quantity"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1.5,"unit_price":1}"#, "bad_quantity"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":-1}"#, "bad_unit_price"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":"1.23456"}"#, "bad_unit_price"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":"abc"}"#, "bad_unit_price"),
        ];
        for (payload, reason) in cases {
            assert!(REASONS.contains(&reason), "{reason} is not listed");
            assert_eq!(
                parse(payload),
                Err(reason),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn batches_have_the_documented_schemas() {
        let origin = Origin {
            partition: 1,
            offset: 7,
        };
        let e = parse(br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":1}"#)
            .expect("valid");
        let b = to_batch(&[(origin, e)]).expect("batch");
        assert_eq!((b.num_rows(), b.schema()), (1, EVENT_SCHEMA.clone()));
        let q = quarantine_batch(
            "t",
            &[Rejected {
                origin,
                value: "x".into(),
                reason: "not_json",
                event_time_us: None,
            }],
        )
        .expect("batch");
        assert_eq!(q.num_rows(), 1);
    }
}
