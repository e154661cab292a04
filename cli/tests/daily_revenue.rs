//! The daily revenue job on the full Online Retail file (541,909 rows), reconciled day by day
//! with an independent computation (`ember_testkit::reference`: a plain Rust fold over the CSV,
//! integer arithmetic in 1/10,000 of a currency unit), not the job's SQL. One test body, two cases, as
//! Ballista's `context_checks.rs`: `ember run` (embedded) and `ember submit --wait` to a real
//! scheduler with 2 executors on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ember_core::api::{JobDetail, JobState};
use ember_core::report::RunReport;
use ember_testkit::ember::{ClusterOptions, EmberCluster};
use ember_testkit::query::parquet_rows;
use ember_testkit::reference::{Fold, show};
use rstest::rstest;

const JOB: &str = "jobs/daily_revenue_by_product";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn online_retail() -> PathBuf {
    repo().join("data/online_retail.csv.gz")
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ember"));
    command
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG");
    command
}

fn ember(args: &[&str]) -> Output {
    command(args).output().expect("run ember")
}

/// Where the job runs.
enum Mode {
    Embedded,
    Cluster,
}

/// Runs the job on `input` into `output` in `mode`; its report.
fn run_job(mode: &Mode, input: &Path, output: &Path) -> RunReport {
    let input = format!("input={}", input.display());
    let output = format!("output={}", output.display());
    match mode {
        Mode::Embedded => {
            // A temporary folder of the run's own: it leaves nothing there (shuffle files).
            let tmp = tempfile::tempdir().expect("a temporary folder");
            let out = command(&[
                "run",
                JOB,
                "--set",
                &input,
                "--set",
                &output,
                "--parallelism",
                "2",
                "--format",
                "json",
            ])
            .env("TMPDIR", tmp.path())
            .output()
            .expect("run ember");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let left: Vec<_> = std::fs::read_dir(tmp.path())
                .expect("the temporary folder")
                .map(|e| e.expect("an entry").file_name())
                .collect();
            assert!(left.is_empty(), "the run left {left:?} in its TMPDIR");
            serde_json::from_slice(&out.stdout).expect("the run's report")
        }
        Mode::Cluster => {
            let bin = Path::new(env!("CARGO_BIN_EXE_ember"));
            let cluster = EmberCluster::start(bin, 2, &ClusterOptions::default()).expect("cluster");
            let out = ember(&[
                "submit",
                JOB,
                "--scheduler",
                cluster.address(),
                "--set",
                &input,
                "--set",
                &output,
                "--wait",
                "--format",
                "json",
            ]);
            let detail: JobDetail = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "submit --wait printed no job ({e}): {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    cluster.logs()
                )
            });
            assert_eq!(
                (detail.summary.state, out.status.code()),
                (JobState::Succeeded, Some(0)),
                "{:?}\n{}",
                detail.summary.error,
                cluster.logs()
            );
            detail.report.expect("a succeeded job has a report")
        }
    }
}

/// Rows of `sql` over table `t`, the output read back by a plain DataFusion context.
async fn query_parquet(dir: &Path, sql: &str) -> Vec<String> {
    parquet_rows(&dir.display().to_string(), sql)
        .await
        .expect("read the output")
}

#[rstest]
#[case::embedded(Mode::Embedded)]
#[case::cluster(Mode::Cluster)]
fn online_retail_reconciles_day_by_day(#[case] mode: Mode) {
    ember_core::threads::block_on(async {
        // The independent fold.
        let mut fold = Fold::default();
        fold.add_file(&online_retail());
        let (read, invalid, days) = (fold.read, fold.invalid, &fold.days);
        assert_eq!(read, 541_909, "the dataset's documented row count");
        assert_eq!(days.len(), 305, "the dataset's documented number of days");

        // The job.
        let tmp = tempfile::tempdir().expect("tempdir");
        let output = tmp.path().join("out");
        let report = run_job(&mode, &online_retail(), &output);
        assert_eq!(report.rows.read, Some(read));
        assert_eq!(report.rows.quarantined, invalid);
        assert_eq!(report.rows.valid, Some(read - invalid));
        assert_eq!(report.partitions.written.len(), 305);
        let read: Vec<&String> = report.inputs.iter().flat_map(|i| &i.read).collect();
        assert!(
            read.len() == 1 && read[0].ends_with("/data/online_retail.csv.gz"),
            "the report names the one file read: {read:?}"
        );

        let expected: Vec<String> = days
            .iter()
            .map(|(date, d)| {
                format!(
                    "{date}|{}|{}|{}|{}|{}|{}|{}",
                    d.products.len(),
                    d.units_sold,
                    d.units_returned,
                    show(d.gross),
                    show(d.returns),
                    show(d.gross - d.returns),
                    d.product_orders.len()
                )
            })
            .collect();
        let actual = query_parquet(
            &output,
            "SELECT order_date, count(*), sum(units_sold), sum(units_returned), sum(gross_revenue), \
             sum(returns_value), sum(net_revenue), sum(orders) FROM t GROUP BY order_date",
        )
        .await;
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(&expected) {
            assert_eq!(a, e, "day totals differ (job | fold)");
        }
        assert_eq!(
            u64::try_from(days.values().map(|d| d.products.len()).sum::<usize>()).ok(),
            Some(report.rows.written)
        );
        // Every row's product name, by the documented rule (the name most of the day's sale
        // orders give the product).
        let names = query_parquet(
            &output,
            "SELECT order_date, product_id, coalesce(product_name, '<null>') FROM t",
        )
        .await;
        let expected_names: Vec<String> = days
            .iter()
            .flat_map(|(date, d)| {
                let mut rows: Vec<String> = d
                    .products
                    .iter()
                    .map(|p| {
                        let name = d.product_name(p).unwrap_or_else(|| "<null>".into());
                        format!("{date}|{p}|{name}")
                    })
                    .collect();
                rows.sort();
                rows
            })
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names.len(), expected_names.len());
        for (a, e) in names.iter().zip(&expected_names) {
            assert_eq!(a, e, "product names differ (job | fold)");
        }
        // Over the year, the name most days with sales give three best sellers is their
        // catalogue name, not the adjustment notes max(Description) picked ("faulty",
        // "wrongly marked carton 22804", "website fixed").
        let by_days = query_parquet(
            &output,
            "SELECT product_id, product_name, count(*) AS days FROM t \
             WHERE product_id IN ('22423', '85123A', '23084') AND units_sold > 0 \
             GROUP BY product_id, product_name",
        )
        .await;
        // (rows come back sorted as text: pick each product's highest count here)
        let mut best: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        for row in &by_days {
            let mut cells = row.split('|');
            let (product, name) = (cells.next().unwrap_or(""), cells.next().unwrap_or(""));
            let days: u64 = cells.next().and_then(|d| d.parse().ok()).unwrap_or(0);
            let entry = best.entry(product).or_insert((0, name));
            if days > entry.0 || (days == entry.0 && name < entry.1) {
                *entry = (days, name);
            }
        }
        let top: Vec<String> = best
            .iter()
            .map(|(product, (_, name))| format!("{product}|{name}"))
            .collect();
        assert_eq!(
            top,
            [
                "22423|REGENCY CAKESTAND 3 TIER",
                "23084|RABBIT NIGHT LIGHT",
                "85123A|WHITE HANGING HEART T-LIGHT HOLDER"
            ],
            "{by_days:?}"
        );

        // SOURCE.md: Σ Quantity × UnitPrice over all rows = 9,747,747.93 (rounded to cents; some
        // prices have 3 decimals). The job quarantines the two "Adjust bad debt" rows (1 ×
        // -11,062.06 each), so its net revenue, rounded to cents, is that sum plus 22,124.12.
        assert_eq!(
            query_parquet(
                &output,
                "SELECT CAST(round(sum(net_revenue), 2) AS DECIMAL(18, 2)) FROM t"
            )
            .await,
            ["9769872.05"]
        );
        assert_eq!(
            report.quarantined_by_reason.get("negative_unit_price"),
            Some(&2)
        );
    })
}
