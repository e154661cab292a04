//! CSV inputs read by Ember's own scan, so that a broken line is data rather than a failed run.
//!
//! A [`CsvTable`] is the files of one input, listed once by the batch runner, read as text:
//! its columns are the input's columns (Utf8, nullable; an empty field is NULL), then its hive
//! partition columns if it has any (Utf8, nullable: the value of the file's `col=value/`
//! folder, see [`CsvFile::partition_values`]), then four of Ember's, present in every CSV
//! input (as Spark's `_corrupt_record` and `_metadata`):
//!
//! | column | type | value |
//! |---|---|---|
//! | `_file` | Utf8 | the URL of the file the row comes from |
//! | `_line` | Int64 | the line (1-based) on which the row's record starts |
//! | `_corrupt_record` | Utf8 | a malformed line's raw text (lossily decoded), else NULL |
//! | `_corrupt_reason` | Utf8 | why it is malformed (`too many fields (9, expected 8)`, `too few fields (…)`, `unterminated quote`, `invalid UTF-8 (…)`), else NULL |
//!
//! A malformed line's input columns are NULL (its partition columns keep its file's values). With `on_malformed = "fail"` the scan fails on
//! the first one instead, naming file, line and reason (see [`records`]).
//!
//! Reading: every file is split into byte ranges of at least [`MIN_RANGE_BYTES`] (as many as
//! the session's target partitions), each a task; quoted newlines are read correctly at any
//! size, and a range whose start falls inside a quoted field is detected (see [`records`]), so
//! [`CsvSpec::split`] can be turned off for the next attempt. The table and its scan travel
//! to Ballista's scheduler and executors as JSON behind [`crate::codec::CodecTag::CsvScan`].

pub(crate) mod records;
pub mod scan;

use std::sync::Arc;

use csv_core::{ReadRecordResult, ReaderBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

pub use records::SPLIT_INSIDE_QUOTES;

use crate::manifest::CsvOptions;

/// `_file` (Utf8): the row's file.
pub const FILE_COLUMN: &str = "_file";
/// `_line` (Int64): the line on which the row's record starts, from 1.
pub const LINE_COLUMN: &str = "_line";
/// `_corrupt_record` (Utf8): a malformed line's raw text (Spark's name).
pub const CORRUPT_RECORD_COLUMN: &str = "_corrupt_record";
/// `_corrupt_reason` (Utf8): why the line is malformed.
pub const CORRUPT_REASON_COLUMN: &str = "_corrupt_reason";

/// The smallest byte range a file is split into (16 MiB): below it a task's fixed cost is
/// not worth a second one.
pub const MIN_RANGE_BYTES: u64 = 16 * 1024 * 1024;

/// A file of the input, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvFile {
    /// The full URL read (`file:///…`, `hdfs://…`).
    pub url: String,
    /// The URL rows name in `_file` and errors: `url`, or the file `url` is a plain UTF-8
    /// copy of (a `.csv.gz` or another encoding, decoded into the run's staging folder).
    pub name: String,
    /// Its size when listed, bytes: the scan reads no further.
    pub size: u64,
    /// Its values of [`CsvSpec::partition_columns`], in that order, from the folders it lies
    /// in (`order_date=2011-12-09/`; NULL for `__HIVE_DEFAULT_PARTITION__`).
    #[serde(default)]
    pub partition_values: Vec<Option<String>>,
}

/// Everything a CSV input's scan needs, on any machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvSpec {
    /// The input's name in the job (for messages).
    pub input: String,
    /// Its files, in name order.
    pub files: Vec<CsvFile>,
    /// Its column names (text), in the files' order.
    pub columns: Vec<String>,
    /// Its hive partition columns (text), in folder order; every file has a value for each.
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// How the files are written.
    pub options: CsvOptions,
    /// Split files into byte ranges (else one task per file).
    pub split: bool,
    /// A malformed line is a row with `_corrupt_record` (else it fails the scan).
    pub malformed_rows: bool,
}

impl CsvSpec {
    /// The table's schema: the columns, then the partition columns, as nullable text, then
    /// `_file`, `_line`, `_corrupt_record`, `_corrupt_reason`.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .chain(&self.partition_columns)
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect();
        fields.push(Field::new(FILE_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(LINE_COLUMN, DataType::Int64, false));
        fields.push(Field::new(CORRUPT_RECORD_COLUMN, DataType::Utf8, true));
        fields.push(Field::new(CORRUPT_REASON_COLUMN, DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    }

    /// The byte ranges of the files, grouped into at most `tasks` groups of about equal bytes
    /// (each group is one task). Always at least one group.
    pub fn ranges(&self, tasks: usize) -> Vec<Vec<FileRange>> {
        let tasks = tasks.max(1);
        let total: u64 = self.files.iter().map(|f| f.size).sum();
        let piece = total.div_ceil(tasks as u64).max(MIN_RANGE_BYTES);
        let mut ranges = Vec::new();
        for (i, file) in self.files.iter().enumerate() {
            let pieces = if self.split {
                file.size.div_ceil(piece).max(1)
            } else {
                1
            };
            let step = file.size.div_ceil(pieces).max(1);
            let mut start = 0;
            while start < file.size {
                let end = (start + step).min(file.size);
                ranges.push(FileRange {
                    file: i,
                    start,
                    end,
                });
                start = end;
            }
        }
        // Largest first into the group with the fewest bytes.
        ranges.sort_by_key(|r| std::cmp::Reverse(r.end - r.start));
        let groups = tasks.min(ranges.len()).max(1);
        let mut out: Vec<(u64, Vec<FileRange>)> = vec![(0, Vec::new()); groups];
        for range in ranges {
            let smallest = out
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .expect("at least one group");
            smallest.0 += range.end - range.start;
            smallest.1.push(range);
        }
        out.into_iter()
            .map(|(_, mut group)| {
                group.sort_by_key(|r| (r.file, r.start));
                group
            })
            .collect()
    }
}

/// Bytes `[start, end)` of file `file` (an index into [`CsvSpec::files`]): the records that
/// start in it (see [`records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    /// The file's index.
    pub file: usize,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// A CSV input's table; see the module documentation.
#[derive(Debug, Clone)]
pub struct CsvTable {
    spec: Arc<CsvSpec>,
    schema: SchemaRef,
}

impl CsvTable {
    /// The table of `spec`.
    pub fn new(spec: CsvSpec) -> Self {
        let schema = spec.schema();
        Self {
            spec: Arc::new(spec),
            schema,
        }
    }

    /// Its spec.
    pub fn spec(&self) -> &CsvSpec {
        &self.spec
    }
}

#[async_trait::async_trait]
impl TableProvider for CsvTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let tasks = state.config().target_partitions();
        Ok(Arc::new(scan::CsvScanExec::try_new(
            Arc::clone(&self.spec),
            scan::ranges_source(&self.spec.ranges(tasks))?,
            projection.cloned(),
        )?))
    }
}

/// The store and the path of a file URL.
///
/// # Errors
/// A URL DataFusion cannot parse.
pub fn locate(url: &str) -> Result<(ObjectStoreUrl, Path)> {
    let parsed = ListingTableUrl::parse(url)?;
    Ok((parsed.object_store(), parsed.prefix().clone()))
}

/// The column names of a CSV file: its header's fields (a BOM removed), or `column_1`, … as
/// many as its first record has when it has no header. Reads at most 16 MiB.
///
/// # Errors
/// The file cannot be read, is empty, or its first record is longer than 16 MiB.
pub async fn column_names(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    size: u64,
    options: &CsvOptions,
) -> Result<Vec<String>> {
    const LIMIT: u64 = 16 * 1024 * 1024;
    let mut parser = ReaderBuilder::new()
        .delimiter(options.delimiter as u8)
        .quote(options.quote as u8)
        .escape(options.escape.map(|c| c as u8))
        .comment(options.comment.map(|c| c as u8))
        .build();
    let mut len = size.min(64 * 1024);
    loop {
        let bytes = store.get_range(location, 0..len).await?;
        parser.reset();
        // Output never exceeds input, and there is at most one field end per input byte.
        let mut out = vec![0u8; bytes.len() + 1];
        let mut ends = vec![0usize; bytes.len() + 2];
        let (mut result, _, nout, mut nend) = parser.read_record(&bytes, &mut out, &mut ends);
        if result == ReadRecordResult::InputEmpty && len == size {
            let (r, _, _, e) = parser.read_record(&[], &mut out[nout..], &mut ends[nend..]);
            (result, nend) = (r, nend + e);
        }
        if result == ReadRecordResult::Record {
            let mut names = Vec::with_capacity(nend);
            let mut from = 0;
            for (i, end) in ends[..nend].iter().enumerate() {
                names.push(if options.header {
                    String::from_utf8_lossy(&out[from..*end]).trim().to_string()
                } else {
                    format!("column_{}", i + 1)
                });
                from = *end;
            }
            return Ok(names);
        }
        if len == size {
            return Err(DataFusionError::Execution("the file is empty".to_string()));
        }
        if len >= LIMIT {
            return Err(DataFusionError::Execution(format!(
                "its first line is longer than {} MiB",
                LIMIT >> 20
            )));
        }
        len = (len * 4).min(size).min(LIMIT);
    }
}
