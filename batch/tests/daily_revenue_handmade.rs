//! The daily revenue job on small hand-made inputs whose expected output and quarantine were
//! worked out by hand: every kind of bad row, returns, duplicates, zero prices, the products
//! dimension, Latin-1 text, folder, glob and Parquet inputs, re-runs and failed runs.

mod common;

use std::path::Path;

use common::{query_parquet, run_daily_revenue, tree};

const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

/// 9 valid rows and 14 bad ones (one per rule, some twice). Row numbers in comments.
const ROWS: &str = "\
1001,A,Apple,2,2011-01-01 10:00:00,1.50,17850.0,United Kingdom
1001,A,Apple,3,2011-01-01 10:00:00,1.50,17850.0,United Kingdom
1002,A,Apple,1,2011-01-01 11:00:00,2.00,,United Kingdom
C1003,A,Apple,-2,2011-01-01 12:00:00,1.50,17850.0,United Kingdom
1004,B,\"Bag, large\",5,2011-01-01 09:00:00,0.125,,France
1004,B,\"Bag, large\",5,2011-01-01 09:00:00,0.125,,France
1005,B,Bag,4,2011-01-02 09:00:00,0,,France
1006,B,Bag,-1,2011-01-02 09:30:00,0.00,,France
1007,A,Apple, 7 ,2011-01-02 10:00:00, 2.5 ,12345.0,United Kingdom
1008,,No code,1,2011-01-01 10:00:00,1.00,,United Kingdom
1009,   ,Blank code,1,2011-01-01 10:00:00,1.00,,United Kingdom
1010,A,Apple,,2011-01-01 10:00:00,1.00,,United Kingdom
1011,A,Apple,1.5,2011-01-01 10:00:00,1.00,,United Kingdom
1012,A,Apple,abc,2011-01-01 10:00:00,1.00,,United Kingdom
1013,A,Apple,0,2011-01-01 10:00:00,1.00,,United Kingdom
1014,A,Apple,1,2011-01-01 10:00:00,,,United Kingdom
1015,A,Apple,1,2011-01-01 10:00:00,1.2.3,,United Kingdom
1016,A,Apple,1,2011-01-01 10:00:00,0.12345,,United Kingdom
A1017,B,Adjust bad debt,1,2011-01-01 10:00:00,-11062.06,,United Kingdom
1018,A,Apple,1,,1.00,,United Kingdom
1019,A,Apple,1,01/02/2011 10:00,1.00,,United Kingdom
1020,A,Apple,1,2011-02-30 10:00:00,1.00,,United Kingdom
1021,A,Apple,99999999999999999999,2011-01-01 10:00:00,1.00,,United Kingdom
";

/// Output columns in file order, then order_date from the folder.
const OUTPUT_SQL: &str = "SELECT order_date, product_id, product_name, category, units_sold, units_returned, \
     gross_revenue, returns_value, net_revenue, orders FROM t";

/// Worked out by hand from ROWS:
/// 2011-01-01 A: sold 2+3+1 = 6 (orders 1001, 1002), returned 2 (C1003, no positive line);
///               gross 2×1.50 + 3×1.50 + 1×2.00 = 9.50; returns 2×1.50 = 3.00; net 6.50.
/// 2011-01-01 B: the duplicate row counts twice: sold 10, gross 10×0.125 = 1.25, 1 order.
/// 2011-01-02 A: " 7 " and " 2.5 " are trimmed: sold 7, gross 17.50, 1 order.
/// 2011-01-02 B: price 0 is valid: sold 4, gross 0; -1 at 0.00 (an adjustment, not a C
///               invoice) is a return worth 0; orders: only 1005 has a positive line.
const EXPECTED: [&str; 4] = [
    "2011-01-01|A|Apple||6|2|9.5000|3.0000|6.5000|2",
    "2011-01-01|B|Bag, large||10|0|1.2500|0.0000|1.2500|1",
    "2011-01-02|A|Apple||7|0|17.5000|0.0000|17.5000|1",
    "2011-01-02|B|Bag||4|1|0.0000|0.0000|0.0000|1",
];

/// The CSV file `csv` (its columns as text) written as Parquet at `path` by a plain DataFusion
/// context, with `options` (one file, or a partitioned folder).
async fn csv_as_parquet(
    csv: &str,
    path: &str,
    options: datafusion::dataframe::DataFrameWriteOptions,
) {
    let schema = datafusion::arrow::datatypes::Schema::new(
        HEADER
            .trim()
            .split(',')
            .map(|c| {
                datafusion::arrow::datatypes::Field::new(
                    c,
                    datafusion::arrow::datatypes::DataType::Utf8,
                    true,
                )
            })
            .collect::<Vec<_>>(),
    );
    datafusion::prelude::SessionContext::new()
        .read_csv(
            csv,
            datafusion::prelude::CsvReadOptions::new().schema(&schema),
        )
        .await
        .expect("read csv")
        .write_parquet(path, options, None)
        .await
        .expect("write parquet");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write input");
    path.display().to_string()
}

#[test]
fn every_kind_of_bad_row() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let input = write(
            tmp.path(),
            "sales.csv",
            format!("{HEADER}{ROWS}").as_bytes(),
        );
        let output = tmp.path().join("out");
        let report =
            run_daily_revenue(&[("input", input), ("output", output.display().to_string())])
                .await
                .expect("job runs");

        assert_eq!(report.rows.read, Some(23));
        assert_eq!(report.rows.valid, Some(9));
        assert_eq!(report.rows.quarantined, 14);
        assert_eq!(report.rows.written, 4);
        let reasons: Vec<(String, u64)> =
            report.quarantined_by_reason.clone().into_iter().collect();
        let expected_reasons: Vec<(String, u64)> = [
            ("bad_order_ts", 2),
            ("missing_order_ts", 1),
            ("missing_product_id", 2),
            ("missing_quantity", 1),
            ("missing_unit_price", 1),
            ("negative_unit_price", 1),
            ("quantity_not_integer", 3),
            ("unit_price_not_number", 1),
            ("unit_price_too_precise", 1),
            ("zero_quantity", 1),
        ]
        .iter()
        .map(|(r, n)| (r.to_string(), *n))
        .collect();
        assert_eq!(reasons, expected_reasons);
        assert_eq!(
            report.partitions.written,
            vec!["order_date=2011-01-01", "order_date=2011-01-02"]
        );
        assert_eq!(
            report.partitions.quarantine,
            vec![
                "order_date=2011-01-01",
                "order_date=__HIVE_DEFAULT_PARTITION__"
            ]
        );

        assert_eq!(query_parquet(&output, OUTPUT_SQL).await, EXPECTED);

        // The quarantine keeps the original text of every field, and the reason.
        let quarantine = query_parquet(
            &output.join("_quarantine"),
            "SELECT order_date, \"InvoiceNo\", \"StockCode\", \"Quantity\", \"InvoiceDate\", \"UnitPrice\", reason FROM t",
        )
        .await;
        let expected_quarantine = [
            "2011-01-01|1008||1|2011-01-01 10:00:00|1.00|missing_product_id",
            "2011-01-01|1009|   |1|2011-01-01 10:00:00|1.00|missing_product_id",
            "2011-01-01|1010|A||2011-01-01 10:00:00|1.00|missing_quantity",
            "2011-01-01|1011|A|1.5|2011-01-01 10:00:00|1.00|quantity_not_integer",
            "2011-01-01|1012|A|abc|2011-01-01 10:00:00|1.00|quantity_not_integer",
            "2011-01-01|1013|A|0|2011-01-01 10:00:00|1.00|zero_quantity",
            "2011-01-01|1014|A|1|2011-01-01 10:00:00||missing_unit_price",
            "2011-01-01|1015|A|1|2011-01-01 10:00:00|1.2.3|unit_price_not_number",
            "2011-01-01|1016|A|1|2011-01-01 10:00:00|0.12345|unit_price_too_precise",
            "2011-01-01|1021|A|99999999999999999999|2011-01-01 10:00:00|1.00|quantity_not_integer",
            "2011-01-01|A1017|B|1|2011-01-01 10:00:00|-11062.06|negative_unit_price",
            "__HIVE_DEFAULT_PARTITION__|1018|A|1||1.00|missing_order_ts",
            "__HIVE_DEFAULT_PARTITION__|1019|A|1|01/02/2011 10:00|1.00|bad_order_ts",
            "__HIVE_DEFAULT_PARTITION__|1020|A|1|2011-02-30 10:00:00|1.00|bad_order_ts",
        ];
        assert_eq!(quarantine, expected_quarantine);

        // _SUCCESS holds the same report, and nothing is left in staging.
        let success: ember_core::report::RunReport =
            serde_json::from_slice(&std::fs::read(output.join("_SUCCESS")).expect("_SUCCESS"))
                .expect("json");
        assert_eq!(success.rows, report.rows);
        assert_eq!(success.run_id, report.run_id);
        assert!(
            !output.join("_temporary").exists(),
            "staging folder removed"
        );
    })
}

#[test]
fn products_dimension_and_latin1() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Latin-1 bytes: "Café" (é = 0xE9) and "£" (0xA3) in descriptions.
        let mut latin1 = HEADER.as_bytes().to_vec();
        latin1.extend_from_slice(b"2001,A,Caf\xe9 cr\xe8me,2,2011-03-01 10:00:00,1.00,,France\n");
        latin1.extend_from_slice(
            b"2002,C,\xa35 voucher,1,2011-03-01 11:00:00,5.00,,United Kingdom\n",
        );
        let input = write(tmp.path(), "latin1.csv", &latin1);
        let products = write(
            tmp.path(),
            "products.csv",
            "product_id,product_name,category\nA,Green apple,Fruit\nB,Shopping bag,Bags\n"
                .as_bytes(),
        );
        let output = tmp.path().join("out");
        let out = output.display().to_string();

        // Without the dimension: names come from Description, decoded from Latin-1.
        let report = run_daily_revenue(&[
            ("input", input.clone()),
            ("output", out.clone()),
            ("encoding", "latin1".into()),
        ])
        .await
        .expect("latin-1 job");
        assert_eq!(
            report.inputs[0].reencoded_from.as_deref(),
            Some("windows-1252")
        );
        let names =
            query_parquet(&output, "SELECT product_id, product_name, category FROM t").await;
        assert_eq!(names, ["A|Café crème|", "C|£5 voucher|"]);

        // With it: name and category from the dimension; C is not in it and keeps its row.
        run_daily_revenue(&[
            ("input", input.clone()),
            ("output", out.clone()),
            ("encoding", "latin1".into()),
            ("products", products),
        ])
        .await
        .expect("job with products");
        let names = query_parquet(
            &output,
            "SELECT product_id, product_name, category, gross_revenue FROM t",
        )
        .await;
        assert_eq!(
            names,
            ["A|Green apple|Fruit|2.0000", "C|£5 voucher||5.0000"]
        );

        // A dimension with a repeated key would multiply rows in the join: refused, nothing written.
        let before = tree(&output);
        let dup = write(
            tmp.path(),
            "dup.csv",
            "product_id,product_name,category\nA,Green apple,Fruit\nA,Red apple,Fruit\n".as_bytes(),
        );
        let err = run_daily_revenue(&[
            ("input", input),
            ("output", out),
            ("encoding", "latin1".into()),
            ("products", dup),
        ])
        .await
        .expect_err("duplicate key");
        assert!(
            err.to_string().contains("input `products` (")
                && err
                    .to_string()
                    .contains("unique_key (product_id) repeats: product_id=A (2 rows)"),
            "{err}"
        );
        assert_eq!(
            tree(&output),
            before,
            "a refused run leaves the output as it was"
        );
    })
}

#[test]
fn reruns_are_idempotent_and_replace_only_their_partitions() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let all_days = write(tmp.path(), "all.csv", format!("{HEADER}{ROWS}").as_bytes());
        let output = tmp.path().join("out");
        let out = output.display().to_string();
        let run = |input: String| {
            let out = out.clone();
            async move { run_daily_revenue(&[("input", input), ("output", out)]).await }
        };

        let first = run(all_days.clone()).await.expect("first run");
        let rows_first = query_parquet(&output, OUTPUT_SQL).await;
        let names = |dir: &Path| -> Vec<String> {
            tree(dir)
                .into_iter()
                .map(|(f, _)| f)
                .filter(|f| f != "_SUCCESS")
                .collect()
        };
        let files_first = names(&output);
        let second = run(all_days.clone()).await.expect("second run");
        assert_ne!(first.run_id, second.run_id);
        assert_eq!(
            query_parquet(&output, OUTPUT_SQL).await,
            rows_first,
            "same input, same output"
        );
        assert_eq!(
            second.partitions.replaced, 4,
            "2 output + 2 quarantine partitions replaced"
        );
        // Every file of the first run was replaced; only the second run's files are left.
        let files_second = names(&output);
        assert!(
            files_second.iter().all(|f| !files_first.contains(f)),
            "{files_first:?} {files_second:?}"
        );
        assert_eq!(files_second.len(), second.files, "{files_second:?}");
        assert!(
            files_first
                .iter()
                .all(|f| f.ends_with(".parquet") && f.contains("/part-")),
            "{files_first:?}"
        );

        // A run on 2011-01-02 only replaces that day and leaves 2011-01-01 as it was.
        let day1_before: Vec<_> = tree(&output)
            .into_iter()
            .filter(|(f, _)| f.starts_with("order_date=2011-01-01/"))
            .collect();
        let day2 = write(
            tmp.path(),
            "day2.csv",
            format!("{HEADER}3001,A,Apple,1,2011-01-02 08:00:00,3.00,,United Kingdom\n").as_bytes(),
        );
        let third = run(day2).await.expect("day-2 run");
        assert_eq!(third.partitions.written, vec!["order_date=2011-01-02"]);
        let day1_after: Vec<_> = tree(&output)
            .into_iter()
            .filter(|(f, _)| f.starts_with("order_date=2011-01-01/"))
            .collect();
        assert_eq!(day1_before, day1_after);
        assert_eq!(
            query_parquet(&output, OUTPUT_SQL).await,
            [
                EXPECTED[0],
                EXPECTED[1],
                "2011-01-02|A|Apple||1|0|3.0000|0.0000|3.0000|1"
            ]
        );
    })
}

#[test]
fn a_failed_run_leaves_the_previous_output_untouched() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let good = write(tmp.path(), "good.csv", format!("{HEADER}{ROWS}").as_bytes());
        let output = tmp.path().join("out");
        let out = output.display().to_string();
        run_daily_revenue(&[("input", good), ("output", out.clone())])
            .await
            .expect("good run");
        let before = tree(&output);
        let success_before = std::fs::read(output.join("_SUCCESS")).expect("_SUCCESS");

        // Fails while executing (a line with 9 fields and on_malformed = "fail"), after
        // staging has started.
        let broken = write(
            tmp.path(),
            "broken.csv",
            format!("{HEADER}4001,A,Apple,1,2011-01-01 10:00:00,1.00,,UK\n4002,A,Apple,1,2011-01-01 10:00:00,1.00,,UK,extra\n").as_bytes(),
        );
        let err = run_daily_revenue(&[
            ("input", broken),
            ("output", out.clone()),
            ("on_malformed", "fail".into()),
        ])
        .await
        .expect_err("broken csv");
        assert!(
            err.to_string().contains(
                "malformed CSV line 3 of file:///"
            ) && err.to_string().contains(
                "broken.csv: too many fields (9, expected 8): `4002,A,Apple,1,2011-01-01 10:00:00,1.00,,UK,extra` (on_malformed = fail)"
            ),
            "{err}"
        );
        // Fails before anything runs: the input does not exist.
        let missing = tmp.path().join("missing.csv").display().to_string();
        let err = run_daily_revenue(&[("input", missing), ("output", out)])
            .await
            .expect_err("missing input");
        assert!(
            err.to_string().contains("missing.csv): no such file"),
            "{err}"
        );

        assert_eq!(tree(&output), before, "files and sizes unchanged");
        assert_eq!(
            std::fs::read(output.join("_SUCCESS")).expect("_SUCCESS"),
            success_before
        );
        assert!(
            !output.join("_temporary").exists(),
            "staging folder removed"
        );
    })
}

#[test]
fn folder_glob_and_parquet_inputs_give_the_same_output() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        // The same rows split over two files in a folder, next to a file the glob must not match.
        let folder = tmp.path().join("in");
        std::fs::create_dir_all(&folder).expect("mkdir");
        let lines: Vec<&str> = ROWS.lines().collect();
        let (a, b) = lines.split_at(10);
        write(
            &folder,
            "a.csv",
            format!("{HEADER}{}\n", a.join("\n")).as_bytes(),
        );
        write(
            &folder,
            "b.csv",
            format!("{HEADER}{}\n", b.join("\n")).as_bytes(),
        );
        write(&folder, "notes.txt", b"not a csv file\n");
        // And as Parquet with text columns, written by a plain DataFusion context.
        let single = write(tmp.path(), "all.csv", format!("{HEADER}{ROWS}").as_bytes());
        let parquet = tmp.path().join("all.parquet");
        csv_as_parquet(&single, &parquet.display().to_string(), Default::default()).await;

        for input in [
            format!("{}/", folder.display()),
            format!("{}/*.csv", folder.display()),
            parquet.display().to_string(),
        ] {
            let output = tmp.path().join(format!("out-{}", input.len()));
            let report = run_daily_revenue(&[
                ("input", input.clone()),
                ("output", output.display().to_string()),
            ])
            .await
            .unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (report.rows.read, report.rows.quarantined),
                (Some(23), 14),
                "{input}"
            );
            assert_eq!(
                query_parquet(&output, OUTPUT_SQL).await,
                EXPECTED,
                "{input}"
            );
        }
    })
}

/// A Parquet folder partitioned by `Country=<value>/` (written by DataFusion, the column left
/// out of the files) read with `partition_columns`, on standalone Ballista (the table travels
/// through the codec as its file list): the output is the single CSV's.
#[test]
fn a_partitioned_parquet_folder_gives_the_same_output() {
    use datafusion::dataframe::DataFrameWriteOptions;
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let single = write(tmp.path(), "all.csv", format!("{HEADER}{ROWS}").as_bytes());
        let folder = tmp.path().join("sales");
        let by_country = DataFrameWriteOptions::new().with_partition_by(vec!["Country".into()]);
        csv_as_parquet(&single, &format!("{}/", folder.display()), by_country).await;
        let countries: Vec<String> = tree(&folder)
            .into_iter()
            .filter_map(|(f, _)| f.split('/').next().map(str::to_string))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            countries,
            ["Country=France", "Country=United Kingdom"],
            "{:?}",
            tree(&folder)
        );

        let output = tmp.path().join("out");
        let report = common::run_daily_revenue_partitioned(
            &[
                ("input", format!("{}/", folder.display())),
                ("output", output.display().to_string()),
            ],
            2,
            &["Country"],
        )
        .await
        .expect("job runs");
        assert_eq!(report.inputs[0].files, tree(&folder).len());
        assert_eq!((report.rows.read, report.rows.quarantined), (Some(23), 14));
        assert_eq!(query_parquet(&output, OUTPUT_SQL).await, EXPECTED);
    })
}
