//! Kafka consumers kept between a stream's tasks in this process (an executor, or the driver in
//! embedded mode), one per (brokers, topic, group, options, partition), as Spark's executors
//! cache their Kafka consumers: a task that reads the range after the one its consumer read
//! last goes on fetching where it stands, instead of a new consumer asking the broker to serve
//! the partition again from the range's start. A task for another offset re-assigns it.
//!
//! A consumer holds sockets, librdkafka threads and up to [`crate::kafka::READ_AHEAD_BYTES`]
//! of messages fetched ahead, so it is closed
//! - when its stream ends in this process ([`close_stream`], called by the driver), and
//! - when no task used it for [`IDLE_TIMEOUT`] (5 min, Spark's
//!   `spark.kafka.consumer.cache.timeout`): a stream that ended on another machine, or moved
//!   its partitions to other executors. A reaper thread checks every [`REAP_EVERY`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use crate::kafka::KafkaSource;

/// A consumer not used by any task for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How often the reaper looks for idle consumers.
pub const REAP_EVERY: Duration = Duration::from_secs(30);

/// The cache key: the source without its watermark (brokers, topic, group, options), and the
/// partition.
type Key = (String, String, String, String, i32);

struct Cached {
    source: Arc<KafkaSource>,
    last_used: Instant,
}

static CONSUMERS: LazyLock<Mutex<HashMap<Key, Cached>>> = LazyLock::new(Default::default);
static REAPER: Once = Once::new();

fn cache() -> std::sync::MutexGuard<'static, HashMap<Key, Cached>> {
    CONSUMERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The consumer of `partition` of `topic` on `brokers`, for group `group_id` with librdkafka
/// `options`: the cached one, or a new one (cached).
///
/// # Errors
/// [`crate::Error::Kafka`] when librdkafka rejects the settings.
pub fn consumer(
    brokers: &str,
    topic: &str,
    group_id: &str,
    options: &BTreeMap<String, String>,
    partition: i32,
) -> crate::Result<Arc<KafkaSource>> {
    REAPER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("ember-kafka-reaper".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(REAP_EVERY);
                    close_idle(Instant::now(), IDLE_TIMEOUT);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no reaper thread: idle Kafka consumers are closed only when their stream ends here");
        }
    });
    let key = (
        brokers.to_string(),
        topic.to_string(),
        group_id.to_string(),
        format!("{options:?}"),
        partition,
    );
    let mut cache = cache();
    if let Some(cached) = cache.get_mut(&key) {
        cached.last_used = Instant::now();
        return Ok(Arc::clone(&cached.source));
    }
    let source = Arc::new(KafkaSource::new(brokers, topic, group_id, options)?);
    cache.insert(
        key,
        Cached {
            source: Arc::clone(&source),
            last_used: Instant::now(),
        },
    );
    Ok(source)
}

/// Closes the consumers no task used since `now - idle`. Returns how many it closed. (A task
/// still holding one keeps it open until it finishes.)
pub fn close_idle(now: Instant, idle: Duration) -> usize {
    let mut cache = cache();
    let before = cache.len();
    cache.retain(|(_, topic, group, _, partition), cached| {
        let keep = now.saturating_duration_since(cached.last_used) < idle;
        if !keep {
            tracing::info!(topic, group, partition, "closing an idle Kafka consumer");
        }
        keep
    });
    before - cache.len()
}

/// Closes this process's consumers of a stream (`brokers`, `topic`, `group_id`): the stream
/// ended. Returns how many it closed.
pub fn close_stream(brokers: &str, topic: &str, group_id: &str) -> usize {
    let mut cache = cache();
    let before = cache.len();
    cache.retain(|(b, t, g, _, _), _| !(b == brokers && t == topic && g == group_id));
    let closed = before - cache.len();
    if closed > 0 {
        tracing::info!(
            topic,
            group_id,
            closed,
            "closed the stream's Kafka consumers"
        );
    }
    closed
}

/// How many consumers this process keeps, per topic (for tests and metrics).
pub fn open_per_topic() -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, topic, ..) in cache().keys() {
        *counts.entry(topic.clone()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    // Nothing listens on port 1: a consumer connects only when it is used.
    fn consumer_of(topic: &str, partition: i32) -> Arc<KafkaSource> {
        consumer("127.0.0.1:1", topic, "g", &BTreeMap::new(), partition).expect("consumer")
    }

    #[test]
    fn consumers_are_reused_then_closed_when_idle_or_when_their_stream_ends() {
        let (a, b) = ("consumers_test_a", "consumers_test_b");
        let first = consumer_of(a, 0);
        assert!(Arc::ptr_eq(&first, &consumer_of(a, 0)));
        consumer_of(a, 1);
        consumer_of(b, 0);
        let open = open_per_topic();
        assert_eq!(
            (open.get("consumers_test_a"), open.get("consumers_test_b")),
            (Some(&2), Some(&1))
        );
        // The stream of topic a ends: only its consumers are closed.
        assert_eq!(close_stream("127.0.0.1:1", "consumers_test_a", "g"), 2);
        let open = open_per_topic();
        assert_eq!(
            (open.get("consumers_test_a"), open.get("consumers_test_b")),
            (None, Some(&1))
        );
        // Not idle yet one minute later; closed five minutes later.
        let later = Instant::now() + Duration::from_secs(60);
        close_idle(later, IDLE_TIMEOUT);
        assert_eq!(open_per_topic().get("consumers_test_b"), Some(&1));
        close_idle(later + IDLE_TIMEOUT, IDLE_TIMEOUT);
        assert_eq!(open_per_topic().get("consumers_test_b"), None);
    }
}
