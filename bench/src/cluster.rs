//! The `cluster-N` peers: the daily revenue job submitted to a fresh `ember scheduler` with N
//! executors on this machine.

use std::path::Path;
use std::process::Command;

use ember_testkit::ember::{ClusterOptions, EmberCluster};

use crate::measure::{self, Cost};

/// Starts a scheduler and `executors` executors that share `cores` task slots (at least one
/// each; partitions per stage = `cores`, as embedded mode uses), waits until they registered,
/// then times `ember submit --wait` of the daily revenue job from `input` to `output`. The
/// start is not timed. Peak RSS is the sum of the daemons' `VmHWM` (bytes) after the job.
///
/// # Errors
/// A message when the cluster does not start or the job fails (with the daemons' logs).
pub fn run(
    ember: &Path,
    executors: usize,
    cores: usize,
    input: &Path,
    output: &Path,
) -> Result<Cost, String> {
    let options = ClusterOptions {
        task_slots: (cores / executors.max(1)).max(1),
        partitions: cores.max(1),
        executor_timeout: "60s".into(),
        heartbeat_interval: "5s".into(),
        ..ClusterOptions::default()
    };
    let cluster = EmberCluster::start(ember, executors, &options)?;
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cmd = Command::new(ember);
    cmd.args([
        "submit",
        crate::JOB,
        "--wait",
        "--scheduler",
        cluster.address(),
    ])
    .arg("--set")
    .arg(format!("input={}", absolute(input)?.display()))
    .arg("--set")
    .arg(format!("output={}", absolute(output)?.display()))
    .stdout(std::process::Stdio::null());
    let mut cost = measure::run(cmd).map_err(|e| format!("{e}\n{}", cluster.logs()))?;
    cost.peak_rss_bytes = cluster
        .pids()
        .into_iter()
        .map(|pid| measure::proc_status_bytes(pid, "VmHWM:"))
        .sum();
    Ok(cost)
}
