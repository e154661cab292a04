//! Listing and registering inputs: listed once, partition folders, broken lines as rows.

use ember_core::manifest::CsvOptions;

use super::*;

/// Registers `input` with its CSV read in byte ranges and broken lines as rows, staging under
/// `tmp`.
async fn register_routing(
    ctx: &SessionContext,
    tmp: &std::path::Path,
    input: &Input,
) -> Result<InputSummary> {
    let committer = Committer::new(ctx, &tmp.join("out").display().to_string(), "r")?;
    let reading = CsvReading {
        split: true,
        routes_malformed: true,
    };
    register(ctx, input, &committer, &reading).await
}

/// An input `t` of the files in `folder`, with `partition_columns`.
fn folder_input(folder: &std::path::Path, partition_columns: &[&str]) -> Input {
    Input {
        name: "t".into(),
        path: format!("{}/", folder.display()),
        format: None,
        optional: false,
        columns: Vec::new(),
        unique_key: Vec::new(),
        partition_columns: partition_columns.iter().map(|c| c.to_string()).collect(),
        csv: CsvOptions::default(),
        database: None,
    }
}

#[tokio::test]
async fn an_input_is_listed_once_and_a_file_arriving_later_is_not_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let folder = tmp.path().join("in");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::write(folder.join("a.csv"), "x\n1\n2\n").expect("a");
    std::fs::write(folder.join("b c.csv"), "x\n3\n").expect("b");
    let ctx = SessionContext::new();
    let input = folder_input(&folder, &[]);
    let out = tmp.path().join("out");
    let committer = Committer::new(&ctx, &out.display().to_string(), "run-1").expect("committer");
    let reading = CsvReading {
        split: true,
        routes_malformed: false,
    };
    let summary = register(&ctx, &input, &committer, &reading)
        .await
        .expect("register");
    let names: Vec<&str> = summary
        .read
        .iter()
        .map(|u| u.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(names, ["a.csv", "b%20c.csv"], "{:?}", summary.read);
    assert_eq!(summary.files, 2);
    // A file arriving during the run: the run's queries do not see it.
    std::fs::write(folder.join("c.csv"), "x\n4\n").expect("c");
    assert_eq!(
        rows(&ctx, "SELECT count(*), sum(CAST(x AS INT)) FROM t").await,
        ["3|6"]
    );
}

/// Rows of `sql` on `ctx`, each as its cells' text joined by `|`.
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = (0..batch.num_columns())
                .map(|c| array_value_to_string(batch.column(c), row).expect("cell"))
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

#[tokio::test]
async fn a_partitioned_csv_folder_is_listed_once_and_its_broken_lines_are_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let folder = tmp.path().join("in");
    let day = folder.join("day=2011-12-09").join("shop=a%2Fb");
    let null_day = folder.join("day=__HIVE_DEFAULT_PARTITION__").join("shop=c");
    std::fs::create_dir_all(&day).expect("day");
    std::fs::create_dir_all(&null_day).expect("null day");
    std::fs::write(day.join("1.csv"), "x,y\n1,a\n2,b,extra\n3,\"open\n").expect("1");
    std::fs::write(null_day.join("2.csv"), "x,y\n4,d\n").expect("2");
    std::fs::write(folder.join("_SUCCESS"), "").expect("marker");
    // Not data, as Spark lists a folder: under `_` or `.` folders.
    for hidden in ["_temporary/0/day=x/shop=y", "_quarantine/day=x", ".staging"] {
        std::fs::create_dir_all(folder.join(hidden)).expect("hidden folder");
        std::fs::write(folder.join(hidden).join("h.csv"), "x,y\n9,z\n").expect("hidden");
    }
    let mut input = folder_input(&folder, &["day", "shop"]);
    let ctx = SessionContext::new();
    let summary = register_routing(&ctx, tmp.path(), &input)
        .await
        .expect("register");
    assert_eq!(summary.files, 2, "{:?}", summary.read);
    // Arriving during the run: not read.
    std::fs::write(day.join("3.csv"), "x,y\n5,e\n").expect("3");
    let got = rows(
        &ctx,
        "SELECT coalesce(day, 'NULL'), shop, coalesce(x, '-'), _line, \
         coalesce(_corrupt_reason, 'ok') FROM t ORDER BY _file, _line",
    )
    .await;
    assert_eq!(
        got,
        [
            "2011-12-09|a/b|1|2|ok",
            "2011-12-09|a/b|-|3|too many fields (3, expected 2)",
            "2011-12-09|a/b|-|4|unterminated quote",
            "NULL|c|4|2|ok",
        ]
    );
    // A file outside the partition folders is named, not skipped.
    std::fs::write(folder.join("stray.csv"), "x,y\n6,f\n").expect("stray");
    let ctx = SessionContext::new();
    let err = register_routing(&ctx, tmp.path(), &input)
        .await
        .expect_err("a stray file");
    let text = err.to_string();
    assert!(
        text.contains("stray.csv is not in `day=<value>/shop=<value>/` folders"),
        "{text}"
    );
    // A partition column that is also a column of the files.
    let twice = tmp.path().join("twice").join("x=1");
    std::fs::create_dir_all(&twice).expect("twice");
    std::fs::write(twice.join("a.csv"), "x,y\n1,a\n").expect("a");
    input.path = format!("{}/", tmp.path().join("twice").display());
    input.partition_columns = vec!["x".into()];
    let err = register_routing(&ctx, tmp.path(), &input)
        .await
        .expect_err("x twice");
    assert!(
        err.to_string()
            .contains("partition column `x` is also a column of the files"),
        "{err}"
    );
}

/// Writes `sql`'s rows (one plain context) as one Parquet file at `path`.
async fn write_parquet(path: &std::path::Path, sql: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
    let batches = SessionContext::new()
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("rows");
    let file = std::fs::File::create(path).expect("create");
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None)
            .expect("writer");
    for batch in &batches {
        writer.write(batch).expect("write");
    }
    writer.close().expect("close");
}

#[tokio::test]
async fn a_partitioned_parquet_folder_is_listed_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let folder = tmp.path().join("in");
    let day = folder.join("day=2011-12-09").join("shop=a%2Fb");
    let null_day = folder.join("day=__HIVE_DEFAULT_PARTITION__").join("shop=c");
    write_parquet(&day.join("1.parquet"), "SELECT 1 AS x UNION ALL SELECT 2").await;
    write_parquet(&null_day.join("2.parquet"), "SELECT 4 AS x").await;
    std::fs::write(folder.join("_SUCCESS"), "").expect("marker");
    write_parquet(&folder.join("_quarantine/day=x/q.parquet"), "SELECT 9 AS x").await;
    let input = folder_input(&folder, &["day", "shop"]);
    let ctx = SessionContext::new();
    let summary = register_routing(&ctx, tmp.path(), &input)
        .await
        .expect("register");
    assert_eq!(summary.files, 2, "{:?}", summary.read);
    // Arriving during the run: not read by any of its queries.
    write_parquet(&day.join("3.parquet"), "SELECT 5 AS x").await;
    let sql = "SELECT coalesce(day, 'NULL'), shop, x, regexp_replace(_file, '^.*/in/', ''), \
               coalesce(_line, -1) FROM t ORDER BY x";
    let expected = [
        "2011-12-09|a/b|1|day=2011-12-09/shop=a%252Fb/1.parquet|-1",
        "2011-12-09|a/b|2|day=2011-12-09/shop=a%252Fb/1.parquet|-1",
        "NULL|c|4|day=__HIVE_DEFAULT_PARTITION__/shop=c/2.parquet|-1",
    ];
    assert_eq!(rows(&ctx, sql).await, expected);
    assert_eq!(
        rows(&ctx, "SELECT sum(x) FROM t WHERE day = '2011-12-09'").await,
        ["3"]
    );
    assert_eq!(
        rows(&ctx, "SELECT sum(x) FROM t WHERE day IS NULL").await,
        ["4"]
    );
}
