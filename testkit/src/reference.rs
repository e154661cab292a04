//! The daily revenue job computed independently of Ember: a plain Rust fold over the CSV (the
//! `csv` crate, integer arithmetic in 1/10,000 of a currency unit), not the job's SQL. Tests
//! compare what Ember wrote, and what independent readers see of it, with this.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

/// Money in 1/10,000 units (the job's Decimal(18,4) scale).
pub type Money = i128;

/// One day of the job's output, folded over the input's valid rows.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Day {
    /// Products sold or returned that day (the output's rows that day).
    pub products: HashSet<String>,
    /// Σ quantity of the sales.
    pub units_sold: i64,
    /// Σ −quantity of the returns.
    pub units_returned: i64,
    /// Σ quantity × price of the sales.
    pub gross: Money,
    /// Σ −quantity × price of the returns.
    pub returns: Money,
    /// (product, order) pairs with a quantity > 0 line: Σ orders over the day's products.
    pub product_orders: HashSet<(String, String)>,
    /// Per product, per order: the largest trimmed Description of its lines (None when all
    /// are blank) and whether it has a quantity > 0 line.
    pub orders_by_product: HashMap<String, HashMap<String, (Option<String>, bool)>>,
}

impl Day {
    /// Net revenue: gross − returns.
    pub fn net(&self) -> Money {
        self.gross - self.returns
    }

    /// The job's `product_name` of `product` that day, by its documented rule: the name most
    /// of the day's orders give it, counting sale orders only when there is one; a tie goes to
    /// the smallest name (bytes); None when no order names it.
    pub fn product_name(&self, product: &str) -> Option<String> {
        let orders = self.orders_by_product.get(product)?;
        let any_sale = orders.values().any(|(name, sale)| *sale && name.is_some());
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (name, sale) in orders.values() {
            if let Some(name) = name
                && (*sale || !any_sale)
            {
                *counts.entry(name).or_default() += 1;
            }
        }
        let top = counts.values().copied().max()?;
        counts
            .into_iter()
            .find(|(_, n)| *n == top)
            .map(|(name, _)| name.to_string())
    }
}

/// `"2.55"` → 25_500; None unless a plain decimal with at most 4 decimal places.
pub fn money(text: &str) -> Option<Money> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || frac.len() > 4
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int: Money = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: Money = format!("{frac:0<4}").parse().ok()?;
    let value = int * 10_000 + frac;
    Some(if negative { -value } else { value })
}

/// `m` as the job's Decimal(18,4) prints: `-11062.0600`.
pub fn show(m: Money) -> String {
    let sign = if m < 0 { "-" } else { "" };
    format!("{sign}{}.{:04}", m.abs() / 10_000, m.abs() % 10_000)
}

/// The job's validity rules, restated in Rust: (date, product, order, quantity, price) for a
/// valid row.
pub fn valid(row: &csv::StringRecord) -> Option<(String, String, String, i64, Money)> {
    let product = row.get(1)?.trim();
    let quantity: i64 = row.get(3)?.trim().parse().ok()?;
    let price = money(row.get(5)?.trim())?;
    let ts = chrono::NaiveDateTime::parse_from_str(row.get(4)?.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    if product.is_empty() || quantity == 0 || price < 0 {
        return None;
    }
    Some((
        ts.date().to_string(),
        product.to_string(),
        row.get(0)?.trim().to_string(),
        quantity,
        price,
    ))
}

/// What the fold saw: rows read, rows the job quarantines, the days.
#[derive(Debug, Default)]
pub struct Fold {
    /// Rows read.
    pub read: u64,
    /// Rows the job's rules reject.
    pub invalid: u64,
    /// The output, by day (`YYYY-MM-DD`).
    pub days: BTreeMap<String, Day>,
}

impl Fold {
    /// Folds the rows of a CSV text in the Online Retail layout into `self`.
    ///
    /// # Panics
    /// On a row the `csv` crate cannot read (the test data has none).
    pub fn add_text(&mut self, text: &str) {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        for row in reader.records() {
            let row = row.expect("csv row");
            self.read += 1;
            let Some((date, product, order, quantity, price)) = valid(&row) else {
                self.invalid += 1;
                continue;
            };
            let day = self.days.entry(date).or_default();
            day.products.insert(product.clone());
            let name = row
                .get(2)
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string);
            let order_entry = day
                .orders_by_product
                .entry(product.clone())
                .or_default()
                .entry(order.clone())
                .or_default();
            order_entry.0 = order_entry.0.take().max(name);
            order_entry.1 |= quantity > 0;
            if quantity > 0 {
                day.units_sold += quantity;
                day.gross += Money::from(quantity) * price;
                day.product_orders.insert((product, order));
            } else {
                day.units_returned += -quantity;
                day.returns += Money::from(-quantity) * price;
            }
        }
    }

    /// Folds a CSV or CSV.gz file into `self`.
    ///
    /// # Panics
    /// When the file cannot be read.
    pub fn add_file(&mut self, path: &Path) {
        let bytes = std::fs::read(path).expect("read the input");
        let mut text = String::new();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_string(&mut text)
                .expect("gunzip");
        } else {
            text = String::from_utf8(bytes).expect("UTF-8");
        }
        self.add_text(&text);
    }

    /// The output's rows (one per day and product).
    pub fn rows(&self) -> u64 {
        self.days.values().map(|d| d.products.len() as u64).sum()
    }

    /// Σ net revenue.
    pub fn net(&self) -> Money {
        self.days.values().map(Day::net).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parsing_of_the_fold() {
        assert_eq!(money("2.55"), Some(25_500));
        assert_eq!(money("-11062.06"), Some(-110_620_600));
        assert_eq!(money("0.001"), Some(10));
        assert_eq!(money(".5"), Some(5_000));
        assert_eq!(money("1.23456"), None);
        assert_eq!(money("1.2.3"), None);
        assert_eq!(money(""), None);
        assert_eq!(show(-110_620_600), "-11062.0600");
    }
}
