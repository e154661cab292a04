//! Lookup tables of a stream (`[[input]]`): dimensions the stream's SQL joins, such as
//! `JOIN products USING (product_id) JOIN departments USING (department_id)`.
//!
//! ```toml
//! [[input]]
//! name = "products"               # the table name in the SQL
//! path = "data/products.csv.gz"   # a file or folder: csv, csv.gz, parquet, or a Delta table
//! format = "csv.gz"               # default: from the extension; "delta" for a Delta table
//! key = "product_id"              # optional: a column of the events and of the table
//! refresh = "1m"                  # how often the files are checked for a change (default 1m)
//! ```
//!
//! Rules:
//! - a lookup is loaded into memory when the stream starts, with its column types inferred
//!   from the data (CSV: from all rows, as Spark's `inferSchema`; a CSV has a header row);
//! - before a micro-batch, a lookup whose last check is older than `refresh` is checked: its
//!   files' names, sizes and modification times (for a Delta table, its log's) are compared with
//!   the loaded ones, and it is loaded again when they differ. Batches from then on join the new
//!   rows. A windowed output joins the lookup as it is when the window is emitted;
//! - a replayed micro-batch (after a crash) joins the lookup as it is at the replay;
//! - with a `key`, each micro-batch counts its events whose key value has no row in the lookup
//!   (`unmatched.<name>` in the batch's counts): an INNER JOIN drops them, a LEFT JOIN keeps
//!   them with NULLs, and either way they are counted, so no event vanishes uncounted. A NULL
//!   key is unmatched. Lookups joined through another one (departments through products) have
//!   no key of the events and are not counted;
//! - a lookup that cannot be read fails the stream at start, and fails the batch when a reload
//!   fails (the restart loads it again): a batch never runs with half a table.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::error::{Error, Result};

/// The format of a lookup's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFormat {
    /// CSV with a header row.
    Csv,
    /// Gzip-compressed CSV with a header row.
    CsvGz,
    /// Apache Parquet.
    Parquet,
    /// A Delta table (its latest version).
    Delta,
}

impl LookupFormat {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "csv" => Some(Self::Csv),
            "csv.gz" => Some(Self::CsvGz),
            "parquet" => Some(Self::Parquet),
            "delta" => Some(Self::Delta),
            _ => None,
        }
    }

    fn of_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        [
            (".csv.gz", Self::CsvGz),
            (".csv", Self::Csv),
            (".parquet", Self::Parquet),
        ]
        .into_iter()
        .find_map(|(ext, f)| lower.ends_with(ext).then_some(f))
    }
}

/// An `[[input]]` of a streaming manifest, as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupDecl {
    name: String,
    path: String,
    format: Option<String>,
    key: Option<String>,
    refresh: Option<String>,
    delimiter: Option<char>,
}

/// A checked lookup table declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The table name the SQL uses.
    pub name: String,
    /// File, folder or table location (local path or URL).
    pub path: String,
    /// The files' format.
    pub format: LookupFormat,
    /// The column shared with the events whose misses are counted, if any.
    pub key: Option<String>,
    /// The least time between two checks of the files.
    pub refresh: Duration,
    /// The CSV field delimiter (`,` by default).
    pub delimiter: u8,
}

impl LookupDecl {
    /// The declared name, as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the declaration.
    ///
    /// # Errors
    /// A message (for the manifest error) naming the input: a name that is not an identifier,
    /// an unknown format or one the path does not imply, a bad `refresh`, a non-ASCII delimiter.
    pub fn check(self) -> std::result::Result<Lookup, String> {
        let name = self.name.trim().to_string();
        let at = format!("[[input]] `{name}`");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{at}: the name must be letters, digits and `_` (a table name in the SQL)"
            ));
        }
        let path = self.path.trim().trim_end_matches('/').to_string();
        let format = match &self.format {
            Some(f) => LookupFormat::parse(f.trim()).ok_or_else(|| {
                format!("{at}: format \"{f}\" is not one of csv, csv.gz, parquet, delta")
            })?,
            None => LookupFormat::of_path(&path).ok_or_else(|| {
                format!(
                    "{at}: give a format (csv, csv.gz, parquet, delta): the path {path} does not end in one"
                )
            })?,
        };
        let refresh = match &self.refresh {
            Some(r) => humantime::parse_duration(r.trim())
                .map_err(|e| format!("{at}: refresh = \"{r}\": {e}"))?,
            None => Duration::from_secs(60),
        };
        let delimiter = match self.delimiter {
            None => b',',
            Some(c) => u8::try_from(c)
                .ok()
                .filter(u8::is_ascii)
                .ok_or_else(|| format!("{at}: the delimiter must be one ASCII character"))?,
        };
        Ok(Lookup {
            name,
            path,
            format,
            key: self
                .key
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty()),
            refresh,
            delimiter,
        })
    }
}

/// What identifies a lookup's content: its files' (path, size, modification time), sorted.
type Signature = Vec<(String, u64, i64)>;

/// A loaded lookup: when it was checked, what it was loaded from, its key values.
#[derive(Debug)]
struct Loaded {
    signature: Signature,
    checked: Instant,
    rows: usize,
    keys: Option<HashSet<String>>,
}

/// The stream's lookup tables, registered in its session and kept current.
#[derive(Debug, Default)]
pub struct Lookups {
    tables: Vec<(Lookup, Option<Loaded>)>,
}

fn lookup_error(lookup: &Lookup, e: impl std::fmt::Display) -> Error {
    Error::Lookup {
        name: lookup.name.clone(),
        path: lookup.path.clone(),
        message: ember_core::error::one_line(&e.to_string()),
    }
}

impl Lookups {
    /// The lookups of a job, not loaded yet.
    pub fn new(lookups: &[Lookup]) -> Self {
        Self {
            tables: lookups.iter().cloned().map(|l| (l, None)).collect(),
        }
    }

    /// Loads every lookup not loaded yet, and loads again those whose `refresh` interval has
    /// passed and whose files changed, registering each as a table of `ctx`. Returns the names
    /// of the tables (re)loaded.
    ///
    /// # Errors
    /// [`Error::Lookup`] naming the lookup and its path: files that cannot be listed
    /// or read, no file, a `key` the table does not have.
    pub async fn refresh(&mut self, ctx: &SessionContext) -> Result<Vec<String>> {
        let mut loaded_now = Vec::new();
        for (lookup, loaded) in &mut self.tables {
            if loaded
                .as_ref()
                .is_some_and(|l| l.checked.elapsed() < lookup.refresh)
            {
                continue;
            }
            // Listed before the read: a change during the read is seen at the next check.
            let signature = signature(ctx, lookup).await?;
            if let Some(l) = loaded.as_mut().filter(|l| l.signature == signature) {
                l.checked = Instant::now();
                continue;
            }
            let (rows, keys) = load(ctx, lookup).await?;
            tracing::info!(
                lookup = lookup.name,
                path = lookup.path,
                rows,
                files = signature.len(),
                "lookup table loaded"
            );
            *loaded = Some(Loaded {
                signature,
                checked: Instant::now(),
                rows,
                keys,
            });
            loaded_now.push(lookup.name.clone());
        }
        Ok(loaded_now)
    }

    /// Rows of each loaded lookup, by name.
    pub fn rows(&self) -> BTreeMap<String, usize> {
        self.tables
            .iter()
            .filter_map(|(l, loaded)| loaded.as_ref().map(|x| (l.name.clone(), x.rows)))
            .collect()
    }

    /// For each lookup with a `key`: how many rows of `events` have a key value (or NULL)
    /// with no row in the lookup. Lookups without a count are left out.
    ///
    /// # Errors
    /// [`Error::Lookup`] when the events have no column `key`.
    pub fn unmatched(&self, events: &RecordBatch) -> Result<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for (lookup, loaded) in &self.tables {
            let (Some(key), Some(keys)) =
                (&lookup.key, loaded.as_ref().and_then(|l| l.keys.as_ref()))
            else {
                continue;
            };
            let column = events.column_by_name(key).ok_or_else(|| {
                lookup_error(lookup, format!("key `{key}` is not a field of the events"))
            })?;
            let missing = key_strings(column)
                .map_err(|e| lookup_error(lookup, e))?
                .into_iter()
                .filter(|k| k.as_ref().is_none_or(|k| !keys.contains(k)))
                .count();
            counts.insert(lookup.name.clone(), missing as u64);
        }
        Ok(counts)
    }
}

/// A key column's values as text (NULL as `None`), so that an Int64 event field meets an
/// inferred Int64 or Utf8 lookup column.
fn key_strings(column: &dyn Array) -> std::result::Result<Vec<Option<String>>, String> {
    let text = cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
    (0..text.len())
        .map(|i| {
            if text.is_null(i) {
                Ok(None)
            } else {
                array_value_to_string(&text, i)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
        })
        .collect()
}

async fn signature(ctx: &SessionContext, lookup: &Lookup) -> Result<Signature> {
    let url = ListingTableUrl::parse(&lookup.path).map_err(|e| lookup_error(lookup, e))?;
    let store = ctx
        .runtime_env()
        .object_store(&url)
        .map_err(|e| lookup_error(lookup, e))?;
    let prefix = url.prefix().clone();
    let meta = |o: object_store::ObjectMeta| {
        (
            o.location.to_string(),
            o.size,
            o.last_modified.timestamp_micros(),
        )
    };
    // A file, or (no object at the path) the files under a folder.
    let mut files: Signature = match store.head(&prefix).await {
        Ok(o) => vec![meta(o)],
        Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
            return Err(lookup_error(lookup, e));
        }
        Err(_) => store
            .list(Some(&prefix))
            .map_ok(meta)
            .try_collect()
            .await
            .map_err(|e| lookup_error(lookup, e))?,
    };
    files.sort();
    if files.is_empty() {
        return Err(lookup_error(
            lookup,
            "no such file or folder, or an empty folder",
        ));
    }
    Ok(files)
}

/// Reads the lookup's current content and registers it as a table of `ctx`.
async fn load(ctx: &SessionContext, lookup: &Lookup) -> Result<(usize, Option<HashSet<String>>)> {
    let error = |e: datafusion::error::DataFusionError| lookup_error(lookup, e);
    let df = match lookup.format {
        LookupFormat::Csv | LookupFormat::CsvGz => {
            let gz = lookup.format == LookupFormat::CsvGz;
            let options = CsvReadOptions::new()
                .has_header(true)
                .delimiter(lookup.delimiter)
                .schema_infer_max_records(usize::MAX)
                .file_extension(if gz { ".csv.gz" } else { ".csv" })
                .file_compression_type(if gz {
                    FileCompressionType::GZIP
                } else {
                    FileCompressionType::UNCOMPRESSED
                });
            ctx.read_csv(&lookup.path, options).await.map_err(error)?
        }
        LookupFormat::Parquet => ctx
            .read_parquet(&lookup.path, ParquetReadOptions::default())
            .await
            .map_err(error)?,
        LookupFormat::Delta => {
            let table = ember_core::table::delta_scan::DeltaLogTable::try_new(
                &ctx.runtime_env(),
                &lookup.path,
                None,
            )
            .await
            .map_err(|e| lookup_error(lookup, e))?;
            ctx.read_table(Arc::new(table)).map_err(error)?
        }
    };
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches: Vec<RecordBatch> = df.collect().await.map_err(error)?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let keys = match &lookup.key {
        None => None,
        Some(key) => {
            let index = schema.index_of(key).map_err(|_| {
                lookup_error(lookup, format!("key `{key}` is not a column of the table"))
            })?;
            let mut set = HashSet::with_capacity(rows);
            for b in &batches {
                set.extend(
                    key_strings(b.column(index))
                        .map_err(|e| lookup_error(lookup, e))?
                        .into_iter()
                        .flatten(),
                );
            }
            Some(set)
        }
    };
    let table = MemTable::try_new(schema, vec![batches]).map_err(error)?;
    let _ = ctx.deregister_table(lookup.name.as_str());
    ctx.register_table(lookup.name.as_str(), Arc::new(table))
        .map_err(error)?;
    Ok((rows, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(text: &str) -> std::result::Result<Lookup, String> {
        toml::from_str::<LookupDecl>(text)
            .map_err(|e| e.to_string())?
            .check()
    }

    #[test]
    fn the_format_is_given_or_implied_by_the_path() {
        let l = decl(
            r#"name = "products"
                        path = "data/products.csv.gz"
                        key = "product_id""#,
        )
        .expect("lookup");
        assert_eq!(l.format, LookupFormat::CsvGz);
        assert_eq!(l.key.as_deref(), Some("product_id"));
        assert_eq!(l.refresh, Duration::from_secs(60));
        for (text, expected) in [
            (
                "name = \"d\"\npath = \"tables/departments\"",
                "give a format",
            ),
            (
                "name = \"d\"\npath = \"t\"\nformat = \"avro\"",
                "not one of csv",
            ),
            ("name = \"my table\"\npath = \"t.csv\"", "letters, digits"),
            (
                "name = \"t\"\npath = \"t.csv\"\nrefresh = \"soon\"",
                "refresh = \"soon\"",
            ),
        ] {
            let e = decl(text).expect_err(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[tokio::test]
    async fn a_changed_file_is_loaded_again_and_misses_are_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("products.csv");
        std::fs::write(&path, "product_id,name\n1,tea\n2,milk\n").expect("write");
        let lookup = decl(&format!(
            "name = \"products\"\npath = \"{}\"\nkey = \"product_id\"\nrefresh = \"0s\"",
            path.display()
        ))
        .expect("lookup");
        let ctx = SessionContext::new();
        let mut lookups = Lookups::new(&[lookup]);
        assert_eq!(lookups.refresh(&ctx).await.expect("load"), ["products"]);
        assert!(lookups.refresh(&ctx).await.expect("same").is_empty());
        let events = RecordBatch::try_from_iter([(
            "product_id",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                Some(1),
                Some(3),
                None,
                Some(2),
            ])) as _,
        )])
        .expect("events");
        assert_eq!(lookups.unmatched(&events).expect("count")["products"], 2);
        std::fs::write(&path, "product_id,name\n1,tea\n2,milk\n3,bread\n").expect("write");
        assert_eq!(lookups.refresh(&ctx).await.expect("reload"), ["products"]);
        assert_eq!(lookups.rows()["products"], 3);
        assert_eq!(lookups.unmatched(&events).expect("count")["products"], 1);
        let rows = ctx
            .sql("SELECT name FROM products WHERE product_id = 3")
            .await
            .expect("sql")
            .collect()
            .await
            .expect("rows");
        assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    }
}
