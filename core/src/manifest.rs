//! Job manifests: `job.toml` in a job folder, the file a data engineer edits (with the SQL files
//! next to it) to define a batch job without touching Rust. The format is documented in
//! `docs/jobs.md`; in short:
//!
//! ```toml
//! [job]
//! name = "daily_revenue_by_product"
//!
//! [params]                      # name = default; `--set name=value` overrides
//! input = "data/online_retail.csv.gz"
//! output = "output/daily_revenue_by_product"
//!
//! [[input]]                     # a table the SQL reads
//! name = "raw_sales"
//! path = "${input}"             # file, folder or glob
//! format = "csv.gz"             # csv | csv.gz | parquet (default: from the extension)
//! csv = { header = true, delimiter = ",", quote = '"', encoding = "utf-8" }
//!
//! [[view]]                      # named SQL, in order
//! name = "checked_sales"
//! sql = "checked_sales.sql"
//! cache = true                  # computed once per run; later SQL reads the copy
//!
//! [[view]]
//! name = "sales"
//! sql = "sales.sql"
//!
//! [quarantine]                  # rows that go to <output>/_quarantine/, with a `reason`
//! sql = "quarantine.sql"
//! partition_by = ["order_date"]
//!
//! [output]
//! path = "${output}"
//! format = "parquet"            # parquet | delta (a `${param}` may choose)
//! partition_by = ["order_date"]
//! sql = "daily_revenue.sql"
//!
//! [checks]                      # rows_read = rows_valid + rows_quarantined, checked every run
//! rows_read = "raw_sales"
//! rows_valid = "sales"
//! ```
//!
//! Unknown keys are errors that name the key and its line (serde's `deny_unknown_fields`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{Error, Location, Result};
use crate::params::Params;
use crate::sql_file::SqlFile;

mod csv;
mod database;
mod rules;

pub use csv::{CsvOptions, OnMalformed};

pub use database::{
    DatabaseInput, DatabaseKind, DatabaseOutput, ExportMode, Incremental, IncrementalMode,
};

/// The manifest's file name inside a job folder.
pub const MANIFEST_FILE: &str = "job.toml";

/// The column every quarantine query must produce: why the row was rejected (Utf8).
pub const REASON_COLUMN: &str = "reason";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    job: JobSection,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default, rename = "input")]
    inputs: Vec<InputSection>,
    #[serde(default, rename = "view")]
    views: Vec<ViewSection>,
    quarantine: Option<QuarantineSection>,
    output: OutputSection,
    checks: Option<ChecksSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSection {
    name: Spanned<String>,
    path: Option<Spanned<String>>,
    format: Option<SectionFormat>,
    url: Option<Spanned<String>>,
    password_env: Option<String>,
    password_file: Option<Spanned<String>>,
    table: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    split_by: Option<String>,
    splits: Option<usize>,
    incremental: Option<Incremental>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    unique_key: Vec<String>,
    #[serde(default)]
    partition_columns: Vec<String>,
    #[serde(default)]
    csv: CsvOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewSection {
    name: Spanned<String>,
    sql: Spanned<String>,
    #[serde(default)]
    cache: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineSection {
    sql: Spanned<String>,
    #[serde(default)]
    partition_by: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSection {
    path: Spanned<String>,
    /// `parquet`, `delta`, `mysql` or `postgres`, or a `${param}` that renders to one.
    format: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    password_env: Option<String>,
    password_file: Option<Spanned<String>>,
    table: Option<Spanned<String>>,
    mode: Option<ExportMode>,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default)]
    partition_by: Vec<String>,
    sql: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksSection {
    rows_read: Spanned<String>,
    rows_valid: Spanned<String>,
}

/// `format` of an `[[input]]`: a file format or a database.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum SectionFormat {
    File(InputFormat),
    Database(DatabaseKind),
}

/// File format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InputFormat {
    /// Comma-separated (or other delimiter) text.
    #[serde(rename = "csv")]
    Csv,
    /// Gzip-compressed CSV.
    #[serde(rename = "csv.gz")]
    CsvGz,
    /// Apache Parquet.
    #[serde(rename = "parquet")]
    Parquet,
}

impl InputFormat {
    /// The format implied by a path's extension (`.csv`, `.csv.gz`, `.parquet`), if any.
    pub fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv.gz") {
            Some(Self::CsvGz)
        } else if lower.ends_with(".csv") {
            Some(Self::Csv)
        } else if lower.ends_with(".parquet") {
            Some(Self::Parquet)
        } else {
            None
        }
    }

    /// The file extension DataFusion lists for this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => ".csv",
            Self::CsvGz => ".csv.gz",
            Self::Parquet => ".parquet",
        }
    }
}

/// Format of the output (`[output] format`, a parameter may choose it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutputFormat {
    /// Apache Parquet, one folder per partition value (hive style `col=value/`), committed by
    /// renames, with `_SUCCESS` (Spark's FileOutputCommitter).
    #[default]
    #[serde(rename = "parquet")]
    Parquet,
    /// A Delta Lake table: the same Parquet layout plus `_delta_log/`; each run is one Delta
    /// commit (`crate::table::delta`).
    #[serde(rename = "delta")]
    Delta,
}

impl OutputFormat {
    /// The format named `name` (`parquet`, `delta`).
    ///
    /// # Errors
    /// A message naming the formats there are.
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        match name.trim() {
            "parquet" => Ok(Self::Parquet),
            "delta" => Ok(Self::Delta),
            other => Err(format!(
                "unknown output format `{other}`; use `parquet` or `delta`"
            )),
        }
    }

    /// The format's name in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Delta => "delta",
        }
    }
}

/// A job manifest as loaded from disk, before parameters are applied.
#[derive(Debug)]
pub struct JobManifest {
    path: PathBuf,
    dir: PathBuf,
    text: String,
    file: ManifestFile,
}

/// An input table of a resolved job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// The table name the SQL uses.
    pub name: String,
    /// The rendered path (file, folder, glob or URL); empty only for an absent optional input.
    pub path: String,
    /// The format, given or implied by the path's extension; `None`: decided from the
    /// extension of the files found there when the input is listed.
    pub format: Option<InputFormat>,
    /// An optional input with an empty path is an empty table of `columns`.
    pub optional: bool,
    /// Column names (headerless CSV, or the schema of an absent optional input).
    pub columns: Vec<String>,
    /// Columns whose combination must be unique (checked before the job writes anything).
    pub unique_key: Vec<String>,
    /// Hive partition columns of a folder input (`order_date` of `order_date=2011-12-09/`),
    /// read from the folder names as text, in folder order (Spark's partition discovery).
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// CSV reading options.
    pub csv: CsvOptions,
    /// A database input (then `path` is empty and `format` is `None`).
    #[serde(default)]
    pub database: Option<DatabaseInput>,
}

/// The quarantine of a resolved job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quarantine {
    /// The query selecting rejected rows; it produces a `reason` column.
    pub sql: SqlFile,
    /// Partition columns of `<output>/_quarantine/`.
    pub partition_by: Vec<String>,
}

/// The output of a resolved job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    /// The rendered output path (folder or URL).
    pub path: String,
    /// The output format.
    pub format: OutputFormat,
    /// Hive-style partition columns, in folder order.
    pub partition_by: Vec<String>,
    /// The query producing the output rows.
    pub sql: SqlFile,
    /// A database output: the rows go into its table; `path` then holds the run's staging,
    /// quarantine and `_SUCCESS` report only.
    #[serde(default)]
    pub database: Option<DatabaseOutput>,
}

/// The row-count reconciliation of a resolved job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checks {
    /// The table whose row count is "rows read".
    pub rows_read: String,
    /// The table whose row count is "valid rows".
    pub rows_valid: String,
}

/// A job ready to run: parameters applied, paths rendered, SQL files read and rendered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The job's name (`[job] name`).
    pub name: String,
    /// Free text.
    pub description: String,
    /// The manifest this job came from.
    pub manifest_path: PathBuf,
    /// The parameters in effect.
    pub params: Params,
    /// Input tables, in manifest order.
    pub inputs: Vec<Input>,
    /// Views, in manifest order.
    pub views: Vec<SqlFile>,
    /// The views computed once per run (`cache = true`): their rows are written to the run's
    /// staging folder as Parquet when the view is reached, and every later query reads that
    /// copy (Spark's `persist(DISK_ONLY)`). A checked view that the quarantine, the output and
    /// the counts all read is typed once instead of once per query.
    #[serde(default)]
    pub cached_views: Vec<String>,
    /// Where rejected rows go, if the job quarantines.
    pub quarantine: Option<Quarantine>,
    /// The output.
    pub output: Output,
    /// The row-count reconciliation, if declared.
    pub checks: Option<Checks>,
}

impl JobManifest {
    /// Loads a manifest from a job folder (reading its `job.toml`) or from a `.toml` file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Manifest`] for TOML syntax errors,
    /// unknown keys and wrong types (with line and column), and for inconsistent content
    /// (duplicate table names, checks naming unknown tables).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let given = path.as_ref();
        let path = if given.is_dir() {
            given.join(MANIFEST_FILE)
        } else {
            given.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(path, text)
    }

    /// Parses manifest text that was read from `path`.
    ///
    /// # Errors
    /// As [`JobManifest::load`], without the I/O.
    pub fn parse(path: PathBuf, text: String) -> Result<Self> {
        let file: ManifestFile = toml::from_str(&text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            Error::Manifest {
                location: Location::of_offset(&path, &text, offset),
                message: crate::error::one_line(e.message()),
            }
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let manifest = Self {
            path,
            dir,
            text,
            file,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        self.file.job.name.get_ref()
    }

    /// The manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The declared parameters with their defaults.
    pub fn params(&self) -> Params {
        Params::new(self.name(), self.file.params.clone())
    }

    fn at<T>(&self, spanned: &Spanned<T>) -> Location {
        Location::of_offset(&self.path, &self.text, spanned.span().start)
    }

    fn error<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> Error {
        Error::Manifest {
            location: self.at(spanned),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<()> {
        let f = &self.file;
        if let Err(message) = rules::job_name(f.job.name.get_ref()) {
            return Err(self.error(&f.job.name, message));
        }
        let names: Vec<&Spanned<String>> = f
            .inputs
            .iter()
            .map(|i| &i.name)
            .chain(f.views.iter().map(|v| &v.name))
            .collect();
        if let Err((at, message)) = rules::tables(names.iter().map(|n| n.get_ref().as_str())) {
            return Err(self.error(names[at], message));
        }
        for input in &f.inputs {
            if let Err(message) = rules::input(
                input.optional,
                &input.columns,
                input.csv.delimiter,
                input.csv.quote,
            ) {
                return Err(self.error(&input.name, message));
            }
            if let Err(message) = input.check_source() {
                return Err(self.error(&input.name, message));
            }
        }
        if let Some(checks) = &f.checks {
            let names = names.iter().map(|n| n.get_ref().as_str());
            for table in [&checks.rows_read, &checks.rows_valid] {
                if let Err(message) = rules::check_table(names.clone(), table.get_ref()) {
                    return Err(self.error(table, message));
                }
            }
        }
        Ok(())
    }

    /// Applies parameters: renders every path and reads and renders every SQL file.
    ///
    /// # Errors
    /// [`Error::UndefinedReference`] for `${name}` without a parameter (with file, line and
    /// column), [`Error::Io`] for a SQL file that cannot be read, [`Error::Manifest`] for an
    /// input whose format cannot be told from its path.
    pub fn resolve(&self, params: Params) -> Result<Job> {
        let f = &self.file;
        let render = |s: &Spanned<String>| -> Result<String> {
            let base = s.span().start;
            params.render(s.get_ref(), &|o| {
                // `base` points at the opening quote of the TOML string.
                Location::of_offset(&self.path, &self.text, base + 1 + o)
            })
        };
        let mut inputs = Vec::with_capacity(f.inputs.len());
        for i in &f.inputs {
            if let Some(SectionFormat::Database(kind)) = i.format {
                inputs.push(self.database_input(i, kind, &render)?);
                continue;
            }
            let Some(path_field) = &i.path else {
                return Err(self.error(
                    &i.name,
                    "an input needs a `path` (or a database `format` with `url`)",
                ));
            };
            let path = render(path_field)?.trim().to_string();
            let format = match i.format {
                Some(SectionFormat::File(format)) => Some(format),
                _ => InputFormat::from_path(&path),
            };
            if path.is_empty() && !i.optional {
                return Err(self.error(
                    path_field,
                    format!("input `{}` has an empty path", i.name.get_ref()),
                ));
            }
            let mut csv = i.csv.clone();
            // Parameters render in the encoding too (errors point at the input's name).
            csv.encoding = params.render(&csv.encoding, &|_| self.at(&i.name))?;
            csv.on_malformed = params.render(&csv.on_malformed, &|_| self.at(&i.name))?;
            OnMalformed::parse(&csv.on_malformed).map_err(|m| self.error(&i.name, m))?;
            inputs.push(Input {
                name: i.name.get_ref().clone(),
                path,
                format,
                optional: i.optional,
                columns: i.columns.clone(),
                unique_key: i.unique_key.clone(),
                partition_columns: i.partition_columns.clone(),
                csv,
                database: None,
            });
        }
        let output_path = render(&f.output.path)?.trim().to_string();
        if output_path.is_empty() {
            return Err(self.error(&f.output.path, "the output path is empty"));
        }
        let sql = |name: &str, file: &Spanned<String>| {
            SqlFile::load(name, self.dir.join(file.get_ref()), &params)
        };
        let views = f
            .views
            .iter()
            .map(|v| sql(v.name.get_ref(), &v.sql))
            .collect::<Result<Vec<_>>>()?;
        let cached_views = f
            .views
            .iter()
            .filter(|v| v.cache)
            .map(|v| v.name.get_ref().clone())
            .collect();
        let quarantine = match &f.quarantine {
            Some(q) => Some(Quarantine {
                sql: sql("quarantine", &q.sql)?,
                partition_by: q.partition_by.clone(),
            }),
            None => None,
        };
        let o = &f.output;
        let rendered = o.format.as_ref().map(&render).transpose()?;
        let kind = match rendered.as_deref().map(str::trim) {
            Some("mysql") => Some(DatabaseKind::Mysql),
            Some("postgres") => Some(DatabaseKind::Postgres),
            _ => None,
        };
        let (format, database) = match (kind, &o.format, rendered) {
            (Some(kind), Some(at), _) => {
                let opt = |v: &Option<Spanned<String>>| render_trimmed(&render, v);
                let database = DatabaseOutput {
                    kind,
                    url: opt(&o.url)?.unwrap_or_default(),
                    password_env: o.password_env.clone(),
                    password_file: opt(&o.password_file)?,
                    table: opt(&o.table)?.unwrap_or_default(),
                    mode: o.mode.unwrap_or_default(),
                    key: o.key.clone(),
                };
                database::check_output(&database, &o.partition_by)
                    .map_err(|message| self.error(at, message))?;
                (OutputFormat::Parquet, Some(database))
            }
            (_, Some(at), Some(name)) => {
                let format =
                    OutputFormat::parse(&name).map_err(|message| self.error(at, message))?;
                (format, None)
            }
            _ => (OutputFormat::default(), None),
        };
        if database.is_none() {
            let keys = [
                ("url", o.url.is_some()),
                ("password_env", o.password_env.is_some()),
                ("password_file", o.password_file.is_some()),
                ("table", o.table.is_some()),
                ("mode", o.mode.is_some()),
                ("key", !o.key.is_empty()),
            ];
            database::only_for_databases(&keys, "outputs").map_err(|m| self.error(&o.path, m))?;
        }
        let output = Output {
            path: output_path,
            format,
            partition_by: o.partition_by.clone(),
            sql: sql("output", &o.sql)?,
            database,
        };
        let checks = f.checks.as_ref().map(|c| Checks {
            rows_read: c.rows_read.get_ref().clone(),
            rows_valid: c.rows_valid.get_ref().clone(),
        });
        Ok(Job {
            name: self.name().to_string(),
            description: f.job.description.clone(),
            manifest_path: self.path.clone(),
            params,
            inputs,
            views,
            cached_views,
            quarantine,
            output,
            checks,
        })
    }
}

impl JobManifest {
    /// A database input of the manifest, its URL and SQL rendered.
    fn database_input(
        &self,
        i: &InputSection,
        kind: DatabaseKind,
        render: &dyn Fn(&Spanned<String>) -> Result<String>,
    ) -> Result<Input> {
        let opt = |v: &Option<Spanned<String>>| render_trimmed(render, v);
        let url = opt(&i.url)?.unwrap_or_default();
        let database = DatabaseInput {
            kind,
            url,
            password_env: i.password_env.clone(),
            password_file: opt(&i.password_file)?,
            table: opt(&i.table)?,
            query: opt(&i.query)?,
            split_by: i.split_by.clone(),
            splits: i.splits.unwrap_or(1),
            incremental: i.incremental.clone(),
        };
        if let Err(message) = database::check_input(&database) {
            return Err(self.error(&i.name, message));
        }
        Ok(Input {
            name: i.name.get_ref().clone(),
            path: String::new(),
            format: None,
            optional: false,
            columns: Vec::new(),
            unique_key: i.unique_key.clone(),
            partition_columns: Vec::new(),
            csv: CsvOptions::default(),
            database: Some(database),
        })
    }
}

impl InputSection {
    /// Keys that belong to files or to databases only, checked against `format`.
    fn check_source(&self) -> std::result::Result<(), String> {
        let database = matches!(self.format, Some(SectionFormat::Database(_)));
        let db_keys = [
            ("url", self.url.is_some()),
            ("password_env", self.password_env.is_some()),
            ("password_file", self.password_file.is_some()),
            ("table", self.table.is_some()),
            ("query", self.query.is_some()),
            ("split_by", self.split_by.is_some()),
            ("splits", self.splits.is_some()),
            ("incremental", self.incremental.is_some()),
        ];
        if database {
            if !self.partition_columns.is_empty() {
                return Err("`partition_columns` is for folder inputs".into());
            }
            if self.path.is_some() {
                return Err("a database input has a `url`, not a `path`".into());
            }
            if self.optional || !self.columns.is_empty() {
                return Err("`optional` and `columns` are for file inputs".into());
            }
            if self.url.is_none() {
                return Err(
                    "a database input needs `url` (e.g. \"mysql://user@host:3306/db\")".into(),
                );
            }
        } else {
            database::only_for_databases(&db_keys, "inputs")?;
        }
        Ok(())
    }
}

impl Job {
    /// Checks a resolved job by the manifest's rules (names, tables, inputs, checks, paths):
    /// what a server runs before it accepts a job it did not load itself.
    ///
    /// # Errors
    /// [`Error::InvalidJob`] naming the manifest and what is wrong.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Error::InvalidJob {
            path: self.manifest_path.clone(),
            message,
        };
        rules::job_name(&self.name).map_err(|m| invalid(m.to_string()))?;
        let names: Vec<&str> = self
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .chain(self.views.iter().map(|v| v.name.as_str()))
            .collect();
        rules::tables(names.iter().copied()).map_err(|(_, m)| invalid(m))?;
        for input in &self.inputs {
            rules::input(
                input.optional,
                &input.columns,
                input.csv.delimiter,
                input.csv.quote,
            )
            .map_err(|m| invalid(format!("input `{}`: {m}", input.name)))?;
            if let Some(db) = &input.database {
                database::check_input(db)
                    .map_err(|m| invalid(format!("input `{}`: {m}", input.name)))?;
            } else if input.path.trim().is_empty() && !input.optional {
                return Err(invalid(format!("input `{}` has an empty path", input.name)));
            }
        }
        if let Some(checks) = &self.checks {
            for table in [&checks.rows_read, &checks.rows_valid] {
                rules::check_table(names.iter().copied(), table).map_err(invalid)?;
            }
        }
        if self.output.path.trim().is_empty() {
            return Err(invalid("the output path is empty".into()));
        }
        if let Some(db) = &self.output.database {
            database::check_output(db, &self.output.partition_by)
                .map_err(|m| invalid(format!("output: {m}")))?;
        }
        Ok(())
    }

    /// Every path the job reads or writes, with what it is (`input \`raw_sales\``, `output`).
    pub fn paths(&self) -> Vec<(String, &str)> {
        self.inputs
            .iter()
            .filter(|i| !i.path.is_empty())
            .map(|i| (format!("input `{}`", i.name), i.path.as_str()))
            .chain(std::iter::once((
                "output".to_string(),
                self.output.path.as_str(),
            )))
            .collect()
    }
}

/// `value` rendered and trimmed, if given.
fn render_trimmed(
    render: &dyn Fn(&Spanned<String>) -> Result<String>,
    value: &Option<Spanned<String>>,
) -> Result<Option<String>> {
    value
        .as_ref()
        .map(|s| render(s).map(|r| r.trim().to_string()))
        .transpose()
}

#[cfg(test)]
mod tests;
