//! The machine a benchmark ran on, recorded next to its figures.

use std::process::Command;

/// Where and when a benchmark ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory, in bytes (/proc/meminfo).
    pub memory_bytes: u64,
    /// `uname -sr`.
    pub os: String,
    /// The Ember commit checked out in the folder the benchmark runs from (`git rev-parse
    /// --short HEAD`), `+dirty` with local changes: the binaries' only when they were built there.
    pub commit: String,
    /// UTC time the benchmark started, RFC 3339 (each benchmark describes the machine first).
    pub started_at: String,
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

/// Reads the machine's description.
pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let dirty = !first_line("git", &["status", "--porcelain"]).is_empty();
    let commit = format!(
        "{}{}",
        first_line("git", &["rev-parse", "--short", "HEAD"]),
        if dirty { "+dirty" } else { "" }
    );
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        memory_bytes,
        os: first_line("uname", &["-sr"]),
        commit,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}
