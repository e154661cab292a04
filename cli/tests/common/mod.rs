//! Helpers the streaming test files share.

use std::collections::BTreeMap;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use ember_streaming::engine::StreamReport;

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

/// The JSON report of an `ember run` that exited 0 (else the stderr in the panic).
pub fn report_of(out: &Output) -> StreamReport {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Polls `what` every 100 ms until it holds, at most `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM to a running `ember run` (spawned with piped stdout and stderr): the stream
/// stops after the batch in flight (at most 30 s) and its report is returned.
pub fn stop_with_sigterm(mut child: Child) -> StreamReport {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    while ember_testkit::util::wait_child(&mut child, Duration::from_millis(100))
        .expect("wait")
        .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no stop after SIGTERM"
        );
    }
    report_of(&child.wait_with_output().expect("output"))
}
