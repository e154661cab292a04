//! Helpers the streaming test files share.

use std::collections::BTreeMap;
use std::time::Duration;

use ember_testkit::kafka::KafkaBroker;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Writes `messages` (partition, value) in order, with the broker's acknowledgement.
pub fn produce(broker: &KafkaBroker, topic: &str, partitions: i32, messages: &[(i32, String)]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(ember_streaming::kafka::ensure_topic(
        &broker.brokers(),
        topic,
        partitions,
        &BTreeMap::new(),
    ))
    .unwrap_or_else(|e| panic!("{e}\n{}", broker.logs()));
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("acks", "all")
        .create()
        .expect("producer");
    for (p, value) in messages {
        producer
            .send(
                BaseRecord::<(), String>::to(topic)
                    .partition(*p)
                    .payload(value),
            )
            .expect("queue");
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all messages acknowledged");
}
