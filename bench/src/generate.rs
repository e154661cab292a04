//! A deterministic generator of synthetic sales in the Online Retail column layout
//! (`InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country`),
//! so the benchmark scales the real job to any size. Same seed, same bytes.
//!
//! Shape: 4,000 products with fixed prices (2 decimals, a few with 3), invoices of 1–30 lines
//! over 365 days from 2023-01-01, about 2% cancellations (`C` invoices, negative quantities),
//! 25% of rows without a customer id, descriptions with commas quoted. About 1% of rows are
//! dirty, one of each kind the job quarantines: empty stock code, quantity 0 or not a number,
//! missing, non-numeric or negative price, missing or impossible timestamp.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const COUNTRIES: [&str; 8] = [
    "United Kingdom",
    "United Kingdom",
    "United Kingdom",
    "Germany",
    "France",
    "EIRE",
    "Spain",
    "Netherlands",
];
const WORDS: [&str; 12] = [
    "HEART", "LANTERN", "CANDLE", "BAG", "MUG", "CLOCK", "TIN", "BOX", "CARD", "LIGHT", "VINTAGE",
    "GLASS",
];
const PRODUCTS: usize = 4_000;

struct Product {
    code: String,
    description: String,
    price_thousandths: u32,
}

fn products(rng: &mut StdRng) -> Vec<Product> {
    (0..PRODUCTS)
        .map(|i| {
            let suffix = if i % 5 == 0 { "A" } else { "" };
            let a = WORDS[rng.random_range(0..WORDS.len())];
            let b = WORDS[rng.random_range(0..WORDS.len())];
            let description = if i % 7 == 0 {
                format!("{a} {b}, SET OF {}", i % 6 + 2)
            } else {
                format!("{a} {b} {i}")
            };
            // Prices in thousandths; one product in 50 has a third decimal.
            let cents = rng.random_range(10..2_000u32);
            let price_thousandths = cents * 10 + if i % 50 == 0 { 5 } else { 0 };
            Product {
                code: format!("{}{suffix}", 10_000 + i),
                description,
                price_thousandths,
            }
        })
        .collect()
}

fn price(thousandths: u32) -> String {
    if thousandths.is_multiple_of(10) {
        format!("{}.{:02}", thousandths / 1000, (thousandths % 1000) / 10)
    } else {
        format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
    }
}

/// Writes `rows` rows (plus a header) to `path`; returns the bytes written.
///
/// # Errors
/// I/O errors of creating or writing the file.
pub fn generate(path: &Path, rows: u64, seed: u64) -> io::Result<u64> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let catalog = products(&mut rng);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut bytes = 0u64;
    let header =
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";
    out.write_all(header.as_bytes())?;
    bytes += header.len() as u64;
    let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap_or_default();
    let mut written = 0u64;
    let mut invoice = 500_000u64;
    let mut line = String::with_capacity(256);
    while written < rows {
        invoice += 1;
        let lines = rng.random_range(1..=30u64).min(rows - written);
        let cancelled = rng.random_bool(0.02);
        let day = start + chrono::Days::new(written * 365 / rows.max(1));
        let minute = rng.random_range(8 * 60..20 * 60u32);
        let ts = format!("{day} {:02}:{:02}:00", minute / 60, minute % 60);
        let customer = if rng.random_bool(0.75) {
            format!("{}.0", rng.random_range(12_000..18_300u32))
        } else {
            String::new()
        };
        let country = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
        for _ in 0..lines {
            let p = &catalog[rng.random_range(0..PRODUCTS)];
            let mut quantity =
                i64::from(rng.random_range(1..=24u32)) * if rng.random_bool(0.05) { 10 } else { 1 };
            if cancelled {
                quantity = -quantity;
            }
            let inv = if cancelled {
                format!("C{invoice}")
            } else {
                invoice.to_string()
            };
            let (mut code, mut qty, mut ts_text, mut price_text) = (
                p.code.clone(),
                quantity.to_string(),
                ts.clone(),
                price(p.price_thousandths),
            );
            if rng.random_bool(0.01) {
                match rng.random_range(0..8u32) {
                    0 => code.clear(),
                    1 => qty = "0".into(),
                    2 => qty = "x2".into(),
                    3 => price_text.clear(),
                    4 => price_text = "n/a".into(),
                    5 => price_text = format!("-{price_text}"),
                    6 => ts_text.clear(),
                    _ => ts_text = format!("{}-13-45 99:00:00", day.format("%Y")),
                }
            }
            line.clear();
            let description = if p.description.contains(',') {
                format!("\"{}\"", p.description)
            } else {
                p.description.clone()
            };
            line.push_str(&format!(
                "{inv},{code},{description},{qty},{ts_text},{price_text},{customer},{country}\n"
            ));
            out.write_all(line.as_bytes())?;
            bytes += line.len() as u64;
        }
        written += lines;
    }
    out.flush()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_about_one_percent_dirty() {
        let dir = std::env::temp_dir().join(format!("ember-gen-{}", std::process::id()));
        let (a, b) = (dir.join("a.csv"), dir.join("b.csv"));
        generate(&a, 20_000, 7).expect("generate a");
        generate(&b, 20_000, 7).expect("generate b");
        let text = std::fs::read_to_string(&a).expect("read");
        assert_eq!(text, std::fs::read_to_string(&b).expect("read"));
        assert_eq!(text.lines().count(), 20_001);
        // Three of the eight kinds of dirt are easy to spot: 1% × 3/8 of 20,000 ≈ 75 rows.
        let dirty = text
            .lines()
            .filter(|l| l.contains(",x2,") || l.contains(",n/a,") || l.contains("-13-45 "))
            .count();
        assert!(
            (40..=120).contains(&dirty),
            "about 75 spotted dirty rows, got {dirty}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
