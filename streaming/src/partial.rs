//! Partial aggregates as a window's state: a windowed query whose aggregates can be merged
//! (`sum`, `count`, `min`, `max`, `bool_and`, `bool_or`, none `DISTINCT`) keeps, for each open
//! (window, group key), one row of partial values instead of the window's events, so its state
//! grows with the open groups, not with the events (as Flink's and Spark's window operators
//! keep accumulators). Holistic aggregates (`count(DISTINCT …)`, `most_frequent`, `avg`,
//! `array_agg`, …) keep the events ([`crate::engine`]'s raw state).
//!
//! The query's plan is cut at its one `Aggregate` node:
//! - **partial**: the node itself over a micro-batch's new events (and the lookups it joins):
//!   one row per group with the aggregates' values over these events;
//! - **merge**: the state's rows and the new ones grouped again by the group columns, each
//!   value merged (`sum` of sums and of counts, `min` of mins, `max` of maxes, `bool_and`,
//!   `bool_or`), cast back to the aggregate's type;
//! - **emit**: the rest of the query (projection, `HAVING`, joins after the aggregate) over the
//!   merged rows, for the windows the watermark closed.
//!
//! State rows have positional columns `g0…gN` (the group columns) and `a0…aM` (the aggregates'
//! values), typed and nullable as the aggregate's, and carry the query's [`Split::fingerprint`] in their schema's
//! metadata (key [`FINGERPRINT_KEY`]): a restart whose query aggregates something else is
//! refused instead of merging unlike values.
//!
//! A lookup joined below the aggregate is read when the events arrive (the lookup's rows of
//! that batch), not when the window closes.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::functions_aggregate::expr_fn;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, TableScan, cast as cast_expr,
    col, lit,
};

/// Schema metadata key of a state file's query fingerprint.
pub const FINGERPRINT_KEY: &str = "ember.partial_aggregate";

/// The group column that holds each row's window start (a Timestamp).
pub const WINDOW_START: &str = "window_start";

/// How one aggregate's partial values merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    Sum,
    Min,
    Max,
    And,
    Or,
}

impl Merge {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "sum" | "count" => Self::Sum,
            "min" => Self::Min,
            "max" => Self::Max,
            "bool_and" => Self::And,
            "bool_or" => Self::Or,
            _ => return None,
        })
    }

    fn expr(self, e: Expr) -> Expr {
        match self {
            Self::Sum => expr_fn::sum(e),
            Self::Min => expr_fn::min(e),
            Self::Max => expr_fn::max(e),
            Self::And => expr_fn::bool_and(e),
            Self::Or => expr_fn::bool_or(e),
        }
    }
}

/// A windowed query cut at its aggregate (module documentation).
#[derive(Debug, Clone)]
pub struct Split {
    /// The query's plan (its aggregate still in it).
    plan: LogicalPlan,
    /// The query's aggregate node.
    aggregate: Aggregate,
    merges: Vec<Merge>,
    /// The state's schema: `g0…`, `a0…` (the aggregate's types and nullability), with the
    /// fingerprint in its metadata.
    state_schema: SchemaRef,
    /// Index of the window start among the group columns.
    window_start: usize,
}

fn is_scan_of(node: &LogicalPlan, table: &str) -> bool {
    matches!(node, LogicalPlan::TableScan(TableScan { table_name, .. }) if table_name.table() == table)
}

impl Split {
    /// Cuts `plan` (a windowed query planned over the `events` table) at its aggregate.
    ///
    /// # Errors
    /// Why its state must keep the events, in words: not exactly one aggregate, grouping sets,
    /// an aggregate that cannot be merged (named), no `window_start` group column, or `events`
    /// read again after the aggregate.
    pub fn new(plan: &LogicalPlan) -> Result<Self, String> {
        let mut aggregates = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::Aggregate(a) = node {
                aggregates.push(a.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        });
        let aggregate = match aggregates.as_slice() {
            [a] => a.clone(),
            [] => return Err("the query has no aggregate".into()),
            _ => return Err("the query has several aggregates".into()),
        };
        if matches!(aggregate.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
            return Err("the query groups by grouping sets".into());
        }
        let mut merges = Vec::with_capacity(aggregate.aggr_expr.len());
        for e in &aggregate.aggr_expr {
            let Expr::AggregateFunction(f) = e.clone().unalias() else {
                return Err(format!("`{e}` is not an aggregate call"));
            };
            let name = f.func.name().to_string();
            if f.params.distinct {
                return Err(format!("{name}(DISTINCT …) needs every event"));
            }
            merges.push(
                Merge::of(&name)
                    .ok_or_else(|| format!("{name}() cannot be merged from partial values"))?,
            );
        }
        let groups = aggregate.group_expr.len();
        let fields = aggregate.schema.fields();
        let window_start = fields[..groups]
            .iter()
            .position(|f| {
                f.name() == WINDOW_START && matches!(f.data_type(), DataType::Timestamp(_, _))
            })
            .ok_or_else(|| format!("the query does not group by a `{WINDOW_START}` timestamp"))?;
        // What runs after the aggregate must not read the events again.
        let above = plan
            .clone()
            .transform_up_with_subqueries(|node| {
                Ok(match node {
                    LogicalPlan::Aggregate(_) => Transformed::yes(LogicalPlan::EmptyRelation(
                        datafusion::logical_expr::EmptyRelation {
                            produce_one_row: false,
                            schema: Arc::clone(&aggregate.schema),
                        },
                    )),
                    other => Transformed::no(other),
                })
            })
            .map_err(|e| e.to_string())?
            .data;
        let mut reads_events = false;
        let _ = above.apply_with_subqueries(|node| {
            reads_events |= is_scan_of(node, "events");
            Ok(TreeNodeRecursion::Continue)
        });
        if reads_events {
            return Err("the query reads `events` again after its aggregate".into());
        }
        let fingerprint = aggregate
            .group_expr
            .iter()
            .chain(&aggregate.aggr_expr)
            .zip(fields.iter())
            .map(|(e, f)| format!("{e} {}", f.data_type()))
            .collect::<Vec<_>>()
            .join("; ");
        let state_fields: Vec<Field> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let name = if i < groups {
                    format!("g{i}")
                } else {
                    format!("a{}", i - groups)
                };
                Field::new(name, f.data_type().clone(), f.is_nullable())
            })
            .collect();
        let state_schema = Arc::new(Schema::new_with_metadata(
            state_fields,
            HashMap::from([(FINGERPRINT_KEY.to_string(), fingerprint)]),
        ));
        Ok(Self {
            plan: plan.clone(),
            aggregate,
            merges,
            state_schema,
            window_start,
        })
    }

    /// The state's schema: `g0…gN` (group columns), `a0…aM` (partial values), typed and
    /// nullable as the aggregate's columns.
    pub fn state_schema(&self) -> SchemaRef {
        Arc::clone(&self.state_schema)
    }

    /// What the state's rows are the partial values of: each group and aggregate expression
    /// with its type.
    pub fn fingerprint(&self) -> &str {
        self.state_schema
            .metadata()
            .get(FINGERPRINT_KEY)
            .map_or("", String::as_str)
    }

    /// The aggregate over the batch's events: run it, then [`Split::to_state`] its rows.
    pub fn partial_plan(&self) -> LogicalPlan {
        LogicalPlan::Aggregate(self.aggregate.clone())
    }

    /// `batches` of [`Split::partial_plan`]'s output as state rows (same columns, renamed).
    ///
    /// # Errors
    /// An Arrow error when a batch is not the aggregate's output (a bug).
    pub fn to_state(&self, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
        batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| RecordBatch::try_new(self.state_schema(), b.columns().to_vec()))
            .collect()
    }

    fn scan(&self, name: &str, batches: Vec<RecordBatch>) -> DfResult<LogicalPlanBuilder> {
        let table = MemTable::try_new(self.state_schema(), vec![batches])?;
        LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(table)), None)
    }

    /// State rows in the Parquet files `urls` (shards and a batch's new rows), as a plan's
    /// input; read by the tasks of whichever session runs the plan.
    ///
    /// # Errors
    /// A URL DataFusion cannot parse.
    pub fn files_plan(&self, urls: &[String]) -> DfResult<LogicalPlan> {
        let paths = urls
            .iter()
            .map(ListingTableUrl::parse)
            .collect::<DfResult<Vec<_>>>()?;
        // Nullable columns: a shard's counts come out of a merge as nullable.
        let schema = Arc::new(Schema::new(
            self.state_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(paths)
            .with_listing_options(options)
            .with_schema(schema);
        let table = ListingTable::try_new(config)?;
        LogicalPlanBuilder::scan("partials", provider_as_source(Arc::new(table)), None)?.build()
    }

    /// State rows of the same (window, key) in `input` (a plan of state rows: the state before
    /// the batch and the batch's partial rows) merged into one each, in the state's columns.
    ///
    /// # Errors
    /// A planning error (a bug), e.g. an input that is not in the state's schema.
    pub fn merge_plan(&self, input: LogicalPlan) -> DfResult<LogicalPlan> {
        let fields = self.state_schema.fields();
        let groups = self.aggregate.group_expr.len();
        let group_cols: Vec<Expr> = fields[..groups].iter().map(|f| col(f.name())).collect();
        let merged: Vec<Expr> = fields[groups..]
            .iter()
            .zip(&self.merges)
            .map(|(f, m)| m.expr(col(f.name())).alias(f.name()))
            .collect();
        let plan = LogicalPlanBuilder::from(input)
            .aggregate(group_cols, merged)?
            .build()?;
        // Back to the aggregate's types (a sum of decimal sums is wider).
        let exprs: Vec<Expr> = fields
            .iter()
            .map(|f| {
                let e = col(f.name());
                match e.get_type(plan.schema()) {
                    Ok(t) if &t == f.data_type() => e.alias(f.name()),
                    _ => cast_expr(e, f.data_type().clone()).alias(f.name()),
                }
            })
            .collect();
        LogicalPlanBuilder::from(plan).project(exprs)?.build()
    }

    /// Whether a state row's window (`window_start` + `size_us`) is still open after the
    /// watermark `watermark_us` (`open`), or closed by it: a filter on the state's columns.
    pub fn window_filter(&self, size_us: i64, watermark_us: i64, open: bool) -> Expr {
        let field = self.state_schema.field(self.window_start);
        let threshold = cast_expr(
            lit(ScalarValue::TimestampMicrosecond(
                Some(watermark_us.saturating_sub(size_us)),
                None,
            )),
            field.data_type().clone(),
        );
        // start + size > w  ⇔  start > w − size.
        if open {
            col(field.name()).gt(threshold)
        } else {
            col(field.name()).lt_eq(threshold)
        }
    }

    /// The query's rows over the merged state rows `merged`: the plan above the aggregate, fed
    /// with `merged` under the aggregate's own column names.
    ///
    /// # Errors
    /// A planning error (a bug).
    pub fn emit_plan(&self, merged: Vec<RecordBatch>) -> DfResult<LogicalPlan> {
        let schema: &DFSchemaRef = &self.aggregate.schema;
        let renamed: Vec<Expr> = self
            .state_schema
            .fields()
            .iter()
            .zip(schema.iter())
            .map(|(state, (qualifier, field))| {
                Expr::Column(Column::new_unqualified(state.name()))
                    .alias_qualified(qualifier.cloned(), field.name())
            })
            .collect();
        let input = self.scan("merged", merged)?.project(renamed)?.build()?;
        let mut input = Some(input);
        self.plan
            .clone()
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::Aggregate(_) => input.take().map(Transformed::yes).ok_or_else(|| {
                    DataFusionError::Internal("the query has several aggregates".into())
                }),
                other => other.recompute_schema().map(Transformed::yes),
            })
            .map(|t| t.data)
    }
}

/// Rows in `batches`.
pub fn rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::dataframe::DataFrame;
    use datafusion::prelude::SessionContext;
    use ember_core::codec::Codecs;
    use ember_core::session::SessionBuilder;

    const MIN: i64 = 60_000_000;

    fn events(rows: &[(i64, &str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("product_id", DataType::Utf8, false),
            Field::new("quantity", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(
                    rows.iter().map(|r| r.0 * MIN).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("events")
    }

    async fn plan(ctx: &SessionContext, sql: &str, batch: RecordBatch) -> LogicalPlan {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("table");
        let _ = ctx.deregister_table("events");
        ctx.register_table("events", Arc::new(table))
            .expect("register");
        ctx.sql(sql).await.expect("sql").logical_plan().clone()
    }

    async fn run(ctx: &SessionContext, plan: LogicalPlan) -> Vec<RecordBatch> {
        DataFrame::new(ctx.state(), plan)
            .collect()
            .await
            .expect("collect")
    }

    fn sorted(batches: &[RecordBatch]) -> Vec<String> {
        let text = pretty_format_batches(batches).expect("format").to_string();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    const SQL: &str = "SELECT window_start, window_start + INTERVAL '1 hour' AS window_end, product_id, \
        sum(quantity) AS units, count(*) AS n, min(quantity) AS low, max(quantity) AS high \
        FROM (SELECT unnest(hop(event_time, '1 hour', '15 minutes')) AS window_start, * FROM events) \
        GROUP BY window_start, product_id HAVING count(*) > 1";

    #[tokio::test]
    async fn merged_partials_give_the_query_over_all_events() {
        let ctx = SessionBuilder::new(Codecs::ember())
            .with_parallelism(2)
            .local()
            .expect("session");
        let first = events(&[(1, "A", 2), (5, "B", 1), (20, "A", 3), (31, "A", -4)]);
        let second = events(&[(10, "A", 7), (40, "B", 9), (44, "B", 2), (70, "A", 1)]);
        let all = datafusion::arrow::compute::concat_batches(&first.schema(), [&first, &second])
            .expect("concat");
        let expected = run(&ctx, plan(&ctx, SQL, all).await).await;
        assert!(!expected.is_empty());

        // Batch 1's partial rows are the state, in a Parquet file as a shard; batch 2's merge
        // with them.
        let split = Split::new(&plan(&ctx, SQL, first).await).expect("splits");
        let state = split
            .to_state(&run(&ctx, split.partial_plan()).await)
            .expect("state rows");
        let dir = tempfile::tempdir().expect("tempdir");
        let shard = dir.path().join("shard.parquet");
        std::fs::write(
            &shard,
            crate::sink::to_parquet(&split.state_schema(), &state).expect("parquet"),
        )
        .expect("shard");
        let split = Split::new(&plan(&ctx, SQL, second).await).expect("splits");
        let new_rows = split
            .to_state(&run(&ctx, split.partial_plan()).await)
            .expect("state rows");
        let union = LogicalPlanBuilder::from(
            split
                .files_plan(&[format!("file://{}", shard.display())])
                .expect("files"),
        )
        .union(
            split
                .scan("partials", new_rows)
                .and_then(LogicalPlanBuilder::build)
                .expect("rows"),
        )
        .expect("union")
        .build()
        .expect("plan");
        let merged_plan = split.merge_plan(union).expect("merge");
        let merged = split
            .to_state(&run(&ctx, merged_plan.clone()).await)
            .expect("merged");
        let emitted = run(&ctx, split.emit_plan(merged.clone()).expect("emit")).await;
        assert_eq!(sorted(&emitted), sorted(&expected));
        assert_eq!(emitted[0].schema().fields(), expected[0].schema().fields());

        // One row per (window, product); at watermark 60 min the windows that end by then are
        // closed (they start at or before 0 min), the others open: together, all of them.
        let windows = rows_of(&merged);
        let with = |open: bool| {
            LogicalPlanBuilder::from(merged_plan.clone())
                .filter(split.window_filter(60 * MIN, 60 * MIN, open))
                .and_then(LogicalPlanBuilder::build)
                .expect("filter")
        };
        let open = run(&ctx, with(true)).await;
        let closed = run(&ctx, with(false)).await;
        assert!(rows_of(&open) > 0 && rows_of(&closed) > 0);
        assert_eq!(rows_of(&open) + rows_of(&closed), windows);
        for (batches, open) in [(&open, true), (&closed, false)] {
            for b in batches {
                let starts = cast(b.column(0), &DataType::Int64).expect("starts");
                let starts = starts.as_any().downcast_ref::<Int64Array>().expect("i64");
                assert!(
                    starts.values().iter().all(|&s| (s > 0) == open),
                    "{starts:?}"
                );
            }
        }
    }

    fn rows_of(batches: &[RecordBatch]) -> u64 {
        rows(batches)
    }

    #[tokio::test]
    async fn holistic_aggregates_keep_the_events_and_say_why() {
        let ctx = SessionBuilder::new(Codecs::ember())
            .local()
            .expect("session");
        let batch = events(&[(1, "A", 2)]);
        let why = |sql: String| {
            let ctx = ctx.clone();
            let batch = batch.clone();
            async move { Split::new(&plan(&ctx, &sql, batch).await).expect_err("events kept") }
        };
        let from = "FROM (SELECT tumble(event_time, '1 hour') AS window_start, * FROM events)";
        assert!(
            why(format!(
                "SELECT window_start, count(DISTINCT product_id) AS n {from} GROUP BY window_start"
            ))
            .await
            .contains("count(DISTINCT …) needs every event")
        );
        assert!(
            why(format!(
                "SELECT window_start, avg(quantity) AS a {from} GROUP BY window_start"
            ))
            .await
            .contains("avg() cannot be merged")
        );
        assert!(
            why(format!(
                "SELECT product_id, max(window_start) AS w {from} GROUP BY product_id"
            ))
            .await
            .contains("does not group by a `window_start`")
        );
        // The fingerprint names what the rows aggregate, with types.
        let split = Split::new(
            &plan(
                &ctx,
                &format!("SELECT window_start, sum(quantity) AS q {from} GROUP BY window_start"),
                batch,
            )
            .await,
        )
        .expect("splits");
        assert!(
            split.fingerprint().contains("sum("),
            "{}",
            split.fingerprint()
        );
        assert_eq!(split.state_schema().field(1).name(), "a0");
    }
}
