//! `docker-compose.yml`, checked without Docker (no Docker engine runs here):
//! - every Ember service's command and `EMBER_*` environment pass Ember's own parser
//!   (`ember --check-config …`), published ports match the configured ones, every
//!   `depends_on` target exists (with a health check where `service_healthy` is asked), and the
//!   hosts the commands name are services of the file;
//! - the command sequence the file runs (scheduler, executors, producer, stream, batch job) runs
//!   natively on 127.0.0.1 against a real Kafka-protocol broker (tansu) and a real HDFS, with
//!   only the hosts and ports replaced by the test's. Every wait is bounded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ember_core::api::{ExecutorSummary, JobDetail, JobState, StreamSummary};
use ember_testkit::HdfsCluster;
use ember_testkit::ember::http_get;
use ember_testkit::kafka::KafkaBroker;
use ember_testkit::query::parquet_rows_with;
use ember_testkit::util::{free_port, tail_lines, wait_child, wait_for};
use serde_norway::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

/// The compose file's services, with YAML anchors and merge keys applied.
fn services() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).expect("read");
    let mut doc: Value = serde_norway::from_str(&text).expect("docker-compose.yml is YAML");
    doc.apply_merge().expect("merge keys");
    let services = doc["services"].as_mapping().expect("services");
    services
        .iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            v.apply_merge().expect("merge keys");
            (k.as_str().expect("name").to_string(), v)
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .expect("scalar")
                        .trim()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn environment(v: &Value) -> BTreeMap<String, String> {
    v["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other)
                            .expect("scalar")
                            .trim()
                            .to_string(),
                    };
                    (k.as_str().expect("key").to_string(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_ember(service: &Value) -> bool {
    service["image"].as_str() == Some("ember:latest")
}

/// `ember --check-config <args>` with exactly `env` as Ember's variables.
fn check_config(args: &[String], env: &BTreeMap<String, String>) -> (bool, String) {
    let mut c = Command::new(bin());
    c.arg("--check-config").args(args).current_dir(repo());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("EMBER_")) {
        c.env_remove(k);
    }
    c.envs(env);
    let out = c.output().expect("run ember");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_ember_service_passes_embers_own_parser_and_the_wiring_holds() {
    let services = services();
    for name in [
        "kafka",
        "namenode",
        "datanode",
        "scheduler",
        "executor",
        "producer",
        "stream",
        "batch",
    ] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let mut resolved = BTreeMap::new();
    for (name, service) in services.iter().filter(|(_, s)| is_ember(s)) {
        let env = environment(service);
        for key in env.keys() {
            assert!(
                key.starts_with("EMBER_") || key == "RUST_LOG",
                "{name}: {key} is not an Ember variable"
            );
        }
        let command = strings(&service["command"]);
        // Every variable is one the command reads (an unknown one would be ignored silently).
        let help = Command::new(bin())
            .args([command[0].as_str(), "--help"])
            .output()
            .expect("help");
        let help = String::from_utf8_lossy(&help.stdout);
        for key in env.keys().filter(|k| k.starts_with("EMBER_")) {
            assert!(
                help.contains(&format!("[env: {key}")),
                "{name}: `ember {}` does not read {key}",
                command[0]
            );
        }
        let (ok, text) = check_config(&command, &env);
        assert!(
            ok,
            "{name}: `ember {}` is refused: {text}",
            command.join(" ")
        );
        assert!(
            text.contains("the configuration is valid"),
            "{name}: {text}"
        );
        // The health check is an Ember command too.
        let health = strings(&service["healthcheck"]["test"]);
        if health.first().map(String::as_str) == Some("CMD")
            && health.get(1).is_some_and(|c| c == "ember")
        {
            let (ok, text) = check_config(&health[2..], &env);
            assert!(ok, "{name}: health check refused: {text}");
        }
        resolved.insert(name.clone(), text);
    }

    // A variable the parser does not know would pass silently: an unknown flag would not. Check
    // that the parser really sees the variables (a bad value is refused).
    let mut bad = environment(&services["executor"]);
    bad.insert("EMBER_EXECUTOR_TASK_SLOTS".into(), "many".into());
    let (ok, text) = check_config(&strings(&services["executor"]["command"]), &bad);
    assert!(!ok && text.contains("many"), "{text}");

    // Published ports are the configured ones.
    let scheduler = &resolved["scheduler"];
    assert!(scheduler.contains("port: 50050,"), "{scheduler}");
    assert!(scheduler.contains("port: 32010,"), "{scheduler}");
    let published: Vec<String> = strings(&services["scheduler"]["ports"]);
    assert_eq!(published, ["50050:50050", "32010:32010"]);
    assert!(resolved["executor"].contains("metrics_port: 50053,"));
    assert!(
        resolved["executor"].contains("scheduler_host: \"scheduler\"")
            && resolved["executor"].contains("scheduler_port: 50050,"),
        "{}",
        resolved["executor"]
    );

    // depends_on targets exist; service_healthy only on services with a health check.
    for (name, service) in &services {
        if let Some(deps) = service["depends_on"].as_mapping() {
            for (target, condition) in deps {
                let target = target.as_str().expect("name");
                let t = services
                    .get(target)
                    .unwrap_or_else(|| panic!("{name} depends on a missing {target}"));
                if condition["condition"].as_str() == Some("service_healthy") {
                    assert!(
                        !t["healthcheck"].is_null(),
                        "{name} waits for {target} to be healthy, which has no health check"
                    );
                }
            }
        }
    }

    // The hosts the commands name are services, on the ports those services use.
    let all: String = services
        .values()
        .filter(|s| is_ember(s))
        .flat_map(|s| strings(&s["command"]))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(all.contains("scheduler:50050"));
    assert!(all.contains("kafka:9092"));
    assert!(all.contains("hdfs://namenode:8020/"));
    let kafka = environment(&services["kafka"]);
    assert!(kafka["KAFKA_ADVERTISED_LISTENERS"].contains("kafka:9092"));
    let namenode = environment(&services["namenode"]);
    assert_eq!(
        namenode["HDFS-SITE.XML_dfs.namenode.rpc-address"],
        "namenode:8020"
    );
    assert!(
        !services["scheduler"]["build"].is_null(),
        "the image is built"
    );
    assert!(repo().join("Dockerfile").is_file());
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The compose service's command with the compose network's hosts and ports replaced by the
/// test's (`from` -> `to`, in order).
fn native(command: &[String], replace: &[(String, String)]) -> Vec<String> {
    command
        .iter()
        .map(|arg| {
            replace
                .iter()
                .fold(arg.clone(), |a, (from, to)| a.replace(from, to))
        })
        .collect()
}

/// Replaces the value of `flag` in `args` (it must be there).
fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {args:?}"));
    args[i + 1] = value.to_string();
}

/// The compose service's environment with the same replacements as [`native`] in its values.
fn native_env(service: &Value, replace: &[(String, String)]) -> BTreeMap<String, String> {
    environment(service)
        .into_iter()
        .map(|(k, v)| {
            let v = replace.iter().fold(v, |v, (from, to)| v.replace(from, to));
            (k, v)
        })
        .collect()
}

fn spawn(args: &[String], env: &BTreeMap<String, String>, log: &Path) -> Child {
    let mut c = Command::new(bin());
    c.args(args).current_dir(repo()).env_remove("RUST_LOG");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("EMBER_")) {
        c.env_remove(k);
    }
    c.envs(env.iter().filter(|(k, _)| k.starts_with("EMBER_")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .unwrap_or_else(|e| panic!("ember {}: {e}", args.join(" ")))
}

#[test]
fn the_compose_command_sequence_runs_natively() {
    let services = services();
    let broker = KafkaBroker::start().expect("broker");
    let hdfs = HdfsCluster::start().expect("HDFS");
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port").to_string();
    let flight = free_port().expect("port").to_string();
    let scheduler_address = format!("127.0.0.1:{port}");
    let replace = vec![
        ("scheduler:50050".to_string(), scheduler_address.clone()),
        ("kafka:9092".to_string(), broker.brokers()),
        ("hdfs://namenode:8020".to_string(), hdfs.url().to_string()),
        ("/opt/ember/".to_string(), format!("{}/", repo().display())),
        // The cluster secret's volume.
        (
            "/run/ember/".to_string(),
            format!("{}/", tmp.path().display()),
        ),
    ];

    // The scheduler, on free ports (the compose file's are fixed), bound to loopback.
    let mut args = native(&strings(&services["scheduler"]["command"]), &replace);
    set_flag(&mut args, "--port", &port);
    set_flag(&mut args, "--bind-host", "127.0.0.1");
    set_flag(&mut args, "--external-host", "127.0.0.1");
    let mut env = native_env(&services["scheduler"], &replace);
    env.insert("EMBER_FLIGHT_SQL_PORT".into(), flight.clone());
    let scheduler_log = tmp.path().join("scheduler.log");
    let _scheduler = Guard(spawn(&args, &env, &scheduler_log));
    // Its health check, as compose runs it (in the service's container, with its environment).
    let health_env = native_env(&services["scheduler"], &replace);
    let health = native(
        &strings(&services["scheduler"]["healthcheck"]["test"])[2..],
        &[("localhost:50050".to_string(), scheduler_address.clone())],
    );
    wait_for(
        "the scheduler's health check to pass",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let ok = Command::new(bin())
                .args(&health)
                .envs(&health_env)
                .output()
                .is_ok_and(|o| o.status.success());
            Ok(ok.then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", tail_lines(&scheduler_log, 20)));

    // Two executors (the file's replicas), each on its own free ports.
    let replicas = services["executor"]["deploy"]["replicas"]
        .as_u64()
        .expect("replicas");
    let mut executors = Vec::new();
    for i in 0..replicas {
        let mut args = native(&strings(&services["executor"]["command"]), &replace);
        set_flag(&mut args, "--bind-host", "127.0.0.1");
        for flag in ["--port", "--grpc-port"] {
            args.extend([flag.to_string(), free_port().expect("port").to_string()]);
        }
        let mut env = native_env(&services["executor"], &replace);
        env.insert(
            "EMBER_EXECUTOR_METRICS_PORT".into(),
            free_port().expect("port").to_string(),
        );
        env.insert(
            "EMBER_EXECUTOR_WORK_DIR".into(),
            tmp.path().join(format!("work-{i}")).display().to_string(),
        );
        let log = tmp.path().join(format!("executor-{i}.log"));
        executors.push((Guard(spawn(&args, &env, &log)), log));
    }
    wait_for(
        "the executors to register",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let list: Vec<ExecutorSummary> = serde_json::from_str(
                &http_get(&scheduler_address, "/api/v1/executors").unwrap_or_default(),
            )
            .unwrap_or_default();
            Ok(
                (list.iter().filter(|e| e.state == "alive").count() as u64 == replicas)
                    .then_some(()),
            )
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            executors
                .iter()
                .map(|(_, l)| tail_lines(l, 20))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });

    // The producer, as the file runs it but stopping after 20,000 events (the file replays all
    // 541,909 rows at 2,000/s). It creates the topic.
    let mut args = native(&strings(&services["producer"]["command"]), &replace);
    set_flag(&mut args, "--rate", "100000");
    args.extend(["--limit".into(), "20000".into()]);
    let out = Command::new(bin())
        .args(&args)
        .current_dir(repo())
        .output()
        .expect("produce");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The streaming job: it runs until stopped, writing windows to HDFS.
    let stream_args = native(&strings(&services["stream"]["command"]), &replace);
    let stream_log = tmp.path().join("stream.log");
    let _stream = Guard(spawn(
        &stream_args,
        &native_env(&services["stream"], &replace),
        &stream_log,
    ));

    // The batch job, submitted and followed to its end.
    let batch_args = native(&strings(&services["batch"]["command"]), &replace);
    let mut batch = Command::new(bin())
        .args(&batch_args)
        .args(["--format", "json"])
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .envs(native_env(&services["batch"], &replace))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("submit the batch job");
    let status = wait_child(&mut batch, Duration::from_secs(600)).expect("wait");
    let out = batch.wait_with_output().expect("output");
    assert!(
        status.is_some_and(|s| s.success()),
        "batch: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail_lines(&scheduler_log, 30)
    );
    let detail: JobDetail = serde_json::from_slice(&out.stdout).expect("job detail");
    assert_eq!(detail.summary.state, JobState::Succeeded);
    let report = detail.report.expect("report");
    assert_eq!(report.rows.read, Some(541_909));

    // The stream reported batches that read all 20,000 events, and wrote windows to HDFS.
    let stream = wait_for(
        "the stream to read the 20,000 events",
        Duration::from_secs(300),
        Duration::from_millis(500),
        || {
            let list: Vec<StreamSummary> = serde_json::from_str(
                &http_get(&scheduler_address, "/api/v1/streams").unwrap_or_default(),
            )
            .unwrap_or_default();
            Ok(list.into_iter().find(|s| {
                s.last.as_ref().is_some_and(|p| {
                    p.partitions.iter().map(|q| q.end_offset).sum::<i64>() == 20_000
                })
            }))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", tail_lines(&stream_log, 30)));
    assert_eq!(stream.name, "hourly_product_revenue");
    let output = format!("{}/ember/hourly_product_revenue", hdfs.url());
    let windows = ember_core::threads::block_on(parquet_rows_with(
        &format!("{output}/"),
        &["window_date", "window_hour"],
        "SELECT COUNT(*) FROM t",
    ))
    .expect("read the stream's windows on HDFS");
    assert!(windows.first().is_some_and(|n| n != "0"), "{windows:?}");
    let listing = hdfs
        .fs(&["-ls", "/ember/daily_revenue_by_product"])
        .expect("ls");
    assert!(listing.contains("_SUCCESS"), "{listing}");
}
