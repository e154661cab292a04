//! DuckDB peers of the daily revenue job (the venv's `duckdb`, 2 threads), and the fingerprint
//! every peer's output must match before its time counts.
//!
//! - `duckdb`: the job's rules *and* guarantees: the CSV read once as text and typed once into
//!   a temp table with each row's `reason` (the rules of `checked_sales.sql`, first match
//!   wins); the quarantine written as Parquet partitioned by `order_date` with its reason; the
//!   broken CSV lines kept in DuckDB's reject tables (`store_rejects`) and written with their
//!   line, text and error; the output (the two-level aggregation of `daily_revenue.sql`, the product name by
//!   `most_frequent`'s rules) as Parquet partitioned by `order_date`; rows read, valid and
//!   quarantined counted from the temp table and reconciled.
//! - `duckdb-output-only`: the output alone, typed inline, no quarantine and no counts.

use std::path::Path;
use std::process::Command;

/// `duck.py INPUT OUT THREADS MODE` (MODE `full` or `output-only`) prints
/// `read valid quarantined` (full) or nothing.
const SCRIPT: &str = r#"
import duckdb, os, sys
src, out, threads, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute(f"SET threads={threads}")
con.execute("SET preserve_insertion_order=false")
# Broken lines go to DuckDB's reject tables in the guaranteed run (as Ember quarantines them).
rejects = ", store_rejects=true" if mode == "full" else ""
typed = f"""
WITH raw AS (SELECT * FROM read_csv('{src}', header=true, all_varchar=true, delim=',', quote='"'{rejects})),
typed AS (SELECT *,
    nullif(trim(InvoiceNo), '') AS order_id,
    try_strptime(InvoiceDate, '%Y-%m-%d %H:%M:%S') AS order_ts,
    nullif(trim(StockCode), '') AS product_id,
    nullif(trim(Quantity), '') AS quantity_text,
    CASE WHEN regexp_full_match(trim(Quantity), '[+-]?[0-9]+') THEN try_cast(trim(Quantity) AS BIGINT) END AS qty,
    nullif(trim(UnitPrice), '') AS unit_price_text,
    try_cast(trim(UnitPrice) AS DECIMAL(18, 4)) AS price,
    nullif(regexp_replace(trim(CustomerID), '\.0+$', ''), '') AS customer_id,
    nullif(trim(Country), '') AS country_name,
    nullif(trim(Description), '') AS name
  FROM raw)
-- As Ember's checked_sales: the original text fields kept for rejected rows only.
SELECT CASE WHEN reason IS NOT NULL THEN InvoiceNo END AS InvoiceNo,
  CASE WHEN reason IS NOT NULL THEN StockCode END AS StockCode,
  CASE WHEN reason IS NOT NULL THEN Description END AS Description,
  CASE WHEN reason IS NOT NULL THEN Quantity END AS Quantity,
  CASE WHEN reason IS NOT NULL THEN InvoiceDate END AS InvoiceDate,
  CASE WHEN reason IS NOT NULL THEN UnitPrice END AS UnitPrice,
  CASE WHEN reason IS NOT NULL THEN CustomerID END AS CustomerID,
  CASE WHEN reason IS NOT NULL THEN Country END AS Country,
  order_id, order_ts, product_id, qty, price, customer_id, country_name, name, reason
FROM (SELECT *,
  CASE
    WHEN product_id IS NULL THEN 'missing_product_id'
    WHEN quantity_text IS NULL THEN 'missing_quantity'
    WHEN qty IS NULL THEN 'quantity_not_integer'
    WHEN qty = 0 THEN 'zero_quantity'
    WHEN unit_price_text IS NULL THEN 'missing_unit_price'
    WHEN price IS NULL THEN 'unit_price_not_number'
    WHEN strpos(unit_price_text, '.') > 0
         AND length(unit_price_text) - strpos(unit_price_text, '.') > 4 THEN 'unit_price_too_precise'
    WHEN price < 0 THEN 'negative_unit_price'
    WHEN nullif(trim(InvoiceDate), '') IS NULL THEN 'missing_order_ts'
    WHEN order_ts IS NULL THEN 'bad_order_ts'
  END AS reason
FROM typed)"""
def output(checked):
    return f"""
WITH per_order AS (
  SELECT CAST(order_ts AS DATE) AS order_date, product_id, order_id,
    max(name) AS product_name,
    sum(CASE WHEN qty > 0 THEN qty ELSE 0 END) AS units_sold,
    sum(CASE WHEN qty < 0 THEN -qty ELSE 0 END) AS units_returned,
    sum(CASE WHEN qty > 0 THEN qty * price ELSE 0 END) AS gross_revenue,
    sum(CASE WHEN qty < 0 THEN -qty * price ELSE 0 END) AS returns_value
  FROM {checked} WHERE reason IS NULL GROUP BY ALL),
names AS (
  SELECT order_date, product_id, product_name,
    count(*) FILTER (WHERE units_sold > 0) AS preferred, count(*) AS n
  FROM per_order WHERE product_name IS NOT NULL GROUP BY ALL),
has_preferred AS (
  SELECT order_date, product_id, max(preferred) > 0 AS any_preferred FROM names GROUP BY ALL),
scored AS (
  SELECT n.order_date, n.product_id, n.product_name,
    CASE WHEN h.any_preferred THEN n.preferred ELSE n.n END AS score
  FROM names n JOIN has_preferred h USING (order_date, product_id)),
top AS (
  SELECT order_date, product_id, max(score) AS top FROM scored GROUP BY ALL),
best AS (
  SELECT s.order_date, s.product_id, min(s.product_name) AS product_name
  FROM scored s JOIN top t USING (order_date, product_id)
  WHERE s.score = t.top AND s.score > 0 GROUP BY ALL),
totals AS (
  SELECT order_date, product_id,
    CAST(sum(units_sold) AS BIGINT) AS units_sold,
    CAST(sum(units_returned) AS BIGINT) AS units_returned,
    CAST(sum(gross_revenue) AS DECIMAL(18, 4)) AS gross_revenue,
    CAST(sum(returns_value) AS DECIMAL(18, 4)) AS returns_value,
    CAST(sum(gross_revenue) - sum(returns_value) AS DECIMAL(18, 4)) AS net_revenue,
    count(order_id) FILTER (WHERE units_sold > 0) AS orders
  FROM per_order GROUP BY ALL)
SELECT t.product_id, b.product_name, CAST(NULL AS VARCHAR) AS category, t.units_sold,
  t.units_returned, t.gross_revenue, t.returns_value, t.net_revenue, t.orders, t.order_date
FROM totals t LEFT JOIN best b USING (order_date, product_id)"""
if mode == "full":
    con.execute(f"CREATE TEMP TABLE checked AS {typed}")
    con.execute(f"""COPY (SELECT InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
        CustomerID, Country, reason, CAST(order_ts AS DATE) AS order_date
        FROM checked WHERE reason IS NOT NULL)
        TO '{out}/_quarantine' (FORMAT parquet, PARTITION_BY (order_date), OVERWRITE_OR_IGNORE)""")
    con.execute(f"""COPY (SELECT line AS source_line, csv_line AS raw_line, error_message AS malformed
        FROM reject_errors) TO '{out}/_malformed.parquet' (FORMAT parquet)""")
    con.execute(f"COPY ({output('checked')}) TO '{out}' (FORMAT parquet, PARTITION_BY (order_date), OVERWRITE_OR_IGNORE)")
    read, valid, quarantined = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE reason IS NULL), count(*) FILTER (WHERE reason IS NOT NULL) FROM checked").fetchone()
    malformed = con.execute("SELECT count(*) FROM reject_errors").fetchone()[0]
    read, quarantined = read + malformed, quarantined + malformed
    back = con.execute(f"SELECT count(*) FROM read_parquet('{out}/_quarantine/*/*.parquet')").fetchone()[0]
    back += con.execute(f"SELECT count(*) FROM read_parquet('{out}/_malformed.parquet')").fetchone()[0]
    if read != valid + quarantined or back != quarantined:
        sys.exit(f"counts do not reconcile: read {read}, valid {valid}, quarantined {quarantined}, read back {back}")
    print(read, valid, quarantined)
else:
    con.execute(f"COPY ({output('(' + typed + ')')}) TO '{out}' (FORMAT parquet, PARTITION_BY (order_date), OVERWRITE_OR_IGNORE)")
"#;

/// What every peer's output must agree on: rows, sums of the measures, and a hash of every
/// row's (order_date, product_id, product_name, net_revenue), read by DuckDB.
const FINGERPRINT: &str = r#"
import duckdb, sys
con = duckdb.connect()
print(con.execute(f"""SELECT count(*), CAST(sum(units_sold) AS BIGINT),
    CAST(sum(units_returned) AS BIGINT), CAST(sum(orders) AS BIGINT),
    CAST(sum(net_revenue) AS VARCHAR),
    sum(hash(CAST(order_date AS VARCHAR) || '|' || product_id || '|' || coalesce(product_name, '') || '|' || CAST(net_revenue AS VARCHAR)))
  FROM read_parquet('{sys.argv[1]}/order_date=*/*.parquet', hive_partitioning=true)""").fetchone())
"#;

/// The scripts, written once into a scratch folder.
pub struct Duck {
    python: std::path::PathBuf,
    script: std::path::PathBuf,
    fingerprint: std::path::PathBuf,
}

impl Duck {
    /// Writes the scripts into `dir`.
    ///
    /// # Errors
    /// The venv's Python is missing, or `dir` cannot be written.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let script = dir.join("duck_daily.py");
        let fingerprint = dir.join("fingerprint.py");
        std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
        std::fs::write(&fingerprint, FINGERPRINT).map_err(|e| e.to_string())?;
        Ok(Self {
            python: ember_testkit::util::python()?,
            script,
            fingerprint,
        })
    }

    /// The command of a DuckDB peer (`full` or `output-only`) on 2 threads.
    pub fn command(&self, input: &Path, out: &Path, mode: &str) -> Command {
        let mut c = Command::new(&self.python);
        c.arg(&self.script).arg(input).arg(out).arg("2").arg(mode);
        c
    }

    /// The fingerprint of the output in `out`.
    ///
    /// # Errors
    /// DuckDB cannot read the output.
    pub fn fingerprint(&self, out: &Path) -> Result<String, String> {
        let said = Command::new(&self.python)
            .arg(&self.fingerprint)
            .arg(out)
            .output()
            .map_err(|e| e.to_string())?;
        if !said.status.success() {
            return Err(format!(
                "fingerprint of {}: {}",
                out.display(),
                String::from_utf8_lossy(&said.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&said.stdout).trim().to_string())
    }
}
