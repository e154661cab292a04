//! Unit tests of the manifest loader.

use super::*;

const GOOD: &str = r#"
[job]
name = "j"

[params]
input = "in.csv"
output = "out"

[[input]]
name = "raw"
path = "${input}"

[[view]]
name = "v"
sql = "v.sql"

[output]
path = "${output}"
partition_by = ["d"]
sql = "o.sql"

[checks]
rows_read = "raw"
rows_valid = "v"
"#;

fn parse(text: &str) -> Result<JobManifest> {
    JobManifest::parse(PathBuf::from("jobs/j/job.toml"), text.to_string())
}

#[test]
fn parses_a_good_manifest() {
    let m = parse(GOOD).expect("good manifest");
    assert_eq!(m.name(), "j");
    assert_eq!(m.params().get("input"), Some("in.csv"));
    assert_eq!(m.file.inputs[0].csv, CsvOptions::default());
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = GOOD.replace("partition_by = [\"d\"]", "partiton_by = [\"d\"]");
    let err = parse(&text).expect_err("unknown key");
    let msg = err.to_string();
    assert!(
        msg.starts_with("jobs/j/job.toml:19:1: unknown field `partiton_by`"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn duplicate_tables_and_unknown_check_tables() {
    let text = GOOD.replace("name = \"v\"", "name = \"raw\"");
    assert!(
        parse(&text)
            .expect_err("dup")
            .to_string()
            .contains("table `raw` is defined twice")
    );
    let text = GOOD.replace("rows_valid = \"v\"", "rows_valid = \"nope\"");
    let msg = parse(&text).expect_err("check").to_string();
    assert!(
        msg.starts_with("jobs/j/job.toml:24:14: checks name table `nope`"),
        "{msg}"
    );
}

#[test]
fn undefined_reference_in_a_path_points_into_the_manifest() {
    let text = GOOD.replace("path = \"${output}\"", "path = \"out/${outptu}\"");
    let m = parse(&text).expect("parses");
    // SQL files do not exist here, but paths render first.
    let err = m.resolve(m.params()).expect_err("undefined");
    assert!(err.to_string().starts_with("jobs/j/job.toml:"), "{err}");
    assert!(
        err.to_string().contains("unknown parameter `${outptu}`"),
        "{err}"
    );
}

#[test]
fn format_from_extension() {
    assert_eq!(
        InputFormat::from_path("a/B.CSV.GZ"),
        Some(InputFormat::CsvGz)
    );
    assert_eq!(InputFormat::from_path("a/*.csv"), Some(InputFormat::Csv));
    assert_eq!(
        InputFormat::from_path("a/x.parquet"),
        Some(InputFormat::Parquet)
    );
    assert_eq!(InputFormat::from_path("a/dir"), None);
}
