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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, ListBuilder, StringArray, StringBuilder,
    UInt64Array, UInt64Builder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

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

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::<GroupCounts>::default())
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

/// One group's counts: per value, rows where `preferred` was true and all rows. Most groups
/// hold one or two values, so they are a list; past [`INDEXED_AFTER`] values a hash index
/// keeps each row's lookup constant.
#[derive(Debug, Default)]
struct Counts {
    entries: Vec<(String, u64, u64)>,
    index: Option<HashMap<String, usize>>,
    /// Bytes held on the heap by `entries` and `index` (kept as they grow: DataFusion asks
    /// for the size after every batch, and summing thousands of groups each time dominated
    /// the daily job's profile).
    heap: usize,
}

/// Heap bytes of one entry and of one index slot, besides the text.
const ENTRY_BYTES: usize = std::mem::size_of::<(String, u64, u64)>();
const INDEX_BYTES: usize = std::mem::size_of::<(String, usize)>() + 8;

/// Values a group holds before its lookups go through a hash index.
const INDEXED_AFTER: usize = 16;

impl Counts {
    /// Counts `rows` rows of `value`, `preferred` of them preferred; returns the heap bytes
    /// this added.
    fn add(&mut self, value: &str, preferred: u64, rows: u64) -> usize {
        let at = match &self.index {
            Some(index) => index.get(value).copied(),
            None => self.entries.iter().position(|e| e.0 == value),
        };
        if let Some(i) = at {
            self.entries[i].1 += preferred;
            self.entries[i].2 += rows;
            return 0;
        }
        self.entries.push((value.to_string(), preferred, rows));
        let mut added = value.len() + ENTRY_BYTES;
        match &mut self.index {
            Some(index) => {
                index.insert(value.to_string(), self.entries.len() - 1);
                added += value.len() + INDEX_BYTES;
            }
            None if self.entries.len() > INDEXED_AFTER => {
                self.index = Some(
                    self.entries
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.0.clone(), i))
                        .collect(),
                );
                added += self
                    .entries
                    .iter()
                    .map(|e| e.0.len() + INDEX_BYTES)
                    .sum::<usize>();
            }
            None => {}
        }
        self.heap += added;
        added
    }

    /// The winner by the module's rules.
    fn winner(&self) -> Option<&str> {
        let any_preferred = self.entries.iter().any(|e| e.1 > 0);
        let mut best: Option<(&str, u64)> = None;
        for (value, preferred, rows) in &self.entries {
            let n = if any_preferred { *preferred } else { *rows };
            let better = match best {
                None => n > 0,
                Some((b, bn)) => n > bn || (n == bn && value.as_str() < b),
            };
            if better {
                best = Some((value, n));
            }
        }
        best.map(|(v, _)| v)
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap
    }

    /// Adds row `row` of the update arguments; returns the heap bytes this added.
    fn add_row(
        &mut self,
        value: &StringArray,
        preferred: Option<&BooleanArray>,
        row: usize,
    ) -> usize {
        if value.is_null(row) {
            return 0;
        }
        let p = preferred.is_some_and(|p| p.is_valid(row) && p.value(row));
        self.add(value.value(row), u64::from(p), 1)
    }

    /// Adds row `row` of a state; returns the heap bytes this added.
    fn merge_row(&mut self, state: &State<'_>, row: usize) -> Result<usize> {
        if state.values.is_null(row) {
            return Ok(0);
        }
        let v = state.values.value(row);
        let v = v.as_string::<i32>();
        let p = state.preferred.value(row);
        let p: &UInt64Array = p.as_primitive::<UInt64Type>();
        let r = state.rows.value(row);
        let r: &UInt64Array = r.as_primitive::<UInt64Type>();
        if p.len() != v.len() || r.len() != v.len() {
            return exec_err!("most_frequent: a state's lists differ in length");
        }
        let mut added = 0;
        for j in 0..v.len() {
            if v.is_valid(j) {
                added += self.add(v.value(j), p.value(j), r.value(j));
            }
        }
        Ok(added)
    }
}

/// The update arguments as text and booleans.
fn arguments(values: &[ArrayRef]) -> Result<(StringArray, Option<BooleanArray>)> {
    let Some(first) = values.first() else {
        return exec_err!("most_frequent: no argument");
    };
    let value = cast(first, &DataType::Utf8)?.as_string::<i32>().clone();
    let preferred = match values.get(1) {
        Some(p) => Some(cast(p, &DataType::Boolean)?.as_boolean().clone()),
        None => None,
    };
    Ok((value, preferred))
}

/// A state's three list columns.
struct State<'a> {
    values: &'a ListArray,
    preferred: &'a ListArray,
    rows: &'a ListArray,
}

impl<'a> State<'a> {
    fn of(states: &'a [ArrayRef]) -> Result<Self> {
        let [values, preferred, rows] = states else {
            return exec_err!("most_frequent: a state has 3 columns, got {}", states.len());
        };
        Ok(Self {
            values: values.as_list::<i32>(),
            preferred: preferred.as_list::<i32>(),
            rows: rows.as_list::<i32>(),
        })
    }
}

/// Groups' counts as the three state columns, one row per group.
fn state_arrays(groups: &[Counts]) -> Vec<ArrayRef> {
    let mut values = ListBuilder::new(StringBuilder::new());
    let mut preferred = ListBuilder::new(UInt64Builder::new());
    let mut rows = ListBuilder::new(UInt64Builder::new());
    for g in groups {
        for (v, p, r) in &g.entries {
            values.values().append_value(v);
            preferred.values().append_value(*p);
            rows.values().append_value(*r);
        }
        values.append(true);
        preferred.append(true);
        rows.append(true);
    }
    vec![
        Arc::new(values.finish()),
        Arc::new(preferred.finish()),
        Arc::new(rows.finish()),
    ]
}

impl Accumulator for Counts {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (value, preferred) = arguments(values)?;
        for row in 0..value.len() {
            self.add_row(&value, preferred.as_ref(), row);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Utf8(self.winner().map(str::to_string)))
    }

    fn size(&self) -> usize {
        Counts::size(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        state_arrays(std::slice::from_ref(self))
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let state = State::of(states)?;
        for row in 0..state.values.len() {
            self.merge_row(&state, row)?;
        }
        Ok(())
    }
}

/// Counts of many groups at once (DataFusion's fast path for `GROUP BY`): one [`Counts`] per
/// group index.
#[derive(Debug, Default)]
struct GroupCounts {
    groups: Vec<Counts>,
    /// The sum of the groups' heap bytes.
    heap: usize,
}

impl GroupCounts {
    fn grow(&mut self, total_num_groups: usize) {
        if self.groups.len() < total_num_groups {
            self.groups.resize_with(total_num_groups, Counts::default);
        }
    }

    /// Takes the groups `emit_to` names, and their bytes off the total.
    fn take(&mut self, emit_to: EmitTo) -> Vec<Counts> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.heap -= taken.iter().map(|g| g.heap).sum::<usize>();
        taken
    }
}

impl GroupsAccumulator for GroupCounts {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let (value, preferred) = arguments(values)?;
        for (row, &g) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !(f.is_valid(row) && f.value(row))) {
                continue;
            }
            self.heap += self.groups[g].add_row(&value, preferred.as_ref(), row);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = self.take(emit_to);
        let names: StringArray = groups.iter().map(Counts::winner).collect();
        Ok(Arc::new(names))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(state_arrays(&self.take(emit_to)))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let state = State::of(values)?;
        for (row, &g) in group_indices.iter().enumerate() {
            self.heap += self.groups[g].merge_row(&state, row)?;
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // One state row per input row (DataFusion skips the partial aggregation when it does
        // not reduce the rows).
        let (value, preferred) = arguments(values)?;
        let rows: Vec<Counts> = (0..value.len())
            .map(|row| {
                let mut counts = Counts::default();
                if opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                    counts.add_row(&value, preferred.as_ref(), row);
                }
                counts
            })
            .collect();
        Ok(state_arrays(&rows))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.groups.capacity() * std::mem::size_of::<Counts>()
            + self.heap
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
        // Without GROUP BY (the one-group accumulator): A has two sale rows, b one.
        assert_eq!(
            rows(
                "SELECT most_frequent(v, q > 0) FROM (VALUES ('b', 1), ('A', 1), ('faulty', -1), \
                  ('faulty', -1), ('A', 2), (NULL, 3)) t(v, q)"
            )
            .await,
            ["| A |"]
        );
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

    #[test]
    fn rows_turned_into_states_merge_to_what_the_rows_give() {
        let values: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            None,
            Some("b"),
            Some("c"),
            Some("a"),
        ]));
        let preferred: ArrayRef = Arc::new(BooleanArray::from(vec![
            true, false, true, true, true, true,
        ]));
        let args = [values, preferred];
        // Rows 0..3 in group 0, 3..6 in group 1; row 4 filtered out.
        let groups = [0, 0, 0, 1, 1, 1];
        let filter = BooleanArray::from(vec![true, true, true, true, false, true]);
        let mut direct = GroupCounts::default();
        direct
            .update_batch(&args, &groups, Some(&filter), 2)
            .expect("update");
        let states = direct
            .convert_to_state(&args, Some(&filter))
            .expect("states");
        assert_eq!(states[0].len(), 6, "one state row per input row");
        let mut merged = GroupCounts::default();
        merged.merge_batch(&states, &groups, 2).expect("merge");
        let names = |g: &mut GroupCounts| {
            let a = g.evaluate(EmitTo::All).expect("evaluate");
            let a = a.as_string::<i32>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        };
        // Group 0: b is the only preferred row. Group 1: b and a once each: a.
        let want = vec![Some("b".to_string()), Some("a".to_string())];
        assert_eq!(names(&mut direct), want);
        assert_eq!(names(&mut merged), want);
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
        // The one-group accumulator's states merge too: over all even values, 0..6 by % 7
        // occur 714 or 715 times; the answer is computed below with the groups'.
        let overall = ctx
            .sql(
                "SELECT most_frequent(CAST(value % 7 AS VARCHAR), value % 2 = 0) AS m \
                 FROM generate_series(1, 10000)",
            )
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let overall = datafusion::arrow::util::pretty::pretty_format_batches(&overall)
            .expect("format")
            .to_string();
        let mut all: BTreeMap<String, u64> = BTreeMap::new();
        for value in (1..=10_000_i64).filter(|v| v % 2 == 0) {
            *all.entry((value % 7).to_string()).or_default() += 1;
        }
        let top = all.values().copied().max().expect("values");
        let first = all.iter().find(|(_, n)| **n == top).expect("top").0;
        assert!(
            overall.contains(&format!("| {first} ")),
            "{first}: {overall}"
        );
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

    /// The heap bytes the groups hold, summed from their entries.
    fn recount(groups: &GroupCounts) -> usize {
        groups
            .groups
            .iter()
            .map(|g| {
                let entries: usize = g.entries.iter().map(|e| e.0.len() + ENTRY_BYTES).sum();
                let index = g
                    .index
                    .as_ref()
                    .map_or(0, |i| i.keys().map(|k| k.len() + INDEX_BYTES).sum());
                entries + index
            })
            .sum()
    }

    #[test]
    fn the_size_kept_as_groups_grow_is_the_size_of_their_entries() {
        let mut acc = GroupCounts::default();
        // 3 groups; group 2 gets 40 distinct values (past INDEXED_AFTER: indexed).
        let values: Vec<String> = (0..60).map(|i| format!("name {}", i % 40)).collect();
        let groups: Vec<usize> = (0..60).map(|i| if i < 10 { i % 2 } else { 2 }).collect();
        let array: ArrayRef = Arc::new(StringArray::from(values));
        acc.update_batch(&[Arc::clone(&array)], &groups, None, 3)
            .expect("update");
        assert!(acc.groups[2].index.is_some());
        assert_eq!(acc.heap, recount(&acc), "after update");
        let state = acc.state(EmitTo::All).expect("state");
        assert_eq!(acc.heap, 0, "all groups taken");
        acc.merge_batch(&state, &[0, 1, 1], 2).expect("merge");
        assert_eq!(acc.heap, recount(&acc), "after merge");
        let first = acc.evaluate(EmitTo::First(1)).expect("evaluate");
        assert_eq!(first.len(), 1);
        assert_eq!(acc.heap, recount(&acc), "after emitting the first group");
        assert!(acc.heap > 0);
    }
}
