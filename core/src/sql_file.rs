//! SQL files of a job: read, rendered with the job's parameters, and able to turn a DataFusion
//! error about their text into `file:line:column: message`.

use std::path::{Path, PathBuf};

use datafusion::error::DataFusionError;

use crate::error::{Error, Location, Result, one_line};
use crate::params::Params;

/// One SQL statement from a file of a job, parameters substituted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SqlFile {
    /// What the statement defines (a view's name, `output`, `quarantine`).
    pub name: String,
    /// The file, as resolved against the manifest's folder.
    pub path: PathBuf,
    /// The statement with `${…}` substituted. Line numbers are those of the file.
    pub text: String,
}

impl SqlFile {
    /// Reads `path` and substitutes parameters.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::UndefinedReference`] for an
    /// undeclared `${name}` (with its line and column).
    pub fn load(name: &str, path: PathBuf, params: &Params) -> Result<Self> {
        let raw = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let text = params.render(&raw, &|o| Location::of_offset(&path, &raw, o))?;
        Ok(Self {
            name: name.to_string(),
            path,
            text,
        })
    }

    /// A SQL file from text (tests, generated statements).
    pub fn from_text(name: &str, path: impl AsRef<Path>, text: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            path: path.as_ref().to_path_buf(),
            text: text.into(),
        }
    }

    /// Turns an error from parsing or planning this file's text into [`Error::Sql`] pointing
    /// at the line and column DataFusion reports: the parser's `at Line: l, Column: c`, or the
    /// span of a diagnostic (with `datafusion.sql_parser.collect_spans` on). Without either, it
    /// points at line 1, column 1.
    pub fn error(&self, error: DataFusionError) -> Error {
        let message = one_line(&error.strip_backtrace());
        let (line, column) = error
            .diagnostic()
            .and_then(|d| d.span)
            .map(|span| (span.start.line as usize, span.start.column as usize))
            .or_else(|| parser_position(&message))
            .unwrap_or((1, 1));
        Error::Sql {
            location: Location {
                path: self.path.clone(),
                line,
                column,
            },
            message: strip_position(&message),
        }
    }
}

/// Finds sqlparser's `Line: 3, Column: 12` in an error message.
fn parser_position(message: &str) -> Option<(usize, usize)> {
    let after_line = &message[message.rfind("Line: ")? + "Line: ".len()..];
    let line: usize = after_line
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let after_col = &after_line[after_line.find("Column: ")? + "Column: ".len()..];
    let column: usize = after_col
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((line, column))
}

/// Drops the position suffix, which the location already shows.
fn strip_position(message: &str) -> String {
    match message.rfind(" at Line: ") {
        Some(i) => {
            let rest = &message[i..];
            // Keep whatever follows the `Column: n` (e.g. a closing quote or parenthesis).
            let tail = rest
                .find("Column: ")
                .map(|c| {
                    rest[c + "Column: ".len()..].trim_start_matches(|ch: char| ch.is_ascii_digit())
                })
                .unwrap_or("");
            format!("{}{}", &message[..i], tail)
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parser_position() {
        let m = "SQL error: ParserError(\"Expected: end of statement, found: FORM at Line: 3, Column: 1\")";
        assert_eq!(parser_position(m), Some((3, 1)));
        assert_eq!(
            strip_position(m),
            "SQL error: ParserError(\"Expected: end of statement, found: FORM\")"
        );
        assert_eq!(parser_position("no position"), None);
    }
}
