//! Trying to break in, as an outsider and as each kind of insider would, all on 127.0.0.1:
//! - Ballista's gRPC without the cluster secret: a raw Ballista client, a raw scheduler client
//!   registering an executor, a rogue executor with another secret;
//! - with the secret: files outside `[security] allowed_paths`, and COPY;
//! - the REST API: jobs and stream reports naming foreign paths, a stream taking over a table;
//! - each role against each route and Flight SQL action (the table in full);
//! - TLS: every listener refuses plain text, a client with the CA works;
//! - no secret in any log, REST answer or report of these runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ember_core::codec::Codecs;
use ember_core::config::ConfigFile;
use ember_core::security::{SecretUse, SecurityArgs, SecuritySettings};
use ember_core::session::SessionBuilder;
use ember_core::threads::block_on;
use ember_testkit::ember::{ClusterOptions, EmberCluster, EmberServe, http_request, http_send};
use ember_testkit::util::{free_port, output_text, tail_lines, wait_child};

const JOB: &str = "jobs/daily_revenue_by_product";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

/// `ember <args>` with extra environment variables.
fn ember(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove("EMBER_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run ember")
}

/// `ember submit JOB --scheduler ADDRESS --set input=… --set output=… --wait`.
fn submit(env: &[(&str, &str)], scheduler: &str, input: &str, output: &str) -> Output {
    ember(
        env,
        &[
            "submit",
            JOB,
            "--scheduler",
            scheduler,
            "--set",
            &format!("input={input}"),
            "--set",
            &format!("output={output}"),
            "--wait",
        ],
    )
}

/// Security settings a test client uses: the secret file and, optionally, TLS files.
fn client_security(secret: Option<&Path>, tls: Option<&Tls>) -> SecuritySettings {
    let args = SecurityArgs {
        cluster_secret_file: secret.map(Path::to_path_buf),
        tls_cert: tls.map(|t| t.cert.clone()),
        tls_key: tls.map(|t| t.key.clone()),
        ..Default::default()
    };
    let mut settings =
        SecuritySettings::resolve(&args, &ConfigFile::default(), SecretUse::IfPresent)
            .expect("client security");
    if secret.is_none() {
        // Not this machine's default secret either: an outsider has none.
        settings.cluster_secret = None;
    }
    settings
}

/// A small input in the Online Retail layout, under `dir`.
fn small_input(dir: &Path) -> PathBuf {
    let path = dir.join("sales.csv");
    std::fs::write(
        &path,
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
         1,A,Apple,2,2011-01-01 10:00:00,1.50,,UK\n\
         2,B,Pear,1,2011-01-02 10:00:00,2.00,,UK\n",
    )
    .expect("input");
    path
}

/// `/etc/hostname` as a table over `ctx`, read: what an intruder tries first.
async fn read_etc_hostname(
    ctx: datafusion::prelude::SessionContext,
) -> datafusion::error::Result<Vec<datafusion::arrow::array::RecordBatch>> {
    ctx.sql("CREATE EXTERNAL TABLE h (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname' OPTIONS ('format.has_header' 'false')")
        .await?;
    ctx.sql("SELECT * FROM h").await?.collect().await
}

#[test]
fn outsiders_without_the_secret_are_refused_and_paths_stay_confined() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = tmp.path().join("cluster.secret");
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).expect("allowed folder");
    std::fs::write(allowed.join("a.csv"), "x\n1\n2\n").expect("csv");
    let env = vec![
        (
            "EMBER_CLUSTER_SECRET_FILE".to_string(),
            secret.display().to_string(),
        ),
        (
            "EMBER_SECURITY_ALLOWED_PATHS".to_string(),
            allowed.display().to_string(),
        ),
    ];
    let options = ClusterOptions {
        env: env.clone(),
        ..ClusterOptions::default()
    };
    let cluster = EmberCluster::start(bin(), 1, &options).expect("cluster");
    assert!(secret.is_file(), "the scheduler wrote the secret");
    let url = format!("df://{}", cluster.address());

    // 1. A raw Ballista client without the secret: the query over /etc/hostname never runs.
    let refused = block_on(async {
        use ballista::prelude::SessionContextExt;
        read_etc_hostname(datafusion::prelude::SessionContext::remote(&url).await?).await
    })
    .expect_err("an outsider's query ran");
    assert!(
        refused.to_string().contains("needs Ember's cluster secret"),
        "{refused}"
    );
    // A raw scheduler client cannot register an executor either.
    let status = block_on(async {
        use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
        use ballista_core::serde::protobuf::{ExecutorRegistration, RegisterExecutorParams};
        let mut client = SchedulerGrpcClient::connect(format!("http://{}", cluster.address()))
            .await
            .expect("TCP connects");
        client
            .register_executor(RegisterExecutorParams {
                metadata: Some(ExecutorRegistration {
                    id: "rogue".into(),
                    port: 1,
                    ..Default::default()
                }),
            })
            .await
            .expect_err("registered without the secret")
    });
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");

    // 2. A rogue executor with another secret: it never registers, so it gets no task.
    let rogue_secret = tmp.path().join("rogue.secret");
    std::fs::write(&rogue_secret, "f".repeat(64)).expect("rogue secret");
    let rogue_log = tmp.path().join("rogue.log");
    let mut rogue = Command::new(bin())
        .args([
            "executor",
            "--scheduler",
            cluster.address(),
            "--bind-host",
            "127.0.0.1",
        ])
        .args(["--port", &free_port().expect("port").to_string()])
        .args(["--grpc-port", &free_port().expect("port").to_string()])
        .args(["--metrics-port", &free_port().expect("port").to_string()])
        .env("EMBER_CLUSTER_SECRET_FILE", &rogue_secret)
        .env_remove("EMBER_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&rogue_log).expect("log"))
        .spawn()
        .expect("rogue executor");
    let exited = wait_child(&mut rogue, Duration::from_secs(20)).expect("wait");
    let _ = rogue.kill();
    let _ = rogue.wait();
    let executors: Vec<serde_json::Value> =
        serde_json::from_str(&cluster.get("/api/v1/executors").expect("executors")).expect("json");
    assert_eq!(
        executors.iter().filter(|e| e["state"] == "alive").count(),
        1,
        "only the cluster's own executor is registered: {executors:?}\nrogue ({exited:?}): {}",
        tail_lines(&rogue_log, 10)
    );
    assert!(
        cluster.logs().contains("gRPC call refused"),
        "the scheduler logs who tried: {}",
        cluster.logs()
    );

    // 3. With the secret: files outside the allowed paths are refused where tasks run; COPY
    //    does not run at all; an allowed file reads.
    let insider =
        SessionBuilder::new(Codecs::ember()).with_security(client_security(Some(&secret), None));
    let outside =
        block_on(async { read_etc_hostname(insider.remote(&url).await.expect("session")).await })
            .expect_err("a file outside the allowed paths was read");
    assert!(
        outside.to_string().contains("is outside the allowed paths"),
        "{outside}"
    );
    let copy = block_on(async {
        let ctx = insider.remote(&url).await.expect("session");
        let target = allowed.join("copied.csv");
        ctx.sql(&format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
            target.display()
        ))
        .await?
        .collect()
        .await
    })
    .expect_err("COPY ran on the cluster");
    assert!(
        copy.to_string().contains("COPY and INSERT do not run"),
        "{copy}"
    );
    let counted = block_on(async {
        let ctx = insider.remote(&url).await.expect("session");
        ctx.sql(&format!(
            "CREATE EXTERNAL TABLE a STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            allowed.join("a.csv").display()
        ))
        .await?;
        ctx.sql("SELECT count(*) AS n FROM a").await?.collect().await
    })
    .expect("an allowed file reads");
    assert_eq!(
        datafusion::arrow::util::pretty::pretty_format_batches(&counted)
            .expect("print")
            .to_string()
            .matches("| 2 |")
            .count(),
        1
    );

    // 4. The REST API: a job naming a foreign path is refused before it runs, as the same
    //    job inside the allowed folder runs.
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let input = small_input(&allowed);
    let out = submit(
        &env_refs,
        cluster.address(),
        "/etc/hostname",
        &allowed.join("out").display().to_string(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("input `raw_sales` /etc/hostname is outside the allowed paths"),
        "{}",
        output_text(&out)
    );
    let out = submit(
        &env_refs,
        cluster.address(),
        &input.display().to_string(),
        "/tmp/ember-escape",
    );
    assert!(
        output_text(&out).contains("output /tmp/ember-escape is outside the allowed paths"),
        "{}",
        output_text(&out)
    );
    let good_output = allowed.join("daily");
    let out = submit(
        &env_refs,
        cluster.address(),
        &input.display().to_string(),
        &good_output.display().to_string(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        output_text(&out),
        cluster.logs()
    );

    // 5. Stream reports: a foreign path is refused; a stream cannot change its output after
    //    the fact, nor take over the table the job's output is served as.
    let token = ember_core::security::ClusterSecret::load(&secret)
        .expect("secret")
        .token()
        .to_string();
    let report = |id: &str, name: &str, output: &str| {
        let body = serde_json::json!({
            "name": name, "output": output, "state": "running", "progress": null, "error": null
        });
        post(
            cluster.address(),
            &format!("/api/v1/streams/{id}"),
            Some(&format!("Bearer {token}")),
            &body,
        )
    };
    let (status, body) = report("s1", "foreign", "/etc");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is outside the allowed paths"), "{body}");
    let mine = allowed.join("stream").display().to_string();
    assert_eq!(report("s2", "mine", &mine).0, 204);
    let (status, body) = report("s2", "mine", &allowed.join("other").display().to_string());
    assert_eq!(status, 409, "{body}");
    let (status, body) = report("s3", "daily_revenue_by_product", &mine);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cannot take it over"), "{body}");

    // 6. Nothing of this run shows the secret or its token.
    let answers = [
        cluster.get("/api/v1/jobs").unwrap_or_default(),
        cluster.get("/api/v1/executors").unwrap_or_default(),
        cluster.get("/api/v1/streams").unwrap_or_default(),
    ]
    .join("\n");
    let success = std::fs::read_to_string(good_output.join("_SUCCESS")).expect("_SUCCESS");
    let secret_text = std::fs::read_to_string(&secret).expect("secret");
    let everything = format!(
        "{}\n{}\n{answers}\n{success}\n{}",
        cluster.full_logs(),
        tail_lines(&rogue_log, 1000),
        output_text(&out)
    );
    for needle in [secret_text.trim(), token.as_str()] {
        assert!(!everything.contains(needle), "a secret leaked");
    }
}

/// `POST <path>` with a JSON body and an optional `Authorization` header: status and body.
fn post(address: &str, path: &str, auth: Option<&str>, body: &serde_json::Value) -> (u16, String) {
    request(address, "POST", path, auth, Some(body))
}

fn request(
    address: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let answer = http_send(address, method, path, &headers, &body).expect("HTTP request");
    (answer.status, answer.body)
}

/// Who calls, and the `Authorization` header that says so.
struct Caller {
    name: &'static str,
    header: Option<String>,
}

#[test]
fn each_role_against_each_route_and_flight_sql_action() {
    use base64::Engine;
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = tmp.path().join("cluster.secret");
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).expect("allowed");
    let config = tmp.path().join("ember.toml");
    let (reader_token, submitter_pw, admin_pw) =
        ("reader-t0ken-9c1f", "subm1tter-pw-77", "adm1n-pw-42");
    std::fs::write(
        &config,
        format!(
            "[flight_sql]\nallow_writes = true\ntokens = [\"{reader_token}\"]\n\n[flight_sql.users]\nsam = {{ password = \"{submitter_pw}\", role = \"submitter\" }}\nada = {{ password = \"{admin_pw}\", role = \"admin\" }}\n"
        ),
    )
    .expect("config");
    let env = vec![
        (
            "EMBER_CLUSTER_SECRET_FILE".to_string(),
            secret.display().to_string(),
        ),
        (
            "EMBER_SECURITY_ALLOWED_PATHS".to_string(),
            allowed.display().to_string(),
        ),
    ];
    // The cluster's own readiness checks use the cluster token.
    std::fs::write(&secret, format!("{}\n", "a1".repeat(32))).expect("secret");
    let options = ClusterOptions {
        env,
        scheduler_args: vec!["--config".into(), config.display().to_string()],
        client: Some(client_security(Some(&secret), None)),
        ..ClusterOptions::default()
    };
    let cluster = EmberCluster::start(bin(), 1, &options).expect("cluster");
    let token = ember_core::security::ClusterSecret::load(&secret)
        .expect("secret")
        .token()
        .to_string();
    let basic = |user: &str, pw: &str| {
        format!(
            "Basic {}",
            base64::prelude::BASE64_STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    let callers = [
        Caller {
            name: "nobody",
            header: None,
        },
        Caller {
            name: "reader",
            header: Some(format!("Bearer {reader_token}")),
        },
        Caller {
            name: "submitter",
            header: Some(basic("sam", submitter_pw)),
        },
        Caller {
            name: "admin",
            header: Some(basic("ada", admin_pw)),
        },
        Caller {
            name: "cluster",
            header: Some(format!("Bearer {token}")),
        },
    ];
    let input = small_input(&allowed);
    let job = ember_core::manifest::JobManifest::load(repo().join(JOB))
        .and_then(|m| {
            let mut params = m.params();
            params.apply(&[
                ("input".into(), input.display().to_string()),
                ("output".into(), allowed.join("out").display().to_string()),
            ])?;
            m.resolve(params)
        })
        .expect("job");
    let submit = serde_json::to_value(ember_core::api::SubmitJob { job }).expect("body");
    let status_body =
        serde_json::to_value(ember_core::api::ExecutorStatus::default()).expect("body");
    let stream_body = serde_json::json!({
        "name": "s", "output": allowed.join("s").display().to_string(), "state": "running",
        "progress": null, "error": null
    });
    // (method, path, body, expected status for nobody, reader, submitter, admin, cluster).
    type Route<'a> = (&'a str, &'a str, Option<&'a serde_json::Value>, [u16; 5]);
    let routes: Vec<Route> = vec![
        ("GET", "/api/v1/health", None, [200, 200, 200, 200, 200]),
        ("GET", "/api/v1/jobs", None, [401, 200, 200, 200, 200]),
        ("GET", "/api/v1/executors", None, [401, 200, 200, 200, 200]),
        ("GET", "/api/v1/streams", None, [401, 200, 200, 200, 200]),
        ("GET", "/ui/jobs", None, [401, 200, 200, 200, 200]),
        ("GET", "/metrics", None, [401, 200, 200, 200, 200]),
        ("GET", "/api/jobs", None, [401, 200, 200, 200, 200]),
        (
            "POST",
            "/api/v1/jobs",
            Some(&submit),
            [401, 403, 202, 202, 202],
        ),
        (
            "POST",
            "/api/v1/jobs/nope/cancel",
            None,
            [401, 403, 404, 404, 404],
        ),
        (
            "POST",
            "/api/v1/executors/x/status",
            Some(&status_body),
            [401, 403, 403, 204, 204],
        ),
        (
            "POST",
            "/api/v1/streams/x",
            Some(&stream_body),
            [401, 403, 403, 204, 204],
        ),
    ];
    let mut table = Vec::new();
    let mut answers = String::new();
    for (method, path, body, expected) in &routes {
        let got: Vec<u16> = callers
            .iter()
            .map(|c| {
                let (status, text) =
                    request(cluster.address(), method, path, c.header.as_deref(), *body);
                answers.push_str(&text);
                status
            })
            .collect();
        table.push((format!("{method} {path}"), got.clone(), expected.to_vec()));
    }
    let wrong: Vec<_> = table.iter().filter(|(_, got, want)| got != want).collect();
    let names: Vec<&str> = callers.iter().map(|c| c.name).collect();
    assert!(
        wrong.is_empty(),
        "route × caller {names:?}: got ≠ expected {wrong:#?}\n{}",
        cluster.logs()
    );

    // Flight SQL: a query needs a user or token; DDL (allowed here) needs an admin.
    let flight = |caller: &Caller, sql: &str| -> Result<(), tonic::Code> {
        block_on(async {
            let mut client = ember_testkit::flight_sql::connect(cluster.flight_sql_address())
                .await
                .expect("connect");
            match &caller.header {
                Some(h) if h.starts_with("Basic ") => {
                    let decoded = base64::prelude::BASE64_STANDARD
                        .decode(h.trim_start_matches("Basic "))
                        .expect("b64");
                    let decoded = String::from_utf8(decoded).expect("utf8");
                    let (user, pw) = decoded.split_once(':').expect("user:pw");
                    client
                        .handshake(user, pw)
                        .await
                        .map_err(|_| tonic::Code::Unauthenticated)?;
                }
                Some(h) => client.set_token(h.trim_start_matches("Bearer ").to_string()),
                None => {}
            }
            ember_testkit::flight_sql::query(&mut client, sql)
                .await
                .map(|_| ())
                .map_err(|e| {
                    // The client's error text holds the code's description.
                    let codes = [tonic::Code::Unauthenticated, tonic::Code::PermissionDenied];
                    codes
                        .into_iter()
                        .find(|c| e.contains(c.description()))
                        .unwrap_or_else(|| {
                            eprintln!("flight sql {sql}: {e}");
                            tonic::Code::Unknown
                        })
                })
        })
    };
    let ok = Ok(());
    let unauth = Err(tonic::Code::Unauthenticated);
    let denied = Err(tonic::Code::PermissionDenied);
    // Files are another matter: COPY, and a table over a file outside the allowed paths, are
    // refused to everyone, writes allowed or not.
    let copy = format!(
        "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
        allowed.join("c.csv").display()
    );
    let actions = [
        ("SELECT 1".to_string(), [unauth, ok, ok, ok, ok]),
        (
            "CREATE OR REPLACE VIEW v AS SELECT 1 AS one".to_string(),
            [unauth, denied, denied, ok, ok],
        ),
        (copy, [unauth, denied, denied, denied, denied]),
        (
            "CREATE EXTERNAL TABLE etc (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname'"
                .to_string(),
            [unauth, denied, denied, denied, denied],
        ),
    ];
    for (sql, expected) in &actions {
        let got: Vec<Result<(), tonic::Code>> = callers.iter().map(|c| flight(c, sql)).collect();
        assert_eq!(
            &got, expected,
            "{sql} for nobody, reader, submitter, admin, cluster"
        );
    }

    assert!(!allowed.join("c.csv").exists(), "COPY wrote a file");

    // No password, token or secret in any answer or log.
    let everything = format!("{answers}\n{}", cluster.full_logs());
    for needle in [reader_token, submitter_pw, admin_pw, token.as_str()] {
        assert!(!everything.contains(needle), "{needle} leaked");
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (openssl, installed by .ci/setup).
struct Tls {
    cert: PathBuf,
    key: PathBuf,
}

fn self_signed(dir: &Path) -> Tls {
    // The test's own TLS clients take the process's rustls provider.
    ember_core::security::tls::install_crypto_provider();
    let (cert, key) = (dir.join("node.pem"), dir.join("node.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        // An end-entity certificate: rustls refuses a CA certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .output()
        .expect("openssl (installed by .ci/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Tls { cert, key }
}

/// Whether a plain-text HTTP request to `address` gets an HTTP answer.
fn answers_plain_http(address: &str) -> bool {
    http_request(address, "GET", "/api/v1/health", &[]).is_ok_and(|a| a.status != 0)
}

#[test]
fn with_tls_every_listener_refuses_plain_text_and_a_client_with_the_ca_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tls = self_signed(tmp.path());
    let secret = tmp.path().join("cluster.secret");
    std::fs::write(&secret, format!("{}\n", "b2".repeat(32))).expect("secret");
    let env: Vec<(String, String)> = vec![
        (
            "EMBER_CLUSTER_SECRET_FILE".into(),
            secret.display().to_string(),
        ),
        ("EMBER_TLS_CERT".into(), tls.cert.display().to_string()),
        ("EMBER_TLS_KEY".into(), tls.key.display().to_string()),
    ];
    let options = ClusterOptions {
        env: env.clone(),
        client: Some(client_security(Some(&secret), Some(&tls))),
        ..ClusterOptions::default()
    };
    // The executor registers and heartbeats over TLS (the cluster waits for it).
    let cluster = EmberCluster::start(bin(), 2, &options).expect("cluster over TLS");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // The scheduler's port: plain HTTP and plain gRPC get nothing.
    assert!(
        !answers_plain_http(cluster.address()),
        "plain HTTP answered"
    );
    let plain_grpc = block_on(async {
        tonic::transport::Channel::from_shared(format!("http://{}", cluster.address()))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map(|channel| {
                ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient::new(
                    channel,
                )
            })
    });
    if let Ok(mut client) = plain_grpc {
        let status = block_on(client.get_job_status(
            ballista_core::serde::protobuf::GetJobStatusParams { job_id: "x".into() },
        ));
        assert!(status.is_err(), "plain gRPC answered");
    }
    // An executor's Flight port (shuffles, results) gets no plain gRPC call through either.
    let plain_executor = block_on(async {
        let mut c = ember_testkit::flight_sql::connect(&cluster.executor_flight_address(0)).await?;
        ember_testkit::flight_sql::query(&mut c, "SELECT 1").await
    });
    assert!(plain_executor.is_err(), "the executor answered plain gRPC");
    // The CLI without TLS cannot talk to it; with the CA alone (a user's machine holds no
    // node's key) it can.
    let secret_env = ("EMBER_CLUSTER_SECRET_FILE", secret.to_str().expect("utf-8"));
    let plain = ember(&[secret_env], &["jobs", "--scheduler", cluster.address()]);
    assert_eq!(plain.status.code(), Some(3), "{}", output_text(&plain));
    let ca_only = [
        secret_env,
        ("EMBER_TLS_CA", tls.cert.to_str().expect("utf-8")),
    ];
    let listed = ember(&ca_only, &["jobs", "--scheduler", cluster.address()]);
    assert_eq!(listed.status.code(), Some(0), "{}", output_text(&listed));
    // A job runs across the executors: shuffles and results go over TLS too.
    let input = small_input(tmp.path());
    let output = tmp.path().join("out");
    let done = submit(
        &env_refs,
        cluster.address(),
        &input.display().to_string(),
        &output.display().to_string(),
    );
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}\n{}",
        output_text(&done),
        cluster.logs()
    );
    assert!(output.join("_SUCCESS").is_file());

    // The executors' /metrics: plain text gets nothing; https with the CA answers.
    let metrics = cluster.executor_metrics_address(0);
    assert!(!answers_plain_http(&metrics), "plain /metrics answered");
    let ca = std::fs::read(&tls.cert).expect("ca");
    let https = block_on(async {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
            .build()
            .expect("client");
        let url = format!(
            "https://{}/metrics",
            metrics.replace("127.0.0.1", "localhost")
        );
        client.get(url).send().await.map(|r| r.status().as_u16())
    });
    assert_eq!(https.ok(), Some(200));

    // Flight SQL: plain text fails, TLS with the CA queries.
    let plain_flight = block_on(async {
        let mut c = ember_testkit::flight_sql::connect(cluster.flight_sql_address()).await?;
        ember_testkit::flight_sql::query(&mut c, "SELECT 1").await
    });
    assert!(plain_flight.is_err(), "plain Flight SQL answered");
    let tls_flight = block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!(
            "https://{}",
            cluster
                .flight_sql_address()
                .replace("127.0.0.1", "localhost")
        ))
        .map_err(|e| e.to_string())?
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&ca)),
        )
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
        let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
        ember_testkit::flight_sql::query(&mut client, "SELECT 1 AS one").await
    });
    assert_eq!(tls_flight, Ok(vec!["1".to_string()]));

    // `ember serve`: its HTTP port speaks TLS too.
    let serve_log = tmp.path().join("serve.log");
    let server = EmberServe::start_with_env(
        bin(),
        &repo(),
        &["--jobs", "/nonexistent"],
        &serve_log,
        &env,
    )
    .expect("ember serve");
    assert!(
        !answers_plain_http(server.http_address()),
        "plain web UI answered"
    );
    let https = block_on(async {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
            .build()
            .expect("client");
        let url = format!(
            "https://{}/api/v1/health",
            server.http_address().replace("127.0.0.1", "localhost")
        );
        client.get(url).send().await.map(|r| r.status().as_u16())
    });
    assert_eq!(https.ok(), Some(200), "{}", tail_lines(&serve_log, 20));
}

#[test]
fn embedded_serve_refuses_copy_and_files_outside_the_allowed_paths() {
    // `ember serve` runs its queries on Ballista's own in-process executor, which checks no
    // plan: the Flight SQL endpoint checks every statement before it is planned.
    let tmp = tempfile::tempdir().expect("tempdir");
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).expect("allowed");
    std::fs::write(allowed.join("a.csv"), "x\n1\n2\n").expect("csv");
    let config = tmp.path().join("ember.toml");
    let admin = "adm1n-t0ken-5e7";
    std::fs::write(
        &config,
        format!("[flight_sql]\nallow_writes = true\ntokens = [{{ token = \"{admin}\", role = \"admin\" }}]\n"),
    )
    .expect("config");
    let log = tmp.path().join("serve.log");
    let config_arg = config.display().to_string();
    let allowed_arg = allowed.display().to_string();
    let server = EmberServe::start_with_env(
        bin(),
        &repo(),
        &[
            "--jobs",
            "/nonexistent",
            "--config",
            &config_arg,
            "--allowed-path",
            &allowed_arg,
        ],
        &log,
        &[("EMBER_HOME".into(), tmp.path().display().to_string())],
    )
    .expect("ember serve");
    let run = |sql: String| {
        block_on(async {
            let mut client = ember_testkit::flight_sql::connect(server.address()).await?;
            client.set_token(admin.to_string());
            ember_testkit::flight_sql::query(&mut client, &sql).await
        })
    };
    let denied = tonic::Code::PermissionDenied.description();
    let copied = allowed.join("c.csv");
    for sql in [
        format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
            copied.display()
        ),
        "CREATE EXTERNAL TABLE etc (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname'".into(),
        format!(
            "CREATE EXTERNAL TABLE up STORED AS CSV LOCATION '{}/../ember.toml'",
            allowed.display()
        ),
    ] {
        let refused = run(sql.clone()).expect_err(&sql);
        assert!(refused.contains(denied), "{sql}: {refused}");
    }
    assert!(!copied.exists(), "COPY wrote a file");
    // Inside the allowed folder, an admin's table reads.
    run(format!(
        "CREATE EXTERNAL TABLE a STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        allowed.join("a.csv").display()
    ))
    .expect("an allowed table");
    assert_eq!(
        run("SELECT count(*) FROM a".into()),
        Ok(vec!["2".to_string()])
    );
    let logs = tail_lines(&log, 1000);
    assert!(!logs.contains(admin), "the token leaked into the log");
}

#[test]
fn with_mutual_tls_a_client_without_a_certificate_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tls = self_signed(tmp.path());
    let secret = tmp.path().join("cluster.secret");
    std::fs::write(&secret, format!("{}\n", "c3".repeat(32))).expect("secret");
    let path = |p: &Path| p.display().to_string();
    let env: Vec<(String, String)> = vec![
        ("EMBER_CLUSTER_SECRET_FILE".into(), path(&secret)),
        ("EMBER_TLS_CERT".into(), path(&tls.cert)),
        ("EMBER_TLS_KEY".into(), path(&tls.key)),
        ("EMBER_TLS_CLIENT_CA".into(), path(&tls.cert)),
    ];
    let options = ClusterOptions {
        env: env.clone(),
        client: Some(client_security(Some(&secret), Some(&tls))),
        ..ClusterOptions::default()
    };
    // The executor presents its certificate when it registers.
    let cluster = EmberCluster::start(bin(), 1, &options).expect("cluster over mutual TLS");
    let secret_env = ("EMBER_CLUSTER_SECRET_FILE", secret.to_str().expect("utf-8"));
    let ca_only = [
        secret_env,
        ("EMBER_TLS_CA", tls.cert.to_str().expect("utf-8")),
    ];
    let refused = ember(&ca_only, &["jobs", "--scheduler", cluster.address()]);
    assert_eq!(refused.status.code(), Some(3), "{}", output_text(&refused));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let listed = ember(&env_refs, &["jobs", "--scheduler", cluster.address()]);
    assert_eq!(listed.status.code(), Some(0), "{}", output_text(&listed));
    // Flight SQL too: trusting the server is not enough without a certificate of one's own.
    let ca = std::fs::read(&tls.cert).expect("ca");
    let flight = |identity: bool| {
        block_on(async {
            let mut config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&ca));
            if identity {
                let (cert, key) = (
                    std::fs::read(&tls.cert).expect("cert"),
                    std::fs::read(&tls.key).expect("key"),
                );
                config = config.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            let address = cluster
                .flight_sql_address()
                .replace("127.0.0.1", "localhost");
            let channel = tonic::transport::Channel::from_shared(format!("https://{address}"))
                .map_err(|e| e.to_string())?
                .tls_config(config)
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
            ember_testkit::flight_sql::query(&mut client, "SELECT 1 AS one").await
        })
    };
    assert!(
        flight(false).is_err(),
        "Flight SQL answered a client without a certificate"
    );
    assert_eq!(flight(true), Ok(vec!["1".to_string()]));
}
