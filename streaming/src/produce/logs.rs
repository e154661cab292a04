//! `ember produce --log-lines DIR`: writes application log files into a folder, as the log
//! generator of seed 002 (`generate_logs.py`) does for Flume's spooling directory, so that a
//! `files` stream (`jobs/app_logs`) has something to collect.
//!
//! Each line is `YYYY-MM-DD HH:MM:SS.mmm [LEVEL] [Service] message`, stamped with the wall
//! clock (UTC) when it is written: levels INFO 70 %, WARN 20 %, ERROR 10 %; services
//! TransactionService, PaymentService, InventoryService, NotificationService; messages about
//! orders, customers, products and amounts. One ERROR line in five is followed by a Java stack
//! frame line (`\tat com.shop…`), as services log them: such a line has no time or level, and
//! the job quarantines it (`malformed_line`). A file is written under a hidden name
//! (`.NAME.tmp`) and renamed `ecommerce_app_YYYYMMDD_HHMMSS_NNNNNN.log` once it holds
//! `lines_per_file` lines (log rotation), so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::error::Result;

/// What to write, where, how fast.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The folder the finished files are renamed into (created when missing).
    pub dir: PathBuf,
    /// Log lines per file (stack frame lines not counted).
    pub lines_per_file: u64,
    /// Lines per second; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this many log lines (stack frame lines not counted; the last file may be
    /// shorter).
    pub limit: u64,
    /// Random seed of the lines' content.
    pub seed: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogsWritten {
    /// Log lines written.
    pub entries: u64,
    /// Lines written, stack frame lines included.
    pub lines: u64,
    /// Files renamed into the folder.
    pub files: u64,
    /// Wall time, ms.
    pub duration_ms: u64,
}

const SERVICES: [&str; 4] = [
    "TransactionService",
    "PaymentService",
    "InventoryService",
    "NotificationService",
];

fn io(path: &Path, e: impl std::fmt::Display) -> crate::error::Error {
    ember_core::Error::storage(path.display().to_string(), e).into()
}

/// One log line (without its newline) stamped `now`, and whether a stack frame line follows
/// it.
fn line(rng: &mut rand::rngs::StdRng, now: chrono::DateTime<chrono::Utc>) -> (String, bool) {
    let roll: f64 = rng.random();
    let level = if roll < 0.7 {
        "INFO"
    } else if roll < 0.9 {
        "WARN"
    } else {
        "ERROR"
    };
    let service = SERVICES[rng.random_range(0..SERVICES.len())];
    let order = rng.random_range(10_000..99_999);
    let customer = rng.random_range(12_346..18_288);
    let product = rng.random_range(20_000..90_000);
    let cents = rng.random_range(100..50_000);
    let message = match (level, service) {
        ("ERROR", "PaymentService") => {
            format!("Payment declined for customer #{customer}: Insufficient funds")
        }
        ("ERROR", _) => format!("Order #TXN{order} failed: timeout calling {service}"),
        ("WARN", "InventoryService") => format!(
            "Low stock alert for product #{product}: {} units remaining",
            rng.random_range(0..5)
        ),
        ("WARN", _) => format!(
            "Slow response for order #TXN{order}: {} ms",
            rng.random_range(500..3000)
        ),
        (_, "PaymentService") => format!(
            "Payment authorized for customer #{customer}: ${}.{:02}",
            cents / 100,
            cents % 100
        ),
        (_, "InventoryService") => format!(
            "Stock updated for product #{product}: -{} units",
            rng.random_range(1..12)
        ),
        (_, "NotificationService") => {
            format!("Order confirmation sent to customer #{customer}")
        }
        _ => format!("Processing order #TXN{order}"),
    };
    let text = format!(
        "{} [{level}] [{service}] {message}",
        now.format("%Y-%m-%d %H:%M:%S%.3f")
    );
    (text, level == "ERROR" && rng.random_bool(0.2))
}

/// Writes log files into `options.dir`.
///
/// # Errors
/// [`ember_core::Error::Storage`] naming the file that cannot be written or renamed.
pub fn write_logs(options: &LogOptions) -> Result<LogsWritten> {
    let started = Instant::now();
    std::fs::create_dir_all(&options.dir).map_err(|e| io(&options.dir, e))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let mut written = LogsWritten {
        entries: 0,
        lines: 0,
        files: 0,
        duration_ms: 0,
    };
    while written.entries < options.limit {
        let now = chrono::Utc::now();
        let name = format!(
            "ecommerce_app_{}_{:06}.log",
            now.format("%Y%m%d_%H%M%S"),
            written.files + 1
        );
        let part = options.dir.join(format!(".{name}.tmp"));
        let file = std::fs::File::create(&part).map_err(|e| io(&part, e))?;
        let mut out = std::io::BufWriter::new(file);
        let mut in_file = 0;
        while in_file < options.lines_per_file && written.entries < options.limit {
            if let Some(rate) = options.rate {
                #[allow(clippy::cast_precision_loss)]
                let due = Duration::from_secs_f64(written.entries as f64 / rate);
                let elapsed = started.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
            let (text, frame) = line(&mut rng, chrono::Utc::now());
            writeln!(out, "{text}").map_err(|e| io(&part, e))?;
            if frame {
                writeln!(
                    out,
                    "\tat com.shop.payment.Gateway.charge(Gateway.java:{})",
                    rng.random_range(40..400)
                )
                .map_err(|e| io(&part, e))?;
                written.lines += 1;
            }
            written.lines += 1;
            written.entries += 1;
            in_file += 1;
        }
        out.flush().map_err(|e| io(&part, e))?;
        drop(out);
        let done = options.dir.join(&name);
        std::fs::rename(&part, &done).map_err(|e| io(&done, e))?;
        written.files += 1;
    }
    written.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_appear_whole_with_the_lines_asked_for() {
        let tmp = tempfile::tempdir().expect("tmp");
        let written = write_logs(&LogOptions {
            dir: tmp.path().join("incoming"),
            lines_per_file: 40,
            rate: None,
            limit: 100,
            seed: 7,
        })
        .expect("write");
        let mut names: Vec<String> = std::fs::read_dir(tmp.path().join("incoming"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(written.files, 3);
        assert_eq!(names.len(), 3, "{names:?}: no .tmp left");
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("ecommerce_app_") && n.ends_with(".log"))
        );
        let text: String = names
            .iter()
            .map(|n| std::fs::read_to_string(tmp.path().join("incoming").join(n)).expect("read"))
            .collect();
        assert_eq!(text.lines().count() as u64, written.lines);
        let pattern = regex::Regex::new(
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(INFO|WARN|ERROR)\] \[\w+\] .+$",
        )
        .expect("pattern");
        let frames = text.lines().filter(|l| l.starts_with("\tat ")).count();
        let logged = text.lines().filter(|l| pattern.is_match(l)).count();
        assert_eq!(logged + frames, text.lines().count());
        assert_eq!(
            (logged as u64, written.entries),
            (100, 100),
            "the limit counts log lines"
        );
    }
}
