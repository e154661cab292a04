//! Ember's SQL functions, registered in every session Ember builds (client, scheduler and
//! executors), so plans that use them run the same embedded and on a cluster.
//!
//! | function | returns | rule |
//! |---|---|---|
//! | `try_to_timestamp(text [, format …])` | `Timestamp(µs)` | chrono formats tried in order; NULL when none parses |
//! | `hop(ts, size, slide)` | `List<Timestamp(µs)>` | starts of the hopping windows holding `ts` (unnest it) |
//! | `tumble(ts, size)` | `Timestamp(µs)` | start of the tumbling window holding `ts` |
//! | `most_frequent(value [, preferred])` (aggregate) | `Utf8` | the value occurring most often (in the rows where `preferred` is true, if any); ties to the smallest |
//! | `max_text(text)` (aggregate) | `Utf8` | the largest text in byte order, as `max`, in 12 bytes per group plus the text (for millions of groups) |

mod max_text;
mod most_frequent;
mod try_to_timestamp;
pub mod window;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

pub use max_text::MaxText;
pub use most_frequent::MostFrequent;
pub use try_to_timestamp::TryToTimestamp;
pub use window::{Hop, Tumble, WindowSpec};

/// Every scalar function Ember adds to DataFusion's.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(TryToTimestamp::new())),
        Arc::new(ScalarUDF::new_from_impl(Hop::new())),
        Arc::new(ScalarUDF::new_from_impl(Tumble::new())),
    ]
}

/// Every aggregate function Ember adds to DataFusion's.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::new_from_impl(MostFrequent::new())),
        Arc::new(AggregateUDF::new_from_impl(MaxText::new())),
    ]
}
