//! Two versions of the same input for tests that must tell an old output from a new one: three
//! days of real Online Retail data (`data/online_retail_by_day/`), as recorded (`x`) and with
//! every quantity doubled (`y`), so that every partition's totals differ between them.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::reference::{Fold, show};

/// The three days both versions hold.
pub const DAYS: [&str; 3] = ["2011-12-07", "2011-12-08", "2011-12-09"];

/// The header of the Online Retail layout.
const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";

/// Two input folders of plain CSV (`<day>.csv` for each of [`DAYS`], plus `bad.csv` with one
/// rejected row, a negative price on the first day, so the quarantine is written too), and the
/// job folded independently over each.
pub struct Inputs {
    /// The days as recorded.
    pub x: PathBuf,
    /// The same rows, quantities doubled.
    pub y: PathBuf,
    /// The job's output of `x`, folded by [`Fold`].
    pub fold_x: Fold,
    /// The job's output of `y`, folded by [`Fold`].
    pub fold_y: Fold,
}

/// Writes [`Inputs`] into `dir/x/` and `dir/y/`, from the repository's by-day files.
///
/// # Panics
/// When a file cannot be read or written (a test setup failure).
pub fn inputs(dir: &Path) -> Inputs {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (x, y) = (dir.join("x"), dir.join("y"));
    for folder in [&x, &y] {
        std::fs::create_dir_all(folder).expect("input folder");
    }
    for day in DAYS {
        let source = repo.join(format!("data/online_retail_by_day/{day}.csv.gz"));
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&source).expect("day")),
            &mut text,
        )
        .expect("gunzip");
        std::fs::write(x.join(format!("{day}.csv")), &text).expect("x file");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut writer = csv::Writer::from_path(y.join(format!("{day}.csv"))).expect("y file");
        writer
            .write_record(reader.headers().expect("header"))
            .expect("write header");
        for row in reader.records() {
            let mut row: Vec<String> = row.expect("row").iter().map(str::to_string).collect();
            if let Ok(q) = row[3].trim().parse::<i64>() {
                row[3] = (q * 2).to_string();
            }
            writer.write_record(&row).expect("write row");
        }
        writer.flush().expect("flush");
    }
    for (folder, tag) in [(&x, "X"), (&y, "Y")] {
        let mut bad = std::fs::File::create(folder.join("bad.csv")).expect("bad rows");
        writeln!(
            bad,
            "{HEADER}\n99999,BAD{tag},Adjust,1,{} 10:00:00,-1.00,,UK",
            DAYS[0]
        )
        .expect("write bad row");
    }
    Inputs {
        fold_x: fold(&x),
        fold_y: fold(&y),
        x,
        y,
    }
}

/// Every file of `folder`, folded in name order.
fn fold(folder: &Path) -> Fold {
    let mut fold = Fold::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        fold.add_file(&f);
    }
    fold
}

/// `rows|Σ net` as the fold gives them: what `SELECT count(*), sum(net_revenue)` over the
/// output reads.
pub fn expected(fold: &Fold) -> String {
    format!("{}|{}", fold.rows(), show(fold.net()))
}
