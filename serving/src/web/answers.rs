//! The dashboard's answers, kept until their table commits again.
//!
//! The UI asks the dashboard's three questions every few seconds, and a wall screen polls them
//! all day; a stream's output changes only when a micro-batch closes windows, a batch job's
//! only when a run commits. Each call used to scan the whole table on the executors, and their
//! memory followed those scans (BENCHMARKS.md, "Two hours at the defaults": +20 MiB/h polled,
//! +3 unpolled). As Databricks SQL's query result cache, which a table's new version
//! invalidates, an answer is kept with the table's committed state
//! ([`crate::flight_sql::catalog::committed_state`]: the files a sink log committed, a Delta
//! version, a `_SUCCESS` file's time) and given again while that state, and the table
//! registered under the name, are the same. The dashboard's queries read nothing but their
//! table (no `now()`), so a kept answer is what the query would answer.
//!
//! At most [`MAX_ANSWERS`] answers of at most [`MAX_ANSWER_BYTES`] each; the least recently
//! used goes first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use datafusion::datasource::TableProvider;

/// Answers kept at most (distinct queries: day ranges and limits).
pub const MAX_ANSWERS: usize = 64;
/// The largest answer kept, bytes of JSON (a year of days is about 60 KB).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Kept answers, by SQL text, and how many calls each way answered.
#[derive(Default)]
pub struct Answers {
    kept: Mutex<Kept>,
    from_cache: AtomicU64,
    from_query: AtomicU64,
}

#[derive(Default)]
struct Kept {
    /// Increases with every use, for least-recently-used eviction.
    tick: u64,
    by_sql: HashMap<String, Answer>,
}

struct Answer {
    /// The table the query read (a replaced registration is another table).
    table: Arc<dyn TableProvider>,
    /// Its committed state when the query started.
    state: String,
    body: Bytes,
    used: u64,
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (cache, query) = self.counts();
        f.debug_struct("Answers")
            .field("from_cache", &cache)
            .field("from_query", &query)
            .finish_non_exhaustive()
    }
}

impl Answers {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer kept for `sql` over `table` in committed `state`, counted as answered from
    /// the cache; `None` when there is none (or it was of another state or table).
    pub fn get(&self, sql: &str, table: &Arc<dyn TableProvider>, state: &str) -> Option<Bytes> {
        let mut kept = self.kept();
        kept.tick += 1;
        let tick = kept.tick;
        let answer = kept
            .by_sql
            .get_mut(sql)
            .filter(|a| a.state == state && Arc::ptr_eq(&a.table, table))?;
        answer.used = tick;
        let body = answer.body.clone();
        drop(kept);
        self.from_cache.fetch_add(1, Ordering::Relaxed);
        Some(body)
    }

    /// Counts a call answered by running its query.
    pub fn queried(&self) {
        self.from_query.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps `body`, the answer of `sql` over `table` as of committed `state` (taken before
    /// the query ran, so a commit during the query only makes the next call run it again).
    /// An answer over [`MAX_ANSWER_BYTES`] is not kept.
    pub fn put(&self, sql: &str, table: Arc<dyn TableProvider>, state: String, body: Bytes) {
        if body.len() > MAX_ANSWER_BYTES {
            return;
        }
        let mut kept = self.kept();
        kept.tick += 1;
        let used = kept.tick;
        if kept.by_sql.len() >= MAX_ANSWERS && !kept.by_sql.contains_key(sql) {
            let oldest = kept
                .by_sql
                .iter()
                .min_by_key(|(_, a)| a.used)
                .map(|(sql, _)| sql.clone());
            if let Some(oldest) = oldest {
                kept.by_sql.remove(&oldest);
            }
        }
        kept.by_sql.insert(
            sql.to_string(),
            Answer {
                table,
                state,
                body,
                used,
            },
        );
    }

    /// Calls answered so far: (from the cache, by running the query).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.from_cache.load(Ordering::Relaxed),
            self.from_query.load(Ordering::Relaxed),
        )
    }

    /// Answers kept now.
    pub fn len(&self) -> usize {
        self.kept().by_sql.len()
    }

    /// Whether no answer is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::datasource::empty::EmptyTable;

    fn table() -> Arc<dyn TableProvider> {
        Arc::new(EmptyTable::new(Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        )))
    }

    #[test]
    fn an_answer_is_given_again_only_for_the_same_table_and_state() {
        let (answers, t, other) = (Answers::default(), table(), table());
        assert_eq!(answers.get("q", &t, "v1"), None);
        answers.queried();
        answers.put("q", Arc::clone(&t), "v1".into(), Bytes::from_static(b"[1]"));
        assert_eq!(answers.get("q", &t, "v1").as_deref(), Some(&b"[1]"[..]));
        // A commit since, another query, or the name served by another table: not kept.
        assert_eq!(answers.get("q", &t, "v2"), None);
        assert_eq!(answers.get("q2", &t, "v1"), None);
        assert_eq!(answers.get("q", &other, "v1"), None);
        assert_eq!(answers.counts(), (1, 1));
        answers.put("q", Arc::clone(&t), "v2".into(), Bytes::from_static(b"[2]"));
        assert_eq!(answers.get("q", &t, "v2").as_deref(), Some(&b"[2]"[..]));
        assert_eq!(answers.len(), 1);
    }

    #[test]
    fn the_least_recently_used_goes_first_and_big_answers_are_not_kept() {
        let (answers, t) = (Answers::default(), table());
        for i in 0..MAX_ANSWERS {
            answers.put(&format!("q{i}"), Arc::clone(&t), "v".into(), Bytes::new());
        }
        // q0 used again: q1 is now the least recently used.
        assert!(answers.get("q0", &t, "v").is_some());
        answers.put("new", Arc::clone(&t), "v".into(), Bytes::new());
        assert_eq!(answers.len(), MAX_ANSWERS);
        assert!(answers.get("q0", &t, "v").is_some());
        assert!(answers.get("q1", &t, "v").is_none());
        assert!(answers.get("new", &t, "v").is_some());
        let big = Bytes::from(vec![b' '; MAX_ANSWER_BYTES + 1]);
        answers.put("big", Arc::clone(&t), "v".into(), big);
        assert!(answers.get("big", &t, "v").is_none());
    }
}
