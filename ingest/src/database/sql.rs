//! The SQL Ember sends to a database: quoted names, literals of the check column, and the
//! `WHERE` of each task (its split range and the incremental range).
//!
//! Split ranges follow Sqoop's `--split-by` (`DataDrivenDBInputFormat`): the minimum and
//! maximum of the integer column (within the incremental range) cut into `splits` ranges of
//! equal width, `[lo, hi)` each, the last one closed at the maximum; unlike Sqoop, rows whose
//! split column is NULL are read too, by the first range.

use datafusion::arrow::datatypes::DataType;
use ember_core::manifest::DatabaseKind;

/// `name` quoted for `kind` (backticks for MySQL, double quotes for PostgreSQL); a
/// `schema.table` name is quoted part by part.
pub fn quote(kind: DatabaseKind, name: &str) -> String {
    let q = match kind {
        DatabaseKind::Mysql => '`',
        DatabaseKind::Postgres => '"',
    };
    name.split('.')
        .map(|part| {
            let escaped = part.replace(q, &format!("{q}{q}"));
            format!("{q}{escaped}{q}")
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The `FROM` of the input: its table, or its query as a derived table.
pub fn from(kind: DatabaseKind, table: Option<&str>, query: Option<&str>) -> String {
    match (table, query) {
        (Some(t), _) => quote(kind, t),
        (None, Some(q)) => format!("({}) AS ember_input", q.trim().trim_end_matches(';')),
        (None, None) => String::new(),
    }
}

/// `value` (as the server printed it) as a literal of a column of type `data_type`: numbers
/// bare, anything else (dates, timestamps, text) quoted with `'` doubled.
pub fn literal(data_type: &DataType, value: &str) -> String {
    if data_type.is_numeric() && value.parse::<f64>().is_ok() {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// The `splits` predicates over `column` whose values run from `min` to `max` (inclusive):
/// at most `splits` ranges (fewer when there are fewer values), together covering every row
/// once, NULLs in the first.
pub fn split_ranges(column: &str, min: i64, max: i64, splits: usize) -> Vec<String> {
    let (min, max) = (i128::from(min), i128::from(max.max(min)));
    let span = max - min + 1;
    let splits = i128::try_from(splits.max(1)).unwrap_or(1).min(span);
    let width = (span + splits - 1) / splits;
    let mut ranges = Vec::new();
    let mut lo = min;
    while lo <= max {
        let hi = lo + width;
        let range = if hi > max {
            format!("{column} >= {lo} AND {column} <= {max}")
        } else {
            format!("{column} >= {lo} AND {column} < {hi}")
        };
        ranges.push(if ranges.is_empty() {
            format!("({column} IS NULL OR ({range}))")
        } else {
            format!("({range})")
        });
        lo = hi;
    }
    ranges
}

/// `SELECT columns FROM from WHERE predicates…` (`TRUE` when there are none).
pub fn select(columns: &[String], from: &str, predicates: &[String]) -> String {
    let columns = if columns.is_empty() {
        // A projection of no columns (`count(*)`): one constant per row.
        "1 AS ember_row".to_string()
    } else {
        columns.join(", ")
    };
    let predicate = if predicates.is_empty() {
        "1 = 1".to_string()
    } else {
        predicates.join(" AND ")
    };
    format!("SELECT {columns} FROM {from} WHERE {predicate}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_literals_are_quoted_for_their_database() {
        assert_eq!(quote(DatabaseKind::Mysql, "shop.tx`s"), "`shop`.`tx``s`");
        assert_eq!(
            quote(DatabaseKind::Postgres, "public.Tx"),
            "\"public\".\"Tx\""
        );
        assert_eq!(literal(&DataType::Int64, "42"), "42");
        assert_eq!(literal(&DataType::Utf8, "O'Brien"), "'O''Brien'",);
        assert_eq!(
            literal(
                &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
                "2011-12-09T12:50:00"
            ),
            "'2011-12-09T12:50:00'"
        );
    }

    /// Every value from min to max falls in exactly one range.
    #[test]
    fn split_ranges_cover_every_value_once() {
        for (min, max, splits) in [
            (1, 100, 4),
            (1, 3, 4),
            (-5, 5, 3),
            (7, 7, 2),
            (0, 1_000_001, 7),
        ] {
            let ranges = split_ranges("id", min, max, splits);
            assert!(ranges.len() <= splits && !ranges.is_empty());
            assert!(ranges[0].contains("id IS NULL"));
            let bounds: Vec<(i64, i64, bool)> = ranges
                .iter()
                .map(|r| {
                    let nums: Vec<i64> = r
                        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
                        .filter_map(|s| s.parse().ok())
                        .collect();
                    (nums[0], nums[1], r.contains("<="))
                })
                .collect();
            for v in [min, max, (min + max) / 2, min + 1, max - 1] {
                if v < min || v > max {
                    continue;
                }
                let hits = bounds
                    .iter()
                    .filter(|(lo, hi, closed)| v >= *lo && (v < *hi || (*closed && v <= *hi)))
                    .count();
                assert_eq!(hits, 1, "{v} in {ranges:?}");
            }
        }
    }
}
