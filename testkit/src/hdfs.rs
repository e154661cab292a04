//! A real HDFS for tests: Apache Hadoop 2.7.3's NameNode and DataNode, run as two JVMs on
//! 127.0.0.1 from the jars that `.ci/hadoop.sh` installs.
//!
//! ```no_run
//! use ember_testkit::hdfs::HdfsCluster;
//!
//! let hdfs = HdfsCluster::start().expect("start HDFS");
//! hdfs.fs(&["-mkdir", "-p", "/data"]).expect("mkdir");
//! let listing = hdfs.fs(&["-ls", "/"]).expect("ls");
//! assert!(listing.contains("/data"));
//! println!("clients connect to {}", hdfs.url());
//! // Both JVMs are stopped and the temp dir is removed when `hdfs` is dropped.
//! ```

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{free_port, tail_lines, wait_child, wait_for};

/// The block size (`dfs.blocksize`, 1 MiB: the smallest HDFS allows) of every cluster, kept small
/// so that files of a few MiB already span several blocks.
pub const BLOCK_SIZE: u64 = 1024 * 1024;

/// Environment variable naming the folder `.ci/hadoop.sh` installed the jars into.
pub const HADOOP_HOME_ENV: &str = "EMBER_HADOOP_HOME";

/// Environment variable that, when set to a non-empty value, keeps a cluster's temp dir (config,
/// logs, storage) after the cluster is dropped, for debugging; its path is printed to stderr.
pub const KEEP_DIR_ENV: &str = "EMBER_HDFS_KEEP_DIR";

/// The install folder below `$HOME` when [`HADOOP_HOME_ENV`] is unset.
const DEFAULT_HADOOP_HOME: &str = ".cache/ember-tools/hadoop-2.7.3";
/// Written last by `.ci/hadoop.sh`: the jars are complete when it exists.
const INSTALL_MARKER: &str = ".complete";

/// Bounds on the waits.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const FORMAT_TIMEOUT: Duration = Duration::from_secs(60);
const FS_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to start when the NameNode port chosen was taken in the meantime.
const START_ATTEMPTS: usize = 3;
/// Lines of each log quoted in error messages.
const LOG_TAIL_LINES: usize = 40;

/// The DataNode logs this once the NameNode knows its (empty) storage: the cluster is usable.
const READY_LINE: &str = "Successfully sent block report";
/// The NameNode logs this when it leaves safe mode (writes are allowed).
const SAFE_MODE_OFF: &str = "Safe mode is OFF";

const NAMENODE_CLASS: &str = "org.apache.hadoop.hdfs.server.namenode.NameNode";
const DATANODE_CLASS: &str = "org.apache.hadoop.hdfs.server.datanode.DataNode";
const FS_SHELL_CLASS: &str = "org.apache.hadoop.fs.FsShell";

/// Runs `"$@"` (the JVM) in the background and kills it when this shell's stdin reaches end of
/// file, i.e. when the harness drops the pipe or its process dies (even by SIGKILL, so no JVM is
/// left behind by an aborted test). Exits with the JVM's status when the JVM exits on its own.
const WATCHDOG_SCRIPT: &str = r#"exec 3<&0 0</dev/null
"$@" 3<&- &
pid=$!
(cat <&3 >/dev/null; kill -KILL "$pid" 2>/dev/null) &
watchdog=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
"#;

/// Log4j 1.2 configuration: everything to stderr, which the harness sends to a log file.
/// `hadoop.root.logger` is a default that `-Dhadoop.root.logger=...` overrides.
const LOG4J_PROPERTIES: &str = "\
hadoop.root.logger=INFO,console
log4j.rootLogger=${hadoop.root.logger}
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
";

/// A real HDFS (Hadoop 2.7.3 NameNode + DataNode) on 127.0.0.1, started for a test and stopped
/// on drop.
///
/// Every cluster lives in a fresh temp dir (see [`HdfsCluster::dir`]) and listens on free ports
/// only; several clusters can run side by side. Configuration: replication 1, block size
/// [`BLOCK_SIZE`], permissions off, WebHDFS off (only the RPC protocol, which `hdfs-native`
/// speaks). The NameNode's HTTP server and the DataNode's ports are ephemeral.
pub struct HdfsCluster {
    url: String,
    port: u16,
    java: PathBuf,
    classpath: OsString,
    hadoop_home: PathBuf,
    fs_calls: AtomicU64,
    /// Daemons started again so far (numbers their log files).
    restarts: u32,
    datanode: Daemon,
    namenode: Daemon,
    /// `None` only while dropping.
    dir: Option<TempDir>,
    dir_path: PathBuf,
}

impl HdfsCluster {
    /// Starts NameNode + DataNode from the jars that `.ci/hadoop.sh` installed
    /// (`$EMBER_HADOOP_HOME`, or `$HOME/.cache/ember-tools/hadoop-2.7.3`), in a fresh temp dir,
    /// on free ports, and waits (at most 120 s) until the DataNode has sent its first block
    /// report, i.e. until files can be written.
    ///
    /// Errors (it never skips): the jars are missing (the message says to run
    /// `bash .ci/hadoop.sh`); `java` is missing (`$JAVA_HOME/bin/java` is used when
    /// `JAVA_HOME` is set, else `java` from `PATH`); formatting or a daemon fails; or the
    /// cluster is not ready in time. The last lines of the logs are included.
    pub fn start() -> Result<Self, String> {
        Self::start_from(&hadoop_home()?)
    }

    /// Like [`HdfsCluster::start`], with the jars taken from `hadoop_home` (the folder that
    /// holds `jars/`, as `.ci/hadoop.sh` lays it out) instead of `$EMBER_HADOOP_HOME` or the
    /// default folder.
    pub fn start_from(hadoop_home: &Path) -> Result<Self, String> {
        let jars = hadoop_home.join("jars");
        if !jars.join(INSTALL_MARKER).is_file() {
            return Err(format!(
                "the Hadoop 2.7.3 jars are not installed in {} (no {INSTALL_MARKER} marker): \
                 run `bash .ci/hadoop.sh` first (it installs into ${HADOOP_HOME_ENV}, default \
                 $HOME/{DEFAULT_HADOOP_HOME})",
                jars.display()
            ));
        }
        let java = java_binary();

        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match Self::start_once(&java, hadoop_home, &jars) {
                Ok(cluster) => {
                    eprintln!(
                        "HdfsCluster: {} ready in {:.1?} (dir {})",
                        cluster.url,
                        started.elapsed(),
                        cluster.dir_path.display()
                    );
                    return Ok(cluster);
                }
                Err(StartError::PortTaken(message)) if attempt < START_ATTEMPTS => {
                    eprintln!("HdfsCluster: retrying on another port: {message}");
                    attempt += 1;
                }
                Err(StartError::PortTaken(message) | StartError::Fatal(message)) => {
                    return Err(message);
                }
            }
        }
    }

    /// `hdfs://127.0.0.1:PORT` (no trailing slash): the `fs.defaultFS` of the cluster.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The NameNode's RPC port (the one in [`HdfsCluster::url`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's temp dir: `conf/` (core-site.xml, hdfs-site.xml, log4j.properties),
    /// `logs/` (namenode.log, datanode.log, format.log), `name/` and `data/` (the storage).
    /// Removed on drop unless `EMBER_HDFS_KEEP_DIR` is set.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Runs Hadoop's own `FsShell` (`org.apache.hadoop.fs.FsShell`, i.e. `hdfs dfs`) with `args`
    /// against this cluster, e.g. `["-mkdir", "-p", "/data"]`, `["-put", local, "/data/x.csv"]`,
    /// `["-get", "/out", local_dir]`, `["-ls", "-R", "/out"]`, `["-cat", "/data/x.csv"]`.
    ///
    /// HDFS paths are relative to the cluster (`fs.defaultFS`); pass local paths as absolute
    /// paths (the JVM runs in the test's working directory). Returns stdout; a non-zero exit
    /// status or no exit within 120 s is an error that quotes stderr. Each call starts a JVM
    /// (about 1.5 s).
    pub fn fs(&self, args: &[&str]) -> Result<String, String> {
        let call = self.fs_calls.fetch_add(1, Ordering::Relaxed);
        let logs = self.dir_path.join("logs");
        let out_path = logs.join(format!("fs-{call}.out"));
        let err_path = logs.join(format!("fs-{call}.err"));
        let shown = format!("hdfs dfs {}", args.join(" "));

        let stdout = File::create(&out_path)
            .map_err(|err| format!("{shown}: cannot create {}: {err}", out_path.display()))?;
        let stderr = File::create(&err_path)
            .map_err(|err| format!("{shown}: cannot create {}: {err}", err_path.display()))?;
        let mut command = self.java_command("WARN,console");
        command
            .arg(FS_SHELL_CLASS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut child = command
            .spawn()
            .map_err(|err| java_spawn_error(&self.java, &err))?;

        let waited = wait_child(&mut child, FS_TIMEOUT);
        let status = match waited {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err(format!("timed out after {FS_TIMEOUT:?}")),
            Err(err) => Err(format!("cannot wait for the JVM: {err}")),
        };
        if status.is_err() {
            // Best effort: the JVM is stuck or unwaitable; make sure it does not outlive us.
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned();
        let err = String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned();
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);

        match status {
            Ok(status) if status.success() => Ok(out),
            Ok(status) => Err(format!("`{shown}` failed ({status}); stderr:\n{err}")),
            Err(why) => Err(format!("`{shown}` {why}; stderr so far:\n{err}")),
        }
    }

    /// Kills the DataNode (SIGKILL) and waits for it to exit. Blocks being written to it fail;
    /// its blocks cannot be read until [`HdfsCluster::start_datanode`]. The NameNode still
    /// counts it as alive (it notices a silent DataNode only after about 10 minutes), so it
    /// keeps handing it out for new blocks.
    pub fn kill_datanode(&mut self) {
        self.datanode.stop();
    }

    /// Starts the DataNode again on the same storage (new ephemeral ports) and waits (at most
    /// 120 s) until it has sent its block report to the NameNode.
    ///
    /// # Errors
    /// As [`HdfsCluster::start`]: the JVM cannot start, exits early, or is not ready in time.
    pub fn start_datanode(&mut self) -> Result<(), String> {
        self.datanode.stop();
        self.restarts += 1;
        let log = format!("datanode-{}.log", self.restarts);
        self.datanode = self
            .spawn_daemon("DataNode", DATANODE_CLASS, &log)
            .map_err(StartError::message)?;
        self.wait_ready().map_err(StartError::message)
    }

    /// Kills the NameNode (SIGKILL), leaves it down for `down`, and starts it again on the same
    /// port and metadata. Waits (at most 120 s) until the DataNode has registered with it again,
    /// sent its block report, and the NameNode has left safe mode: files can be read and
    /// written again.
    ///
    /// # Errors
    /// The JVM cannot start, exits early, or is not ready in time (the logs' tails included).
    pub fn restart_namenode(&mut self, down: Duration) -> Result<(), String> {
        let reports_before = count_in(&self.datanode.log, READY_LINE);
        self.namenode.stop();
        std::thread::sleep(down);
        self.restarts += 1;
        let log = format!("namenode-{}.log", self.restarts);
        self.namenode = self
            .spawn_daemon("NameNode", NAMENODE_CLASS, &log)
            .map_err(StartError::message)?;
        let (namenode_log, datanode_log) = (self.namenode.log.clone(), self.datanode.log.clone());
        wait_for(
            "the restarted NameNode's block report and the end of its safe mode",
            START_TIMEOUT,
            Duration::from_millis(200),
            || {
                if let Some(status) = self.namenode.exit_status() {
                    return Err(format!("the NameNode exited early ({status})"));
                }
                let reported = count_in(&datanode_log, READY_LINE) > reports_before;
                let safe_mode_off = count_in(&namenode_log, SAFE_MODE_OFF) > 0;
                Ok((reported && safe_mode_off).then_some(()))
            },
        )
        .map_err(|why| {
            format!(
                "HDFS at {} did not come back after a NameNode restart ({why})\n\
                 --- tail of {} ---\n{}\n--- tail of {} ---\n{}",
                self.url,
                namenode_log.display(),
                tail_lines(&namenode_log, LOG_TAIL_LINES),
                datanode_log.display(),
                tail_lines(&datanode_log, LOG_TAIL_LINES),
            )
        })
    }

    /// One attempt: a fresh dir and port, format, start both daemons, wait until ready.
    fn start_once(java: &Path, hadoop_home: &Path, jars: &Path) -> Result<Self, StartError> {
        let fatal = StartError::Fatal;
        let dir = tempfile::Builder::new()
            .prefix("ember-hdfs-")
            .tempdir()
            .map_err(|err| fatal(format!("cannot create a temp dir for HDFS: {err}")))?;
        let dir_path = dir.path().to_path_buf();
        let port = free_port().map_err(|err| fatal(format!("cannot find a free port: {err}")))?;
        let url = format!("hdfs://127.0.0.1:{port}");

        let conf = dir_path.join("conf");
        write_config(&dir_path, &conf, &url, port)
            .map_err(|err| fatal(format!("cannot write the HDFS config: {err}")))?;
        let classpath = std::env::join_paths([conf.clone(), jars.join("*")]).map_err(|err| {
            fatal(format!(
                "cannot build a classpath from {} and {}: {err}",
                conf.display(),
                jars.display()
            ))
        })?;

        let logs = dir_path.join("logs");
        let mut cluster = Self {
            url,
            port,
            java: java.to_path_buf(),
            classpath,
            hadoop_home: hadoop_home.to_path_buf(),
            fs_calls: AtomicU64::new(0),
            restarts: 0,
            datanode: Daemon::none("DataNode", logs.join("datanode.log")),
            namenode: Daemon::none("NameNode", logs.join("namenode.log")),
            dir: Some(dir),
            dir_path,
        };
        // From here on, dropping `cluster` on an error stops whatever was started.
        cluster.format().map_err(fatal)?;
        cluster.namenode = cluster.spawn_daemon("NameNode", NAMENODE_CLASS, "namenode.log")?;
        cluster.datanode = cluster.spawn_daemon("DataNode", DATANODE_CLASS, "datanode.log")?;
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// `java <JVM options> -cp <conf>:<jars>/*`, ready for a main class and its arguments; it
    /// runs in the current directory unless the caller sets another.
    fn java_command(&self, root_logger: &str) -> Command {
        let mut command = Command::new(&self.java);
        command
            .args([
                "-Xmx256m",
                // Small, quick-starting JVMs: 2 cores are shared with the build and the tests.
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-XX:-UsePerfData",
                "-Djava.net.preferIPv4Stack=true",
            ])
            .arg(jvm_property("hadoop.home.dir", &self.hadoop_home))
            .arg(jvm_property("java.io.tmpdir", &self.dir_path.join("tmp")))
            .arg(format!("-Dhadoop.root.logger={root_logger}"))
            .arg("-cp")
            .arg(&self.classpath);
        command
    }

    /// `NameNode -format -nonInteractive`, bounded.
    fn format(&self) -> Result<(), String> {
        let log = self.dir_path.join("logs").join("format.log");
        let out =
            File::create(&log).map_err(|err| format!("cannot create {}: {err}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|err| format!("cannot open {}: {err}", log.display()))?;
        let mut command = self.java_command("INFO,console");
        command
            .args([NAMENODE_CLASS, "-format", "-nonInteractive"])
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = command
            .spawn()
            .map_err(|err| java_spawn_error(&self.java, &err))?;
        let outcome = match wait_child(&mut child, FORMAT_TIMEOUT) {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => format!("failed ({status})"),
            Ok(None) => format!("did not finish within {FORMAT_TIMEOUT:?}"),
            Err(err) => format!("could not be waited for: {err}"),
        };
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "formatting the NameNode {outcome}; {}:\n{}",
            log.display(),
            tail_lines(&log, LOG_TAIL_LINES)
        ))
    }

    /// Starts a daemon JVM under the watchdog shell, its output going to `logs/<log_name>`.
    fn spawn_daemon(
        &self,
        name: &'static str,
        class: &str,
        log_name: &str,
    ) -> Result<Daemon, StartError> {
        let log = self.dir_path.join("logs").join(log_name);
        let open =
            |err: io::Error| StartError::Fatal(format!("cannot create {}: {err}", log.display()));
        let out = File::create(&log).map_err(open)?;
        let err = out.try_clone().map_err(open)?;

        // Reuse the JVM command line, but run it as `sh -c WATCHDOG sh java ARGS...`.
        let jvm = self.java_command("INFO,console");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("sh")
            .arg(jvm.get_program())
            .args(jvm.get_args())
            .arg(class)
            .current_dir(&self.dir_path)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        let mut child = command
            .spawn()
            .map_err(|err| StartError::Fatal(format!("cannot start sh for the {name}: {err}")))?;
        let stdin = child.stdin.take();
        Ok(Daemon {
            name,
            log,
            child: Some(child),
            stdin,
        })
    }

    /// Waits until the DataNode has sent its first block report, or a daemon exits, or time is up.
    fn wait_ready(&mut self) -> Result<(), StartError> {
        let started = Instant::now();
        let datanode_log = self.datanode.log.clone();
        let mut exited: Option<String> = None;
        let waited = wait_for(
            "the DataNode's first block report",
            START_TIMEOUT,
            Duration::from_millis(200),
            || {
                for daemon in [&mut self.namenode, &mut self.datanode] {
                    if let Some(status) = daemon.exit_status() {
                        let message = format!("the {} exited early ({status})", daemon.name);
                        exited = Some(daemon.name.to_string());
                        return Err(message);
                    }
                }
                let log = fs::read(&datanode_log).unwrap_or_default();
                let ready = String::from_utf8_lossy(&log).contains(READY_LINE);
                Ok(ready.then_some(()))
            },
        );
        let Err(why) = waited else {
            return Ok(());
        };

        let namenode_tail = tail_lines(&self.namenode.log, LOG_TAIL_LINES);
        let datanode_tail = tail_lines(&self.datanode.log, LOG_TAIL_LINES);
        let message = format!(
            "HDFS at {} did not start ({why}, after {:.1?}); its temp dir {} is removed \
             unless {KEEP_DIR_ENV}=1 is set\n\
             --- tail of {} ---\n{namenode_tail}\n--- tail of {} ---\n{datanode_tail}",
            self.url,
            started.elapsed(),
            self.dir_path.display(),
            self.namenode.log.display(),
            self.datanode.log.display(),
        );
        // The NameNode port was free when chosen, but another process may have taken it since.
        let port_taken = exited.as_deref() == Some("NameNode")
            && fs::read_to_string(&self.namenode.log)
                .is_ok_and(|log| log.contains("BindException"));
        Err(if port_taken {
            StartError::PortTaken(message)
        } else {
            StartError::Fatal(message)
        })
    }
}

impl Drop for HdfsCluster {
    /// Kills both JVMs (DataNode first) and waits for them, then removes the temp dir (unless
    /// `EMBER_HDFS_KEEP_DIR` is set).
    fn drop(&mut self) {
        self.datanode.stop();
        self.namenode.stop();
        if let Some(dir) = self.dir.take() {
            let keep = std::env::var_os(KEEP_DIR_ENV).is_some_and(|value| !value.is_empty());
            if keep {
                let path = dir.keep();
                eprintln!(
                    "HdfsCluster: kept {} ({KEEP_DIR_ENV} is set)",
                    path.display()
                );
            }
        }
    }
}

impl fmt::Debug for HdfsCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HdfsCluster")
            .field("url", &self.url)
            .field("dir", &self.dir_path)
            .finish_non_exhaustive()
    }
}

/// Why an attempt to start failed.
enum StartError {
    /// The NameNode could not bind the port chosen: worth another attempt on another port.
    PortTaken(String),
    Fatal(String),
}

impl StartError {
    fn message(self) -> String {
        match self {
            StartError::PortTaken(message) | StartError::Fatal(message) => message,
        }
    }
}

/// How many times `needle` occurs in the file at `path` (0 when it cannot be read).
fn count_in(path: &Path, needle: &str) -> usize {
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes).matches(needle).count()
}

/// A daemon JVM running under [`WATCHDOG_SCRIPT`].
struct Daemon {
    name: &'static str,
    log: PathBuf,
    /// The watchdog shell; `None` when not started or already reaped.
    child: Option<Child>,
    /// Closing it makes the watchdog kill the JVM.
    stdin: Option<ChildStdin>,
}

impl Daemon {
    fn none(name: &'static str, log: PathBuf) -> Self {
        Self {
            name,
            log,
            child: None,
            stdin: None,
        }
    }

    /// The exit status if the JVM (hence its watchdog shell) has exited.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Kills the JVM and waits for it (bounded).
    fn stop(&mut self) {
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        match wait_child(&mut child, STOP_TIMEOUT) {
            Ok(Some(_)) => {}
            outcome => {
                eprintln!(
                    "HdfsCluster: the {} did not stop within {STOP_TIMEOUT:?} ({outcome:?}); \
                     killing its watchdog shell (pid {})",
                    self.name,
                    child.id()
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `$EMBER_HADOOP_HOME`, else `$HOME/.cache/ember-tools/hadoop-2.7.3`.
fn hadoop_home() -> Result<PathBuf, String> {
    if let Some(home) = std::env::var_os(HADOOP_HOME_ENV).filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME")
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            format!(
                "neither {HADOOP_HOME_ENV} nor HOME is set: cannot find the Hadoop jars \
                 (run `bash .ci/hadoop.sh`)"
            )
        })?;
    Ok(PathBuf::from(home).join(DEFAULT_HADOOP_HOME))
}

/// `$JAVA_HOME/bin/java` when it exists, else `java` (looked up in `PATH`).
fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .filter(|value| !value.is_empty())
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|java| java.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

fn java_spawn_error(java: &Path, err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::NotFound {
        format!(
            "java not found ({}): HDFS needs a Java runtime; install one (e.g. `apt-get install \
             openjdk-17-jre-headless`) or set JAVA_HOME",
            java.display()
        )
    } else {
        format!("cannot run {}: {err}", java.display())
    }
}

fn jvm_property(name: &str, value: &Path) -> OsString {
    let mut arg = OsString::from(format!("-D{name}="));
    arg.push(value);
    arg
}

/// Writes `conf/` (Hadoop XML config, log4j, the empty `webapps/` the HTTP servers look for on
/// the classpath) and creates `logs/` and `tmp/`.
fn write_config(dir: &Path, conf: &Path, url: &str, port: u16) -> io::Result<()> {
    for sub in ["webapps/hdfs", "webapps/datanode", "webapps/secondary"] {
        fs::create_dir_all(conf.join(sub))?;
    }
    fs::create_dir_all(dir.join("logs"))?;
    fs::create_dir_all(dir.join("tmp"))?;

    let path = |name: &str| dir.join(name).display().to_string();
    let uri = |name: &str| format!("file://{}", path(name));
    let ephemeral = "127.0.0.1:0".to_string();

    let core_site = [
        ("fs.defaultFS", url.to_string()),
        ("hadoop.tmp.dir", path("tmp")),
    ];
    let hdfs_site = [
        ("dfs.namenode.name.dir", uri("name")),
        ("dfs.datanode.data.dir", uri("data")),
        ("dfs.namenode.rpc-address", format!("127.0.0.1:{port}")),
        ("dfs.namenode.http-address", ephemeral.clone()),
        ("dfs.namenode.https-address", ephemeral.clone()),
        ("dfs.namenode.secondary.http-address", ephemeral.clone()),
        ("dfs.namenode.secondary.https-address", ephemeral.clone()),
        ("dfs.datanode.address", ephemeral.clone()),
        ("dfs.datanode.http.address", ephemeral.clone()),
        ("dfs.datanode.https.address", ephemeral.clone()),
        ("dfs.datanode.ipc.address", ephemeral),
        ("dfs.replication", "1".to_string()),
        ("dfs.blocksize", BLOCK_SIZE.to_string()),
        ("dfs.webhdfs.enabled", "false".to_string()),
        ("dfs.permissions.enabled", "false".to_string()),
        ("dfs.namenode.safemode.extension", "0".to_string()),
        (
            "dfs.namenode.datanode.registration.ip-hostname-check",
            "false".to_string(),
        ),
        // One DataNode: there is nothing to replace a failed one with.
        (
            "dfs.client.block.write.replace-datanode-on-failure.enable",
            "false".to_string(),
        ),
    ];
    fs::write(conf.join("core-site.xml"), hadoop_xml(&core_site))?;
    fs::write(conf.join("hdfs-site.xml"), hadoop_xml(&hdfs_site))?;
    fs::write(conf.join("log4j.properties"), LOG4J_PROPERTIES)?;
    Ok(())
}

/// A Hadoop `<configuration>` document.
fn hadoop_xml(properties: &[(&str, String)]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<configuration>\n");
    for (name, value) in properties {
        xml.push_str(&format!(
            "  <property><name>{}</name><value>{}</value></property>\n",
            xml_escape(name),
            xml_escape(value)
        ));
    }
    xml.push_str("</configuration>\n");
    xml
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hadoop_xml_escapes_values() {
        let xml = hadoop_xml(&[("a.b", "x<&>\"y".to_string())]);
        assert!(
            xml.contains(
                "<property><name>a.b</name><value>x&lt;&amp;&gt;&quot;y</value></property>"
            ),
            "{xml}"
        );
        assert!(xml.starts_with("<?xml") && xml.ends_with("</configuration>\n"));
    }

    #[test]
    fn config_has_loopback_addresses_and_the_block_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf");
        write_config(dir.path(), &conf, "hdfs://127.0.0.1:4321", 4321).expect("write config");
        let core = fs::read_to_string(conf.join("core-site.xml")).expect("core-site.xml");
        let hdfs = fs::read_to_string(conf.join("hdfs-site.xml")).expect("hdfs-site.xml");
        assert!(
            core.contains("<value>hdfs://127.0.0.1:4321</value>"),
            "{core}"
        );
        assert!(hdfs.contains("<value>127.0.0.1:4321</value>"), "{hdfs}");
        assert!(hdfs.contains("<value>1048576</value>"), "{hdfs}");
        assert!(!hdfs.contains("0.0.0.0"), "{hdfs}");
        for sub in ["hdfs", "datanode", "secondary"] {
            assert!(conf.join("webapps").join(sub).is_dir(), "webapps/{sub}");
        }
    }
}
