//! The counts of a run (rows read, valid, quarantined by reason) and the rule that they
//! reconcile: `read = valid + quarantined`, every quarantined row with a reason.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember_core::manifest::REASON_COLUMN;
use ember_core::report::RowCounts;

use crate::error::{Error, Result};

pub(crate) async fn count_rows(ctx: &SessionContext, table: &str) -> Result<u64> {
    let context = || format!("counting the rows of `{table}`");
    let df = ctx
        .table(table)
        .await
        .map_err(|e| Error::execution(context(), e))?;
    let n = df
        .count()
        .await
        .map_err(|e| Error::execution(context(), e))?;
    Ok(n as u64)
}

/// Quarantined rows per reason, read back from the files the quarantine's tasks reported
/// (`files` relative to `base`, a folder URL with a trailing `/`).
pub(crate) async fn count_reasons(
    ctx: &SessionContext,
    base: &str,
    files: &[String],
) -> Result<BTreeMap<String, u64>> {
    let context = "counting quarantined rows by reason";
    let urls: Vec<String> = files.iter().map(|f| format!("{base}{f}")).collect();
    let batches = ctx
        .read_parquet(urls, ParquetReadOptions::default())
        .await
        .and_then(|df| df.aggregate(vec![col(REASON_COLUMN)], vec![count(lit(1)).alias("n")]))
        .map_err(|e| Error::execution(context, e))?
        .collect()
        .await
        .map_err(|e| Error::execution(context, e))?;
    let mut by_reason = BTreeMap::new();
    for batch in &batches {
        let reasons = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| Error::execution(context, e.into()))?;
        let reasons = reasons.as_string::<i32>();
        let counts = batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            let reason = if reasons.is_null(row) {
                String::new()
            } else {
                reasons.value(row).to_string()
            };
            *by_reason.entry(reason).or_insert(0) += counts.value(row) as u64;
        }
    }
    Ok(by_reason)
}

/// `read = valid + quarantined`, and every quarantined row has a reason.
pub(crate) fn reconcile(rows: &RowCounts, by_reason: &BTreeMap<String, u64>) -> Result<()> {
    if let Some(n) = by_reason.get("").filter(|n| **n > 0) {
        return Err(Error::Reconcile(format!(
            "{n} quarantined rows have no reason (NULL or empty `{REASON_COLUMN}`)"
        )));
    }
    let by_reason_total: u64 = by_reason.values().sum();
    if by_reason_total != rows.quarantined {
        return Err(Error::Reconcile(format!(
            "{} rows were written to the quarantine but {by_reason_total} were read back",
            rows.quarantined
        )));
    }
    if let (Some(read), Some(valid)) = (rows.read, rows.valid)
        && read != valid + rows.quarantined
    {
        return Err(Error::Reconcile(format!(
            "rows read {read} != rows valid {valid} + rows quarantined {} (difference {}); the quarantine query must select exactly the rows the valid table leaves out",
            rows.quarantined,
            read as i128 - (valid + rows.quarantined) as i128
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_rules() {
        let ok = RowCounts {
            read: Some(10),
            valid: Some(7),
            quarantined: 3,
            written: 2,
        };
        let reasons: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        reconcile(&ok, &reasons).expect("balanced");
        let lost = RowCounts {
            valid: Some(6),
            ..ok.clone()
        };
        let err = reconcile(&lost, &reasons).expect_err("a row is lost");
        assert!(
            err.to_string()
                .contains("rows read 10 != rows valid 6 + rows quarantined 3 (difference 1)"),
            "{err}"
        );
        let no_reason: BTreeMap<String, u64> = [("".to_string(), 3)].into();
        assert!(
            reconcile(&ok, &no_reason)
                .expect_err("no reason")
                .to_string()
                .contains("have no reason")
        );
        let mismatch: BTreeMap<String, u64> = [("a".to_string(), 2)].into();
        assert!(reconcile(&ok, &mismatch).is_err());
    }
}
