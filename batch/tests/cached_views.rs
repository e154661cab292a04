//! A team's own job with a cached view (`cache = true`): the view is computed once, later
//! queries read the copy, and `rows_read` is taken from the cache only when the view keeps
//! every row of the input; otherwise the input is counted, and the counts still reconcile.

use std::path::Path;

use ember_core::codec::Codecs;
use ember_core::manifest::JobManifest;
use ember_core::report::RunReport;
use ember_core::session::SessionBuilder;

const CSV: &str = "\
kind,sku,qty,day
sale,A,2,2024-01-01
sale,A,3,2024-01-01
sale,B,1,2024-01-02
sale,B,x,2024-01-02
note,,,2024-01-02
sale,C,4,2024-01-02
";

/// A job over `events.csv` whose cached view `checked` has `filter` (a WHERE clause or
/// nothing); the quarantine takes the rows with a reason, and the rows the view dropped.
fn write_job(dir: &Path, filter: &str) {
    std::fs::write(dir.join("events.csv"), CSV).expect("csv");
    std::fs::write(
        dir.join("job.toml"),
        r#"[job]
name = "cached_team_job"

[params]
input = "events.csv"
output = "out"

[[input]]
name = "raw"
path = "${input}"

[[view]]
name = "checked"
sql = "checked.sql"
cache = true

[[view]]
name = "good"
sql = "good.sql"

[quarantine]
sql = "quarantine.sql"

[output]
path = "${output}"
partition_by = ["day"]
sql = "output.sql"

[checks]
rows_read = "raw"
rows_valid = "good"
"#,
    )
    .expect("job.toml");
    std::fs::write(
        dir.join("checked.sql"),
        format!(
            "SELECT kind, sku, qty, day, try_cast(qty AS BIGINT) AS n, \
             CASE WHEN try_cast(qty AS BIGINT) IS NULL THEN 'bad_qty' END AS reason FROM raw {filter}"
        ),
    )
    .expect("checked.sql");
    std::fs::write(
        dir.join("good.sql"),
        "SELECT sku, n, day FROM checked WHERE reason IS NULL",
    )
    .expect("good.sql");
    let dropped = if filter.is_empty() {
        String::new()
    } else {
        "UNION ALL SELECT kind, sku, qty, day, 'note' AS reason FROM raw WHERE kind = 'note'"
            .to_string()
    };
    std::fs::write(
        dir.join("quarantine.sql"),
        format!(
            "SELECT kind, sku, qty, day, reason FROM checked WHERE reason IS NOT NULL {dropped}"
        ),
    )
    .expect("quarantine.sql");
    std::fs::write(
        dir.join("output.sql"),
        "SELECT sku, sum(n) AS units, day FROM good GROUP BY sku, day",
    )
    .expect("output.sql");
}

async fn run(dir: &Path) -> RunReport {
    let manifest = JobManifest::load(dir).expect("manifest");
    let mut params = manifest.params();
    params
        .apply(&[
            ("input".into(), dir.join("events.csv").display().to_string()),
            ("output".into(), dir.join("out").display().to_string()),
        ])
        .expect("params");
    let job = manifest.resolve(params).expect("resolve");
    let ctx = SessionBuilder::new(Codecs::ember())
        .with_parallelism(2)
        .standalone()
        .await
        .expect("session");
    ember_batch::run(&ctx, &job, "ballista-embedded")
        .await
        .expect("the job runs")
}

#[test]
fn a_cached_view_of_every_row_gives_the_rows_read() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_job(tmp.path(), "");
        let report = run(tmp.path()).await;
        // 6 rows: the note row (qty empty) and the row with qty 'x' have a reason.
        assert_eq!(report.cached_views.get("checked"), Some(&6));
        assert_eq!(
            (report.rows.read, report.rows.valid, report.rows.quarantined),
            (Some(6), Some(4), 2)
        );
        assert_eq!(
            report.quarantined_by_reason.into_iter().collect::<Vec<_>>(),
            [("bad_qty".to_string(), 2)]
        );
        let out = tmp.path().join("out");
        assert_eq!(
            output_rows(&out).await,
            ["2024-01-01|A|5", "2024-01-02|B|1", "2024-01-02|C|4"]
        );
        assert!(
            !out.join("_temporary").exists(),
            "the cached rows go with the staging folder"
        );
    })
}

#[test]
fn a_cached_view_that_drops_rows_leaves_the_input_to_be_counted() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_job(tmp.path(), "WHERE kind <> 'note'");
        let report = run(tmp.path()).await;
        // The cache holds 5 rows, but 6 were read: had the run taken the cache's count, the
        // counts would not reconcile (6 != 4 + 2) and the run would fail.
        assert_eq!(report.cached_views.get("checked"), Some(&5));
        assert_eq!(
            (report.rows.read, report.rows.valid, report.rows.quarantined),
            (Some(6), Some(4), 2)
        );
        assert_eq!(
            report.quarantined_by_reason.into_iter().collect::<Vec<_>>(),
            [("bad_qty".to_string(), 1), ("note".to_string(), 1)]
        );
        assert_eq!(
            output_rows(&tmp.path().join("out")).await,
            ["2024-01-01|A|5", "2024-01-02|B|1", "2024-01-02|C|4"]
        );
    })
}

/// The output's rows as `day|sku|units`, sorted, read by plain DataFusion.
async fn output_rows(out: &Path) -> Vec<String> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::util::display::array_value_to_string;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let ctx = SessionContext::new();
    let options =
        ParquetReadOptions::default().table_partition_cols(vec![("day".into(), DataType::Utf8)]);
    ctx.register_parquet("t", out.to_str().expect("utf-8"), options)
        .await
        .expect("register");
    let batches = ctx
        .sql("SELECT day, sku, units FROM t ORDER BY day, sku")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("read");
    let mut rows = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..3)
                .map(|c| array_value_to_string(b.column(c), r).expect("cell"))
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

/// (compression, dictionary-encoded) of every column chunk of the files a write reported.
fn column_chunks(dir: &Path, written: &ember_core::sink::Written) -> Vec<(String, bool)> {
    use datafusion::parquet::basic::Encoding;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let mut chunks = Vec::new();
    for path in &written.paths {
        let file = std::fs::File::open(dir.join(path)).expect("a written file");
        let reader = SerializedFileReader::new(file).expect("a Parquet file");
        for group in reader.metadata().row_groups() {
            for column in group.columns() {
                let dictionary = column
                    .encodings()
                    .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY));
                chunks.push((format!("{:?}", column.compression()), dictionary));
            }
        }
    }
    chunks
}

#[test]
fn parquet_settings_of_a_write_travel_to_the_executors() {
    // The cache's writer settings are part of the plan: Ballista's executors build their tasks'
    // session from the job, not from the client's session, so a session setting would not
    // reach them (it did not: the first cache was written with the session's zstd).
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ctx = SessionBuilder::new(Codecs::ember())
            .with_parallelism(2)
            .standalone()
            .await
            .expect("session");
        let rows = "SELECT * FROM (VALUES ('a', 1), ('a', 2), ('b', 3)) t(x, n)";
        let write = |dir: &str, settings: Vec<(String, String)>| {
            let ctx = ctx.clone();
            let url = format!("{}/", tmp.path().join(dir).display());
            async move {
                let df = ctx.sql(rows).await.expect("plan");
                ember_core::sink::write_with(
                    &ctx,
                    df,
                    &url,
                    Vec::new(),
                    ember_core::manifest::OutputFormat::Parquet,
                    settings,
                )
                .await
                .expect("write")
            }
        };
        let plain = write("plain", Vec::new()).await;
        let fast = write(
            "fast",
            vec![
                ("compression".into(), "lz4_raw".into()),
                ("dictionary_enabled".into(), "false".into()),
            ],
        )
        .await;
        assert_eq!(fast.rows, 3);
        let plain = column_chunks(&tmp.path().join("plain"), &plain);
        let fast = column_chunks(&tmp.path().join("fast"), &fast);
        assert!(!plain.is_empty() && !fast.is_empty());
        assert!(
            plain.iter().all(|(c, d)| c.starts_with("ZSTD") && *d),
            "the session's settings: {plain:?}"
        );
        assert!(
            fast.iter().all(|(c, d)| c == "LZ4_RAW" && !*d),
            "the write's own settings: {fast:?}"
        );
    })
}
