//! `ember produce`: writes events into a Kafka topic, from a CSV in the Online Retail layout
//! (replayed in file order), from Instacart order lines ([`instacart`]) or synthetic, at a given
//! rate or as fast as possible, and creates the topic first when it is missing; or application
//! log files into a folder ([`logs`]).
//!
//! Online Retail rows map to events as: `event_time` = `InvoiceDate` (as written, read as UTC),
//! `store_id` = `Country`, `product_id` = `StockCode`, `category` absent, `transaction_type` =
//! `RETURN` when `Quantity` < 0 else `SALE`, `quantity` = |`Quantity`|, `unit_price` =
//! `UnitPrice` (as written). Dirty rows stay dirty (a zero quantity, a negative price): the
//! stream quarantines them, as the batch job does. The message key is the product id, so one
//! product's events stay in one partition.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use serde_json::json;

use crate::error::{Error, Result};
use crate::kafka::{client_config, ensure_topic};

pub mod instacart;
pub mod logs;

/// Where events come from.
#[derive(Debug, Clone)]
pub enum EventSource {
    /// A CSV (or CSV.gz) file in the Online Retail layout.
    Csv(PathBuf),
    /// A folder of Instacart CSVs: one event per order line ([`instacart`]).
    Instacart(PathBuf),
    /// `count` synthetic events (seeded, deterministic): 200 products, event time from
    /// 2011-12-09T00:00Z advancing `step_ms` per event (each event up to 29 s late), 5% returns.
    /// [`synthetic_fits`] tells whether the last one stays within year 9999.
    Synthetic {
        /// How many.
        count: u64,
        /// Random seed.
        seed: u64,
        /// Event time between one event and the next, ms: 1,000 gives one event per second of
        /// event time; with `--rate R`, `1000 / R` makes event time pass as fast as wall time.
        step_ms: u64,
    },
}

/// What to produce, where, how fast.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Partitions of the topic when Ember creates it.
    pub partitions: i32,
    /// Events per second; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this many events.
    pub limit: Option<u64>,
    /// Show a progress line on stderr.
    pub progress: bool,
}

/// What was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Produced {
    /// Messages delivered (acknowledged by the brokers).
    pub messages: u64,
    /// Whether the topic was created.
    pub created_topic: bool,
    /// Wall time, ms.
    pub duration_ms: u64,
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    ember_core::Error::storage(path.display().to_string(), e).into()
}

/// A CSV file's bytes, gunzipped when its name ends in `.gz`.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// Counts messages the brokers did not acknowledge (librdkafka reports them once retries are
/// exhausted).
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Maps one Online Retail row (header names) to an event message: (key, JSON).
pub fn retail_event(row: &BTreeMap<String, String>) -> (String, String) {
    let get = |k: &str| row.get(k).map(|v| v.trim()).unwrap_or("");
    let quantity: i64 = get("Quantity").parse().unwrap_or(0);
    let product = get("StockCode").to_string();
    let event = json!({
        "event_time": get("InvoiceDate"),
        "store_id": get("Country"),
        "product_id": product,
        "transaction_type": if quantity < 0 { "RETURN" } else { "SALE" },
        "quantity": quantity.abs(),
        "unit_price": get("UnitPrice"),
    });
    (product, event.to_string())
}

/// The first synthetic event's time, ms since the epoch: 2011-12-09T00:00:00Z.
const SYNTHETIC_START_MS: i64 = 1_323_388_800_000;
/// The latest time a synthetic event may carry, ms since the epoch: 9999-12-31T23:59:59Z, the
/// last that RFC 3339 writes with a four-digit year.
const SYNTHETIC_LATEST_MS: i64 = 253_402_300_799_000;

/// Whether `count` synthetic events `step_ms` apart all stay within year 9999.
pub fn synthetic_fits(count: u64, step_ms: u64) -> bool {
    let last = count.saturating_sub(1).saturating_mul(step_ms);
    i64::try_from(last).is_ok_and(|ms| ms <= SYNTHETIC_LATEST_MS - SYNTHETIC_START_MS)
}

fn synthetic(i: u64, step_ms: u64, rng: &mut rand::rngs::StdRng) -> (String, String) {
    let product = format!("P{:03}", rng.random_range(0..200));
    let base_ms = SYNTHETIC_START_MS;
    let advanced = i64::try_from(i.saturating_mul(step_ms)).unwrap_or(i64::MAX / 2);
    let t_ms = base_ms + advanced - rng.random_range(0..30) * 1000;
    let time = chrono::DateTime::from_timestamp_millis(t_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let is_return = rng.random_bool(0.05);
    let event = json!({
        "event_time": time,
        "store_id": format!("S{}", rng.random_range(0..10)),
        "product_id": product,
        "category": "synthetic",
        "transaction_type": if is_return { "RETURN" } else { "SALE" },
        "quantity": rng.random_range(1..10),
        "unit_price": format!("{}.{:02}", rng.random_range(0..50), rng.random_range(0..100)),
    });
    (product, event.to_string())
}

/// Produces events into the topic.
///
/// # Errors
/// [`Error::Kafka`] when the topic cannot be created or a message is not delivered;
/// [`ember_core::Error::Storage`] when the CSV cannot be read.
pub async fn produce(source: &EventSource, options: &ProduceOptions) -> Result<Produced> {
    let started = Instant::now();
    let created_topic = ensure_topic(
        &options.brokers,
        &options.topic,
        options.partitions,
        &BTreeMap::new(),
    )
    .await?;
    let producer: ThreadedProducer<Deliveries> = client_config(&options.brokers, &BTreeMap::new())
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create_with_context(Deliveries::default())
        .map_err(|e| Error::Kafka {
            context: format!("producer for {}", options.brokers),
            message: e.to_string(),
        })?;
    let bar = if options.progress {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos} events to {msg} ({per_sec}, {elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(options.topic.clone());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut sent: u64 = 0;
    let limit = options.limit.unwrap_or(u64::MAX);
    let mut send = |key: &str, value: &str| -> Result<bool> {
        if sent >= limit {
            return Ok(false);
        }
        if let Some(rate) = options.rate {
            #[allow(clippy::cast_precision_loss)]
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let elapsed = started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        let mut record = BaseRecord::to(&options.topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    return Err(Error::Kafka {
                        context: format!("producing to {}", options.topic),
                        message: e.to_string(),
                    });
                }
            }
        }
        sent += 1;
        bar.inc(1);
        Ok(true)
    };
    tokio::task::block_in_place(|| -> Result<()> {
        match source {
            EventSource::Csv(path) => {
                let mut csv = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_reader(open(path)?);
                let headers = csv.headers().map_err(|e| io(path, e))?.clone();
                for (line, row) in csv.records().enumerate() {
                    let row = row.map_err(|e| io(path, format!("line {}: {e}", line + 2)))?;
                    let map: BTreeMap<String, String> = headers
                        .iter()
                        .map(str::to_string)
                        .zip(row.iter().map(str::to_string))
                        .collect();
                    let (key, value) = retail_event(&map);
                    if !send(&key, &value)? {
                        break;
                    }
                }
            }
            EventSource::Instacart(dir) => {
                for (key, value) in instacart::events(dir)? {
                    if !send(&key, &value)? {
                        break;
                    }
                }
            }
            EventSource::Synthetic {
                count,
                seed,
                step_ms,
            } => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(*seed);
                for i in 0..*count {
                    let (key, value) = synthetic(i, *step_ms, &mut rng);
                    if !send(&key, &value)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    })?;
    tokio::task::block_in_place(|| producer.flush(Duration::from_secs(60))).map_err(|e| {
        Error::Kafka {
            context: format!("flushing to {}", options.topic),
            message: e.to_string(),
        }
    })?;
    bar.finish_and_clear();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = producer
            .context()
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        return Err(Error::Kafka {
            context: format!("producing to {}", options.topic),
            message: format!(
                "{failed} of {sent} messages were not delivered; first error: {first}"
            ),
        });
    }
    Ok(Produced {
        messages: sent,
        created_topic,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The event time of synthetic event `i`, seconds since the epoch.
    fn times(step_ms: u64, n: u64) -> Vec<i64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..n)
            .map(|i| {
                let (_, event) = synthetic(i, step_ms, &mut rng);
                let event: serde_json::Value = serde_json::from_str(&event).expect("JSON");
                let time = event["event_time"].as_str().expect("event_time");
                chrono::DateTime::parse_from_rfc3339(time)
                    .expect("RFC 3339")
                    .timestamp()
            })
            .collect()
    }

    #[test]
    fn synthetic_events_fit_until_year_9999() {
        assert!(synthetic_fits(10_000, 1000));
        assert!(synthetic_fits(0, u64::MAX));
        let to_the_end = u64::try_from(SYNTHETIC_LATEST_MS - SYNTHETIC_START_MS).expect("ms");
        assert!(synthetic_fits(2, to_the_end));
        assert!(!synthetic_fits(2, to_the_end + 1));
        assert!(!synthetic_fits(1_000_000, 1000 * 365 * 86_400_000));
    }

    #[test]
    fn synthetic_event_time_advances_by_the_step() {
        // Event i is at the start plus i steps, less up to 29 s of lateness (to the second).
        let start = 1_323_388_800_i64;
        for step_ms in [1000, 10] {
            for (i, t) in times(step_ms, 10_000).into_iter().enumerate() {
                let on_time = start + (i as i64 * step_ms as i64) / 1000;
                assert!(
                    (on_time - 30..=on_time).contains(&t),
                    "{step_ms} ms, event {i}: {t}"
                );
            }
        }
    }
}
