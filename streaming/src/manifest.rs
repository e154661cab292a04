//! Streaming job manifests: `job.toml` with a `[source]` (a Kafka topic, or a folder of files
//! with `kind = "files"`: [`crate::spool`]) and a `[stream]` section instead of `[[input]]`s.
//! The format, documented with an example in `docs/streaming.md`:
//!
//! ```toml
//! [job]
//! name = "hourly_product_revenue"
//!
//! [params]                      # as for batch jobs: defaults that `--set name=value` overrides
//! brokers = "127.0.0.1:9092"
//!
//! [source]
//! kind = "kafka"                # or "files": path, after, completed_suffix, max_files_per_trigger
//! brokers = "${brokers}"        # bootstrap.servers
//! topic = "sales_events"
//! group_id = "ember-hourly"     # offsets are also committed here, for lag tools
//! starting_offsets = "earliest" # or "latest": where a stream without checkpoint starts
//! max_records_per_trigger = 100000
//! options = { "fetch.max.bytes" = "52428800" }   # extra librdkafka settings
//! on_offsets_lost = "fail"      # or "earliest", "latest": the checkpoint's offset is gone
//! partition_discovery = "0s"    # new partitions looked for at every trigger, or this often
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
//! [[input]]                     # lookup tables the SQL joins: crate::lookup
//! name = "products"
//! path = "data/products.csv.gz" # csv, csv.gz, parquet or a Delta table; local, HDFS or S3
//! key = "product_id"            # counts events with no match as unmatched.products
//! refresh = "1m"                # reloaded when its files change, checked at most this often
//!
//! [stream]
//! trigger = "5s"                # processing-time interval, or "available-now"
//! allowed_lateness = "10m"
//! idle_timeout = "1m"
//! max_event_time_skew = "1d"    # events further ahead of processing time: future_event_time
//! checkpoint = "…"              # default: <first output>/_checkpoint
//!
//! [output]                      # or several [[output]] blocks, each with a name
//! path = "output/hourly_product_revenue"
//! format = "parquet"            # or "delta": one Delta commit per micro-batch (docs/tables.md)
//! partition_by = ["window_date", "window_hour"]
//! sql = "windows.sql"           # reads the table `events`; a windowed query gives window_start
//!                               # and window_end, a stateless one neither
//! state = "auto"                # or "events": what a windowed output keeps for its open windows
//! ```
//!
//! Several `[[output]]`s are fed by one Kafka read and one checkpoint: each micro-batch is
//! written to every output, in the order they are declared, before the batch's commit mark
//! (see [`crate::engine`]). The quarantine goes to the first output's `_quarantine/`.
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

use crate::engine::OnOffsetsLost;
use crate::error::Result;
use crate::event::{EventSchema, SchemaDecl};
use crate::lookup::{Lookup, LookupDecl};
use crate::spool::{After, FileSource};

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

/// Where a streaming job's records come from (`[source]`).
#[derive(Debug, Clone)]
pub enum Source {
    /// A Kafka topic (`kind = "kafka"`, the default).
    Kafka(KafkaTopic),
    /// A folder of files, each read once (`kind = "files"`, [`crate::spool`]).
    Files(FileSource),
}

/// The Kafka source of a streaming job.
#[derive(Debug, Clone)]
pub struct KafkaTopic {
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
    /// What to do when the checkpoint's next offset is no longer in the topic.
    pub on_offsets_lost: OnOffsetsLost,
    /// How often the topic's partitions are listed again while the stream runs (zero: before
    /// every planned micro-batch, as Spark's Kafka source). A new partition is read from its
    /// earliest offset. An `available-now` run reads the partitions it found at its start.
    pub partition_discovery: Duration,
}

/// One output of a stream: a folder (plain Parquet with the sink log) or a Delta table, and
/// the query that fills it.
#[derive(Debug, Clone)]
pub struct StreamOutput {
    /// The output's name (`name`, or the last segment of its path), unique in the job; reports
    /// count rows per output under it.
    pub name: String,
    /// Output folder (local path or URL).
    pub path: String,
    /// Plain Parquet with the sink log, or a Delta table.
    pub format: OutputFormat,
    /// Partition columns of the output (produced by the SQL).
    pub partition_by: Vec<String>,
    /// The query over `events` (and the lookup tables): a windowed aggregation, or stateless.
    pub sql: SqlFile,
    /// What a windowed output keeps for its open windows.
    pub state: StateMode,
}

/// What a windowed output keeps between micro-batches for its open windows (`state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateMode {
    /// Partial aggregates per open (window, key) when every aggregate of the query merges
    /// (`sum`, `count`, `min`, `max`, `bool_and`, `bool_or`), else the events (the default).
    #[default]
    Auto,
    /// The events of the open windows, whatever the aggregates: more state, but the query's
    /// aggregates may change between restarts of one checkpoint.
    Events,
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
    /// The Kafka topic or the folder of files.
    pub source: Source,
    /// The messages' declared schema (`[source.schema]`).
    pub schema: EventSchema,
    /// When batches run.
    pub trigger: Trigger,
    /// Allowed lateness, µs.
    pub allowed_lateness_us: i64,
    /// Idle timeout of a partition, ms.
    pub idle_timeout_ms: i64,
    /// How far ahead of the batch's processing time an event time may be, µs; beyond, the
    /// event is quarantined as `future_event_time`.
    pub max_event_time_skew_us: i64,
    /// Checkpoint folder (local path or URL).
    pub checkpoint: String,
    /// The lookup tables (`[[input]]`), in declared order.
    pub lookups: Vec<Lookup>,
    /// The outputs, in declared order (at least one); the first also holds the quarantine.
    pub outputs: Vec<StreamOutput>,
}

impl StreamJob {
    /// The Kafka topic, when the source is one.
    pub fn kafka(&self) -> Option<&KafkaTopic> {
        match &self.source {
            Source::Kafka(k) => Some(k),
            Source::Files(_) => None,
        }
    }

    /// What the source is, for messages: `topic T on B` or `folder F`.
    pub fn source_label(&self) -> String {
        match &self.source {
            Source::Kafka(k) => format!("topic {} on {}", k.topic, k.brokers),
            Source::Files(f) => format!("folder {}", f.path),
        }
    }

    /// The first output: where the quarantine and, by default, the checkpoint live.
    pub fn primary(&self) -> &StreamOutput {
        &self.outputs[0]
    }
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
    #[serde(default)]
    input: Vec<LookupDecl>,
    #[serde(deserialize_with = "one_or_many")]
    output: Vec<OutputSection>,
}

/// `[output]` (one table) or `[[output]]` (an array of tables), with each table's own errors.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<OutputSection>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<OutputSection>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an [output] table or [[output]] tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            OutputSection::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(|o| vec![o])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            Vec::<OutputSection>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(Visitor)
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
    #[serde(default)]
    kind: SourceKind,
    brokers: Option<String>,
    topic: Option<String>,
    group_id: Option<String>,
    #[serde(default = "earliest")]
    starting_offsets: StartingOffsets,
    #[serde(default = "default_max_records", deserialize_with = "number_or_text")]
    max_records_per_trigger: u64,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    on_offsets_lost: OnOffsetsLost,
    #[serde(default = "default_discovery")]
    partition_discovery: String,
    path: Option<String>,
    after: Option<After>,
    completed_suffix: Option<String>,
    #[serde(default, deserialize_with = "optional_number")]
    max_files_per_trigger: Option<u64>,
    schema: SchemaDecl,
}

#[derive(serde::Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    #[default]
    Kafka,
    Files,
}

fn optional_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    number_or_text(d).map(Some)
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
    #[serde(default = "default_skew")]
    max_event_time_skew: String,
    checkpoint: Option<String>,
}

fn default_discovery() -> String {
    "0s".into()
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
fn default_skew() -> String {
    "1d".into()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSection {
    name: Option<String>,
    path: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    partition_by: Vec<String>,
    sql: String,
    #[serde(default)]
    state: StateMode,
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
    let skew = duration(
        &file_path,
        &rendered,
        "max_event_time_skew",
        &file.stream.max_event_time_skew,
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
    let outputs = outputs(
        &file_path,
        &rendered,
        &dir,
        &params,
        &file.output,
        &file.job.name,
    )?;
    let source = source(&file_path, &rendered, &file)?;
    let checkpoint = file
        .stream
        .checkpoint
        .map(|c| c.trim().trim_end_matches('/').to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("{}/_checkpoint", outputs[0].path));
    let mut lookups: Vec<Lookup> = Vec::with_capacity(file.input.len());
    let input_blocks = block_offsets(&rendered, &["[[input]]"]);
    for (i, decl) in file.input.into_iter().enumerate() {
        let offset = key_offset(&rendered, input_blocks.get(i).copied(), decl.name());
        let lookup = decl
            .check()
            .map_err(|message| manifest_error(&file_path, &rendered, offset, message))?;
        if lookups.iter().any(|l| l.name == lookup.name) || lookup.name == "events" {
            return Err(manifest_error(
                &file_path,
                &rendered,
                offset,
                format!("[[input]] `{}`: the name is taken", lookup.name),
            )
            .into());
        }
        lookups.push(lookup);
    }
    let schema = file.source.schema.check().map_err(|message| {
        let offset = rendered.find("[source.schema]").unwrap_or(0);
        manifest_error(
            &file_path,
            &rendered,
            offset,
            format!("[source.schema] {message}"),
        )
    })?;
    Ok(StreamJob {
        name: file.job.name.clone(),
        manifest_path: file_path,
        params,
        source,
        schema,
        trigger,
        allowed_lateness_us: i64::try_from(lateness.as_micros()).unwrap_or(i64::MAX),
        idle_timeout_ms: i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
        max_event_time_skew_us: i64::try_from(skew.as_micros()).unwrap_or(i64::MAX),
        checkpoint,
        lookups,
        outputs,
    })
}

/// The `[source]` of `file`: a Kafka topic, or a folder (`files`); the other kind's keys are
/// refused, naming the line.
fn source(file_path: &Path, rendered: &str, file: &File) -> Result<Source> {
    let section = &file.source;
    let files = section.kind == SourceKind::Files;
    let at = |key: &str, message: String| -> crate::error::Error {
        let offset = key_offset(rendered, rendered.find("[source]"), key);
        manifest_error(file_path, rendered, offset, message).into()
    };
    if !files {
        let kafka_only = |key: &str, value: Option<&String>| {
            value.map_or(Ok(()), |_| {
                Err(at(key, format!("[source] {key} is for kind = \"files\"")))
            })
        };
        kafka_only("path", section.path.as_ref())?;
        kafka_only("completed_suffix", section.completed_suffix.as_ref())?;
        if section.after.is_some() || section.max_files_per_trigger.is_some() {
            return Err(at(
                "after",
                "[source] after and max_files_per_trigger are for kind = \"files\"".into(),
            ));
        }
        let (Some(brokers), Some(topic)) = (&section.brokers, &section.topic) else {
            return Err(at(
                "[source]",
                "[source] needs brokers and topic (or kind = \"files\" with a path)".into(),
            ));
        };
        return Ok(Source::Kafka(KafkaTopic {
            brokers: brokers.clone(),
            topic: topic.clone(),
            group_id: section
                .group_id
                .clone()
                .unwrap_or_else(|| format!("ember-{}", file.job.name)),
            starting_offsets: section.starting_offsets,
            max_records_per_trigger: section.max_records_per_trigger,
            options: section.options.clone(),
            on_offsets_lost: section.on_offsets_lost,
            partition_discovery: duration(
                file_path,
                rendered,
                "partition_discovery",
                &section.partition_discovery,
            )?,
        }));
    }
    for (key, set) in [
        ("brokers", section.brokers.is_some()),
        ("topic", section.topic.is_some()),
        ("group_id", section.group_id.is_some()),
        ("options", !section.options.is_empty()),
    ] {
        if set {
            return Err(at(key, format!("[source] {key} is for kind = \"kafka\"")));
        }
    }
    let path = section
        .path
        .as_deref()
        .map(|p| p.trim().trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            at(
                "kind",
                "[source] kind = \"files\" needs the folder's path".into(),
            )
        })?;
    let completed_suffix = section
        .completed_suffix
        .clone()
        .unwrap_or_else(|| ".COMPLETED".into());
    if completed_suffix.is_empty() || completed_suffix.contains('/') {
        return Err(at(
            "completed_suffix",
            format!("completed_suffix \"{completed_suffix}\" must be a non-empty name suffix"),
        ));
    }
    let max_files = section.max_files_per_trigger.unwrap_or(DEFAULT_MAX_FILES);
    if max_files == 0 {
        return Err(at(
            "max_files_per_trigger",
            "max_files_per_trigger must be > 0".into(),
        ));
    }
    Ok(Source::Files(FileSource {
        path,
        after: section.after.unwrap_or_default(),
        completed_suffix,
        max_files_per_trigger: usize::try_from(max_files).unwrap_or(usize::MAX),
    }))
}

/// Files per micro-batch of a `files` source when `max_files_per_trigger` is not set.
pub const DEFAULT_MAX_FILES: u64 = 100;

/// Byte offsets of the lines that open a table with one of `headers` (`[[output]]`), in
/// order: the `i`-th is where the `i`-th such table of the file starts.
fn block_offsets(text: &str, headers: &[&str]) -> Vec<usize> {
    let mut offset = 0;
    let mut found = Vec::new();
    for line in text.split_inclusive('\n') {
        if headers.iter().any(|h| line.trim_start().starts_with(h)) {
            found.push(offset);
        }
        offset += line.len();
    }
    found
}

/// Where `key` is written in the table starting at `block` (the table's start when it is not
/// there; the file's start without a table).
fn key_offset(text: &str, block: Option<usize>, key: &str) -> usize {
    block.map_or(0, |start| {
        start + text.get(start..).and_then(|t| t.find(key)).unwrap_or(0)
    })
}

/// The outputs of `sections`: names given or taken from the path's last segment (`job` for a
/// single unnamed output whose path ends in nothing usable), unique names and paths.
fn outputs(
    file_path: &Path,
    rendered: &str,
    dir: &Path,
    params: &Params,
    sections: &[OutputSection],
    job: &str,
) -> Result<Vec<StreamOutput>> {
    let blocks = block_offsets(rendered, &["[[output]]", "[output]"]);
    if sections.is_empty() {
        return Err(manifest_error(file_path, rendered, 0, "no [[output]]").into());
    }
    let mut outputs: Vec<StreamOutput> = Vec::with_capacity(sections.len());
    for (i, section) in sections.iter().enumerate() {
        let at = |key: &str| key_offset(rendered, blocks.get(i).copied(), key);
        let path = section.path.trim().trim_end_matches('/').to_string();
        let name = match &section.name {
            Some(n) => n.trim().to_string(),
            None => path
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or(job)
                .to_string(),
        };
        let format = match &section.format {
            Some(f) => OutputFormat::parse(f)
                .map_err(|message| manifest_error(file_path, rendered, at("format"), message))?,
            None => OutputFormat::default(),
        };
        if let Some(other) = outputs.iter().find(|o| o.name == name || o.path == path) {
            let what = if other.name == name { "name" } else { "path" };
            return Err(manifest_error(
                file_path,
                rendered,
                at(&section.path),
                format!(
                    "output `{name}` has the same {what} as output `{}`: give each [[output]] its own name and path",
                    other.name
                ),
            )
            .into());
        }
        let sql = SqlFile::load(&format!("output {name}"), dir.join(&section.sql), params)?;
        outputs.push(StreamOutput {
            name,
            path,
            format,
            partition_by: section.partition_by.clone(),
            sql,
            state: section.state,
        });
    }
    Ok(outputs)
}
