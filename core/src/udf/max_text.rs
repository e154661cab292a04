//! `max_text(text)`: the largest text of a group in byte order (NULL when it has none), as
//! DataFusion's `max` over `Utf8`, with a leaner group state. DataFusion 55's `max` keeps one
//! heap allocation per group (`Vec<u8>`, 24 bytes plus the allocation's own); the daily job's
//! per-order level has a group per order line (about 10 M at 10 M rows), so that state made it
//! spill. Here every group's value lives in one buffer: 12 bytes per group plus the text.
//!
//! The state of a partial aggregate is the value itself (`Utf8`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use datafusion::arrow::compute::{cast, nullif};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ScalarValue, internal_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The `max_text` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MaxText {
    signature: Signature,
}

impl MaxText {
    /// The function, taking one text argument (other types are cast to `Utf8`).
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl Default for MaxText {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for MaxText {
    fn name(&self) -> &str {
        "max_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<One>::default())
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::<Groups>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[max]", args.name),
            DataType::Utf8,
            true,
        ))])
    }
}

/// The argument as `Utf8`.
fn text(values: &[ArrayRef]) -> Result<StringArray> {
    match values {
        [value] => Ok(cast(value, &DataType::Utf8)?.as_string::<i32>().clone()),
        _ => internal_err!("max_text takes one argument, got {}", values.len()),
    }
}

/// One group's accumulator (no GROUP BY).
#[derive(Debug, Default)]
struct One {
    max: Option<String>,
}

impl Accumulator for One {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for value in text(values)?.iter().flatten() {
            if self.max.as_deref().is_none_or(|m| value > m) {
                self.max = Some(value.to_string());
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Utf8(self.max.clone()))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.max.as_ref().map_or(0, String::capacity)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}

/// No value yet (the group's length).
const NONE: u32 = u32::MAX;

/// Every group's largest text: group `g`'s is `data[start[g]..start[g] + len[g]]`, or none
/// when `len[g]` is [`NONE`]. A larger value that fits in the old one's place overwrites it;
/// else it is appended and the old bytes are dead, and the buffer is compacted when dead
/// bytes are more than half of it.
#[derive(Debug, Default)]
struct Groups {
    data: Vec<u8>,
    start: Vec<u64>,
    len: Vec<u32>,
    dead: usize,
}

impl Groups {
    fn value(&self, g: usize) -> Option<&[u8]> {
        (self.len[g] != NONE).then(|| {
            let start = self.start[g] as usize;
            &self.data[start..start + self.len[g] as usize]
        })
    }

    fn offer(&mut self, g: usize, value: &[u8]) -> Result<()> {
        let old = self.value(g);
        if old.is_some_and(|old| value <= old) {
            return Ok(());
        }
        let Ok(len) = u32::try_from(value.len()) else {
            return internal_err!("max_text: a value of {} bytes", value.len());
        };
        let old_len = old.map_or(0, <[u8]>::len);
        if old.is_some() && value.len() <= old_len {
            let start = self.start[g] as usize;
            self.data[start..start + value.len()].copy_from_slice(value);
            self.dead += old_len - value.len();
        } else {
            self.start[g] = self.data.len() as u64;
            self.data.extend_from_slice(value);
            self.dead += old_len;
        }
        self.len[g] = len;
        if self.dead > 1 << 20 && self.dead > self.data.len() / 2 {
            self.compact(0);
        }
        Ok(())
    }

    /// Rewrites the buffer with the values of groups `from..` only, in group order.
    fn compact(&mut self, from: usize) {
        let mut data = Vec::with_capacity(self.data.len() - self.dead);
        for g in from..self.len.len() {
            if let Some(value) = self.value(g) {
                let start = data.len() as u64;
                data.extend_from_slice(value);
                self.start[g] = start;
            }
        }
        self.data = data;
        self.dead = 0;
    }

    fn grow(&mut self, total_num_groups: usize) {
        self.start.resize(total_num_groups, 0);
        self.len.resize(total_num_groups, NONE);
    }

    fn update(
        &mut self,
        values: &StringArray,
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<()> {
        for (row, &g) in group_indices.iter().enumerate() {
            if values.is_null(row) || opt_filter.is_some_and(|f| !(f.is_valid(row) && f.value(row)))
            {
                continue;
            }
            self.offer(g, values.value(row).as_bytes())?;
        }
        Ok(())
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        self.update(&text(values)?, group_indices, opt_filter)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let n = match emit_to {
            EmitTo::All => self.len.len(),
            EmitTo::First(n) => n.min(self.len.len()),
        };
        let mut values = Vec::with_capacity(n);
        for g in 0..n {
            values.push(match self.value(g) {
                Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|e| {
                    datafusion::error::DataFusionError::Internal(format!("max_text: {e}"))
                })?),
                None => None,
            });
        }
        let array: ArrayRef = Arc::new(StringArray::from(values));
        if n == self.len.len() {
            *self = Self::default();
        } else {
            self.compact(n);
            self.start.drain(..n);
            self.len.drain(..n);
        }
        Ok(array)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        self.update(&text(values)?, group_indices, None)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // One state row per input row: the value, NULL where the filter drops the row.
        let value = text(values)?;
        let state: ArrayRef = match opt_filter {
            Some(filter) => {
                let dropped: BooleanArray =
                    filter.iter().map(|keep| Some(keep != Some(true))).collect();
                nullif(&value, &dropped)?
            }
            None => Arc::new(value),
        };
        Ok(vec![state])
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.data.capacity()
            + self.start.capacity() * 8
            + self.len.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// Groups with texts that grow, shrink and repeat, and a group with only NULLs: the same
    /// as DataFusion's `max`, through the group accumulator, the partial state and one group.
    #[tokio::test]
    async fn equals_datafusions_max_on_groups_and_without() {
        let ctx = SessionContext::new();
        ctx.register_udaf(AggregateUDF::new_from_impl(MaxText::new()));
        let mut rows = Vec::new();
        for i in 0..5_000u32 {
            let word = ["b", "a", "faulty", "REGENCY CAKESTAND", "zz", "", "é"][(i % 7) as usize];
            let value = if i % 11 == 0 {
                "NULL".to_string()
            } else {
                format!("'{}{}'", word, "x".repeat((i % 13) as usize))
            };
            rows.push(format!("({}, {value})", i % 97));
        }
        rows.push("(1000, NULL)".to_string());
        ctx.sql(&format!(
            "CREATE TABLE t (g INT, v VARCHAR) AS VALUES {}",
            rows.join(", ")
        ))
        .await
        .expect("table");
        let run = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx
                    .sql(sql)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run");
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .expect("format")
                    .to_string()
            }
        };
        let ours = run("SELECT g, max_text(v) AS m FROM t GROUP BY g ORDER BY g").await;
        let theirs = run("SELECT g, max(v) AS m FROM t GROUP BY g ORDER BY g").await;
        assert_eq!(ours, theirs);
        assert!(ours.contains("éxxxxxxxxxxxx"), "{ours}");
        let none = run("SELECT max_text(v) IS NULL AS none FROM t WHERE g = 1000").await;
        assert!(none.contains("true"), "{none}");
        let ours = run("SELECT max_text(v) FILTER (WHERE g < 50) AS m FROM t").await;
        let theirs = run("SELECT max(v) FILTER (WHERE g < 50) AS m FROM t").await;
        assert_eq!(ours, theirs);
    }

    /// Emitting the first groups keeps the others' values (the buffer is compacted), and a
    /// value replaced many times leaves no more dead bytes than live ones past 1 MiB.
    #[test]
    fn emit_first_keeps_the_rest_and_dead_bytes_are_bounded() {
        let mut groups = Groups::default();
        let words = ["a", "bb", "c", "dddd", "e"];
        for round in 0..200_000usize {
            let value = format!("{}{round:08}", words[round % words.len()]);
            let array: ArrayRef = Arc::new(StringArray::from(vec![value.as_str(), "k"]));
            groups
                .update_batch(&[array], &[round % 3, 3], None, 4)
                .expect("update");
            assert!(groups.dead <= (1 << 20).max(groups.data.len() / 2) + 16);
        }
        let first = groups.evaluate(EmitTo::First(2)).expect("first two");
        let rest = groups.evaluate(EmitTo::All).expect("the rest");
        let text = |a: &ArrayRef| {
            let a = a.as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(text(&first), ["e00199989", "e00199999"]);
        assert_eq!(text(&rest), ["e00199994", "k"]);
    }
}
