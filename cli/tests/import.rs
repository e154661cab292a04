//! Database inputs as Sqoop imports, against real MariaDB and PostgreSQL servers started in
//! temporary folders (`ember_testkit::database`): every value equals what the database's own
//! client prints, split ranges on a cluster give what one range gives, an incremental import
//! reads each row once across a kill -9, and bad settings fail in one line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ember_core::report::RunReport;
use ember_testkit::database::{
    self, MariaDb, PASSWORD, PASSWORD_VAR, Postgres, Server, online_retail_load_file,
};
use ember_testkit::ember::{ClusterOptions, EmberCluster};
use ember_testkit::query::parquet_rows;
use ember_testkit::util::{kill_9_after, output_text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ember(args: &[&str]) -> Output {
    ember_command(args).output().expect("run ember")
}

fn ember_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    c.args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env(PASSWORD_VAR, PASSWORD);
    c
}

/// `n` sale lines of the shipped Online Retail file after `skip`, as a load file.
fn load_file(dir: &Path, skip: usize, n: usize, first_id: usize) -> PathBuf {
    online_retail_load_file(&repo(), dir, skip, n, first_id).expect("load file")
}

/// A job folder importing `source` (`table = "…"` or `query = "…"`) of `url` into Parquet by
/// order date, with `extra` lines in the input.
fn import_job(dir: &Path, kind: &str, url: &str, source: &str, extra: &str) -> PathBuf {
    let name = format!("job-{kind}-{}", source.len() + extra.len());
    database::import_job(dir, &name, kind, url, source, extra).expect("job folder")
}

fn run(job: &Path, out: &Path) -> Output {
    ember(&[
        "run",
        &job.display().to_string(),
        "--set",
        &format!("output={}", out.display()),
    ])
}

fn report(out: &Path) -> RunReport {
    let text = std::fs::read_to_string(out.join("_SUCCESS")).expect("_SUCCESS");
    serde_json::from_str(&text).expect("report")
}

/// Every imported row, formatted as the database clients print them (`a|b|…`, NULL as `NULL`),
/// sorted.
fn imported(out: &Path) -> Vec<String> {
    let sql = "SELECT id, invoice_no, stock_code, coalesce(description, 'NULL'), quantity, \
               to_char(invoice_date, '%Y-%m-%d %H:%M:%S'), CAST(unit_price AS VARCHAR), \
               coalesce(CAST(customer_id AS VARCHAR), 'NULL'), country FROM t";
    let mut rows = ember_core::threads::block_on(parquet_rows(&format!("{}/", out.display()), sql))
        .expect("read the output");
    rows.sort();
    rows
}

/// The client's rows (tab-separated) as `a|b|…`, sorted.
fn client_rows(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('\t', "|"))
        .collect();
    rows.sort();
    rows
}

const MARIADB_DUMP: &str = "SELECT id, invoice_no, stock_code, coalesce(description, 'NULL'), quantity, \
     DATE_FORMAT(invoice_date, '%Y-%m-%d %H:%i:%s'), unit_price, coalesce(customer_id, 'NULL'), country \
     FROM transactions";

#[test]
fn mariadb_import_equals_the_source_and_four_splits_on_a_cluster_equal_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = MariaDb::start().expect("MariaDB");
    db.create_transactions().expect("create table");
    db.load_transactions(&load_file(tmp.path(), 0, 3_000, 1))
        .expect("load");
    let source = client_rows(&db.sql(MARIADB_DUMP).expect("dump"));
    assert_eq!(source.len(), 3_000);

    let one = import_job(
        tmp.path(),
        "mysql",
        &db.url(),
        "table = \"transactions\"",
        "",
    );
    let out1 = tmp.path().join("out1");
    let ran = run(&one, &out1);
    assert!(ran.status.success(), "{}", output_text(&ran));
    assert_eq!(imported(&out1), source, "embedded import, 1 split");
    let r = report(&out1);
    assert_eq!(r.inputs[0].read.len(), 1, "{:?}", r.inputs[0]);
    assert!(!serde_json::to_string(&r).expect("json").contains(PASSWORD));

    // Types as documented: DECIMAL stays decimal, DATETIME is a timestamp.
    let types = ember_core::threads::block_on(parquet_rows(
        &format!("{}/", out1.display()),
        "SELECT arrow_typeof(unit_price), arrow_typeof(invoice_date), arrow_typeof(id) FROM t LIMIT 1",
    ))
    .expect("types");
    assert_eq!(
        types,
        ["Decimal128(10, 3)|Timestamp(µs)|Int64"],
        "column types"
    );

    let four = import_job(
        tmp.path(),
        "mysql",
        &db.url(),
        "table = \"transactions\"",
        "split_by = \"id\"\nsplits = 4",
    );
    let options = ClusterOptions {
        env: vec![(PASSWORD_VAR.to_string(), PASSWORD.to_string())],
        task_slots: 1,
        ..ClusterOptions::default()
    };
    let cluster =
        EmberCluster::start(Path::new(env!("CARGO_BIN_EXE_ember")), 2, &options).expect("cluster");
    let out4 = tmp.path().join("out4");
    let submitted = ember(&[
        "submit",
        &four.display().to_string(),
        "--scheduler",
        cluster.address(),
        "--set",
        &format!("output={}", out4.display()),
        "--wait",
    ]);
    assert!(
        submitted.status.success(),
        "{}\n{}",
        output_text(&submitted),
        cluster.logs()
    );
    assert_eq!(imported(&out4), source, "cluster import, 4 splits");
    let r = report(&out4);
    assert_eq!(r.inputs[0].read.len(), 4, "{:?}", r.inputs[0]);
    // The ranges ran as tasks on both executors.
    let logs = cluster.full_logs();
    let tasks = logs.matches("database scan task").count();
    assert!(tasks >= 4, "{tasks} scan tasks logged\n{logs}");
}

#[test]
fn postgres_import_of_a_table_and_a_query_equals_what_psql_prints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pg = Postgres::start().expect("PostgreSQL");
    pg.create_transactions().expect("create");
    pg.load_transactions(&load_file(tmp.path(), 1_000, 3_000, 1))
        .expect("copy");
    let dump = "SELECT id, invoice_no, stock_code, coalesce(description, 'NULL'), quantity, \
                to_char(invoice_date, 'YYYY-MM-DD HH24:MI:SS'), unit_price, \
                coalesce(customer_id::text, 'NULL'), country FROM transactions";
    let source = client_rows(&pg.sql(dump).expect("dump"));
    assert_eq!(source.len(), 3_000);

    let job = import_job(
        tmp.path(),
        "postgres",
        &pg.url(),
        "table = \"public.transactions\"",
        "split_by = \"id\"\nsplits = 3",
    );
    let out = tmp.path().join("table");
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    assert_eq!(imported(&out), source);
    assert_eq!(report(&out).inputs[0].read.len(), 3);

    let query = "SELECT * FROM transactions WHERE country <> 'United Kingdom'";
    let job = import_job(
        tmp.path(),
        "postgres",
        &pg.url(),
        &format!("query = \"{query}\""),
        "",
    );
    let out = tmp.path().join("query");
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    let expected = client_rows(
        &pg.sql(&format!("{dump} WHERE country <> 'United Kingdom'"))
            .expect("dump"),
    );
    assert!(!expected.is_empty());
    assert_eq!(imported(&out), expected);

    // lastmodified on a timestamp: the rows whose time moved past the last value come again
    // (appended, as Sqoop without --merge-key), new rows once, the others never.
    let job = import_job(
        tmp.path(),
        "postgres",
        &pg.url(),
        "table = \"transactions\"",
        "incremental = { mode = \"lastmodified\", column = \"invoice_date\" }",
    );
    let out = tmp.path().join("lastmodified");
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    let first = report(&out);
    assert_eq!(first.rows.written, 3_000);
    let mark = first.incremental["transactions"].value.clone();
    pg.sql(&format!(
        "UPDATE transactions SET invoice_date = timestamp '{mark}' + interval '1 hour' WHERE id <= 10"
    ))
    .expect("update");
    pg.load_transactions(&load_file(tmp.path(), 5_000, 5, 3_001))
        .expect("insert");
    pg.sql(
        "UPDATE transactions SET invoice_date = timestamp '2031-01-01 00:00:00' WHERE id > 3000",
    )
    .expect("newer");
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    assert_eq!(report(&out).rows.written, 15, "10 updated + 5 new rows");
    assert_eq!(
        report(&out).incremental["transactions"].value,
        "2031-01-01T00:00:00"
    );
    assert_eq!(imported(&out).len(), 3_015);
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    assert_eq!(report(&out).rows.written, 0);
}

#[test]
fn an_incremental_import_reads_every_row_once_across_a_kill_9() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = MariaDb::start().expect("MariaDB");
    db.create_transactions().expect("create table");
    db.load_transactions(&load_file(tmp.path(), 0, 1_000, 1))
        .expect("load");
    let job = import_job(
        tmp.path(),
        "mysql",
        &db.url(),
        "table = \"transactions\"",
        "split_by = \"id\"\nsplits = 2\nincremental = { mode = \"append\", column = \"id\" }",
    );
    let out = tmp.path().join("out");
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    assert_eq!(report(&out).incremental["transactions"].value, "1000");
    assert_eq!(imported(&out).len(), 1_000);

    db.load_transactions(&load_file(tmp.path(), 1_000, 500, 1_001))
        .expect("load");
    // Killed somewhere in the second run (reading, writing or committing), then run again.
    let mut killed = 0;
    for after_ms in [300u64, 900, 1_600] {
        let mut command = ember_command(&[
            "run",
            &job.display().to_string(),
            "--set",
            &format!("output={}", out.display()),
        ]);
        if kill_9_after(&mut command, Duration::from_millis(after_ms)) {
            killed += 1;
        }
    }
    assert!(killed >= 1, "no run was killed while it ran");
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    let rows = imported(&out);
    let ids: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r.split('|').next().unwrap_or_default())
        .collect();
    assert_eq!(
        (rows.len(), ids.len()),
        (1_500, 1_500),
        "killed {killed} times"
    );
    assert_eq!(client_rows(&db.sql(MARIADB_DUMP).expect("dump")), rows);
    assert_eq!(report(&out).incremental["transactions"].value, "1500");

    // Nothing new: the run writes nothing and keeps the mark.
    let ran = run(&job, &out);
    assert!(ran.status.success(), "{}", output_text(&ran));
    let r = report(&out);
    assert_eq!((r.rows.written, r.files), (0, 0));
    assert_eq!(r.incremental["transactions"].value, "1500");
    assert_eq!(imported(&out).len(), 1_500);
}

/// A failed run: the exit code, one line on stderr with every part of `expected`, no
/// password, no output folder.
fn assert_fails(out: &Output, code: i32, expected: &[&str], output: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.trim();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert_eq!(line.lines().count(), 1, "{stderr}");
    for part in expected {
        assert!(line.contains(part), "`{part}` not in: {line}");
    }
    assert!(!line.contains(PASSWORD), "{line}");
    assert!(!output.exists(), "{} was created", output.display());
}

#[test]
fn bad_database_inputs_fail_in_one_line_naming_the_input() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = MariaDb::start().expect("MariaDB");
    db.create_transactions().expect("create table");
    db.sql("CREATE TABLE shapes (id INT, area POLYGON)")
        .expect("shapes");
    let out = tmp.path().join("out");
    let table = "table = \"transactions\"";

    let job = import_job(tmp.path(), "mysql", &db.url(), table, "");
    let wrong = ember_command(&[
        "run",
        &job.display().to_string(),
        "--set",
        &format!("output={}", out.display()),
    ])
    .env(PASSWORD_VAR, "not-the-password")
    .output()
    .expect("run");
    assert_fails(
        &wrong,
        1,
        &["input `transactions`", "authentication failed"],
        &out,
    );

    let unset = ember_command(&[
        "run",
        &job.display().to_string(),
        "--set",
        &format!("output={}", out.display()),
    ])
    .env_remove(PASSWORD_VAR)
    .output()
    .expect("run");
    assert_fails(
        &unset,
        1,
        &["input `transactions`", PASSWORD_VAR, "not set"],
        &out,
    );

    let closed = ember_testkit::util::free_port().expect("port");
    let url = db
        .url()
        .replace(&format!(":{}/", db.port()), &format!(":{closed}/"));
    let job = import_job(tmp.path(), "mysql", &url, table, "#unreachable");
    assert_fails(
        &run(&job, &out),
        3,
        &[
            "input `transactions`",
            "cannot connect",
            &closed.to_string(),
        ],
        &out,
    );

    let job = import_job(
        tmp.path(),
        "mysql",
        &db.url(),
        "table = \"no_such_table\"",
        "",
    );
    assert_fails(
        &run(&job, &out),
        1,
        &["input `transactions`", "no_such_table"],
        &out,
    );

    let job = import_job(tmp.path(), "mysql", &db.url(), "table = \"shapes\"", "");
    assert_fails(&run(&job, &out), 1, &["input `transactions`", "area"], &out);

    let job = import_job(
        tmp.path(),
        "mysql",
        &db.url().replace("ember@", "ember:secret@"),
        table,
        "",
    );
    assert_fails(&run(&job, &out), 1, &["must not hold the password"], &out);
}

const DAILY_TABLE: &str = "CREATE TABLE daily_revenue (order_date DATE NOT NULL, \
     product_id VARCHAR(32) COLLATE utf8mb4_bin NOT NULL, product_name VARCHAR(255), \
     units_sold BIGINT NOT NULL, \
     units_returned BIGINT NOT NULL, gross_revenue DECIMAL(18,4) NOT NULL, \
     returns_value DECIMAL(18,4) NOT NULL, net_revenue DECIMAL(18,4) NOT NULL, \
     orders BIGINT NOT NULL, PRIMARY KEY (order_date, product_id))";

/// Asserts equal row lists, showing only the rows that differ.
fn assert_same_rows(got: &[String], want: &[String], what: &str) {
    let missing: Vec<&String> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
    let extra: Vec<&String> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
    assert!(
        got.len() == want.len() && missing.is_empty() && extra.is_empty(),
        "{what}: {} rows, {} expected; missing {missing:?}; unexpected {extra:?}",
        got.len(),
        want.len()
    );
}

/// The daily revenue job over `input` into `out`.
fn daily_revenue(input: &str, out: &Path) {
    let ran = ember(&[
        "run",
        "jobs/daily_revenue_by_product",
        "--set",
        &format!("input={input}"),
        "--set",
        &format!("output={}", out.display()),
    ]);
    assert!(ran.status.success(), "{}", output_text(&ran));
}

/// `jobs/export_daily_revenue` from the daily table `daily` into `db`.
fn export(db: &MariaDb, daily: &Path, work: &Path) -> Output {
    ember(&[
        "run",
        "jobs/export_daily_revenue",
        "--set",
        &format!("daily={}/", daily.display()),
        "--set",
        &format!("db_url={}", db.url()),
        "--set",
        &format!("work={}", work.display()),
    ])
}

const DAILY_ROWS: &str = "SELECT order_date, product_id, units_sold, units_returned, \
     CAST(net_revenue AS VARCHAR), orders FROM t";

/// The table's rows as `date|product|sold|returned|net|orders`, sorted.
fn table_rows(db: &MariaDb) -> Vec<String> {
    client_rows(
        &db.sql(
            "SELECT order_date, product_id, units_sold, units_returned, net_revenue, orders \
             FROM daily_revenue",
        )
        .expect("select"),
    )
}

fn parquet_daily(daily: &Path) -> Vec<String> {
    let mut rows =
        ember_core::threads::block_on(parquet_rows(&format!("{}/", daily.display()), DAILY_ROWS))
            .expect("daily rows");
    rows.sort();
    rows
}

#[test]
fn the_daily_table_is_upserted_into_mariadb_in_one_transaction() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = MariaDb::start().expect("MariaDB");
    db.sql(DAILY_TABLE).expect("create");
    let day = repo().join("data/online_retail_by_day/2011-12-08.csv.gz");

    // Half of the day's lines first, then all of them: every key of the first export is
    // updated and new keys are inserted.
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&day).expect("day"))
        .read_to_string(&mut text)
        .expect("gunzip");
    let half: Vec<&str> = text.lines().take(text.lines().count() / 2).collect();
    let half_file = tmp.path().join("half.csv");
    std::fs::write(&half_file, half.join("\n") + "\n").expect("half");
    let daily = tmp.path().join("daily");
    daily_revenue(&half_file.display().to_string(), &daily);
    let work = tmp.path().join("work");
    let ran = export(&db, &daily, &work);
    assert!(ran.status.success(), "{}", output_text(&ran));
    let first = parquet_daily(&daily);
    assert!(!first.is_empty());
    assert_same_rows(&table_rows(&db), &first, "first export");
    assert_eq!(report(&work).rows.written, first.len() as u64);

    daily_revenue(&day.display().to_string(), &daily);
    let ran = export(&db, &daily, &work);
    assert!(ran.status.success(), "{}", output_text(&ran));
    let full = parquet_daily(&daily);
    assert!(full.len() > first.len());
    assert_same_rows(&table_rows(&db), &full, "upserted");
    let sums = |sql: &str| db.sql(sql).expect("sum").trim().to_string();
    let parquet_sum = ember_core::threads::block_on(parquet_rows(
        &format!("{}/", daily.display()),
        "SELECT CAST(sum(net_revenue) AS VARCHAR) FROM t",
    ))
    .expect("sum");
    assert_eq!(
        vec![sums("SELECT sum(net_revenue) FROM daily_revenue")],
        parquet_sum
    );

    // A run that fails in the middle of its inserts (one new row breaks a CHECK constraint)
    // leaves the table as it was.
    let next = repo().join("data/online_retail_by_day/2011-12-09.csv.gz");
    daily_revenue(&next.display().to_string(), &daily);
    let max = ember_core::threads::block_on(parquet_rows(
        &format!("{}/", daily.display()),
        "SELECT CAST(max(units_sold) AS VARCHAR) FROM t WHERE order_date = '2011-12-09'",
    ))
    .expect("max");
    db.sql(&format!(
        "ALTER TABLE daily_revenue ADD CONSTRAINT below_max CHECK (units_sold < {})",
        max[0]
    ))
    .expect("check constraint");
    let before = table_rows(&db);
    let failed = export(&db, &daily, &work);
    assert!(!failed.status.success(), "{}", output_text(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("output table `daily_revenue`"), "{stderr}");
    assert!(stderr.contains("rolled back"), "{stderr}");
    assert_same_rows(&table_rows(&db), &before, "after the failed run");
}
