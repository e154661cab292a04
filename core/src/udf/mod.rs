//! Ember's SQL functions, registered in every session Ember builds (client, scheduler and
//! executors), so plans that use them run the same embedded and on a cluster.
//!
//! | function | returns | rule |
//! |---|---|---|
//! | `try_to_timestamp(text [, format …])` | `Timestamp(µs)` | chrono formats tried in order; NULL when none parses |

mod try_to_timestamp;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

pub use try_to_timestamp::TryToTimestamp;

/// Every scalar function Ember adds to DataFusion's.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![Arc::new(ScalarUDF::new_from_impl(TryToTimestamp::new()))]
}
