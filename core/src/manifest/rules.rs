//! The manifest's rules, shared by `JobManifest` (which points at the manifest's line) and
//! `Job::validate` (which checks a job a server received).

use std::collections::BTreeSet;

use super::database::is_identifier;

pub(super) fn job_name(name: &str) -> Result<(), &'static str> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err("job name must be letters, digits and _")
    }
}

/// Table names: identifiers, none twice (case-insensitive). The error gives the index of
/// the offending name.
pub(super) fn tables<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), (usize, String)> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.enumerate() {
        if !is_identifier(name) {
            return Err((i, "table names must be letters, digits and _".into()));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err((i, format!("table `{name}` is defined twice")));
        }
    }
    Ok(())
}

pub(super) fn input(
    optional: bool,
    columns: &[String],
    delimiter: char,
    quote: char,
) -> Result<(), String> {
    if optional && columns.is_empty() {
        return Err("an optional input needs `columns` (the schema of the empty table used when its path is empty)".into());
    }
    for (what, c) in [("delimiter", delimiter), ("quote", quote)] {
        if !c.is_ascii() {
            return Err(format!("csv {what} must be one ASCII character"));
        }
    }
    Ok(())
}

pub(super) fn check_table<'a>(
    mut tables: impl Iterator<Item = &'a str>,
    table: &str,
) -> Result<(), String> {
    if tables.any(|t| t.eq_ignore_ascii_case(table)) {
        Ok(())
    } else {
        Err(format!(
            "checks name table `{table}`, which is not an input or view"
        ))
    }
}
