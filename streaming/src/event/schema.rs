//! The event schema a streaming job declares in `[source.schema]`: the fields of its Kafka
//! messages, their types, which are required, the rules that quarantine an event, and which
//! field is the event time. Declared, not compiled in, as Spark's `from_json(value, schema)`
//! takes its schema from the job.
//!
//! ```toml
//! [source.schema]
//! format = "json"               # or "csv": one line per message, fields in declared order;
//!                               # or "regex": a line matched by `pattern`, a field per group
//! pattern = '^(?P<event_time>\S+ \S+) \[(?P<level>\w+)\] (?P<message>.*)$'   # regex only
//! event_time = "event_time"     # a timestamp field: the watermark and the windows follow it
//!
//! [[source.schema.fields]]
//! name = "event_time"
//! type = "timestamp"            # string | int | double | bool | decimal(p,s) | timestamp
//! formats = ["rfc3339", "%Y-%m-%d %H:%M:%S%.f", "epoch_ms"]
//! required = true
//!
//! [[source.schema.fields]]
//! name = "quantity"
//! type = "int"
//! required = true
//! min = 1                       # also max; values = ["A", "B"] for strings
//! missing = "bad_quantity"      # the reason when absent (default missing_<name>)
//! invalid = "bad_quantity"      # the reason when present but wrong (default bad_<name>)
//! ```
//!
//! The full rules (which value each type accepts) are in `docs/streaming.md`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// Largest decimal precision (Arrow's Decimal128).
const MAX_PRECISION: u8 = 38;

/// The message format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per message; fields by name, unknown ones ignored.
    #[default]
    Json,
    /// One CSV line per message (no header); fields by position, in declared order.
    Csv,
    /// One text line per message (a log line), matched by `pattern` (Rust `regex` syntax, as
    /// Hive's `RegexSerDe`): each field is the group named after it, or else the group at its
    /// position (1 for the first declared field). A line the pattern does not match is
    /// `malformed_line`.
    Regex,
}

/// The reason of a line a `regex` schema's pattern does not match.
pub const MALFORMED_LINE: &str = "malformed_line";

/// A `regex` schema's compiled pattern, and the group each declared field reads.
#[derive(Debug, Clone)]
pub struct LinePattern {
    /// The compiled pattern.
    pub regex: regex::Regex,
    /// Per declared field, in order, the index of its capture group.
    pub groups: Vec<usize>,
}

impl PartialEq for LinePattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str() && self.groups == other.groups
    }
}

/// A number or text in a rule (`min = 0`, `max = "99.99"`), read in the field's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    /// A TOML integer.
    Int(i64),
    /// A TOML float.
    Float(f64),
    /// Text (a decimal written exactly).
    Text(String),
}

/// One declared field, as written in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDecl {
    /// Name: the JSON key, and the column of the `events` table.
    pub name: String,
    /// `string`, `int` (Int64), `double` (Float64), `bool`, `decimal(p,s)`, `timestamp`
    /// (µs, UTC).
    #[serde(rename = "type")]
    pub kind: String,
    /// An event without it (absent, JSON null, or a blank string) is quarantined.
    #[serde(default)]
    pub required: bool,
    /// Timestamps: the accepted forms, tried in order: `rfc3339`, `epoch_ms`, `epoch_s`, or a
    /// chrono pattern (read as UTC unless it has `%z`). Default: `rfc3339`,
    /// `%Y-%m-%d %H:%M:%S%.f`, `%Y-%m-%dT%H:%M:%S%.f`, `epoch_ms`.
    #[serde(default)]
    pub formats: Vec<String>,
    /// Strings: the allowed values, matched in any case and stored as written here.
    #[serde(default)]
    pub values: Vec<String>,
    /// Numbers: the smallest allowed value.
    #[serde(default)]
    pub min: Option<Bound>,
    /// Numbers: the largest allowed value.
    #[serde(default)]
    pub max: Option<Bound>,
    /// Quarantine reason when a required field is absent (default `missing_<name>`).
    #[serde(default)]
    pub missing: Option<String>,
    /// Quarantine reason when the value does not fit the type or a rule (default
    /// `bad_<name>`).
    #[serde(default)]
    pub invalid: Option<String>,
}

/// `[source.schema]` as written in the manifest; it travels to the executors as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDecl {
    /// How a message is read.
    #[serde(default)]
    pub format: Format,
    /// CSV: the field separator (one character, default `,`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Regex: the pattern a line must match ([`Format::Regex`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The event time field (a `timestamp`, always required).
    pub event_time: String,
    /// The fields, in column order.
    pub fields: Vec<FieldDecl>,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Utf8: JSON strings, numbers and booleans as their text.
    String,
    /// Int64: JSON integers, and strings holding one.
    Int,
    /// Float64: JSON numbers, and strings holding one.
    Double,
    /// Boolean: `true`/`false`, also as strings (any case).
    Bool,
    /// Decimal128(p, s): numbers or strings with at most `s` decimal places.
    Decimal(u8, i8),
    /// Timestamp(µs) read as UTC.
    Timestamp,
}

impl Kind {
    /// Parses `string`, `int`, `double`, `bool`, `timestamp`, `decimal(p,s)`.
    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "string" | "text" | "varchar" => Self::String,
            "int" | "bigint" | "long" | "integer" => Self::Int,
            "double" | "float" => Self::Double,
            "bool" | "boolean" => Self::Bool,
            "timestamp" => Self::Timestamp,
            _ => {
                let inner = t
                    .strip_prefix("decimal(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| {
                        format!(
                            "unknown type \"{text}\" (string, int, double, bool, decimal(p,s), timestamp)"
                        )
                    })?;
                let (p, s) = inner
                    .split_once(',')
                    .ok_or_else(|| format!("\"{text}\": write decimal(precision,scale)"))?;
                let p: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("\"{text}\": bad precision"))?;
                let s: i8 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("\"{text}\": bad scale"))?;
                if p == 0 || p > MAX_PRECISION || s < 0 || s.unsigned_abs() > p {
                    return Err(format!(
                        "\"{text}\": precision 1 to {MAX_PRECISION}, scale 0 to precision"
                    ));
                }
                Self::Decimal(p, s)
            }
        })
    }

    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Int => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Decimal(p, s) => DataType::Decimal128(p, s),
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }
}

/// A timestamp form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339, any offset.
    Rfc3339,
    /// Milliseconds since the epoch (a number or digits).
    EpochMs,
    /// Seconds since the epoch.
    EpochS,
    /// A chrono pattern; with `%z`/`%:z` the offset is read, else UTC.
    Pattern(String),
}

/// A bound read in its field's type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// For `int`.
    Int(i64),
    /// For `double`.
    Float(f64),
    /// For `decimal(p,s)`, in units of 10^-s.
    Decimal(i128),
}

/// A field ready to parse values.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// Column name.
    pub name: String,
    /// Type.
    pub kind: Kind,
    /// Absent means quarantined.
    pub required: bool,
    /// Timestamp forms.
    pub formats: Vec<TimeFormat>,
    /// Allowed strings (empty: any).
    pub values: Vec<String>,
    /// Smallest value.
    pub min: Option<Limit>,
    /// Largest value.
    pub max: Option<Limit>,
    /// Reason when absent and required.
    pub missing: String,
    /// Reason when wrong.
    pub invalid: String,
}

/// A checked event schema: the fields, the event time's position, the columns.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// As declared (sent to the executors).
    pub decl: SchemaDecl,
    /// The fields, in column order.
    pub fields: Vec<FieldSpec>,
    /// Index of the event time field in `fields`.
    pub time_index: usize,
    /// CSV separator.
    pub delimiter: u8,
    /// The compiled pattern of a `regex` schema.
    pub pattern: Option<LinePattern>,
    /// The `events` table's schema ([`EventSchema::events_schema`]), made once.
    events: SchemaRef,
}

/// The timestamp forms tried when a field declares none.
pub const DEFAULT_TIME_FORMATS: [&str; 4] = [
    "rfc3339",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "epoch_ms",
];

/// Columns the stream adds after the declared fields: `kafka_partition` Int32,
/// `kafka_offset` Int64.
pub const ORIGIN_COLUMNS: [&str; 2] = ["kafka_partition", "kafka_offset"];

/// Reasons Ember gives whatever the schema: `not_json` / `not_csv` / `malformed_line` (the
/// message cannot be read as its format) and `late` (older than the watermark, see [`crate::watermark`]).
pub const FIXED_REASONS: [&str; 4] = ["not_json", "not_csv", MALFORMED_LINE, "late"];

fn is_reason(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn limit(kind: Kind, bound: &Bound) -> Result<Limit, String> {
    let text = match bound {
        Bound::Int(i) => i.to_string(),
        Bound::Float(f) => f.to_string(),
        Bound::Text(t) => t.trim().to_string(),
    };
    match kind {
        Kind::Int => text
            .parse()
            .map(Limit::Int)
            .map_err(|_| format!("{text} is not a whole number")),
        Kind::Double => text
            .parse()
            .map(Limit::Float)
            .map_err(|_| format!("{text} is not a number")),
        Kind::Decimal(p, s) => datafusion::arrow::compute::kernels::cast_utils::parse_decimal::<
            Decimal128Type,
        >(&text, p, s)
        .map(Limit::Decimal)
        .map_err(|_| format!("{text} does not fit decimal({p},{s})")),
        _ => Err("min and max are for int, double and decimal fields".into()),
    }
}

impl SchemaDecl {
    /// Checks the declaration.
    ///
    /// # Errors
    /// One line naming the field and what is wrong: an unknown type, a duplicate or reserved
    /// name, an event time that is not a declared timestamp, a rule that does not fit the
    /// type, a reason that is not `snake_case`.
    pub fn check(&self) -> Result<EventSchema, String> {
        if self.fields.is_empty() {
            return Err("declares no field".into());
        }
        let delimiter = match self.delimiter.as_deref() {
            None => b',',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => return Err(format!("delimiter \"{d}\" must be one character")),
        };
        let mut fields: Vec<FieldSpec> = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let at = |m: String| format!("field `{}`: {m}", f.name);
            let name = f.name.trim();
            if name.is_empty() {
                return Err("a field has an empty name".into());
            }
            if fields.iter().any(|g| g.name == name) || ORIGIN_COLUMNS.contains(&name) {
                return Err(at("declared twice, or a column Ember adds".into()));
            }
            let kind = Kind::parse(&f.kind).map_err(at)?;
            if !f.formats.is_empty() && kind != Kind::Timestamp {
                return Err(at("formats are for timestamp fields".into()));
            }
            if !f.values.is_empty() && kind != Kind::String {
                return Err(at("values are for string fields".into()));
            }
            let formats = if kind == Kind::Timestamp {
                let written: Vec<&str> = if f.formats.is_empty() {
                    DEFAULT_TIME_FORMATS.to_vec()
                } else {
                    f.formats.iter().map(String::as_str).collect()
                };
                written
                    .into_iter()
                    .map(|w| match w {
                        "rfc3339" => TimeFormat::Rfc3339,
                        "epoch_ms" => TimeFormat::EpochMs,
                        "epoch_s" => TimeFormat::EpochS,
                        p => TimeFormat::Pattern(p.to_string()),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let min = f
                .min
                .as_ref()
                .map(|b| limit(kind, b))
                .transpose()
                .map_err(at)?;
            let max = f
                .max
                .as_ref()
                .map(|b| limit(kind, b))
                .transpose()
                .map_err(at)?;
            let missing = f
                .missing
                .clone()
                .unwrap_or_else(|| format!("missing_{name}"));
            let invalid = f.invalid.clone().unwrap_or_else(|| format!("bad_{name}"));
            for r in [&missing, &invalid] {
                if !is_reason(r) {
                    return Err(at(format!(
                        "reason \"{r}\" must be snake_case (a-z, 0-9, _)"
                    )));
                }
            }
            fields.push(FieldSpec {
                name: name.to_string(),
                kind,
                required: f.required,
                formats,
                values: f.values.clone(),
                min,
                max,
                missing,
                invalid,
            });
        }
        let time_index = fields
            .iter()
            .position(|f| f.name == self.event_time.trim())
            .ok_or_else(|| format!("event_time `{}` is not a declared field", self.event_time))?;
        if fields[time_index].kind != Kind::Timestamp {
            return Err(format!(
                "event_time `{}` must be a timestamp field",
                self.event_time
            ));
        }
        // The event time orders every event: it is always required.
        fields[time_index].required = true;
        let pattern = self.line_pattern(&fields)?;
        let mut schema = EventSchema {
            decl: self.clone(),
            fields,
            time_index,
            delimiter,
            pattern,
            events: Arc::new(Schema::empty()),
        };
        let mut columns = schema.arrow_fields();
        columns.push(Field::new(ORIGIN_COLUMNS[0], DataType::Int32, false));
        columns.push(Field::new(ORIGIN_COLUMNS[1], DataType::Int64, false));
        schema.events = Arc::new(Schema::new(columns));
        Ok(schema)
    }
}

impl SchemaDecl {
    /// The compiled `pattern` of a `regex` schema (`None` for the other formats), each field
    /// tied to its group: the one named after it, else the one at its position.
    fn line_pattern(&self, fields: &[FieldSpec]) -> Result<Option<LinePattern>, String> {
        let Some(text) = &self.pattern else {
            return match self.format {
                Format::Regex => Err("format = \"regex\" needs a pattern".into()),
                _ => Ok(None),
            };
        };
        if self.format != Format::Regex {
            return Err("pattern is for format = \"regex\"".into());
        }
        let regex = regex::Regex::new(text)
            .map_err(|e| format!("pattern: {}", ember_core::error::one_line(&e.to_string())))?;
        let names: Vec<Option<&str>> = regex.capture_names().collect();
        let groups = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                names
                    .iter()
                    .position(|n| *n == Some(f.name.as_str()))
                    .or_else(|| (i + 1 < names.len()).then_some(i + 1))
                    .ok_or_else(|| {
                        format!(
                            "field `{}`: the pattern has no group named {0} and only {} groups",
                            f.name,
                            names.len() - 1
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(LinePattern { regex, groups }))
    }
}

impl EventSchema {
    /// The declared fields as Arrow fields (nullable unless required).
    pub fn arrow_fields(&self) -> Vec<Field> {
        self.fields
            .iter()
            .map(|f| Field::new(&f.name, f.kind.data_type(), !f.required))
            .collect()
    }

    /// The `events` table a streaming job's SQL reads: the declared fields, then
    /// `kafka_partition` Int32 and `kafka_offset` Int64.
    pub fn events_schema(&self) -> SchemaRef {
        Arc::clone(&self.events)
    }

    /// The event time field's name.
    pub fn time_name(&self) -> &str {
        &self.fields[self.time_index].name
    }

    /// Every reason an event of this schema can be quarantined with: the format's, each
    /// field's (in field order, without repeats), then `late`.
    pub fn reasons(&self) -> Vec<String> {
        let mut out = vec![match self.decl.format {
            Format::Json => "not_json".to_string(),
            Format::Csv => "not_csv".to_string(),
            Format::Regex => MALFORMED_LINE.to_string(),
        }];
        for f in &self.fields {
            for r in [&f.missing, &f.invalid] {
                if (f.required || r == &f.invalid) && !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        out.push("late".into());
        out
    }
}
