//! Registers a job's inputs as tables, after checking that their files exist.
//!
//! Rules:
//! - a path is a file, a folder (its files with the format's extension) or a glob; zero
//!   matching files is an error, never an empty table (DataFusion would silently read nothing);
//! - the format is the one given, or the path's extension, or the one extension the files
//!   found there share;
//! - CSV columns are all read as text (Utf8, nullable; an empty field is NULL), so no value can
//!   fail a run: the job's SQL types them and quarantines what does not parse;
//! - gzip CSV and CSV in another encoding than UTF-8 are written as plain UTF-8 CSV into the
//!   run's staging folder first (see `transcode`);
//! - an optional input with an empty path is an empty table of its declared `columns` (text);
//! - `unique_key` columns are checked after registration, before anything is written (a
//!   dimension with duplicate keys would multiply rows in a join).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::view::ViewTable;
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTableUrl, helpers};
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{LogicalPlanBuilder, cast, col, ident, lit};
use datafusion::prelude::SessionContext;
use std::collections::BTreeMap;

use ember_core::csv::{CsvFile, CsvSpec, CsvTable};
use ember_core::manifest::{DatabaseInput, Input, InputFormat, OnMalformed};
use ember_core::report::ImportMark;
use ember_core::table::parquet_files::{ListedFile, ParquetFilesTable};
use encoding_rs::Encoding;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::committer::{Area, Committer};
use crate::error::{Error, Result};
use crate::transcode::{self, Failed};
use ember_core::report::InputSummary;

/// Registers every input of the job; see the module documentation for the rules.
///
/// # Errors
/// [`Error::Input`] naming the input and its path.
pub(crate) async fn register_all(
    ctx: &SessionContext,
    inputs: &[Input],
    committer: &Committer,
    previous: &BTreeMap<String, ImportMark>,
    reading: &CsvReading,
    name_step: &(dyn Fn(&str) + Sync),
) -> Result<(Vec<InputSummary>, BTreeMap<String, ImportMark>)> {
    let mut summaries = Vec::with_capacity(inputs.len());
    let mut marks = BTreeMap::new();
    for input in inputs {
        match &input.database {
            Some(db) => {
                name_step(&format!("import {}", input.name));
                let (summary, mark) =
                    import(ctx, input, db, committer, previous.get(&input.name)).await?;
                summaries.push(summary);
                if let Some(mark) = mark {
                    marks.insert(input.name.clone(), mark);
                }
            }
            None => summaries.push(register(ctx, input, committer, reading).await?),
        }
    }
    for input in inputs.iter().filter(|i| !i.unique_key.is_empty()) {
        name_step(&format!("unique key of {}", input.name));
        check_unique_key(ctx, input).await?;
    }
    Ok((summaries, marks))
}

/// How a run reads its CSV inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsvReading {
    /// Files are split into byte ranges (else one task per file: the run's second attempt
    /// when a quoted field spanned a range's start).
    pub split: bool,
    /// Some SQL of the job reads `_corrupt_record`, so malformed lines can be rows (else
    /// they fail the run whatever `on_malformed` says: nothing would quarantine them).
    pub routes_malformed: bool,
}

/// A database input, imported as Sqoop does: its rows (those after `previous` for an
/// incremental input) are read by one task per split range and written as Parquet into
/// `<staging>/inputs/<name>/`, which every query of the run then reads. The database is read
/// once per run, so the output, the quarantine and the counts see the same rows. Returns the
/// input's summary (the SQL of each task in `read`) and its new mark.
async fn import(
    ctx: &SessionContext,
    input: &Input,
    db: &DatabaseInput,
    committer: &Committer,
    previous: Option<&ImportMark>,
) -> Result<(InputSummary, Option<ImportMark>)> {
    let scan_name = format!("__ember_import_{}", input.name);
    let database_error = |e: ember_ingest::Error| Error::Database(Box::new(e));
    let registered = ember_ingest::register(ctx, &input.name, &scan_name, db, previous)
        .await
        .map_err(database_error)?;
    let import_error =
        |e: DataFusionError| Error::execution(format!("importing input `{}`", input.name), e);
    let scan = ctx.table(scan_name.as_str()).await.map_err(&import_error)?;
    let url = format!("{}{}/", committer.staging_url(Area::Inputs), input.name);
    let written = ember_core::sink::write(
        ctx,
        scan,
        &url,
        Vec::new(),
        ember_core::manifest::OutputFormat::Parquet,
    )
    .await
    .map_err(|e| match e {
        DataFusionError::External(inner) => match inner.downcast::<ember_ingest::Error>() {
            Ok(e) => database_error(*e),
            Err(other) => import_error(DataFusionError::External(other)),
        },
        other => import_error(other),
    })?;
    ctx.deregister_table(scan_name.as_str())
        .map_err(&import_error)?;
    tracing::info!(input = %input.name, rows = written.rows, files = written.paths.len(), tasks = registered.ranges.len(), "database input imported");
    if written.paths.is_empty() {
        // No row: the scan again, with a range that reads nothing (a plan of no rows that
        // keeps its columns when it travels to the scheduler).
        let empty = ember_ingest::database::scan::DatabaseTable::try_new(
            registered.source.clone(),
            vec!["1 = 0".to_string()],
        )
        .map_err(&import_error)?;
        ctx.register_table(input.name.as_str(), Arc::new(empty))
            .map_err(&import_error)?;
    } else {
        crate::cache::register_written(
            ctx,
            &input.name,
            &url,
            &written,
            Arc::clone(&registered.schema),
            ParquetFormat::default(),
        )
        .map_err(&import_error)?;
    }
    let summary = InputSummary {
        name: input.name.clone(),
        path: registered.path,
        files: written.paths.len(),
        bytes: written.bytes,
        reencoded_from: None,
        read: registered.ranges,
    };
    Ok((summary, registered.mark))
}

fn input_error(input: &Input, message: impl Into<String>) -> Error {
    Error::Input {
        input: input.name.clone(),
        path: input.path.clone(),
        message: message.into(),
    }
}

/// [`Error::InputStorage`]: reading `input` or writing its staged copy failed in storage.
fn input_storage_error(input: &Input, message: String) -> Error {
    Error::InputStorage {
        input: input.name.clone(),
        path: input.path.clone(),
        message,
    }
}

/// A failed [`transcode::to_utf8`] of file `from` into the staged copy `to` (both URLs).
fn transcode_error(input: &Input, from: &ListingTableUrl, to: &str, failed: Failed) -> Error {
    let storage = |message| input_storage_error(input, message);
    match failed {
        Failed::Read(e) => storage(format!("reading {from}: {e}")),
        Failed::Write(e) => storage(format!("writing its staged copy {to}: {e}")),
        Failed::Decompress(e) => input_error(input, format!("decompressing {from}: {e}")),
    }
}

fn df_error(input: &Input, e: DataFusionError) -> Error {
    input_error(input, ember_core::error::one_line(&e.strip_backtrace()))
}

async fn register(
    ctx: &SessionContext,
    input: &Input,
    committer: &Committer,
    reading: &CsvReading,
) -> Result<InputSummary> {
    let mut summary = InputSummary {
        name: input.name.clone(),
        path: input.path.clone(),
        files: 0,
        bytes: 0,
        reencoded_from: None,
        read: Vec::new(),
    };
    if input.optional && input.path.is_empty() {
        register_empty(ctx, input)?;
        return Ok(summary);
    }
    let (files, format) = list(ctx, input).await?;
    summary.files = files.len();
    summary.bytes = files.iter().map(|f| f.size).sum();
    let listed = listed_urls(input, &files)?;
    summary.read = listed.iter().map(ToString::to_string).collect();

    // The table reads exactly the files listed now, so that every query of the run (output,
    // quarantine, counts) reads the same ones: a file that arrives during the run waits for
    // the next run.
    let partition_values = partition_values(input, &listed, &files)?;
    if format == InputFormat::Parquet {
        register_parquet(ctx, input, &listed, &files, partition_values).await?;
        return Ok(summary);
    }
    let encoding = Encoding::for_label(input.csv.encoding.trim().as_bytes()).ok_or_else(|| {
        input_error(
            input,
            format!(
                "unknown encoding `{}` (use a WHATWG label: utf-8, latin1, iso-8859-1, windows-1252, utf-16le, …)",
                input.csv.encoding
            ),
        )
    })?;
    let decode = (encoding != encoding_rs::UTF_8).then_some(encoding);
    let mut csv_files = if decode.is_none() && format == InputFormat::Csv {
        listed
            .iter()
            .zip(&files)
            .map(|(url, meta)| CsvFile {
                url: url.to_string(),
                name: url.to_string(),
                size: meta.size,
                partition_values: Vec::new(),
            })
            .collect()
    } else {
        summary.reencoded_from = decode.map(|e| e.name().to_string());
        let gzip = format == InputFormat::CsvGz;
        prepare(ctx, input, &files, &listed, gzip, decode, committer).await?
    };
    for (file, values) in csv_files.iter_mut().zip(partition_values) {
        file.partition_values = values;
    }
    register_csv(ctx, input, csv_files, reading).await?;
    Ok(summary)
}

/// Spark's and DataFusion's folder name for a NULL partition value.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Each listed file's values of the input's `partition_columns` (none without them): the
/// values of the `col=value/` folders it lies in under the input's folder, in that order,
/// percent-decoded (DataFusion's partition discovery, as Spark's); `__HIVE_DEFAULT_PARTITION__`
/// is NULL, as Spark reads it.
///
/// # Errors
/// The input's path is not a folder, or a file lies outside such folders (DataFusion's
/// listing would skip it silently; here it is named).
fn partition_values(
    input: &Input,
    listed: &[ListingTableUrl],
    files: &[ObjectMeta],
) -> Result<Vec<Vec<Option<String>>>> {
    if input.partition_columns.is_empty() {
        return Ok(vec![Vec::new(); files.len()]);
    }
    let folder = ListingTableUrl::parse(&input.path).map_err(|e| df_error(input, e))?;
    if !folder.is_collection() {
        return Err(input_error(
            input,
            "`partition_columns` needs a folder of Parquet or CSV files (path ending with /)",
        ));
    }
    let columns = &input.partition_columns;
    listed
        .iter()
        .zip(files)
        .map(|(url, file)| {
            let names = columns.iter().map(String::as_str);
            match helpers::parse_partitions_for_path(&folder, &file.location, names) {
                Some(values) if values.len() == columns.len() => Ok(values
                    .into_iter()
                    .map(|v| (v != HIVE_NULL).then(|| v.into_owned()))
                    .collect()),
                _ => Err(input_error(
                    input,
                    format!(
                        "{url} is not in `{}/` folders, as `partition_columns` says every file is",
                        columns
                            .iter()
                            .map(|c| format!("{c}=<value>"))
                            .collect::<Vec<_>>()
                            .join("/")
                    ),
                )),
            }
        })
        .collect()
}

/// Registers a Parquet input: exactly the `files` listed for the run, with their partition
/// `values` and their URL as `_file` ([`ParquetFilesTable`]: every query of the run reads
/// these files, pruned by its filters on partition columns and `_file`; nothing is listed
/// again). The files' schema is the first file's.
async fn register_parquet(
    ctx: &SessionContext,
    input: &Input,
    listed: &[ListingTableUrl],
    files: &[ObjectMeta],
    values: Vec<Vec<Option<String>>>,
) -> Result<()> {
    let state = ctx.state();
    // Listed files are taken as they are, whatever their names end with.
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
    let schema = options
        .infer_schema(&state, &listed[0])
        .await
        .map_err(|e| df_error(input, e))?;
    // Each row's file, as a CSV input gives it: a constant of its file, carried as one more
    // partition value (unless the files have a `_file` column of their own).
    let file_column = schema
        .field_with_name(ember_core::csv::FILE_COLUMN)
        .is_err();
    let mut partitions = input.partition_columns.clone();
    if file_column {
        partitions.push(ember_core::csv::FILE_COLUMN.to_string());
    }
    let files = files
        .iter()
        .zip(listed)
        .zip(values)
        .map(|((meta, url), mut values)| {
            if file_column {
                values.push(Some(url.to_string()));
            }
            ListedFile::new(meta, values)
        })
        .collect();
    let table = ParquetFilesTable::try_new(&listed[0].object_store(), &schema, partitions, files)
        .map_err(|e| df_error(input, e))?;
    register_with_row_columns(ctx, input, Arc::new(table))
}

/// Registers `table` (a Parquet input) under the input's name with the
/// columns every CSV input has, so that a job reads any of its file inputs with the same SQL:
/// `_file` (from the table), `_line`, `_corrupt_record`, `_corrupt_reason`, NULL here
/// (DataFusion's reader does not give a row's line). A view, which travels to Ballista as its
/// plan.
fn register_with_row_columns(
    ctx: &SessionContext,
    input: &Input,
    table: Arc<dyn datafusion::datasource::TableProvider>,
) -> Result<()> {
    use ember_core::csv::{CORRUPT_REASON_COLUMN, CORRUPT_RECORD_COLUMN, FILE_COLUMN, LINE_COLUMN};
    let schema = table.schema();
    let mut columns: Vec<_> = schema.fields().iter().map(|f| ident(f.name())).collect();
    for (name, data_type) in [
        (FILE_COLUMN, DataType::Utf8),
        (LINE_COLUMN, DataType::Int64),
        (CORRUPT_RECORD_COLUMN, DataType::Utf8),
        (CORRUPT_REASON_COLUMN, DataType::Utf8),
    ] {
        if schema.field_with_name(name).is_err() {
            columns.push(cast(lit(ScalarValue::Null), data_type).alias(name));
        }
    }
    let source = datafusion::datasource::provider_as_source(table);
    let plan = LogicalPlanBuilder::scan(format!("{}_files", input.name), source, None)
        .and_then(|b| b.project(columns))
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| df_error(input, e))?;
    ctx.register_table(input.name.as_str(), Arc::new(ViewTable::new(plan, None)))
        .map_err(|e| df_error(input, e))?;
    Ok(())
}

/// Lists the input's files and settles its format: the one given, or the one implied by the
/// path's extension, or else the one extension (`.csv`, `.csv.gz`, `.parquet`) that the files
/// found there share. In a folder, `_`- and `.`-prefixed files and folders (`_SUCCESS`,
/// `.crc`, `_temporary/`, `_quarantine/`) are not data. Fails when no file is left. The files come back in name order.
async fn list(ctx: &SessionContext, input: &Input) -> Result<(Vec<ObjectMeta>, InputFormat)> {
    let url = ListingTableUrl::parse(&input.path).map_err(|e| df_error(input, e))?;
    let store = ctx
        .runtime_env()
        .object_store(url.object_store())
        .map_err(|e| df_error(input, e))?;
    let extension = match input.format {
        Some(format) if url.is_collection() => format.extension(),
        _ => "",
    };
    let state = ctx.state();
    let listed = match url.list_all_files(&state, store.as_ref(), extension).await {
        Ok(stream) => stream.try_collect::<Vec<_>>().await,
        Err(e) => Err(e),
    };
    let mut files = match listed {
        Ok(files) => files,
        Err(DataFusionError::ObjectStore(e))
            if matches!(*e, object_store::Error::NotFound { .. }) =>
        {
            Vec::new()
        }
        Err(e) => return Err(df_error(input, e)),
    };
    if url.is_collection() {
        files.retain(|f| !hidden(&url, &f.location));
    }
    let no_file = |what: &str| {
        let message = if input.path.contains(['*', '?', '[']) {
            "no file matches this pattern".to_string()
        } else if url.is_collection() {
            format!("no {what} file in this folder")
        } else {
            "no such file".to_string()
        };
        input_error(input, message)
    };
    let format = match input.format {
        Some(format) => format,
        None => {
            let mut formats: Vec<InputFormat> = files
                .iter()
                .filter_map(|f| InputFormat::from_path(f.location.as_ref()))
                .collect();
            formats.sort();
            formats.dedup();
            match formats[..] {
                [format] => format,
                [] if files.is_empty() => return Err(no_file("data")),
                [] => {
                    return Err(input_error(
                        input,
                        "cannot tell the format: no .csv, .csv.gz or .parquet file here; set `format` in job.toml",
                    ));
                }
                _ => {
                    let found: Vec<&str> = formats.iter().map(|f| f.extension()).collect();
                    return Err(input_error(
                        input,
                        format!(
                            "files of several formats ({}); set `format` in job.toml",
                            found.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    if url.is_collection() {
        files.retain(|f| InputFormat::from_path(f.location.as_ref()) == Some(format));
    }
    if files.is_empty() {
        return Err(no_file(format.extension()));
    }
    // In name order, so that a run's file list (and its tasks) do not depend on the store's.
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((files, format))
}

/// A file of the folder `url` that is not data: its name or a folder it lies in under `url`
/// starts with `_` or `.` (`_SUCCESS`, `.crc`, `_temporary/`, `_quarantine/`, `_delta_log/`),
/// as Spark's and Hadoop's file listing skip them.
fn hidden(url: &ListingTableUrl, location: &object_store::path::Path) -> bool {
    match url.strip_prefix(location) {
        Some(mut parts) => parts.any(|p| p.starts_with(['_', '.'])),
        None => location
            .filename()
            .is_some_and(|n| n.starts_with(['_', '.'])),
    }
}

/// The URL of each listed file (`files` as [`list`] returns them: at least one), on the
/// input's store, percent-encoded (a name's `%` is `%25`).
fn listed_urls(input: &Input, files: &[ObjectMeta]) -> Result<Vec<ListingTableUrl>> {
    let url = ListingTableUrl::parse(&input.path).map_err(|e| df_error(input, e))?;
    let store = url.object_store();
    files
        .iter()
        .map(|f| {
            let mut file = url::Url::parse(store.as_str())
                .map_err(|e| input_error(input, format!("store URL: {e}")))?;
            // A `%` in a name is itself, not an escape (Spark writes `a/b` as `a%2Fb`).
            file.set_path(&format!("/{}", f.location.as_ref().replace('%', "%25")));
            ListingTableUrl::parse(file.as_str()).map_err(|e| df_error(input, e))
        })
        .collect()
}

/// Writes every file as plain UTF-8 CSV into `<staging>/inputs/<name>/` (see [`transcode`])
/// and returns the written files, each named by the file it comes from (`listed`).
async fn prepare(
    ctx: &SessionContext,
    input: &Input,
    files: &[ObjectMeta],
    listed: &[ListingTableUrl],
    gzip: bool,
    encoding: Option<&'static Encoding>,
    committer: &Committer,
) -> Result<Vec<CsvFile>> {
    let url = ListingTableUrl::parse(&input.path).map_err(|e| df_error(input, e))?;
    let store = ctx
        .runtime_env()
        .object_store(url.object_store())
        .map_err(|e| df_error(input, e))?;
    let folder = committer
        .staging_path(Area::Inputs)
        .join(input.name.as_str());
    let mut replaced = 0;
    let mut written = Vec::with_capacity(files.len());
    let staged = format!("{}{}/", committer.staging_url(Area::Inputs), input.name);
    for (i, (meta, from)) in files.iter().zip(listed).enumerate() {
        let file_name = format!("part-{i:05}.csv");
        let to = folder.clone().join(file_name.as_str());
        // Read from the input's store, write to the staging folder's (they differ for a local
        // input and an `hdfs://` output).
        replaced += transcode::to_utf8(
            &store,
            &meta.location,
            gzip,
            encoding,
            committer.store(),
            &to,
        )
        .await
        .map_err(|failed| transcode_error(input, from, &format!("{staged}{file_name}"), failed))?;
        let size = committer
            .store()
            .head(&to)
            .await
            .map_err(|e| input_storage_error(input, format!("staged copy {to}: {e}")))?
            .size;
        written.push(CsvFile {
            url: format!("{staged}{file_name}"),
            name: from.to_string(),
            size,
            partition_values: Vec::new(),
        });
    }
    if replaced > 0 {
        tracing::warn!(input = %input.name, replaced, "malformed byte sequences replaced with U+FFFD while re-encoding");
    }
    Ok(written)
}

/// A CSV input's column names: its `columns` when given (as many as the file's `found`), else
/// the file's.
fn declared_columns(input: &Input, found: Vec<String>) -> Result<Vec<String>> {
    if input.columns.is_empty() {
        Ok(found)
    } else if input.columns.len() == found.len() {
        Ok(input.columns.clone())
    } else {
        Err(input_error(
            input,
            format!(
                "`columns` names {} columns but the file has {}",
                input.columns.len(),
                found.len()
            ),
        ))
    }
}

/// Registers a CSV input as Ember's [`CsvTable`]: its column names from `columns` or the first
/// file's header, checked against the header's count, then its partition columns (each file's
/// [`CsvFile::partition_values`]), which must not repeat a column's name.
async fn register_csv(
    ctx: &SessionContext,
    input: &Input,
    files: Vec<CsvFile>,
    reading: &CsvReading,
) -> Result<()> {
    let first = files.first().ok_or_else(|| input_error(input, "no file"))?;
    let (store_url, location) =
        ember_core::csv::locate(&first.url).map_err(|e| df_error(input, e))?;
    let store = ctx
        .runtime_env()
        .object_store(&store_url)
        .map_err(|e| df_error(input, e))?;
    let found = ember_core::csv::column_names(&store, &location, first.size, &input.csv)
        .await
        .map_err(|e| {
            input_error(
                input,
                format!(
                    "{}: {}",
                    first.name,
                    ember_core::error::one_line(&e.strip_backtrace())
                ),
            )
        })?;
    let columns = declared_columns(input, found)?;
    if let Some(both) = input.partition_columns.iter().find(|p| columns.contains(p)) {
        return Err(input_error(
            input,
            format!("partition column `{both}` is also a column of the files"),
        ));
    }
    let spec = CsvSpec {
        input: input.name.clone(),
        files,
        columns,
        partition_columns: input.partition_columns.clone(),
        options: input.csv.clone(),
        split: reading.split,
        malformed_rows: input.csv.malformed() == OnMalformed::Quarantine
            && reading.routes_malformed,
    };
    ctx.register_table(input.name.as_str(), Arc::new(CsvTable::new(spec)))
        .map_err(|e| df_error(input, e))?;
    Ok(())
}

/// An absent optional input: a view with the declared columns and no rows. A view (not an
/// in-memory table) so that the plan serializes to Ballista's scheduler.
fn register_empty(ctx: &SessionContext, input: &Input) -> Result<()> {
    let columns = input
        .columns
        .iter()
        .map(|c| cast(lit(ScalarValue::Utf8(None)), DataType::Utf8).alias(c.as_str()));
    let plan = LogicalPlanBuilder::empty(false)
        .project(columns)
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| df_error(input, e))?;
    ctx.register_table(input.name.as_str(), Arc::new(ViewTable::new(plan, None)))
        .map_err(|e| df_error(input, e))?;
    Ok(())
}

/// Fails when `unique_key` values repeat, naming up to three of them.
async fn check_unique_key(ctx: &SessionContext, input: &Input) -> Result<()> {
    if input.unique_key.is_empty() {
        return Ok(());
    }
    let df = ctx
        .table(input.name.as_str())
        .await
        .map_err(|e| df_error(input, e))?;
    for key in &input.unique_key {
        if df.schema().field_with_unqualified_name(key).is_err() {
            return Err(input_error(
                input,
                format!("unique_key column `{key}` is not a column of this input"),
            ));
        }
    }
    let keys: Vec<_> = input.unique_key.iter().map(|k| ident(k.as_str())).collect();
    let batches = df
        .aggregate(keys, vec![count(lit(1)).alias("__n")])
        .and_then(|d| d.filter(col("__n").gt(lit(1i64))))
        .and_then(|d| d.sort(vec![col("__n").sort(false, false)]))
        .and_then(|d| d.limit(0, Some(3)))
        .map_err(|e| df_error(input, e))?
        .collect()
        .await
        .map_err(|e| df_error(input, e))?;
    let mut examples = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let mut parts = Vec::new();
            for (i, key) in input.unique_key.iter().enumerate() {
                let value = array_value_to_string(batch.column(i), row).unwrap_or_default();
                parts.push(format!("{key}={value}"));
            }
            let n = array_value_to_string(batch.column(input.unique_key.len()), row)
                .unwrap_or_default();
            examples.push(format!("{} ({n} rows)", parts.join(",")));
        }
    }
    if examples.is_empty() {
        return Ok(());
    }
    Err(input_error(
        input,
        format!(
            "unique_key ({}) repeats: {}",
            input.unique_key.join(", "),
            examples.join("; ")
        ),
    ))
}

#[cfg(test)]
#[path = "inputs_tests.rs"]
mod tests;
