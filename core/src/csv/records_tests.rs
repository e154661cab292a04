//! The range reader on a hand-made file with every kind of malformed line, fed in chunks of
//! every size and split at every byte.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

use super::*;
use crate::manifest::OnMalformed;

/// Header with a BOM; then, by line: 2 ok; 3 ok (quoted delimiter, CRLF); 4-5 ok (quoted
/// newline); 6 too many fields; 7 too few; 8 blank (skipped); 9 invalid UTF-8; 10 ok (doubled
/// quotes); 11-12 an unterminated quote that runs to the end of the file.
const FILE: &[u8] = b"\xef\xbb\xbfid,name,qty\n1,apple,3\n2,\"pear, green\",4\r\n3,\"multi\nline\",5\n4,extra,6,7\n5,short\n\n6,caf\xe9,8\n7,\"say \"\"hi\"\"\",9\n8,\"open,10\n9,last,11";

type Row = (i64, Vec<Option<String>>, Option<String>, Option<String>);

fn expected() -> Vec<Row> {
    let ok = |line, id: &str, name: &str, qty: &str| {
        (
            line,
            vec![Some(id.into()), Some(name.into()), Some(qty.into())],
            None,
            None,
        )
    };
    let bad = |line, raw: &str, reason: &str| {
        (
            line,
            vec![None, None, None],
            Some(raw.to_string()),
            Some(reason.to_string()),
        )
    };
    vec![
        ok(2, "1", "apple", "3"),
        ok(3, "2", "pear, green", "4"),
        ok(4, "3", "multi\nline", "5"),
        bad(6, "4,extra,6,7", "too many fields (4, expected 3)"),
        bad(7, "5,short", "too few fields (2, expected 3)"),
        bad(9, "6,caf\u{fffd},8", "invalid UTF-8 in field 2"),
        ok(10, "7", "say \"hi\"", "9"),
        bad(11, "8,\"open,10\n9,last,11", "unterminated quote"),
    ]
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("qty", DataType::Utf8, true),
        Field::new("_line", DataType::Int64, false),
        Field::new("_corrupt_record", DataType::Utf8, true),
        Field::new("_corrupt_reason", DataType::Utf8, true),
    ]))
}

fn sources() -> Vec<Source> {
    vec![
        Source::Field(0),
        Source::Field(1),
        Source::Field(2),
        Source::Line,
        Source::CorruptRecord,
        Source::CorruptReason,
    ]
}

/// The file being read, in no partition folder.
fn listed() -> CsvFile {
    CsvFile {
        url: "file:///f.csv".into(),
        name: "f.csv".into(),
        size: FILE.len() as u64,
        partition_values: Vec::new(),
    }
}

fn options(on_malformed: OnMalformed) -> CsvOptions {
    let on_malformed = match on_malformed {
        OnMalformed::Quarantine => "quarantine",
        OnMalformed::Fail => "fail",
    };
    CsvOptions {
        on_malformed: on_malformed.to_string(),
        ..CsvOptions::default()
    }
}

/// Reads `[start, end)` of `file` in chunks of `chunk` bytes.
fn read(file: &[u8], start: u64, end: u64, chunk: usize, options: &CsvOptions) -> Result<Vec<Row>> {
    let size = file.len() as u64;
    let mut reader = RangeReader::new(
        options,
        options.malformed() == OnMalformed::Fail,
        3,
        &listed(),
        start,
        (end < size).then_some(end),
        schema(),
        sources(),
        3,
    );
    let from = reader.read_from();
    reader.line_offset(memchr::memchr_iter(b'\n', &file[..from as usize]).count() as u64);
    let mut flow = Flow::More;
    for piece in file[from as usize..].chunks(chunk) {
        flow = reader.feed(piece)?;
        if flow == Flow::Done {
            break;
        }
    }
    if flow == Flow::More {
        reader.finish()?;
    }
    let mut rows = Vec::new();
    for batch in reader.take_batches() {
        assert!(batch.num_rows() <= 3, "batches of at most batch_size rows");
        let text = |c: usize, r: usize| {
            let a = batch.column(c).as_string::<i32>();
            (!a.is_null(r)).then(|| a.value(r).to_string())
        };
        for r in 0..batch.num_rows() {
            rows.push((
                batch.column(3).as_primitive::<Int64Type>().value(r),
                vec![text(0, r), text(1, r), text(2, r)],
                text(4, r),
                text(5, r),
            ));
        }
    }
    Ok(rows)
}

#[test]
fn every_kind_of_malformed_line_is_a_row_with_its_line_text_and_reason() {
    let options = options(OnMalformed::Quarantine);
    let size = FILE.len() as u64;
    for chunk in [1, 2, 3, 5, 7, 64, FILE.len()] {
        let rows = read(FILE, 0, size, chunk, &options).expect("read");
        assert_eq!(rows, expected(), "chunks of {chunk} bytes");
    }
}

#[test]
fn a_split_at_any_byte_reads_every_record_once_or_says_it_fell_inside_quotes() {
    let options = options(OnMalformed::Quarantine);
    let size = FILE.len() as u64;
    let mut inside = Vec::new();
    for split in 1..size {
        for chunk in [1, 4, FILE.len()] {
            let first = read(FILE, 0, split, chunk, &options);
            let second = read(FILE, split, size, chunk, &options).expect("second range");
            match first {
                Ok(mut rows) => {
                    rows.extend(second);
                    assert_eq!(rows, expected(), "split at byte {split}, chunks of {chunk}");
                }
                Err(e) => {
                    assert!(e.to_string().contains(SPLIT_INSIDE_QUOTES), "{e}");
                    inside.push(split);
                }
            }
        }
    }
    // Exactly the splits whose next `\n` is the quoted one of line 4 (after "multi") or one
    // inside the unterminated quote of line 11.
    let quoted = FILE
        .windows(6)
        .position(|w| w == b"multi\n")
        .expect("multi") as u64
        + 5;
    let open = FILE
        .windows(8)
        .position(|w| w == b"open,10\n")
        .expect("open") as u64
        + 7;
    inside.dedup();
    let next_newline = |s: u64| {
        (s - 1..size)
            .find(|&i| FILE[i as usize] == b'\n')
            .unwrap_or(size)
    };
    let expected_inside: Vec<u64> = (1..size)
        .filter(|&s| [quoted, open].contains(&next_newline(s)))
        .collect();
    assert_eq!(inside, expected_inside);
}

#[test]
fn fail_mode_stops_at_the_first_malformed_line_with_its_line_and_reason() {
    let options = options(OnMalformed::Fail);
    let size = FILE.len() as u64;
    let mut reader = RangeReader::new(
        &options,
        true,
        3,
        &listed(),
        0,
        None,
        schema(),
        sources(),
        100,
    );
    let err = reader.feed(FILE).expect_err("malformed");
    assert_eq!(
        err.strip_backtrace(),
        "Execution error: malformed CSV line 6 of f.csv: too many fields (4, expected 3)"
    );
    let failure = reader.take_failure().expect("failure");
    assert_eq!((failure.line, failure.text.as_str()), (6, "4,extra,6,7"));
    assert!(read(FILE, 0, size, 7, &options).is_err());
}

#[test]
fn a_last_line_without_line_end_is_read_and_a_comment_is_skipped() {
    let options = CsvOptions {
        comment: Some('#'),
        ..CsvOptions::default()
    };
    let file = b"a,b,c\n# a note, with \"quote\n1,2,3\n4,5,6";
    let rows = read(file, 0, file.len() as u64, 4, &options).expect("read");
    let lines: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(lines, [3, 4]);
    assert_eq!(rows[1].1[2].as_deref(), Some("6"));
    assert!(rows.iter().all(|r| r.3.is_none()));
}

#[test]
fn every_row_of_a_file_carries_its_partition_values_malformed_ones_too() {
    let options = options(OnMalformed::Quarantine);
    let file = CsvFile {
        partition_values: vec![Some("2011-12-09".into()), None],
        ..listed()
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("day", DataType::Utf8, true),
        Field::new("shop", DataType::Utf8, true),
        Field::new("_corrupt_reason", DataType::Utf8, true),
    ]));
    let sources = vec![
        Source::Field(0),
        Source::Partition(0),
        Source::Partition(1),
        Source::CorruptReason,
    ];
    let mut reader = RangeReader::new(&options, false, 3, &file, 0, None, schema, sources, 3);
    assert_eq!(reader.feed(FILE).expect("feed"), Flow::More);
    reader.finish().expect("finish");
    let batches = reader.take_batches();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, expected().len());
    let mut malformed = 0;
    for batch in &batches {
        let day = batch.column(1).as_string::<i32>();
        assert!(day.iter().all(|v| v == Some("2011-12-09")), "{day:?}");
        assert_eq!(batch.column(2).null_count(), batch.num_rows());
        malformed += batch.num_rows() - batch.column(3).null_count();
    }
    assert_eq!(malformed, 4);
}
