//! The Kafka side of a stream (rdkafka): partitions and their offsets, reading an exact offset
//! range per partition, committing offsets to the consumer group, and creating topics.
//!
//! Ember's checkpoint owns the offsets. The consumer never auto-commits; after a batch is
//! committed its end offsets are also committed to the group, so that Kafka's tools show the
//! stream's lag (Spark does not do this).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::checkpoint::OffsetRange;
use crate::error::{Error, Result};

/// Bound of every metadata and offset request to the brokers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for the brokers to deliver a planned range.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a gap probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read waits with no message before it checks whether the offsets it still waits
/// for hold messages at all ([`KafkaSource::first_message_from`]).
pub const GAP_PROBE_AFTER: Duration = Duration::from_secs(3);

/// Most bytes of messages a consumer keeps fetched ahead of the ranges it was asked for:
/// librdkafka's prefetch queue (`queued.max.messages.kbytes`, unless `[source] options` set
/// it) and the messages a read delivered past its range end, kept for the next batch. When
/// the kept ones pass it they are dropped and the next read assigns again at its start. 64 MiB,
/// librdkafka's default queue: at 16 MiB one consumer of 4 partitions dropped what it had
/// fetched ahead at every 100,000-event batch and fetched it again.
pub const READ_AHEAD_BYTES: usize = 64 << 20;

/// One message read: partition, offset, payload (empty for a NULL value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Kafka partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The value's bytes.
    pub payload: Vec<u8>,
}

/// A consumer of one topic.
pub struct KafkaSource {
    consumer: BaseConsumer,
    brokers: String,
    topic: String,
    group_id: String,
    options: BTreeMap<String, String>,
    /// Where the consumer stands between batches, so that the next batch goes on fetching
    /// where the last one stopped (re-assigning would make the broker serve the same data
    /// again, as Spark's cached Kafka consumers avoid too).
    position: std::sync::Mutex<Position>,
}

/// The consumer's assignment between batches: per partition, the next offset it will deliver,
/// and messages it delivered past the last batch's end.
#[derive(Default)]
struct Position {
    assigned: bool,
    next: BTreeMap<i32, i64>,
    ahead: BTreeMap<i32, std::collections::VecDeque<Record>>,
}

impl Position {
    /// Bytes of the payloads kept ahead.
    fn ahead_bytes(&self) -> usize {
        self.ahead.values().flatten().map(|r| r.payload.len()).sum()
    }

    /// Drops the messages kept ahead, and the position with them, when they hold more than
    /// `max_bytes`; returns whether it did (the consumer must then be unassigned, so that the
    /// next read starts at its range's start instead of past the dropped messages).
    fn bound(&mut self, max_bytes: usize) -> bool {
        if self.ahead_bytes() <= max_bytes {
            return false;
        }
        *self = Self::default();
        true
    }

    /// Whether `ranges` go on where the consumer stands.
    fn continues(&self, ranges: &[&OffsetRange]) -> bool {
        self.assigned
            && ranges.iter().all(|r| {
                let front = self
                    .ahead
                    .get(&r.partition)
                    .and_then(|q| q.front())
                    .map(|m| m.offset);
                match (front, self.next.get(&r.partition)) {
                    (Some(f), _) => f <= r.start,
                    (None, Some(&n)) => n == r.start,
                    (None, None) => false,
                }
            })
    }
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn kafka(context: impl Into<String>, e: &KafkaError) -> Error {
    Error::Kafka {
        context: context.into(),
        message: e.to_string(),
    }
}

/// librdkafka settings every Ember client uses, plus `options`.
pub fn client_config(brokers: &str, options: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "15000")
        .set("log_level", "3");
    for (k, v) in options {
        config.set(k, v);
    }
    config
}

impl KafkaSource {
    /// A consumer of `topic` in group `group_id` (no auto-commit).
    ///
    /// # Errors
    /// [`Error::Kafka`] when librdkafka rejects the settings.
    pub fn new(
        brokers: &str,
        topic: &str,
        group_id: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let consumer: BaseConsumer = client_config(brokers, options)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set(
                "queued.max.messages.kbytes",
                options
                    .get("queued.max.messages.kbytes")
                    .cloned()
                    .unwrap_or_else(|| (READ_AHEAD_BYTES / 1024).to_string()),
            )
            .create()
            .map_err(|e| kafka(format!("consumer for {brokers}"), &e))?;
        Ok(Self {
            consumer,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group_id: group_id.to_string(),
            options: options.clone(),
            position: std::sync::Mutex::new(Position::default()),
        })
    }

    /// The topic's partitions, sorted.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the brokers do not answer or the topic does not exist.
    pub fn partitions(&self) -> Result<Vec<i32>> {
        let context = || format!("metadata of topic {} from {}", self.topic, self.brokers);
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(|e| kafka(context(), &e))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| Error::Kafka {
                context: context(),
                message: "no such topic".into(),
            })?;
        if let Some(e) = topic.error() {
            return Err(Error::Kafka {
                context: context(),
                message: format!("{e:?} (does the topic exist?)"),
            });
        }
        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err(Error::Kafka {
                context: context(),
                message: "the topic has no partitions (does it exist?)".into(),
            });
        }
        Ok(ids)
    }

    /// `(low, high)` offsets of a partition: the first offset still there and the next offset
    /// to be written.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the brokers do not answer.
    pub fn watermarks(&self, partition: i32) -> Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| kafka(format!("offsets of {}/{partition}", self.topic), &e))
    }

    /// Reads exactly the offsets of `ranges` (a partition's messages removed by retention are
    /// skipped). Blocking; at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Kafka`] when a fetch fails or the range is not complete within `timeout`
    /// (naming the partition and the offsets still missing).
    pub fn read(&self, ranges: &[OffsetRange], timeout: Duration) -> Result<Vec<Record>> {
        let wanted: Vec<&OffsetRange> = ranges.iter().filter(|r| r.end > r.start).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut position = self.position.lock().map_err(|_| Error::Kafka {
            context: format!("reading {}", self.topic),
            message: "the consumer's position lock is poisoned".into(),
        })?;
        if !position.continues(&wanted) {
            // A replay, a new stream, or other partitions: assign at the starts.
            let mut assignment = TopicPartitionList::new();
            for r in ranges {
                assignment
                    .add_partition_offset(&self.topic, r.partition, Offset::Offset(r.start))
                    .map_err(|e| kafka(format!("assigning {}/{}", self.topic, r.partition), &e))?;
            }
            self.consumer
                .assign(&assignment)
                .map_err(|e| kafka(format!("assigning {}", self.topic), &e))?;
            *position = Position {
                assigned: true,
                next: ranges.iter().map(|r| (r.partition, r.start)).collect(),
                ahead: BTreeMap::new(),
            };
        }
        // Next offset wanted per partition; a partition is done at its end.
        let mut next: BTreeMap<i32, (i64, i64)> = wanted
            .iter()
            .map(|r| (r.partition, (r.start, r.end)))
            .collect();
        let mut out = Vec::with_capacity(wanted.iter().map(|r| (r.end - r.start) as usize).sum());
        let mut take =
            |record: Record,
             next: &mut BTreeMap<i32, (i64, i64)>,
             ahead: &mut BTreeMap<i32, std::collections::VecDeque<Record>>| {
                match next.get_mut(&record.partition) {
                    Some((n, end)) if record.offset >= *n && record.offset < *end => {
                        *n = record.offset + 1;
                        out.push(record);
                    }
                    Some((_, end)) if record.offset >= *end => {
                        ahead.entry(record.partition).or_default().push_back(record);
                    }
                    Some(_) => {}
                    None => ahead.entry(record.partition).or_default().push_back(record),
                }
            };
        // Messages fetched during the last batch past its end come first.
        let buffered = std::mem::take(&mut position.ahead);
        for (_, queue) in buffered {
            for record in queue {
                take(record, &mut next, &mut position.ahead);
            }
        }
        let deadline = Instant::now() + timeout;
        let mut quiet_since = Instant::now();
        while next.values().any(|(n, end)| n < end) {
            if quiet_since.elapsed() >= GAP_PROBE_AFTER {
                // Offsets at the end of a range may hold no message (a transaction's commit
                // marker, a compacted tail, an aborted transaction's records): ask a fresh
                // consumer where the next message is.
                for (&p, (n, end)) in &mut next {
                    if *n < *end
                        && self
                            .first_message_from(
                                p,
                                *n,
                                deadline.min(Instant::now() + PROBE_TIMEOUT),
                            )?
                            .is_none_or(|first| first >= *end)
                    {
                        tracing::warn!(
                            topic = %self.topic, partition = p, from = *n, to = *end,
                            "these offsets hold no message (transaction markers or compaction): the range ends before them"
                        );
                        *n = *end;
                    }
                }
                quiet_since = Instant::now();
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let missing: Vec<String> = next
                    .iter()
                    .filter(|(_, (n, e))| n < e)
                    .map(|(p, (n, e))| format!("{}/{p} [{n}, {e})", self.topic))
                    .collect();
                *position = Position::default();
                let _ = self.consumer.unassign();
                return Err(Error::Kafka {
                    context: format!("reading from {}", self.brokers),
                    message: format!(
                        "offsets {} not delivered within {timeout:?}",
                        missing.join(", ")
                    ),
                });
            }
            let Some(message) = self.consumer.poll(left.min(Duration::from_millis(500))) else {
                continue;
            };
            quiet_since = Instant::now();
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    *position = Position::default();
                    let _ = self.consumer.unassign();
                    return Err(kafka(format!("reading {}", self.topic), &e));
                }
            };
            let record = Record {
                partition: message.partition(),
                offset: message.offset(),
                payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            };
            position.next.insert(record.partition, record.offset + 1);
            take(record, &mut next, &mut position.ahead);
        }
        if position.bound(READ_AHEAD_BYTES) {
            tracing::debug!(topic = %self.topic, "dropped messages fetched ahead past {READ_AHEAD_BYTES} bytes");
            let _ = self.consumer.unassign();
        }
        Ok(out)
    }

    /// The offset of the first message at or after `from` in `partition`, read by a consumer
    /// of its own (so that no event of an earlier read is mistaken for this one's): `None` when
    /// it reaches the partition's end first. A message not seen by `deadline` counts as at
    /// `from` (nothing is skipped on a guess).
    ///
    /// # Errors
    /// [`Error::Kafka`] when the consumer cannot be made or a fetch fails.
    fn first_message_from(
        &self,
        partition: i32,
        from: i64,
        deadline: Instant,
    ) -> Result<Option<i64>> {
        let context = || format!("probing {}/{partition} from offset {from}", self.topic);
        let probe: BaseConsumer = client_config(&self.brokers, &self.options)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| kafka(context(), &e))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, partition, Offset::Offset(from))
            .map_err(|e| kafka(context(), &e))?;
        probe
            .assign(&assignment)
            .map_err(|e| kafka(context(), &e))?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Some(from));
            }
            match probe.poll(left.min(Duration::from_millis(500))) {
                None => {}
                Some(Ok(m)) if m.partition() == partition => return Ok(Some(m.offset())),
                Some(Ok(_)) => {}
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return Ok(None),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(kafka(context(), &e)),
            }
        }
    }

    /// Commits `ends` (next offset per partition) to the consumer group.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the group coordinator refuses.
    pub fn commit(&self, ends: &BTreeMap<i32, i64>) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for (&p, &end) in ends {
            list.add_partition_offset(&self.topic, p, Offset::Offset(end))
                .map_err(|e| kafka(format!("committing {}/{p}", self.topic), &e))?;
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|e| kafka(format!("committing offsets of {}", self.topic), &e))
    }
}

/// Creates `topic` with `partitions` partitions (replication 1) unless it exists. Returns
/// whether it was created.
///
/// # Errors
/// [`Error::Kafka`] when the brokers do not answer or refuse.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    options: &BTreeMap<String, String>,
) -> Result<bool> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, options)
        .create()
        .map_err(|e| kafka(format!("admin client for {brokers}"), &e))?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| kafka(format!("metadata from {brokers}"), &e))?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if exists {
        return Ok(false);
    }
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)),
        )
        .await
        .map_err(|e| kafka(format!("creating topic {topic} on {brokers}"), &e))?;
    for r in results {
        if let Err((name, code)) = r
            && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(Error::Kafka {
                context: format!("creating topic {name} on {brokers}"),
                message: code.to_string(),
            });
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_kept_ahead_are_bounded_in_bytes_and_dropping_them_forces_a_new_assignment() {
        let record = |offset: i64, bytes: usize| Record {
            partition: 0,
            offset,
            payload: vec![b'x'; bytes],
        };
        let range = OffsetRange {
            partition: 0,
            start: 10,
            end: 20,
        };
        let mut position = Position {
            assigned: true,
            next: BTreeMap::from([(0, 12)]),
            ahead: BTreeMap::from([(0, [record(10, 600), record(11, 600)].into())]),
        };
        assert!(position.continues(&[&range]));
        assert!(!position.bound(1_200), "1,200 bytes are within 1,200");
        assert!(position.continues(&[&range]));
        assert!(position.bound(1_199), "1,200 bytes are past 1,199");
        assert_eq!(position.ahead_bytes(), 0);
        // The next read of [10, 20) assigns again at 10 instead of waiting past 12.
        assert!(!position.continues(&[&range]));
    }
}
