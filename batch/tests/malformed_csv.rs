//! Broken CSV lines are data: the daily revenue job on a hand-made file with every kind of
//! malformed line (expected output and quarantine worked out by hand), and the same lines in
//! files over 64 MiB read in byte ranges, which must give what one task reading the whole file
//! gives.

mod common;

use std::fmt::Write as _;
use std::path::Path;

use common::{query_parquet, run_daily_revenue, run_daily_revenue_with};
use ember_core::report::RunReport;

const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

/// Line 1 is the header (after a UTF-8 BOM). Then, by line:
/// 2 valid; 3 valid (a quoted delimiter); 4-5 valid (a quoted line end); 6 too many fields;
/// 7 too few; 8 invalid UTF-8 (a Latin-1 é) in Description; 9 valid (a return);
/// 10 a negative price (quarantined by the job's rules, not malformed).
const BODY: &[u8] = b"\
5001,A,Apple,2,2011-03-01 10:00:00,1.50,17850.0,United Kingdom
5002,B,\"Bag, large\",1,2011-03-01 11:00:00,3.00,,France
5003,D,\"Gift box
red\",4,2011-03-01 12:00:00,3.00,,France
5004,A,Apple,1,2011-03-01 10:00:00,1.50,,United Kingdom,extra
5005,A,Apple,1,2011-03-01 10:00:00
5006,C,Caf\xe9 cup,1,2011-03-01 10:00:00,2.00,,France
5007,A,Apple,-1,2011-03-02 09:00:00,1.50,,United Kingdom
5008,A,Apple,1,2011-03-02 09:00:00,-1.00,,United Kingdom
";

/// Line 11, last: a quote that is never closed, and no line end.
const LAST: &[u8] = b"5009,C,\"Cup, open,1,2011-03-02 10:00:00,2.00,,France";

const OUTPUT_SQL: &str = "SELECT order_date, product_id, product_name, category, units_sold, \
     units_returned, gross_revenue, returns_value, net_revenue, orders FROM t";

/// The output of the hand-made lines, worked out by hand (see the comments where it is first
/// checked).
const EXPECTED_OUTPUT: [&str; 4] = [
    "2011-03-01|A|Apple||2|0|3.0000|0.0000|3.0000|1",
    "2011-03-01|B|Bag, large||1|0|3.0000|0.0000|3.0000|1",
    "2011-03-01|D|Gift box\nred||4|0|12.0000|0.0000|12.0000|1",
    "2011-03-02|A|Apple||0|1|0.0000|1.5000|-1.5000|0",
];

const QUARANTINE_SQL: &str = "SELECT order_date, \"InvoiceNo\", reason, source_line, raw_line, \
     malformed, source_file LIKE '%/sales.csv' FROM t";

fn bom_file(body: &[u8], last: &[u8]) -> Vec<u8> {
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(HEADER.as_bytes());
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(last);
    bytes
}

async fn run(
    dir: &Path,
    input: &Path,
    name: &str,
    parallelism: usize,
) -> (RunReport, Vec<String>, Vec<String>) {
    let output = dir.join(name);
    let report = run_daily_revenue_with(
        &[
            ("input", input.display().to_string()),
            ("output", output.display().to_string()),
        ],
        parallelism,
    )
    .await
    .expect("job runs");
    let rows = query_parquet(&output, OUTPUT_SQL).await;
    let quarantine = query_parquet(&output.join("_quarantine"), QUARANTINE_SQL).await;
    (report, rows, quarantine)
}

#[test]
fn every_kind_of_malformed_line_is_quarantined_with_its_file_line_and_text() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let input = tmp.path().join("sales.csv");
        std::fs::write(&input, bom_file(BODY, LAST)).expect("write");
        let (report, rows, quarantine) = run(tmp.path(), &input, "out", 2).await;

        // 9 records: 4 valid, 4 malformed, 1 with a negative price.
        assert_eq!(report.rows.read, Some(9));
        assert_eq!(report.rows.valid, Some(4));
        assert_eq!(report.rows.quarantined, 5);
        let reasons: Vec<(String, u64)> = report.quarantined_by_reason.into_iter().collect();
        assert_eq!(
            reasons,
            [
                ("malformed_line".to_string(), 4),
                ("negative_unit_price".to_string(), 1)
            ]
        );
        assert!(!report.csv_read_whole_files);

        // 2011-03-01 A: 2 × 1.50. B: "Bag, large" 1 × 3.00. D: the quoted line end is part
        // of the name, 4 × 3.00. 2011-03-02 A: the return of 1 × 1.50, no sale order.
        assert_eq!(rows, EXPECTED_OUTPUT);
        // Broken lines keep their text (the Latin-1 byte decoded as U+FFFD) and why; their
        // fields are NULL, so they have no date.
        assert_eq!(
            quarantine,
            [
                "2011-03-02|5008|negative_unit_price|10|||true",
                "__HIVE_DEFAULT_PARTITION__||malformed_line|11|5009,C,\"Cup, open,1,2011-03-02 10:00:00,2.00,,France|unterminated quote|true",
                "__HIVE_DEFAULT_PARTITION__||malformed_line|6|5004,A,Apple,1,2011-03-01 10:00:00,1.50,,United Kingdom,extra|too many fields (9, expected 8)|true",
                "__HIVE_DEFAULT_PARTITION__||malformed_line|7|5005,A,Apple,1,2011-03-01 10:00:00|too few fields (5, expected 8)|true",
                "__HIVE_DEFAULT_PARTITION__||malformed_line|8|5006,C,Caf\u{fffd} cup,1,2011-03-01 10:00:00,2.00,,France|invalid UTF-8 in field 3|true",
            ]
        );
    })
}

/// `BODY` `copies` times, each copy's Description of valid lines padded to `pad` bytes (with
/// a line end inside the quotes every 100 bytes when `multiline`), then `LAST`.
fn big_file(copies: usize, pad: usize, multiline: bool) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..copies {
        let mut note = String::new();
        while note.len() < pad {
            note.push_str(if multiline && note.len() % 100 == 90 {
                "\n"
            } else {
                "x"
            });
        }
        let _ = writeln!(
            body,
            "{i},E,\"Note {note}\",1,2011-03-0{} 08:00:00,0.10,,Norway",
            1 + i % 2
        );
    }
    let mut bytes = bom_file(BODY, b"");
    bytes.extend_from_slice(body.as_bytes());
    bytes.extend_from_slice(BODY);
    bytes.extend_from_slice(LAST);
    bytes
}

#[test]
fn a_file_over_64_mib_read_in_byte_ranges_gives_what_one_task_gives() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Quoted line ends only in the hand-made lines: the ranges' starts fall outside
        // quotes, and the file is read in ranges. Then a file where most bytes are inside
        // quotes (a line end every 100 bytes): a range starts inside a quoted field, and the
        // run reads the file again with one task per file.
        for (name, multiline, whole_files) in [("plain", false, false), ("quoted", true, true)] {
            let input = tmp.path().join(format!("{name}.csv"));
            let bytes = big_file(33_000, 2_048, multiline);
            assert!(bytes.len() > 64 << 20, "{} bytes", bytes.len());
            std::fs::write(&input, bytes).expect("write");
            let (split, rows, quarantine) =
                run(tmp.path(), &input, &format!("{name}-ranges"), 2).await;
            let (one, one_rows, one_quarantine) =
                run(tmp.path(), &input, &format!("{name}-one"), 1).await;
            assert_eq!(split.csv_read_whole_files, whole_files, "{name}");
            assert!(
                !one.csv_read_whole_files,
                "{name}: one range, nothing to split"
            );
            assert_eq!(
                (split.rows.read, split.rows.valid, split.rows.quarantined),
                (one.rows.read, one.rows.valid, one.rows.quarantined),
                "{name}"
            );
            // The copies' notes, the hand-made lines twice, the last line.
            assert_eq!(split.rows.read, Some(33_000 + 2 * 8 + 1), "{name}");
            assert_eq!(split.quarantined_by_reason, one.quarantined_by_reason);
            assert_eq!(split.quarantined_by_reason["malformed_line"], 2 * 3 + 1);
            assert_eq!(rows, one_rows, "{name}: output");
            assert_eq!(quarantine, one_quarantine, "{name}: quarantine");
            assert_eq!(rows.len(), 6, "{name}: {rows:?}");
        }
    })
}

#[test]
fn fail_mode_names_the_first_broken_line() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let input = tmp.path().join("sales.csv");
        std::fs::write(&input, bom_file(BODY, LAST)).expect("write");
        let output = tmp.path().join("out");
        let err = run_daily_revenue(&[
            ("input", input.display().to_string()),
            ("output", output.display().to_string()),
            ("on_malformed", "fail".into()),
        ])
        .await
        .expect_err("a broken line");
        // One line: the step, then the task's own error (not Ballista's wrapping of it).
        let text = err.to_string();
        assert!(
            text.starts_with(
                "caching view `checked_sales`: input `raw_sales`: malformed CSV line 6 of file:///"
            ) && text.ends_with(
                "/sales.csv: too many fields (9, expected 8): `5004,A,Apple,1,2011-03-01 10:00:00,1.50,,United Kingdom,extra` (on_malformed = fail)"
            ),
            "{text}"
        );
        assert!(!output.exists(), "nothing committed");
    })
}

#[test]
fn a_partitioned_folder_quarantines_its_broken_lines_with_their_file_and_line() {
    ember_core::threads::block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        // The hand-made lines in two partition folders, the last one alone in the second.
        let folder = tmp.path().join("sales");
        for (shop, bytes) in [
            ("north", bom_file(BODY, b"")),
            ("south", [HEADER.as_bytes(), LAST].concat()),
        ] {
            let dir = folder.join(format!("shop={shop}"));
            std::fs::create_dir_all(&dir).expect("folder");
            std::fs::write(dir.join("sales.csv"), bytes).expect("write");
        }
        let output = tmp.path().join("out");
        // Standalone Ballista: the scan travels through the codec to the executor.
        let report = common::run_daily_revenue_partitioned(
            &[
                ("input", format!("{}/", folder.display())),
                ("output", output.display().to_string()),
            ],
            2,
            &["shop"],
        )
        .await
        .expect("job runs");
        assert_eq!(report.inputs[0].files, 2, "{:?}", report.inputs[0].read);
        assert_eq!(report.rows.read, Some(9));
        assert_eq!(report.rows.valid, Some(4));
        assert_eq!(report.rows.quarantined, 5);
        assert_eq!(report.quarantined_by_reason["malformed_line"], 4);
        // The same output as the one file gives.
        let rows = query_parquet(&output, OUTPUT_SQL).await;
        assert_eq!(rows, EXPECTED_OUTPUT);
        let quarantine = query_parquet(
            &output.join("_quarantine"),
            "SELECT reason, source_line, malformed, \
             regexp_replace(source_file, '^.*/sales/', '') FROM t",
        )
        .await;
        assert_eq!(
            quarantine,
            [
                "malformed_line|2|unterminated quote|shop=south/sales.csv",
                "malformed_line|6|too many fields (9, expected 8)|shop=north/sales.csv",
                "malformed_line|7|too few fields (5, expected 8)|shop=north/sales.csv",
                "malformed_line|8|invalid UTF-8 in field 3|shop=north/sales.csv",
                "negative_unit_price|10||shop=north/sales.csv",
            ]
        );
    })
}
