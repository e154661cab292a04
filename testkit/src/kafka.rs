//! A real Kafka-protocol broker for tests: tansu (Apache-2.0, Rust) with its sqlite storage
//! engine, on 127.0.0.1, from the binary `.ci/kafka.sh` installs. Ember talks to it with the
//! same rdkafka client it uses against Apache Kafka.
//!
//! ```no_run
//! use ember_testkit::kafka::KafkaBroker;
//!
//! let broker = KafkaBroker::start().expect("start tansu");
//! println!("bootstrap.servers = {}", broker.brokers());
//! // The broker is killed and its folder removed when `broker` is dropped.
//! ```

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{free_port, tail_lines, wait_for};

/// Environment variable naming tansu's binary (default `~/.cache/ember-tools/bin/tansu`).
pub const TANSU_ENV: &str = "EMBER_TANSU";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running tansu broker.
pub struct KafkaBroker {
    child: Child,
    port: u16,
    dir: TempDir,
}

/// The tansu binary: `$EMBER_TANSU` or `~/.cache/ember-tools/bin/tansu`.
///
/// # Errors
/// A message saying to run `bash .ci/kafka.sh` when it is missing.
pub fn tansu() -> Result<PathBuf, String> {
    crate::util::installed_tool(
        TANSU_ENV,
        ".cache/ember-tools/bin/tansu",
        "run `bash .ci/kafka.sh` (CI does; it builds tansu once, 15-20 min)",
    )
}

impl KafkaBroker {
    /// Starts a broker on a free port and waits (bounded) until it accepts connections.
    ///
    /// # Errors
    /// When tansu is missing, does not start, or does not listen within 30 s (with its log).
    pub fn start() -> Result<Self, String> {
        Self::start_from(&tansu()?)
    }

    /// [`KafkaBroker::start`] with a given binary.
    ///
    /// # Errors
    /// As [`KafkaBroker::start`].
    pub fn start_from(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("ember-kafka-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.path().join("tansu.log");
        let mut child = Command::new(bin)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .stderr(std::fs::File::create(dir.path().join("tansu.err")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let ready = wait_for(
            "tansu to accept connections",
            START_TIMEOUT,
            Duration::from_millis(100),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("tansu exited with {status}"));
                }
                Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
            },
        );
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{e}\n{}\n{}",
                tail_lines(&log, 30),
                tail_lines(&dir.path().join("tansu.err"), 30)
            ));
        }
        Ok(Self { child, port, dir })
    }

    /// `bootstrap.servers` for clients: `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Grows `topic` to `total` partitions, as `kafka-topics.sh --alter --partitions` does on
    /// Apache Kafka. tansu 0.6 has no CreatePartitions request, so this adds the partitions to
    /// its SQLite storage the way its CreateTopics does (`topic.partitions`, one `topition` and
    /// one `watermark` row per new partition), with Python's `sqlite3` (the venv's Python).
    ///
    /// # Errors
    /// When the venv is missing, the topic does not exist or the update fails.
    pub fn add_partitions(&self, topic: &str, total: i32) -> Result<(), String> {
        let script = r#"
import sqlite3, sys
db, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = sqlite3.connect(db, timeout=30)
row = con.execute("select id, partitions from topic where name = ?", (topic,)).fetchone()
if row is None:
    sys.exit(f"no topic {topic}")
tid, now = row
with con:
    for p in range(now, total):
        con.execute("insert into topition (topic, partition) values (?, ?)", (tid, p))
        con.execute("insert into watermark (topition) select id from topition where topic = ? and partition = ?", (tid, p))
    con.execute("update topic set partitions = ?, last_updated = current_timestamp where id = ?", (max(now, total), tid))
"#;
        let out = Command::new(crate::util::python()?)
            .args(["-c", script])
            .arg(self.dir.path().join("tansu.db"))
            .arg(topic)
            .arg(total.to_string())
            .output()
            .map_err(|e| format!("python: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "adding partitions to {topic}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The broker's log, last lines (for failure messages).
    pub fn logs(&self) -> String {
        format!(
            "--- tansu\n{}\n{}",
            tail_lines(&self.dir.path().join("tansu.log"), 20),
            tail_lines(&self.dir.path().join("tansu.err"), 20)
        )
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
