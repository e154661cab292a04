//! Runs a command as a child process and measures its wall time and peak resident memory.

use std::process::{Command, Stdio};
use std::time::Instant;

/// What one child process cost.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Cost {
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Peak resident set size of the child, in bytes (`ru_maxrss` from `wait4(2)`).
    pub peak_rss_bytes: u64,
}

/// Runs `command` to completion (stdout and stderr inherited) and returns its cost.
///
/// # Errors
/// A message when the command cannot start or exits unsuccessfully.
pub fn run(mut command: Command) -> Result<Cost, String> {
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data that wait4 fills in; `pid` is our own child, which
    // has not been waited for (the `Child` handle is dropped without calling `wait`).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if waited != pid {
        return Err(format!(
            "wait4 failed for {command:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{command:?} failed (wait status {status})"));
    }
    // Linux reports ru_maxrss in kilobytes.
    let peak_rss_bytes = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    drop(child);
    Ok(Cost {
        seconds,
        peak_rss_bytes,
    })
}

/// Runs `command` with its stdout in `file`: its cost and what it printed.
///
/// # Errors
/// As [`run`], and when `file` cannot be written or read.
pub fn run_capturing(
    mut command: Command,
    file: &std::path::Path,
) -> Result<(Cost, String), String> {
    command.stdout(std::fs::File::create(file).map_err(|e| e.to_string())?);
    let cost = run(command)?;
    Ok((
        cost,
        std::fs::read_to_string(file).map_err(|e| e.to_string())?,
    ))
}

/// A size field of `/proc/<pid>/status` in bytes, e.g. `VmRSS:` (resident now) or `VmHWM:`
/// (peak resident); 0 when the process is gone or the field missing.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}
