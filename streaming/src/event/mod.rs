//! Events as Kafka messages: parsed by the schema the job declares in `[source.schema]`
//! ([`schema`]; rules in [`parse`]) into Arrow columns ([`columns`]), or quarantined with a
//! reason.
//!
//! The shipped job `hourly_product_revenue` declares the retail sales events of the seeds'
//! producers:
//!
//! ```json
//! {"event_time": "2011-12-09T12:50:00Z", "store_id": "United Kingdom", "product_id": "22423",
//!  "category": "home", "transaction_type": "SALE", "quantity": 2, "unit_price": "12.75"}
//! ```

pub mod columns;
pub mod parse;
pub mod schema;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use columns::EventColumns;
pub use parse::{Cell, Event, parse};
pub use schema::{EventSchema, SchemaDecl};

/// Schema of quarantined messages (`<output>/_quarantine/`): `topic` Utf8, `partition` Int32,
/// `offset` Int64, `value` Utf8 (the raw message, invalid UTF-8 replaced), `reason` Utf8,
/// `event_time` Timestamp(µs)? (set for `late` events). For a `files` source, `topic` is the
/// file's name, `partition` its place in the batch's plan and `offset` the line number.
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

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Kafka partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// Builds the [`EventSchema::events_schema`] batch of `events`.
///
/// # Errors
/// An Arrow error if the columns do not fit the schema (a bug).
pub fn to_batch(
    schema: &EventSchema,
    events: &[(Origin, Event)],
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let n = events.len();
    let mut columns = EventColumns::with_capacity(schema, n)?;
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
    RecordBatch::try_new(schema.events_schema(), columns)
}

/// One quarantined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Where it came from.
    pub origin: Origin,
    /// The raw message (invalid UTF-8 replaced by U+FFFD).
    pub value: String,
    /// Why: a rule of the declared schema ([`EventSchema::reasons`]), or `late`.
    pub reason: String,
    /// The event time of a `late` event, µs.
    pub event_time_us: Option<i64>,
}

/// Builds the [`QUARANTINE_SCHEMA`] batch of `rejected` messages, each one's `topic` column
/// from `topic_of` its origin (the topic; a `files` source's file name).
///
/// # Errors
/// An Arrow error if the columns do not fit the schema (a bug).
pub fn quarantine_batch<'a>(
    topic_of: &dyn Fn(&Origin) -> &'a str,
    rejected: &[Rejected],
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let mut topics = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut value = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut time = TimestampMicrosecondBuilder::new();
    for r in rejected {
        topics.append_value(topic_of(&r.origin));
        partition.append_value(r.origin.partition);
        offset.append_value(r.origin.offset);
        value.append_value(&r.value);
        reason.append_value(&r.reason);
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
pub(crate) mod tests {
    use super::*;

    /// The schema the shipped job `hourly_product_revenue` declares.
    pub(crate) fn retail() -> EventSchema {
        let job =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/hourly_product_revenue");
        crate::manifest::load(&job, &[])
            .expect("the shipped job")
            .schema
    }

    #[test]
    fn a_good_event() {
        let s = retail();
        let e = parse(&s, br#"{"event_time":"2011-12-09T12:50:00Z","store_id":"UK","product_id":"22423","category":"home","transaction_type":"sale","quantity":2,"unit_price":12.75,"extra":1}"#)
            .expect("valid");
        assert_eq!(e.event_time_us, 1_323_435_000_000_000);
        let cells = |names: &[&str], e: &Event| -> Vec<Cell> {
            names
                .iter()
                .map(|n| e.cells[s.fields.iter().position(|f| f.name == *n).expect(n)].clone())
                .collect()
        };
        assert_eq!(
            cells(&["transaction_type", "unit_price", "store_id"], &e),
            [
                Cell::Str("SALE".into()),
                Cell::Decimal(127_500),
                Cell::Str("UK".into())
            ]
        );
        let e = parse(&s, br#"{"event_time":"2011-12-09 13:50:00","product_id":85123,"transaction_type":"RETURN","quantity":1,"unit_price":"0"}"#)
            .expect("valid");
        assert_eq!(e.event_time_us, 1_323_438_600_000_000);
        assert_eq!(
            cells(&["product_id", "category"], &e),
            [Cell::Str("85123".into()), Cell::Null]
        );
        let e = parse(&s, br#"{"event_time":1323435000000,"product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":"1.2500"}"#)
            .expect("epoch ms");
        assert_eq!(
            (e.event_time_us, cells(&["unit_price"], &e)),
            (1_323_435_000_000_000, vec![Cell::Decimal(12_500)])
        );
    }

    #[test]
    fn every_reason() {
        let s = retail();
        let base = r#""product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":1"#;
        let cases: [(&[u8], &str); 13] = [
            (b"\xff\xfe", "not_json"),
            (b"[1,2]", "not_json"),
            (b"{\"event_time\":", "not_json"),
            (format!("{{{base}}}").as_bytes().to_vec().leak(), "missing_event_time"),
            (format!("{{\"event_time\":\"yesterday\",{base}}}").into_bytes().leak(), "bad_event_time"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":" ","transaction_type":"SALE","quantity":1,"unit_price":1}"#, "missing_product_id"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"REFUND","quantity":1,"unit_price":1}"#, "bad_transaction_type"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","quantity":1,"unit_price":1}"#, "bad_transaction_type"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":0,"unit_price":1}"#, "bad_quantity"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1.5,"unit_price":1}"#, "bad_quantity"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":-1}"#, "bad_unit_price"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":"1.23456"}"#, "bad_unit_price"),
            (br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":"abc"}"#, "bad_unit_price"),
        ];
        let reasons = s.reasons();
        for (payload, reason) in cases {
            assert!(
                reasons.iter().any(|r| r == reason),
                "{reason} is not listed"
            );
            assert_eq!(
                parse(&s, payload),
                Err(reason),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn log_lines_parse_by_the_shipped_app_logs_pattern() {
        let job = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/app_logs");
        let s = crate::manifest::load(&job, &[]).expect("app_logs").schema;
        let e = parse(
            &s,
            b"2024-11-10 15:30:45.123 [WARN] [InventoryService] Low stock: 3 units [x]\r\n",
        )
        .expect("a log line");
        assert_eq!(e.event_time_us, 1_731_252_645_123_000);
        assert_eq!(
            e.cells[1..],
            [
                Cell::Str("WARN".into()),
                Cell::Str("InventoryService".into()),
                Cell::Str("Low stock: 3 units [x]".into())
            ]
        );
        let comma = parse(&s, b"2024-11-10 15:30:45,123 [INFO] [A] ok").expect("log4j time");
        assert_eq!(comma.event_time_us, 1_731_252_645_123_000);
        let empty = parse(&s, b"2024-11-10 15:30:45.1 [ERROR] [A] ").expect("empty message");
        assert_eq!(empty.cells[3], Cell::Null);
        for (line, reason) in [
            (
                &b"\tat com.shop.Gateway.charge(Gateway.java:42)"[..],
                "malformed_line",
            ),
            (b"", "malformed_line"),
            (b"2024-11-10 15:30:45.123 [INFO] [A", "malformed_line"),
            (b"\xff\xfe [INFO] [A] x", "malformed_line"),
            (b"2024-13-10 15:30:45.123 [INFO] [A] x", "bad_log_time"),
            (b"2024-11-10 15:30:45.123 [NOTICE] [A] x", "bad_level"),
        ] {
            assert_eq!(
                parse(&s, line),
                Err(reason),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(s.reasons().iter().any(|r| r == "malformed_line"));
        let wrong = |decl: &str| {
            toml::from_str::<SchemaDecl>(decl)
                .expect("toml")
                .check()
                .expect_err(decl)
        };
        assert!(wrong("format = \"regex\"\nevent_time = \"t\"\nfields = [{ name = \"t\", type = \"timestamp\" }]").contains("needs a pattern"));
        assert!(wrong("format = \"json\"\npattern = \"(.*)\"\nevent_time = \"t\"\nfields = [{ name = \"t\", type = \"timestamp\" }]").contains("for format = \"regex\""));
        assert!(wrong("format = \"regex\"\npattern = \"(.*)\"\nevent_time = \"t\"\nfields = [{ name = \"t\", type = \"timestamp\" }, { name = \"u\", type = \"string\" }]").contains("field `u`"));
        assert!(wrong("format = \"regex\"\npattern = \"(\"\nevent_time = \"t\"\nfields = [{ name = \"t\", type = \"timestamp\" }]").starts_with("pattern:"));
    }

    #[test]
    fn batches_have_the_documented_schemas() {
        let s = retail();
        let origin = Origin {
            partition: 1,
            offset: 7,
        };
        let e = parse(&s, br#"{"event_time":"2011-12-09T12:50:00Z","product_id":"A","transaction_type":"SALE","quantity":1,"unit_price":1}"#)
            .expect("valid");
        let b = to_batch(&s, &[(origin, e)]).expect("batch");
        assert_eq!((b.num_rows(), b.schema()), (1, s.events_schema()));
        let q = quarantine_batch(
            &|_| "t",
            &[Rejected {
                origin,
                value: "x".into(),
                reason: "not_json".into(),
                event_time_us: None,
            }],
        )
        .expect("batch");
        assert_eq!(q.num_rows(), 1);
    }
}
