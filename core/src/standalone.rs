//! The embedded scheduler and executor of `ember run` and `ember serve`: Ballista's standalone
//! mode (an in-process scheduler on a loopback port and an executor pulling its tasks), set up
//! as Ballista's `SessionContext::standalone_with_state` does, but with Ember's retention of
//! finished jobs and a work folder for the executor's shuffle files that is removed when the
//! command ends ([`remove_work_folders`]).
//!
//! Ballista's standalone scheduler keeps a finished job's execution graph (stages, tasks, their
//! metrics, the plan's file lists) for its default hour. An embedded stream runs one or two
//! jobs per micro-batch, and `ember serve` one per Flight SQL or dashboard query: at a 1 s
//! trigger that is thousands of graphs held at once. Here they are kept for
//! [`EMBEDDED_JOB_STATE_RETENTION`], as the cluster's scheduler keeps them for its
//! `--job-state-retention` (BENCHMARKS.md, "Soak").

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::ExecutorRegistration;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::scheduler::{
    ExecutorOperatingSystemSpecification, ExecutorSpecification,
};
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor::Executor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::health::ExecutorHealth;
use ballista_executor::metrics::LoggingMetricsCollector;
use ballista_scheduler::cluster::{BallistaCluster, JobState};
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::metrics::default_metrics_collector;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tempfile::TempDir;
use tonic::transport::Channel;

/// How long the embedded scheduler keeps a finished job's state (Ballista's default is an
/// hour).
pub const EMBEDDED_JOB_STATE_RETENTION: Duration = Duration::from_secs(120);

/// Bound on waiting for the in-process scheduler to accept connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An in-process scheduler and executor for `state`'s sessions, finished jobs kept
/// `retention` (at least 1 s), the executor's shuffle files in a work folder of its own in
/// `work_parent` (the OS temporary folder if `None`; see [`remove_work_folders`]). Returns the
/// scheduler's URL (`df://localhost:PORT`, for `SessionContext::remote_with_state`) and its job
/// state (what it keeps of each job).
///
/// # Errors
/// The port cannot be bound, the scheduler does not answer within 30 s, the work folder cannot
/// be made, the executor cannot start.
pub async fn start(
    state: &SessionState,
    retention: Duration,
    work_parent: Option<&Path>,
) -> Result<(String, Arc<dyn JobState>)> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        DataFusionError::Configuration(format!("embedded {what}: {e}"))
    };
    let codec = BallistaCodec::<LogicalPlanNode, PhysicalPlanNode>::new(
        state.config().ballista_logical_extension_codec(),
        state.config().ballista_physical_extension_codec(),
    );
    let session_config = state.config().clone();
    let max_message = session_config.ballista_grpc_client_max_message_size();
    let vcores = session_config.ballista_standalone_parallelism();
    let builder_state = state.clone();
    let cluster = BallistaCluster::new_memory(
        "localhost:50050",
        Arc::new(move |_: SessionConfig| Ok(builder_state.clone())),
        Arc::new(move || session_config.clone()),
    );
    let jobs = cluster.job_state();
    let config = SchedulerConfig::default()
        .with_scheduler_policy(ballista_core::config::TaskSchedulingPolicy::PullStaged)
        .with_finished_job_state_clean_up_interval_seconds(retention.as_secs().max(1));
    let metrics = default_metrics_collector().map_err(|e| failed("scheduler", &e))?;
    let mut scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> = SchedulerServer::new(
        "localhost:50050".to_owned(),
        cluster,
        codec,
        Arc::new(config),
        metrics,
    );
    scheduler
        .init()
        .await
        .map_err(|e| failed("scheduler", &e))?;
    let service = SchedulerGrpcServer::new(scheduler)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let listener = tokio::net::TcpListener::bind("localhost:0")
        .await
        .map_err(|e| failed("scheduler", &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| failed("scheduler", &e))?
        .port();
    tokio::spawn(
        create_grpc_server(&GrpcServerConfig::default())
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let url = format!("http://localhost:{port}");
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let client = loop {
        match SchedulerGrpcClient::connect(url.clone()).await {
            Ok(client) => break client,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(failed("scheduler", &e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let parent = work_parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let folder = work_folder(&parent).map_err(|e| {
        failed(
            &format!("executor's work folder in {}", parent.display()),
            &e,
        )
    })?;
    start_executor(client, vcores, state, &folder)
        .await
        .map_err(|e| failed("executor", &e))?;
    Ok((format!("df://localhost:{port}"), jobs))
}

/// The embedded executors' work folders, removed by [`remove_work_folders`].
static WORK_FOLDERS: Mutex<Vec<TempDir>> = Mutex::new(Vec::new());

/// The start of every embedded work folder's name.
const WORK_FOLDER_PREFIX: &str = "ember-shuffle-";

/// This machine's name (`/proc/sys/kernel/hostname`), empty where it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A new work folder for an embedded executor's shuffle files in `parent` (made if missing),
/// kept until [`remove_work_folders`]: `ember-shuffle-<pid>@<host>-XXXXXX`, so that the next
/// embedded run can tell a folder whose process is gone ([`remove_left_behind`]). Its path.
fn work_folder(parent: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(parent)?;
    let host = host_name();
    remove_left_behind(parent, &host);
    let folder = tempfile::Builder::new()
        .prefix(&format!(
            "{WORK_FOLDER_PREFIX}{}@{host}-",
            std::process::id()
        ))
        .tempdir_in(parent)?;
    let path = folder.path().display().to_string();
    WORK_FOLDERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(folder);
    Ok(path)
}

/// Removes the work folders in `parent` that an embedded run on this machine (`host`) left
/// behind when it was killed (`kill -9`, a crash, a test process, which never calls
/// [`remove_work_folders`]): those whose process id is no longer a running process
/// (`/proc/<pid>`). Folders of other machines (a shared `--spill-dir`), of running processes,
/// and of any other name are kept; nothing is removed where `/proc` is missing. A folder that
/// cannot be removed is logged and kept.
fn remove_left_behind(parent: &Path, host: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, of)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(WORK_FOLDER_PREFIX))
            .and_then(|n| n.split_once('@'))
            .and_then(|(pid, rest)| Some((pid.parse::<u32>().ok()?, rest.rsplit_once('-')?.0)))
        else {
            continue;
        };
        if of != host || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(folder = %entry.path().display(), error = %e, "cannot remove a work folder left behind");
        }
    }
}

/// Removes the work folders of the embedded executors this process started, with the shuffle
/// files still in them, as Spark removes its `blockmgr-*` folders when an application stops.
/// `ember` calls it when its command has ended; a process killed before leaves them behind,
/// until the next embedded run in the same folder ([`remove_left_behind`]).
/// While the process runs, the scheduler has the executor remove a finished job's intermediate
/// stages at once and the rest after Ballista's 300 s.
pub fn remove_work_folders() {
    let folders = std::mem::take(
        &mut *WORK_FOLDERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    drop(folders);
}

/// Starts an executor in this process that pulls tasks from `scheduler` with `vcores` task
/// slots and `state`'s functions, runtime and configuration, its shuffle files in `work_dir`
/// and its Flight service (shuffle reads, results) on a free port of localhost. As Ballista's
/// `new_standalone_executor_from_state`, whose work folder is a `TempDir` dropped at once, so
/// its shuffle files were written to a folder nothing removes.
async fn start_executor(
    scheduler: SchedulerGrpcClient<Channel>,
    vcores: usize,
    state: &SessionState,
    work_dir: &str,
) -> ballista_core::error::Result<()> {
    let codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode> = BallistaCodec::new(
        state.config().ballista_logical_extension_codec(),
        state.config().ballista_physical_extension_codec(),
    );
    let config = state.config().clone().upgrade_for_ballista();
    let max_message = config.ballista_grpc_client_max_message_size();
    let runtime = state.runtime_env().clone();
    let config_producer: ConfigProducer = Arc::new(move || config.clone());
    let runtime_producer: RuntimeProducer = Arc::new(move |_| Ok(runtime.clone()));
    let listener = tokio::net::TcpListener::bind("localhost:0").await?;
    let registration = ExecutorRegistration {
        id: ballista_core::ids::new_instance_id(),
        host: Some("localhost".to_string()),
        port: u32::from(listener.local_addr()?.port()),
        // Not served: in pull mode the scheduler sends what to remove with the tasks.
        grpc_port: 50020,
        specification: Some(
            ExecutorSpecification::default()
                .with_vcores(vcores as u32)
                .into(),
        ),
        os_info: Some(ExecutorOperatingSystemSpecification::default().into()),
        ballista_protocol_version: ballista_core::BALLISTA_PROTOCOL_VERSION,
    };
    let executor = Arc::new(Executor::with_default_execution_engine(
        registration,
        work_dir,
        runtime_producer,
        config_producer,
        Arc::new(state.into()),
        Arc::new(LoggingMetricsCollector::default()),
        vcores,
    ));
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir.to_string()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    tokio::spawn(
        create_grpc_server(&GrpcServerConfig::default())
            .add_service(flight)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    tokio::spawn(ballista_executor::execution_loop::poll_loop(
        scheduler,
        executor,
        codec,
        None,
        None,
        ExecutorHealth::new(),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista::prelude::SessionContextExt;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    /// A session on an embedded scheduler and executor (`slots` task slots, finished jobs kept
    /// `retention`, the work folder in `parent`) and its job state.
    async fn embedded(
        slots: usize,
        retention: Duration,
        parent: Option<&Path>,
    ) -> (SessionContext, Arc<dyn JobState>) {
        let config = SessionConfig::new_with_ballista().with_ballista_standalone_parallelism(slots);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let (url, jobs) = start(&state, retention, parent)
            .await
            .expect("embedded scheduler");
        let ctx = SessionContext::remote_with_state(&url, state)
            .await
            .expect("a session");
        (ctx, jobs)
    }

    /// Rows `sql` returns on `ctx`.
    async fn rows(ctx: &SessionContext, sql: &str) -> usize {
        let batches = ctx.sql(sql).await.expect("plan").collect().await;
        batches.expect("run").iter().map(|b| b.num_rows()).sum()
    }

    /// A query runs on the embedded scheduler and executor, and its finished job is forgotten
    /// after the retention.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_jobs_are_forgotten_after_the_retention() {
        let (ctx, jobs) = embedded(1, Duration::from_secs(1), None).await;
        assert_eq!(rows(&ctx, "SELECT 40 + 2 AS answer").await, 1);
        assert_eq!(jobs.get_all_jobs().await.expect("jobs").len(), 1);
        let clock = std::time::Instant::now();
        while !jobs.get_all_jobs().await.expect("jobs").is_empty() {
            assert!(
                clock.elapsed() < Duration::from_secs(20),
                "the finished job is still kept"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The executor writes its shuffle files (a job's stage outputs, the results too) in a work
    /// folder of its own in the folder it is given, and `remove_work_folders` removes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shuffle_files_are_in_a_work_folder_removed_at_the_end() {
        let parent = tempfile::tempdir().expect("a temporary folder");
        let (ctx, _) = embedded(2, Duration::from_secs(60), Some(parent.path())).await;
        let sql = "SELECT k, count(*) AS n FROM (VALUES (1), (2), (1)) AS t(k) GROUP BY k";
        assert_eq!(rows(&ctx, sql).await, 2);
        let folders: Vec<_> = std::fs::read_dir(parent.path())
            .expect("the parent")
            .map(|e| e.expect("an entry").path())
            .collect();
        assert_eq!(folders.len(), 1, "one work folder: {folders:?}");
        let name = folders[0].file_name().unwrap_or_default().to_string_lossy();
        assert!(name.starts_with("ember-shuffle-"), "{name}");
        assert!(
            files_in(&folders[0]) > 0,
            "no shuffle file in {}",
            folders[0].display()
        );
        remove_work_folders();
        assert!(
            !folders[0].exists(),
            "{} is still there",
            folders[0].display()
        );
    }

    /// A killed run's folder goes when the next run makes its own; a running process's, another
    /// machine's and another name's stay.
    #[test]
    fn folders_of_processes_gone_are_removed_by_the_next_run() {
        let parent = tempfile::tempdir().expect("a temporary folder");
        let host = host_name();
        // Above Linux's highest pid (2^22): never a running process.
        let gone = format!("ember-shuffle-999999999@{host}-aB3dE6");
        let running = format!("ember-shuffle-{}@{host}-fG7hI8", std::process::id());
        let elsewhere = "ember-shuffle-999999999@another-machine-jK9lM0".to_string();
        for name in [
            &gone,
            &running,
            &elsewhere,
            &"ember-shuffle-nOpQrS".to_string(),
        ] {
            std::fs::create_dir_all(parent.path().join(name).join("job/1/0")).expect("folder");
            std::fs::write(parent.path().join(name).join("job/1/0/data-0.arrow"), "x")
                .expect("file");
        }
        let mine = work_folder(parent.path()).expect("a work folder");
        let mut left: Vec<String> = std::fs::read_dir(parent.path())
            .expect("the parent")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .to_string()
            })
            .collect();
        left.sort();
        let own = Path::new(&mine)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        assert!(
            own.starts_with(&format!("ember-shuffle-{}@{host}-", std::process::id())),
            "{own}"
        );
        let mut want = vec![
            running,
            elsewhere,
            "ember-shuffle-nOpQrS".to_string(),
            own.to_string(),
        ];
        want.sort();
        assert_eq!(left, want);
    }

    /// Files under `dir`, at any depth.
    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("a folder")
            .map(|e| e.expect("an entry").path())
            .map(|p| if p.is_dir() { files_in(&p) } else { 1 })
            .sum()
    }
}
