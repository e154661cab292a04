//! Streaming job manifests: `job.toml` with a `[source]` (Kafka) and a `[stream]` section
//! instead of `[[input]]`s. The format, documented with an example in `docs/streaming.md`:
//!
//! ```toml
//! [job]
//! name = "hourly_product_revenue"
//!
//! [params]                      # as for batch jobs: defaults that `--set name=value` overrides
//! brokers = "127.0.0.1:9092"
//!
//! [source]
//! brokers = "${brokers}"        # bootstrap.servers
//! topic = "sales_events"
//! group_id = "ember-hourly"     # offsets are also committed here, for lag tools
//! starting_offsets = "earliest" # or "latest": where a stream without checkpoint starts
//! max_records_per_trigger = 100000
//! options = { "fetch.max.bytes" = "52428800" }   # extra librdkafka settings
//!
//! [source.schema]               # the messages' fields: crate::event::schema
//! format = "json"
//! event_time = "event_time"
//! fields = [
//!   { name = "event_time", type = "timestamp", required = true },
//!   { name = "product_id", type = "string", required = true },
//!   { name = "quantity", type = "int", required = true, min = 1 },
//! ]
//!
//! [stream]
//! trigger = "5s"                # processing-time interval, or "available-now"
//! allowed_lateness = "10m"
//! idle_timeout = "1m"
//! checkpoint = "…"              # default: <output>/_checkpoint
//!
//! [output]
//! path = "output/hourly_product_revenue"
//! format = "parquet"            # or "delta": one Delta commit per micro-batch (docs/tables.md)
//! partition_by = ["window_date", "window_hour"]
//! sql = "windows.sql"           # reads the table `events`; a windowed query gives window_start
//!                               # and window_end, a stateless one neither
//! ```
//!
//! `${name}` references are substituted in the whole file (comments too) before it is parsed;
//! unknown keys are errors that name their line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ember_core::error::{Error as CoreError, Location};
use ember_core::manifest::OutputFormat;
use ember_core::params::Params;
use ember_core::sql_file::SqlFile;

use serde::Deserialize;

use crate::error::Result;
use crate::event::{EventSchema, SchemaDecl};

/// When micro-batches start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// One batch every interval (Spark's `Trigger.ProcessingTime`); a batch that takes longer
    /// is followed at once by the next.
    ProcessingTime(Duration),
    /// Drain what is in the topic now, in batches of at most `max_records_per_trigger`, then
    /// stop (Spark's `Trigger.AvailableNow`).
    AvailableNow,
}

/// Where a stream with no checkpoint starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartingOffsets {
    /// The first offset still in the topic.
    Earliest,
    /// The end of the topic when the stream starts.
    Latest,
}

/// The Kafka source of a streaming job.
#[derive(Debug, Clone)]
pub struct Source {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group the committed offsets are reported to.
    pub group_id: String,
    /// Where a stream without checkpoint starts.
    pub starting_offsets: StartingOffsets,
    /// Upper bound of messages in one micro-batch, over all partitions.
    pub max_records_per_trigger: u64,
    /// Extra librdkafka settings.
    pub options: BTreeMap<String, String>,
}

/// A resolved streaming job: parameters applied, SQL read.
#[derive(Debug, Clone)]
pub struct StreamJob {
    /// The job's name.
    pub name: String,
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// The resolved parameters.
    pub params: Params,
    /// The Kafka source.
    pub source: Source,
    /// The messages' declared schema (`[source.schema]`).
    pub schema: EventSchema,
    /// When batches run.
    pub trigger: Trigger,
    /// Allowed lateness, µs.
    pub allowed_lateness_us: i64,
    /// Idle timeout of a partition, ms.
    pub idle_timeout_ms: i64,
    /// Checkpoint folder (local path or URL).
    pub checkpoint: String,
    /// Output folder (local path or URL).
    pub output: String,
    /// Plain Parquet with the sink log, or a Delta table.
    pub format: OutputFormat,
    /// Partition columns of the output (produced by the SQL).
    pub partition_by: Vec<String>,
    /// The query over `events`: a windowed aggregation, or stateless.
    pub sql: SqlFile,
}

#[derive(serde::Deserialize)]
struct Head {
    job: HeadJob,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct HeadJob {
    name: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    job: JobSection,
    #[serde(default)]
    #[allow(dead_code)]
    params: BTreeMap<String, String>,
    source: SourceSection,
    stream: StreamSection,
    output: OutputSection,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    brokers: String,
    topic: String,
    group_id: Option<String>,
    #[serde(default = "earliest")]
    starting_offsets: StartingOffsets,
    #[serde(default = "default_max_records", deserialize_with = "number_or_text")]
    max_records_per_trigger: u64,
    #[serde(default)]
    options: BTreeMap<String, String>,
    schema: SchemaDecl,
}

/// A count written as a TOML integer, or as a string (so that it can be a `"${param}"`).
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got \"{t}\""))),
    }
}

fn earliest() -> StartingOffsets {
    StartingOffsets::Earliest
}

fn default_max_records() -> u64 {
    100_000
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamSection {
    #[serde(default = "default_trigger")]
    trigger: String,
    #[serde(default = "default_lateness")]
    allowed_lateness: String,
    #[serde(default = "default_idle")]
    idle_timeout: String,
    checkpoint: Option<String>,
}

fn default_trigger() -> String {
    "5s".into()
}
fn default_lateness() -> String {
    "10m".into()
}
fn default_idle() -> String {
    "1m".into()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSection {
    path: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    partition_by: Vec<String>,
    sql: String,
}

/// Whether the manifest text declares a streaming job (has a `[stream]` table).
pub fn is_stream_manifest(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("stream"))
}

/// The manifest file of a job folder or manifest path.
pub fn manifest_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("job.toml")
    } else {
        path.to_path_buf()
    }
}

fn manifest_error(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> CoreError {
    CoreError::Manifest {
        location: Location::of_offset(path, text, offset),
        message: ember_core::error::one_line(&message.into()),
    }
}

fn duration(path: &Path, text: &str, key: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value).map_err(|e| {
        let offset = text.find(key).unwrap_or(0);
        manifest_error(path, text, offset, format!("{key} = \"{value}\": {e}")).into()
    })
}

/// Loads a streaming job from its folder or manifest, applying `--set` settings.
///
/// # Errors
/// [`ember_core::Error`] (wrapped) for an unreadable file, TOML errors and unknown keys (with
/// line and column), unknown parameters, bad durations and unreadable SQL.
pub fn load(path: &Path, settings: &[(String, String)]) -> Result<StreamJob> {
    let file_path = manifest_file(path);
    let text = std::fs::read_to_string(&file_path).map_err(|source| CoreError::Io {
        path: file_path.clone(),
        source,
    })?;
    let head: Head = toml::from_str(&text).map_err(|e| {
        manifest_error(
            &file_path,
            &text,
            e.span().map_or(0, |s| s.start),
            e.message(),
        )
    })?;
    let mut params = Params::new(head.job.name.clone(), head.params);
    params.apply(settings)?;
    let rendered = params.render(&text, &|o| Location::of_offset(&file_path, &text, o))?;
    let file: File = toml::from_str(&rendered).map_err(|e| {
        manifest_error(
            &file_path,
            &rendered,
            e.span().map_or(0, |s| s.start),
            e.message(),
        )
    })?;
    let dir = file_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let trigger = match file.stream.trigger.as_str() {
        "available-now" | "available_now" | "once" => Trigger::AvailableNow,
        interval => Trigger::ProcessingTime(duration(&file_path, &rendered, "trigger", interval)?),
    };
    let lateness = duration(
        &file_path,
        &rendered,
        "allowed_lateness",
        &file.stream.allowed_lateness,
    )?;
    let idle = duration(
        &file_path,
        &rendered,
        "idle_timeout",
        &file.stream.idle_timeout,
    )?;
    if file.source.max_records_per_trigger == 0 {
        let offset = rendered.find("max_records_per_trigger").unwrap_or(0);
        return Err(manifest_error(
            &file_path,
            &rendered,
            offset,
            "max_records_per_trigger must be > 0",
        )
        .into());
    }
    let output = file.output.path.trim().trim_end_matches('/').to_string();
    let checkpoint = file
        .stream
        .checkpoint
        .map(|c| c.trim().trim_end_matches('/').to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("{output}/_checkpoint"));
    let format = match &file.output.format {
        Some(name) => OutputFormat::parse(name).map_err(|message| {
            let offset = rendered.find("format").unwrap_or(0);
            manifest_error(&file_path, &rendered, offset, message)
        })?,
        None => OutputFormat::default(),
    };
    let schema = file.source.schema.check().map_err(|message| {
        let offset = rendered.find("[source.schema]").unwrap_or(0);
        manifest_error(
            &file_path,
            &rendered,
            offset,
            format!("[source.schema] {message}"),
        )
    })?;
    let sql = SqlFile::load("output", dir.join(&file.output.sql), &params)?;
    Ok(StreamJob {
        name: file.job.name.clone(),
        manifest_path: file_path,
        params,
        source: Source {
            brokers: file.source.brokers,
            topic: file.source.topic,
            group_id: file
                .source
                .group_id
                .unwrap_or_else(|| format!("ember-{}", file.job.name)),
            starting_offsets: file.source.starting_offsets,
            max_records_per_trigger: file.source.max_records_per_trigger,
            options: file.source.options,
        },
        schema,
        trigger,
        allowed_lateness_us: i64::try_from(lateness.as_micros()).unwrap_or(i64::MAX),
        idle_timeout_ms: i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
        checkpoint,
        output,
        format,
        partition_by: file.output.partition_by,
        sql,
    })
}
