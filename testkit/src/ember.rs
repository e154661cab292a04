//! A real Ember cluster for tests: an `ember scheduler` and N `ember executor` processes on
//! 127.0.0.1 (free ports), started from the binary under test and killed on drop.
//!
//! ```no_run
//! use ember_testkit::ember::{ClusterOptions, EmberCluster};
//!
//! let cluster = EmberCluster::start("target/debug/ember".as_ref(), 2, &ClusterOptions::default())
//!     .expect("start the cluster");
//! println!("ember submit jobs/x --scheduler {}", cluster.address());
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{free_port, tail_lines, wait_child, wait_for};

/// How long the scheduler and the executors may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Task slots per executor.
    pub task_slots: usize,
    /// Partitions per stage of submitted jobs.
    pub partitions: usize,
    /// The scheduler's executor loss timeout (`--executor-timeout`).
    pub executor_timeout: String,
    /// The executors' heartbeat interval.
    pub heartbeat_interval: String,
    /// Extra environment variables for every process.
    pub env: Vec<(String, String)>,
    /// Extra arguments of `ember scheduler` (e.g. Flight SQL users).
    pub scheduler_args: Vec<String>,
    /// How the test itself reaches the cluster's REST API when it speaks TLS or needs the
    /// cluster token; `None`: plain HTTP.
    pub client: Option<ember_core::security::SecuritySettings>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            task_slots: 2,
            partitions: 4,
            // Generous: on a loaded 2-core CI machine heartbeats arrive late, and an executor
            // wrongly declared lost costs its finished shuffle files.
            executor_timeout: "30s".into(),
            heartbeat_interval: "2s".into(),
            env: Vec::new(),
            scheduler_args: Vec::new(),
            client: None,
        }
    }
}

/// A running scheduler and its executors.
pub struct EmberCluster {
    bin: PathBuf,
    options: ClusterOptions,
    scheduler: Child,
    executors: Vec<Option<Child>>,
    metrics_ports: Vec<u16>,
    flight_ports: Vec<u16>,
    address: String,
    flight_sql: String,
    dir: TempDir,
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = wait_child(child, Duration::from_secs(10));
}

/// Starts `ember scheduler` on `port` (0: a free one) with its working directory (and so its
/// job history) in `dir`, its log appended to `dir/scheduler.log`; returns it with its address
/// and its Flight SQL address once it listens.
fn spawn_scheduler(
    bin: &Path,
    options: &ClusterOptions,
    dir: &Path,
    port: u16,
) -> Result<(Child, String, String), String> {
    let log = dir.join("scheduler.log");
    let work = dir.join("scheduler");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| e.to_string())?;
    let mut scheduler = Command::new(bin)
        .args([
            "scheduler",
            "--bind-host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--flight-sql-port", "0"])
        .args(&options.scheduler_args)
        .args(["--executor-timeout", &options.executor_timeout])
        .args(["--partitions", &options.partitions.to_string()])
        .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("EMBER_CONFIG")
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {} scheduler: {e}", bin.display()))?;
    // The scheduler prints `ember flight sql listening on HOST:PORT`, then
    // `ember scheduler listening on HOST:PORT` once it is ready.
    let (tx, rx) = mpsc::channel();
    let stdout = scheduler.stdout.take().ok_or("no scheduler stdout")?;
    let flight_sql = Arc::new(Mutex::new(String::new()));
    let flight_seen = Arc::clone(&flight_sql);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("ember flight sql listening on ") {
                let address = address.split_whitespace().next().unwrap_or_default();
                *flight_seen.lock().unwrap_or_else(|e| e.into_inner()) = address.to_string();
            }
            if let Some(address) = line.strip_prefix("ember scheduler listening on ") {
                let address = address.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(address.to_string());
            }
        }
    });
    let address = match rx.recv_timeout(START_TIMEOUT) {
        Ok(address) => address,
        Err(_) => {
            kill(&mut scheduler);
            return Err(format!(
                "the scheduler did not start within {START_TIMEOUT:?}:\n{}",
                tail_lines(&log, 30)
            ));
        }
    };
    let flight_sql = flight_sql.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((scheduler, address, flight_sql))
}

impl EmberCluster {
    /// Starts a scheduler and `executors` executors, and waits (bounded) until every executor
    /// is registered.
    ///
    /// # Errors
    /// A message with the tail of the processes' logs when something does not start.
    pub fn start(bin: &Path, executors: usize, options: &ClusterOptions) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("ember-cluster-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let (scheduler, address, flight_sql) = spawn_scheduler(bin, options, dir.path(), 0)?;
        let mut cluster = Self {
            bin: bin.to_path_buf(),
            options: options.clone(),
            scheduler,
            executors: Vec::new(),
            metrics_ports: Vec::new(),
            flight_ports: Vec::new(),
            address,
            flight_sql,
            dir,
        };
        for _ in 0..executors {
            cluster.add_executor()?;
        }
        cluster.wait_for_executors(executors)?;
        Ok(cluster)
    }

    /// Starts one more executor (it registers on its own); returns its index.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn add_executor(&mut self) -> Result<usize, String> {
        let index = self.executors.len();
        let (flight, grpc, metrics) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let work = self.dir.path().join(format!("executor-{index}"));
        let log = self.dir.path().join(format!("executor-{index}.log"));
        let child = Command::new(&self.bin)
            .args([
                "executor",
                "--scheduler",
                &self.address,
                "--bind-host",
                "127.0.0.1",
            ])
            .args([
                "--port",
                &flight.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--metrics-port",
                &metrics.to_string(),
            ])
            .args(["--task-slots", &self.options.task_slots.to_string()])
            .args(["--heartbeat-interval", &self.options.heartbeat_interval])
            .args(["--scheduler-connect-timeout", "20s"])
            .arg("--work-dir")
            .arg(&work)
            .envs(
                self.options
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env_remove("EMBER_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start an executor: {e}"))?;
        self.executors.push(Some(child));
        self.metrics_ports.push(metrics);
        self.flight_ports.push(flight);
        Ok(index)
    }

    /// Waits (bounded) until the scheduler lists `count` alive executors.
    ///
    /// # Errors
    /// On timeout, with the logs' tails.
    pub fn wait_for_executors(&self, count: usize) -> Result<(), String> {
        wait_for(
            &format!("{count} executors to register"),
            START_TIMEOUT,
            Duration::from_millis(200),
            || {
                let body = self.get("/api/v1/executors").unwrap_or_default();
                let listed: Vec<serde_json::Value> =
                    serde_json::from_str(&body).unwrap_or_default();
                let alive = listed.iter().filter(|e| e["state"] == "alive").count();
                Ok((alive >= count).then_some(()))
            },
        )
        .map_err(|e| format!("{e}\n{}", self.logs()))
    }

    /// `HOST:PORT` of the scheduler's Flight SQL endpoint.
    pub fn flight_sql_address(&self) -> &str {
        &self.flight_sql
    }

    /// `HOST:PORT` of the scheduler (gRPC and REST API).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Kills executor `index` with SIGKILL, as a lost machine would.
    pub fn kill_executor(&mut self, index: usize) {
        if let Some(mut child) = self.executors.get_mut(index).and_then(Option::take) {
            kill(&mut child);
        }
    }

    /// The work folder (shuffle files) of executor `index`: it holds a folder per Ballista job
    /// the executor ran tasks for.
    pub fn executor_work_dir(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("executor-{index}"))
    }

    /// The log (stderr) of executor `index`.
    pub fn executor_log(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("executor-{index}.log"))
    }

    /// Kills the scheduler with SIGKILL (a crash: nothing is flushed or drained), leaves it
    /// down for `down`, then starts it again on the same port, in the same working directory
    /// (so with the same job history), and waits (bounded) until it listens. The executors
    /// keep running.
    ///
    /// # Errors
    /// When the scheduler does not start again, with its log's tail.
    pub fn restart_scheduler(&mut self, down: Duration) -> Result<(), String> {
        kill(&mut self.scheduler);
        std::thread::sleep(down);
        let port = self
            .address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("no port in {}", self.address))?;
        let (scheduler, address, flight_sql) =
            spawn_scheduler(&self.bin, &self.options, self.dir.path(), port)?;
        self.scheduler = scheduler;
        self.address = address;
        self.flight_sql = flight_sql;
        Ok(())
    }

    /// The scheduler's working directory (its job history is `history/` in it).
    pub fn scheduler_work_dir(&self) -> PathBuf {
        self.dir.path().join("scheduler")
    }

    /// The scheduler process, e.g. to signal it.
    pub fn scheduler_pid(&self) -> u32 {
        self.scheduler.id()
    }

    /// Process ids of the scheduler and the executors still running, scheduler first.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.scheduler.id())
            .chain(self.executors.iter().flatten().map(Child::id))
            .collect()
    }

    /// Every line every process logged (the scheduler's, then each executor's), e.g. to scan
    /// them for secrets.
    pub fn full_logs(&self) -> String {
        let mut out =
            std::fs::read_to_string(self.dir.path().join("scheduler.log")).unwrap_or_default();
        for i in 0..self.executors.len() {
            out.push('\n');
            out.push_str(&std::fs::read_to_string(self.executor_log(i)).unwrap_or_default());
        }
        out
    }

    /// The tails of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!(
            "--- scheduler\n{}",
            tail_lines(&self.dir.path().join("scheduler.log"), 20)
        );
        for i in 0..self.executors.len() {
            out.push_str(&format!(
                "\n--- executor {i}\n{}",
                tail_lines(&self.dir.path().join(format!("executor-{i}.log")), 10)
            ));
        }
        out
    }

    /// `127.0.0.1:PORT` of executor `index`'s `/metrics`.
    pub fn executor_metrics_address(&self, index: usize) -> String {
        format!(
            "127.0.0.1:{}",
            self.metrics_ports.get(index).copied().unwrap_or(0)
        )
    }

    /// `127.0.0.1:PORT` of executor `index`'s Arrow Flight port (shuffles, results).
    pub fn executor_flight_address(&self, index: usize) -> String {
        format!(
            "127.0.0.1:{}",
            self.flight_ports.get(index).copied().unwrap_or(0)
        )
    }

    /// `GET <path>` on the scheduler's HTTP port; the body when the status is 2xx.
    ///
    /// # Errors
    /// Connection errors and non-2xx answers (with the body).
    pub fn get(&self, path: &str) -> Result<String, String> {
        let Some(security) = &self.options.client else {
            return http_get(&self.address, path);
        };
        let client = ember_core::rest::Client::new("scheduler", &self.address, None, security)
            .map_err(|e| e.to_string())?;
        let path = path
            .trim_start_matches(ember_core::api::API_PREFIX)
            .to_string();
        let value: serde_json::Value =
            ember_core::threads::block_on(client.get(&path)).map_err(|e| e.to_string())?;
        Ok(value.to_string())
    }
}

impl Drop for EmberCluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().flatten() {
            kill(child);
        }
        kill(&mut self.scheduler);
    }
}

/// A minimal HTTP/1.0 GET (tests only): returns the body of a 2xx answer.
///
/// # Errors
/// Connection errors and non-2xx answers (with the body).
pub fn http_get(address: &str, path: &str) -> Result<String, String> {
    let answer = http_request(address, "GET", path, &[])?;
    if (200..300).contains(&answer.status) {
        Ok(answer.body)
    } else {
        Err(format!("GET {path}: {}: {}", answer.status, answer.body))
    }
}

/// An HTTP answer (tests only).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Header lines, as sent.
    pub head: String,
    /// Body.
    pub body: String,
}

/// A minimal HTTP/1.0 request with extra header lines `(name, value)` (tests only).
///
/// # Errors
/// Connection errors.
pub fn http_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpAnswer, String> {
    http_send(address, method, path, headers, "")
}

/// [`http_request`] with a JSON `body`.
///
/// # Errors
/// Connection errors.
pub fn http_send(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpAnswer, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(HttpAnswer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// An `ember serve` process (Flight SQL, embedded), killed on drop.
pub struct EmberServe {
    child: Child,
    address: String,
    http: String,
}

impl EmberServe {
    /// Starts `bin serve --flight-sql-port 0 <args>` in `dir`, its stderr to `log`, and waits
    /// (bounded) for its `ember flight sql listening on HOST:PORT` line.
    ///
    /// # Errors
    /// When it cannot start or does not listen within the start timeout (with the log's tail).
    pub fn start(bin: &Path, dir: &Path, args: &[&str], log: &Path) -> Result<Self, String> {
        Self::start_with_env(bin, dir, args, log, &[])
    }

    /// [`EmberServe::start`] with extra environment variables (e.g. `EMBER_TLS_*`).
    ///
    /// # Errors
    /// As [`EmberServe::start`].
    pub fn start_with_env(
        bin: &Path,
        dir: &Path,
        args: &[&str],
        log: &Path,
        env: &[(String, String)],
    ) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .args(["serve", "--flight-sql-port", "0", "--http-port", "0"])
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start ember serve: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut flight = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // `HOST:PORT`, then ` (tls)` when TLS is on; then the web UI's URL.
                if let Some(a) = line.strip_prefix("ember flight sql listening on ") {
                    flight = a.split_whitespace().next().unwrap_or_default().to_string();
                }
                if let Some(url) = line
                    .strip_prefix("ember web ui on http://")
                    .or_else(|| line.strip_prefix("ember web ui on https://"))
                {
                    let http = url.split('/').next().unwrap_or_default().to_string();
                    let _ = tx.send((flight.clone(), http));
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((address, http)) => Ok(Self {
                child,
                address,
                http,
            }),
            Err(_) => {
                kill(&mut child);
                Err(format!(
                    "ember serve did not listen within {START_TIMEOUT:?}:\n{}",
                    tail_lines(log, 30)
                ))
            }
        }
    }

    /// `HOST:PORT` of its Flight SQL endpoint.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `HOST:PORT` of its web UI and REST API.
    pub fn http_address(&self) -> &str {
        &self.http
    }
}

impl Drop for EmberServe {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
