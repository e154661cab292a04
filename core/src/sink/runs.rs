//! Splitting a batch sorted by the partition columns into runs of rows of one partition, for
//! the sink's writers (one file per partition and task).

use std::ops::Range;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, partition};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;

/// The partition keys of `batch` (columns `key_columns`, as Utf8) and the runs of rows that
/// share them; one run of the whole batch when there is no key (an unpartitioned output).
///
/// # Errors
/// A key column that cannot be cast to text.
pub(super) fn partition_runs(
    batch: &RecordBatch,
    key_columns: &[usize],
) -> Result<(Vec<ArrayRef>, Vec<Range<usize>>)> {
    let keys: Vec<ArrayRef> = key_columns
        .iter()
        .map(|&i| cast(batch.column(i), &DataType::Utf8))
        .collect::<std::result::Result<_, _>>()?;
    let runs = if keys.is_empty() {
        std::iter::once(0..batch.num_rows()).collect()
    } else {
        partition(&keys)?.ranges()
    };
    Ok((keys, runs))
}
