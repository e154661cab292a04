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

#[test]
fn database_inputs_and_outputs_follow_their_rules_when_loaded_and_when_received() {
    let text = GOOD.replace(
        "path = \"${input}\"",
        "format = \"mysql\"\nurl = \"mysql://u@h:3306/db\"\ntable = \"t\"\nsplits = 4",
    );
    // The URL and SQL of a database input render with the parameters: checked at resolve.
    let m = parse(&text).expect("parses");
    let err = m.resolve(m.params()).expect_err("splits without split_by");
    assert!(
        err.to_string()
            .contains("`splits` above 1 needs `split_by`"),
        "{err}"
    );
    let text = GOOD.replace(
        "path = \"${input}\"",
        "format = \"postgres\"\nurl = \"postgres://u:pw@h/db\"\ntable = \"t\"",
    );
    let m = parse(&text).expect("parses");
    let err = m.resolve(m.params()).expect_err("password in the url");
    assert!(
        err.to_string().contains("must not hold the password"),
        "{err}"
    );
    assert!(!err.to_string().contains("pw@"), "{err}");
    let text = GOOD.replace(
        "path = \"${input}\"",
        "path = \"${input}\"\nsplit_by = \"id\"",
    );
    let err = parse(&text).expect_err("a database key on a file input");
    assert!(
        err.to_string()
            .contains("`split_by` is for database inputs"),
        "{err}"
    );

    // A job a server receives is checked by the same rules.
    let output = DatabaseOutput {
        kind: DatabaseKind::Mysql,
        url: "mysql://u@h:3306/db".into(),
        password_env: Some("EMBER_DB_PASSWORD".into()),
        password_file: None,
        table: "daily".into(),
        mode: ExportMode::Upsert,
        key: Vec::new(),
    };
    assert!(
        database::check_output(&output, &[])
            .expect_err("upsert without key")
            .contains("needs `key`")
    );
    let keyed = DatabaseOutput {
        key: vec!["order_date".into()],
        ..output
    };
    assert!(database::check_output(&keyed, &[]).is_ok());
    assert!(
        database::check_output(&keyed, &["order_date".into()])
            .expect_err("partitioned")
            .contains("no `partition_by`")
    );
}
