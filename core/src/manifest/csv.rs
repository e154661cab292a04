//! How a CSV input is read: the `csv` table of an `[[input]]`.

use serde::{Deserialize, Serialize};

/// How a CSV input is read. Every column is read as text (Utf8), so that no bad value can fail
/// a run: the job's SQL types the columns and routes what does not parse to the quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// The first line holds column names. Without a header, columns come from the input's
    /// `columns` or are named `column_1`, `column_2`, … (DataFusion's names).
    pub header: bool,
    /// Field separator, one ASCII character.
    pub delimiter: char,
    /// Quote character, one ASCII character.
    pub quote: char,
    /// Escape character inside quoted fields (default: none, quotes are doubled).
    pub escape: Option<char>,
    /// Lines starting with this character are skipped.
    pub comment: Option<char>,
    /// Text encoding (`${param}` allowed), a WHATWG label: `utf-8` (default), `latin1` / `iso-8859-1` (decoded as
    /// windows-1252, its superset, as browsers do), `windows-1252`, `utf-16le`, …
    pub encoding: String,
    /// What a malformed line (wrong number of fields, an unterminated quote, invalid UTF-8)
    /// does (`${param}` allowed): `quarantine` (default), a row with `_corrupt_record` for the
    /// job's SQL to quarantine; `fail`, the run fails naming file and line. See
    /// [`OnMalformed`].
    pub on_malformed: String,
}

impl CsvOptions {
    /// [`CsvOptions::on_malformed`], checked when the job is resolved.
    pub fn malformed(&self) -> OnMalformed {
        OnMalformed::parse(&self.on_malformed).unwrap_or_default()
    }
}

/// What a malformed CSV line does (Spark's `mode` of its CSV reader, with a reason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnMalformed {
    /// A row whose columns are NULL and whose `_corrupt_record` / `_corrupt_reason` hold the
    /// raw text and why (Spark's `PERMISSIVE`, with a reason). The job's SQL must route it (the
    /// run fails instead when no SQL of the job reads `_corrupt_record`).
    #[default]
    Quarantine,
    /// The run fails on the first one, naming file, line and reason (Spark's `FAILFAST`).
    Fail,
}

impl OnMalformed {
    /// `quarantine` or `fail` (trimmed, any case).
    ///
    /// # Errors
    /// Any other text, with the accepted values.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "quarantine" => Ok(Self::Quarantine),
            "fail" => Ok(Self::Fail),
            other => Err(format!(
                "on_malformed = `{other}`: use \"quarantine\" or \"fail\""
            )),
        }
    }
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            header: true,
            delimiter: ',',
            quote: '"',
            escape: None,
            comment: None,
            encoding: "utf-8".to_string(),
            on_malformed: "quarantine".to_string(),
        }
    }
}
