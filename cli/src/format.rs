//! Output formats shared by the commands: a human table, or JSON for scripts.

use clap::ValueEnum;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines and tables.
    Table,
    /// JSON, one document on stdout.
    Json,
}

/// Prints `value` as pretty JSON on stdout.
///
/// # Errors
/// When it cannot be serialized (not expected).
pub fn print_json<T: serde::Serialize>(value: &T) -> crate::error::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::error::Failure::new(ember_core::ErrorKind::Internal, e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// A table with a header row and no borders, as `docker ps` or `kubectl get` print them.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        table.add_row(row);
    }
    table
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Milliseconds as `1.2 s`, `3 min 05 s`, or `-`.
pub fn duration(ms: Option<u64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}
