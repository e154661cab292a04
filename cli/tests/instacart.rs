//! `jobs/instacart_trends` end to end against a real Kafka-protocol broker (tansu on
//! 127.0.0.1): `ember produce --instacart` replays the Instacart sample's order lines; one
//! stream writes four outputs (raw, by_product, by_department, by_hour) joined to the products
//! and departments lookup tables. Each output must equal a plain Rust fold over the CSVs, after
//! kill -9 at random moments, with no output ahead of another. A second test changes a lookup
//! table's file while a stream runs. Every wait is bounded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ember_streaming::engine::StreamReport;
use ember_streaming::engine::failpoint::CRASH_AT;
use ember_streaming::produce::instacart::START;
use ember_testkit::kafka::KafkaBroker;
use ember_testkit::query::parquet_rows_with;
use ember_testkit::util::kill_9_after;
use rand::{Rng, SeedableRng};

mod common;
use common::{produce, report_of, stop_with_sigterm, wait_until};

const JOB: &str = "jobs/instacart_trends";
const OUTPUTS: [&str; 4] = ["raw", "by_product", "by_department", "by_hour"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

/// The rows of a CSV (plain or gzip) with a header, by header name.
fn csv_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut csv = csv::Reader::from_reader(reader);
    let headers = csv.headers().expect("header").clone();
    csv.records()
        .map(|r| {
            let r = r.expect("csv row");
            headers
                .iter()
                .map(str::to_string)
                .zip(r.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn int(row: &HashMap<String, String>, name: &str) -> i64 {
    row[name]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {row:?}"))
}

/// One order line as the test reads it from the CSVs.
struct Line {
    time: i64,
    order: i64,
    user: i64,
    product: i64,
    position: i64,
    reordered: i64,
}

/// The four outputs, recomputed from the CSVs: rows in each output's test format (see
/// `output_rows`), for the windows that end at or before `watermark` (s).
fn fold(dir: &Path, watermark: i64) -> BTreeMap<&'static str, Vec<String>> {
    // Event time: Sunday 2017-01-01 + order_dow days + hour + (order_id mod 60) minutes.
    let orders: HashMap<i64, (i64, i64)> = csv_rows(&dir.join("orders.csv.gz"))
        .iter()
        .map(|o| {
            let id = int(o, "order_id");
            let time = START
                + int(o, "order_dow") * 86_400
                + int(o, "order_hour_of_day") * 3_600
                + id.rem_euclid(60) * 60;
            (id, (int(o, "user_id"), time))
        })
        .collect();
    let lines: Vec<Line> = csv_rows(&dir.join("order_products__prior.csv.gz"))
        .iter()
        .map(|l| {
            let order = int(l, "order_id");
            let (user, time) = orders[&order];
            Line {
                time,
                order,
                user,
                product: int(l, "product_id"),
                position: int(l, "add_to_cart_order"),
                reordered: int(l, "reordered"),
            }
        })
        .collect();
    let products: HashMap<i64, (String, i64)> = csv_rows(&dir.join("products.csv.gz"))
        .iter()
        .map(|p| {
            (
                int(p, "product_id"),
                (p["product_name"].clone(), int(p, "department_id")),
            )
        })
        .collect();
    let departments: HashMap<i64, String> = csv_rows(&dir.join("departments.csv.gz"))
        .iter()
        .map(|d| (int(d, "department_id"), d["department"].clone()))
        .collect();
    let date = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .expect("time")
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    out.insert(
        "raw",
        lines
            .iter()
            .map(|l| {
                let t = chrono::DateTime::from_timestamp(l.time, 0).expect("time");
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}",
                    l.order,
                    l.product,
                    l.position,
                    l.reordered,
                    l.user,
                    l.time,
                    t.format("%Y-%m-%d"),
                    t.format("%H")
                )
            })
            .collect(),
    );
    // (window start, key) → (items, orders, reordered / products / users)
    #[derive(Default)]
    struct Group {
        items: i64,
        orders: BTreeSet<i64>,
        others: BTreeSet<i64>,
        reordered: i64,
    }
    let (day, hour) = (86_400, 3_600);
    let mut by_product: BTreeMap<(i64, i64), Group> = BTreeMap::new();
    let mut by_department: BTreeMap<(i64, i64), Group> = BTreeMap::new();
    let mut by_hour: BTreeMap<i64, Group> = BTreeMap::new();
    for l in &lines {
        let d = l.time.div_euclid(day) * day;
        let h = l.time.div_euclid(hour) * hour;
        let g = by_product.entry((d, l.product)).or_default();
        g.items += 1;
        g.orders.insert(l.order);
        g.reordered += l.reordered;
        if let Some((_, dep)) = products.get(&l.product) {
            let g = by_department.entry((d, *dep)).or_default();
            g.items += 1;
            g.orders.insert(l.order);
            g.others.insert(l.product);
        }
        let g = by_hour.entry(h).or_default();
        g.items += 1;
        g.orders.insert(l.order);
        g.others.insert(l.user);
        g.reordered += l.reordered;
    }
    out.insert(
        "by_product",
        by_product
            .iter()
            .filter(|((d, _), _)| d + day <= watermark)
            .map(|((d, p), g)| {
                let (name, dep) = products
                    .get(p)
                    .map(|(n, d)| (n.clone(), departments[d].clone()))
                    .unwrap_or_default();
                format!(
                    "{d}|{p}|{name}|{dep}|{}|{}|{}|{}",
                    g.items,
                    g.orders.len(),
                    g.reordered,
                    date(*d)
                )
            })
            .collect(),
    );
    out.insert(
        "by_department",
        by_department
            .iter()
            .filter(|((d, _), _)| d + day <= watermark)
            .map(|((d, dep), g)| {
                format!(
                    "{d}|{dep}|{}|{}|{}|{}|{}",
                    departments[dep],
                    g.items,
                    g.orders.len(),
                    g.others.len(),
                    date(*d)
                )
            })
            .collect(),
    );
    out.insert(
        "by_hour",
        by_hour
            .iter()
            .filter(|(h, _)| *h + hour <= watermark)
            .map(|(h, g)| {
                format!(
                    "{h}|{}|{}|{}|{}|{}|{}",
                    g.items,
                    g.orders.len(),
                    g.others.len(),
                    g.reordered,
                    date(*h),
                    (h / hour).rem_euclid(24)
                )
            })
            .collect(),
    );
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

/// Each output's rows, read from its Parquet files, in the fold's format.
fn output_rows(out: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let queries: [(&str, &[&str], &str); 4] = [
        (
            "raw",
            &["event_date", "event_hour"],
            "SELECT order_id, product_id, add_to_cart_order, reordered, user_id, \
             CAST(to_unixtime(event_time) AS BIGINT), event_date, event_hour FROM t",
        ),
        (
            "by_product",
            &["window_date"],
            "SELECT CAST(to_unixtime(window_start) AS BIGINT), product_id, product_name, \
             department, items, orders, reordered_items, window_date FROM t",
        ),
        (
            "by_department",
            &["window_date"],
            "SELECT CAST(to_unixtime(window_start) AS BIGINT), department_id, department, \
             items, orders, products, window_date FROM t",
        ),
        (
            "by_hour",
            &["window_date"],
            "SELECT CAST(to_unixtime(window_start) AS BIGINT), items, orders, users, \
             reordered_items, window_date, hour_of_day FROM t",
        ),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    queries
        .into_iter()
        .map(|(name, partitions, sql)| {
            let location = format!("{}/", out.join(name).display());
            let rows = rt
                .block_on(parquet_rows_with(&location, partitions, sql))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, rows)
        })
        .collect()
}

fn stream_command(broker: &KafkaBroker, topic: &str, out: &Path, max_records: u64) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", JOB, "--format", "json"])
        .args(["--set", &format!("brokers={}", broker.brokers())])
        .args(["--set", &format!("topic={topic}")])
        .args(["--set", &format!("output={}", out.display())])
        .args(["--set", "trigger=available-now"])
        .args(["--set", &format!("max_records={max_records}")])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove(CRASH_AT);
    c
}

/// Batch ids of the data files each output committed (its sink log's entries).
fn logged_batches(out: &Path) -> BTreeMap<&'static str, BTreeSet<u64>> {
    OUTPUTS
        .iter()
        .map(|name| {
            let log = out.join(name).join(ember_core::table::sink_log::SINK_LOG);
            let batches = std::fs::read_dir(&log)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter_map(|p| std::fs::read(p).ok())
                        .filter_map(|b| {
                            serde_json::from_slice::<ember_core::table::sink_log::SinkLogEntry>(&b)
                                .ok()
                        })
                        .map(|e| e.batch_id)
                        .collect()
                })
                .unwrap_or_default();
            (*name, batches)
        })
        .collect()
}

/// The highest batch id with a commit mark in the checkpoint.
fn last_commit(out: &Path) -> Option<u64> {
    std::fs::read_dir(out.join("raw/_checkpoint/commits"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .max()
}

fn watermark_s(report: &StreamReport) -> i64 {
    let text = report.watermark.as_deref().expect("a watermark");
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .timestamp()
}

#[test]
fn instacart_trends_outputs_equal_a_fold_of_the_csvs_after_kill_9_at_random_moments() {
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = repo().join("data/instacart");
    let produced = Command::new(bin())
        .args(["produce", "--instacart"])
        .arg(&data)
        .args(["--brokers", &broker.brokers(), "--topic", "lines"])
        .args(["--partitions", "3", "--format", "json"])
        .output()
        .expect("ember produce");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let produced: serde_json::Value = serde_json::from_slice(&produced.stdout).expect("json");
    assert_eq!(produced["messages"], 32_290, "one event per order line");

    let out = tmp.path().join("trends");
    // 1. A crash between the first output's commit and the others': raw has batch 2, the
    // others not yet; the checkpoint has no commit mark for it.
    let crashed = stream_command(&broker, "lines", &out, 2000)
        .env(CRASH_AT, "output:2")
        .output()
        .expect("run");
    assert!(
        !crashed.status.success(),
        "the crash point should abort: {}",
        String::from_utf8_lossy(&crashed.stdout)
    );
    let logged = logged_batches(&out);
    assert!(
        logged["raw"].contains(&2),
        "raw committed batch 2: {logged:?}"
    );
    for name in &OUTPUTS[1..] {
        assert!(
            logged[name].iter().all(|&b| b < 2),
            "{name} has no batch after 1: {logged:?}"
        );
    }
    assert_eq!(last_commit(&out), Some(1));

    // 2. kill -9 at random moments, ten times. After each, no output has a batch beyond the
    // one in flight (the last commit mark + 1).
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut kills = 0;
    for _ in 0..10 {
        let after = Duration::from_millis(rng.random_range(300..2500));
        kills += usize::from(kill_9_after(
            &mut stream_command(&broker, "lines", &out, 2000),
            after,
        ));
        let committed = last_commit(&out).map_or(0, |c| c + 1);
        for (name, batches) in logged_batches(&out) {
            assert!(
                batches.iter().all(|&b| b <= committed),
                "{name} is ahead of the checkpoint (last commit {committed} - 1): {batches:?}"
            );
        }
    }
    assert!(
        kills >= 5,
        "only {kills} of 10 runs were still running when killed"
    );

    // 3. A run to the end, then every output equals the fold.
    let last = report_of(
        &stream_command(&broker, "lines", &out, 2000)
            .output()
            .expect("run"),
    );
    eprintln!("{kills} kills; the last run: {last:?}");
    assert_eq!(last.counts.quarantined_total(), 0, "{last:?}");
    let watermark = watermark_s(&last);
    // One hour of lateness behind the last order line (Saturday 23:59 at most).
    assert!(watermark >= START + 6 * 86_400, "watermark {watermark}");
    let expected = fold(&data, watermark);
    let rows = output_rows(&out);
    for name in OUTPUTS {
        assert!(!expected[name].is_empty(), "{name}: the fold is empty");
        assert_eq!(
            rows[name].len(),
            expected[name].len(),
            "{name}: rows after {kills} kills"
        );
        assert_eq!(rows[name], expected[name], "{name} after {kills} kills");
    }
    assert_eq!(rows["raw"].len(), 32_290);
    let committed = last_commit(&out).expect("committed");
    let logged = logged_batches(&out);
    assert_eq!(
        logged["raw"].iter().max().copied(),
        Some(committed),
        "raw has every batch"
    );
}

const ENRICH_JOB: &str = r#"
[job]
name = "enrich"

[params]
brokers = "127.0.0.1:9092"
topic = "lines"
output = "out"
dimensions = "dims"

[source]
brokers = "${brokers}"
topic = "${topic}"

[source.schema]
format = "json"
event_time = "event_time"
fields = [
  { name = "event_time", type = "timestamp", required = true },
  { name = "order_id", type = "int", required = true },
  { name = "product_id", type = "int" },
]

[[input]]
name = "products"
path = "${dimensions}/products.csv"
key = "product_id"
refresh = "0s"

[stream]
trigger = "300ms"

[output]
path = "${output}"
sql = "enrich.sql"
"#;

const ENRICH_SQL: &str = "SELECT e.order_id, e.product_id, p.product_name \
    FROM events e JOIN products p ON p.product_id = e.product_id";

fn line(order: i64, product: Option<i64>) -> String {
    serde_json::json!({
        "event_time": "2017-01-01T10:00:00Z", "order_id": order, "product_id": product,
    })
    .to_string()
}

fn enriched(out: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if !out.exists() {
        return Vec::new();
    }
    rt.block_on(parquet_rows_with(
        &format!("{}/", out.display()),
        &[],
        "SELECT order_id, product_id, product_name FROM t",
    ))
    .unwrap_or_default()
}

#[test]
fn a_lookup_table_changed_while_the_stream_runs_is_joined_after_its_reload_and_misses_are_counted()
{
    let broker = KafkaBroker::start().expect("broker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("job");
    let dims = tmp.path().join("dims");
    std::fs::create_dir_all(&job).expect("job");
    std::fs::create_dir_all(&dims).expect("dims");
    std::fs::write(job.join("job.toml"), ENRICH_JOB).expect("manifest");
    std::fs::write(job.join("enrich.sql"), ENRICH_SQL).expect("sql");
    let products = dims.join("products.csv");
    std::fs::write(&products, "product_id,product_name\n1,tea\n2,milk\n").expect("products");
    let out = tmp.path().join("out");
    // Batch 1: products 1, 2 match; 3 and a NULL do not.
    let first: Vec<(i32, String)> = [
        line(1, Some(1)),
        line(2, Some(2)),
        line(3, Some(3)),
        line(4, None),
    ]
    .map(|l| (0, l))
    .into();
    produce(&broker, "lines", 1, &first);
    let child = Command::new(bin())
        .args(["run"])
        .arg(&job)
        .args(["--format", "json"])
        .args(["--set", &format!("brokers={}", broker.brokers())])
        .args(["--set", &format!("output={}", out.display())])
        .args(["--set", &format!("dimensions={}", dims.display())])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(60), "the first batch", || {
        enriched(&out).len() == 2
    });
    assert_eq!(enriched(&out), ["1|1|tea", "2|2|milk"]);
    // The dimension gains product 3 (a bigger file); the next events see it.
    std::fs::write(
        &products,
        "product_id,product_name\n1,tea\n2,milk\n3,bread\n",
    )
    .expect("products");
    // Give the stream a trigger to see the new file before the events arrive.
    std::thread::sleep(Duration::from_secs(1));
    produce(
        &broker,
        "lines",
        1,
        &[(0, line(5, Some(3))), (0, line(6, Some(9)))],
    );
    wait_until(Duration::from_secs(60), "the second batch", || {
        enriched(&out).len() == 3
    });
    assert_eq!(enriched(&out), ["1|1|tea", "2|2|milk", "5|3|bread"]);
    let report = stop_with_sigterm(child);
    assert_eq!(report.counts.events, 6);
    // Unmatched: 3 and NULL in the first batch, 9 in the second; 3 matched after the reload.
    assert_eq!(
        report.counts.unmatched.get("products"),
        Some(&3),
        "{report:?}"
    );
    assert_eq!(report.counts.rows_written, 3);
    assert_eq!(
        report.counts.rows_by_output.get("out"),
        Some(&3),
        "{report:?}"
    );
}

/// `ember run` of a copy of `jobs/instacart_trends` whose manifest is `edit`ed: exit code and
/// stderr.
fn run_edited(edit: impl Fn(String) -> String, set: &[&str]) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(repo().join(JOB)).expect("job") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        std::fs::copy(&path, tmp.path().join(name)).expect("copy");
    }
    let manifest = tmp.path().join("job.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, edit(text)).expect("write");
    let mut c = Command::new(bin());
    c.arg("run")
        .arg(tmp.path())
        .current_dir(repo())
        .env_remove("RUST_LOG");
    for s in set {
        c.args(["--set", s]);
    }
    let out = c.output().expect("run ember");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn mistakes_in_outputs_and_lookup_tables_are_one_clear_line() {
    // Two outputs with one name: the line of the second's path.
    let (code, err) = run_edited(|t| t.replace("name = \"by_hour\"", "name = \"raw\""), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("job.toml:") && err.contains("output `raw` has the same name as output `raw`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let manifest = std::fs::read_to_string(repo().join(JOB).join("job.toml")).expect("manifest");
    let line_of = |text: &str| {
        manifest
            .lines()
            .position(|l| l.starts_with(text))
            .expect("line")
            + 1
    };
    let path_line = line_of("path = \"${output}/by_hour\"");
    assert!(err.contains(&format!("job.toml:{path_line}:")), "{err}");
    // An output format Ember does not write: the line of that output's format (the one
    // after its path), not the first `format` of the file.
    let (code, err) = run_edited(
        |t| {
            t.replace(
                "path = \"${output}/by_hour\"\nformat = \"${format}\"",
                "path = \"${output}/by_hour\"\nformat = \"orc\"",
            )
        },
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("job.toml:{}:", path_line + 1)) && err.contains("orc"),
        "{err}"
    );
    // A lookup in a format Ember does not read.
    let (code, err) = run_edited(
        |t| {
            t.replace(
                "key = \"product_id\"",
                "key = \"product_id\"\nformat = \"avro\"",
            )
        },
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "[[input]] `products`: format \"avro\" is not one of csv, csv.gz, parquet, delta"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // A lookup file that is not there stops the stream before it reads Kafka, naming it.
    let (code, err) = run_edited(|t| t, &["dimensions=/nonexistent/dims"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("lookup table products (/nonexistent/dims/products.csv.gz)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // A key the lookup table does not have.
    let (code, err) = run_edited(|t| t.replace("key = \"product_id\"", "key = \"sku\""), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("lookup table products")
            && err.contains("key `sku` is not a field of the events"),
        "{err}"
    );
}
