//! `most_frequent(value [, preferred])`: the value that occurs most often in a group (a
//! statistical mode), for names people recognise. Online Retail's `Description` of a product is
//! mostly its catalogue name, sometimes an adjustment note (`faulty`, `website fixed`):
//! `max(Description)` picks the lower-case notes, the most frequent value picks the name.
//!
//! Rules: NULL values are not counted. When `preferred` is given, only rows where it is true
//! count, unless the group has no such row (then every row counts). The highest count wins;
//! a tie goes to the smallest value in byte order (so `REGENCY CAKESTAND 3 TIER` before
//! `faulty`). No value: NULL. Returns `Utf8`; the value is cast to text first.
//!
//! The state of a partial aggregate is three lists of one length: `values` (Utf8),
//! `preferred` (UInt64, rows with `preferred` true) and `rows` (UInt64, all rows).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// The `most_frequent` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MostFrequent {
    signature: Signature,
}

impl MostFrequent {
    /// The function, taking one or two arguments of any type.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for MostFrequent {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for MostFrequent {
    fn name(&self) -> &str {
        "most_frequent"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [_] | [_, DataType::Boolean | DataType::Null] => Ok(DataType::Utf8),
            [_, other] => plan_err!("most_frequent: `preferred` must be a boolean, got {other}"),
            _ => plan_err!(
                "most_frequent takes (value) or (value, preferred), got {} arguments",
                args.len()
            ),
        }
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<Counts>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, item: DataType| {
            Arc::new(Field::new(
                format!("{}[{name}]", args.name),
                DataType::List(Arc::new(Field::new_list_field(item, true))),
                true,
            ))
        };
        Ok(vec![
            list("values", DataType::Utf8),
            list("preferred", DataType::UInt64),
            list("rows", DataType::UInt64),
        ])
    }
}

/// Per value: rows where `preferred` was true, all rows.
#[derive(Debug, Default)]
struct Counts {
    counts: BTreeMap<String, (u64, u64)>,
}

impl Counts {
    fn add(&mut self, value: &str, preferred: u64, rows: u64) {
        match self.counts.get_mut(value) {
            Some(c) => {
                c.0 += preferred;
                c.1 += rows;
            }
            None => {
                self.counts.insert(value.to_string(), (preferred, rows));
            }
        }
    }

    /// The winner by the module's rules.
    fn winner(&self) -> Option<&str> {
        let any_preferred = self.counts.values().any(|c| c.0 > 0);
        let mut best: Option<(&str, u64)> = None;
        // Ascending value order: a later value wins only with a strictly higher count.
        for (value, (preferred, rows)) in &self.counts {
            let n = if any_preferred { *preferred } else { *rows };
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((value, n));
            }
        }
        best.map(|(v, _)| v)
    }
}

fn text(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

impl Accumulator for Counts {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(first) = values.first() else {
            return exec_err!("most_frequent: no argument");
        };
        let value = text(first)?;
        let preferred: Option<BooleanArray> = match values.get(1) {
            Some(p) => Some(cast(p, &DataType::Boolean)?.as_boolean().clone()),
            None => None,
        };
        for i in 0..value.len() {
            if value.is_null(i) {
                continue;
            }
            let p = preferred
                .as_ref()
                .is_some_and(|p| p.is_valid(i) && p.value(i));
            self.add(value.value(i), u64::from(p), 1);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Utf8(self.winner().map(str::to_string)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .counts
                .keys()
                .map(|k| k.capacity() + std::mem::size_of::<(String, (u64, u64))>() + 16)
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .counts
            .keys()
            .map(|k| ScalarValue::Utf8(Some(k.clone())))
            .collect();
        let preferred: Vec<ScalarValue> = self
            .counts
            .values()
            .map(|c| ScalarValue::UInt64(Some(c.0)))
            .collect();
        let rows: Vec<ScalarValue> = self
            .counts
            .values()
            .map(|c| ScalarValue::UInt64(Some(c.1)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8)),
            ScalarValue::List(ScalarValue::new_list_nullable(
                &preferred,
                &DataType::UInt64,
            )),
            ScalarValue::List(ScalarValue::new_list_nullable(&rows, &DataType::UInt64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [values, preferred, rows] = states else {
            return exec_err!("most_frequent: a state has 3 columns, got {}", states.len());
        };
        let (values, preferred, rows) = (
            values.as_list::<i32>(),
            preferred.as_list::<i32>(),
            rows.as_list::<i32>(),
        );
        for i in 0..values.len() {
            if values.is_null(i) {
                continue;
            }
            let v = values.value(i);
            let v = v.as_string::<i32>();
            let p = preferred.value(i);
            let p: &UInt64Array = p.as_primitive::<UInt64Type>();
            let r = rows.value(i);
            let r: &UInt64Array = r.as_primitive::<UInt64Type>();
            if p.len() != v.len() || r.len() != v.len() {
                return exec_err!("most_frequent: a state's lists differ in length");
            }
            for j in 0..v.len() {
                if v.is_valid(j) {
                    self.add(v.value(j), p.value(j), r.value(j));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn rows(sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        ctx.register_udaf(AggregateUDF::new_from_impl(MostFrequent::new()));
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
            .lines()
            .skip(3)
            .filter(|l| !l.starts_with('+'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[tokio::test]
    async fn the_most_frequent_value_wins_preferred_rows_first_ties_to_the_smallest() {
        // Product a: three sale lines named A, one adjustment `faulty` with more lines that are
        // not sales. b: a tie between Y and X (X wins), NULL not counted. c: no sale line, so
        // all lines count. d: only NULL.
        let got = rows(
            "SELECT k, most_frequent(v, q > 0) AS name, most_frequent(v) AS any_row FROM (VALUES \
             ('a', 'A', 1), ('a', 'faulty', -1), ('a', 'A', 2), ('a', 'faulty', -3), \
             ('a', 'faulty', -1), ('a', 'faulty', -2), ('a', 'A', 5), \
             ('b', 'Y', 1), ('b', 'X', 1), ('b', NULL, 1), ('b', NULL, 1), \
             ('c', 'R', -1), ('c', 'S', -1), ('c', 'S', -1), \
             ('d', NULL, 1)) t(k, v, q) GROUP BY k ORDER BY k",
        )
        .await;
        assert_eq!(
            got,
            [
                "| a | A | faulty |",
                "| b | X | X |",
                "| c | S | S |",
                "| d | | |"
            ]
        );
    }

    #[tokio::test]
    async fn partial_states_merge_to_the_same_answer() {
        // Eight partitions: partial aggregates on each, their states merged by the final one.
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(8),
        );
        ctx.register_udaf(AggregateUDF::new_from_impl(MostFrequent::new()));
        let sql = "SELECT k, most_frequent(v, p) AS m FROM (\
                   SELECT value % 3 AS k, CAST(value % 7 AS VARCHAR) AS v, value % 2 = 0 AS p \
                   FROM generate_series(1, 10000)) GROUP BY k ORDER BY k";
        let df = ctx.sql(sql).await.expect("plan");
        let plan = df
            .clone()
            .create_physical_plan()
            .await
            .expect("physical plan");
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        assert!(shown.contains("mode=Partial"), "{shown}");
        let batches = df.collect().await.expect("run");
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string();
        // Independently: count (k, v) over the even values, highest count then smallest v.
        let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
        for value in (1..=10_000_i64).filter(|v| v % 2 == 0) {
            *counts
                .entry((value % 3, (value % 7).to_string()))
                .or_default() += 1;
        }
        for k in 0..3 {
            let best = counts
                .iter()
                .filter(|((key, _), _)| *key == k)
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.1.cmp(&a.0.1)))
                .map(|((_, v), _)| v.clone())
                .expect("a value");
            assert!(
                text.contains(&format!("| {k} | {best} |")),
                "k = {k}: {best} expected in\n{text}"
            );
        }
    }
}
