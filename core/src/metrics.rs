//! Prometheus text exposition of a snapshot: the scheduler's and the executors' `/metrics`
//! collect their numbers when scraped, and this turns them into the text format through the
//! Prometheus project's own client (`prometheus-client`), so names, labels, `# HELP`/`# TYPE`
//! lines and escaping follow the format.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of one sample: (name, value) pairs.
type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

/// One family's help, kind and samples.
#[derive(Debug)]
struct FamilyData {
    help: &'static str,
    kind: Kind,
    samples: Vec<(Labels, f64)>,
}

/// A snapshot of metric samples, grouped in families by name.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, FamilyData>,
}

/// Label pairs, with the values escaped as the text format asks (`\\`, `\"`, `\n`):
/// prometheus-client 0.24 writes label values as they are.
fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| {
            let value = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            ((*k).to_string(), value)
        })
        .collect()
}

impl Exposition {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        l: &[(&str, &str)],
        v: f64,
    ) {
        self.families
            .entry(name)
            .or_insert(FamilyData {
                help,
                kind,
                samples: Vec::new(),
            })
            .samples
            .push((labels(l), v));
    }

    /// A gauge sample (a value that goes up and down). `help` has no final period (the
    /// encoder adds one).
    pub fn gauge(&mut self, name: &'static str, help: &'static str, l: &[(&str, &str)], v: f64) {
        self.add(name, help, Kind::Gauge, l, v);
    }

    /// A counter sample (a total since the process started); the text names it
    /// `<name>_total`.
    pub fn counter(&mut self, name: &'static str, help: &'static str, l: &[(&str, &str)], v: u64) {
        #[allow(clippy::cast_precision_loss)]
        self.add(name, help, Kind::Counter, l, v as f64);
    }

    /// The Prometheus text format (version 0.0.4 compatible, OpenMetrics `# EOF` ending).
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        for (name, data) in self.families {
            match data.kind {
                Kind::Gauge => {
                    let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
                    for (l, v) in &data.samples {
                        family.get_or_create(l).set(*v);
                    }
                    registry.register(name, data.help, family);
                }
                Kind::Counter => {
                    let family = Family::<Labels, Counter<u64>>::default();
                    for (l, v) in &data.samples {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        family.get_or_create(l).inc_by(*v as u64);
                    }
                    registry.register(name, data.help, family);
                }
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// Content type of [`Exposition::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Resident memory of this process, bytes (Linux `/proc/self/statm`; 0 elsewhere).
pub fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_labels_in_text_format() {
        let mut m = Exposition::default();
        m.gauge("ember_jobs", "Jobs by state", &[("state", "failed")], 1.0);
        m.gauge(
            "ember_jobs",
            "Jobs by state",
            &[("state", "succeeded")],
            2.0,
        );
        m.counter("ember_tasks_succeeded", "Tasks", &[("executor", "e\"1")], 7);
        let text = m.encode();
        assert!(
            text.contains("# HELP ember_jobs Jobs by state.\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE ember_jobs gauge"), "{text}");
        assert!(text.contains("ember_jobs{state=\"failed\"} 1.0"), "{text}");
        assert!(
            text.contains("ember_jobs{state=\"succeeded\"} 2.0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ember_tasks_succeeded counter"),
            "{text}"
        );
        assert!(
            text.contains("ember_tasks_succeeded_total{executor=\"e\\\"1\"} 7"),
            "{text}"
        );
        assert!(resident_memory_bytes() > 0);
    }
}
