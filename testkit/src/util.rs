//! Small helpers shared by the harnesses: free ports, bounded waits, log tails.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, ExitStatus, Output};
use std::thread;
use std::time::{Duration, Instant};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and closing the listener again, so another process may
/// take it before the caller binds it; harnesses retry when their service fails to bind.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Calls `poll` every `interval` until it returns `Ok(Some(value))`, for at most `timeout`.
///
/// `poll` returns `Ok(None)` to keep waiting and `Err(message)` to give up at once (e.g. when the
/// process being waited for has exited). On timeout the error says what was being waited for.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut poll: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = poll()? {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "timed out after {:.0?} waiting for {what}",
                timeout
            ));
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// Waits for `child` to exit, for at most `timeout`; `Ok(None)` when it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` (its output discarded) for `after`, then kills it with SIGKILL (`kill -9`)
/// unless it ended by itself; waits for it. Returns whether it was killed.
///
/// # Panics
/// When the command cannot be started or waited for (a test's setup error).
pub fn kill_9_after(command: &mut std::process::Command, after: Duration) -> bool {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    thread::sleep(after);
    let running = wait_child(&mut child, Duration::ZERO)
        .expect("wait")
        .is_none();
    if running {
        child.kill().expect("kill -9");
    }
    let _ = child.wait();
    running
}

/// Lines longer than this are cut in [`tail_lines`] (e.g. a JVM's logged classpath).
pub const TAIL_LINE_MAX_CHARS: usize = 400;

/// The last `lines` lines of the text file at `path` (lossily decoded, each cut to
/// [`TAIL_LINE_MAX_CHARS`]), or a note saying why there is nothing to show. For error messages.
pub fn tail_lines(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let cut: Vec<String> = all[start..]
                .iter()
                .map(|line| match line.char_indices().nth(TAIL_LINE_MAX_CHARS) {
                    Some((end, _)) => format!("{} [...]", &line[..end]),
                    None => (*line).to_string(),
                })
                .collect();
            cut.join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// The Python of the venv `.ci/python.sh` installs (DuckDB, …): `EMBER_VENV/bin/python`, or
/// `~/.cache/ember-tools/venv/bin/python`.
///
/// # Errors
/// A message saying to run `bash .ci/python.sh` when it is missing.
pub fn python() -> Result<std::path::PathBuf, String> {
    let venv = match std::env::var_os("EMBER_VENV") {
        Some(v) => std::path::PathBuf::from(v),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/ember-tools/venv"),
    };
    let python = venv.join("bin/python");
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "{} is missing: run `bash .ci/python.sh` (CI does)",
            python.display()
        ))
    }
}

/// An installed tool: `$env` when set, else `~/<default>`; an error naming the script that
/// installs it (`hint`) when it is missing.
///
/// # Errors
/// A message saying to run `hint` when the file is missing.
pub fn installed_tool(env: &str, default: &str, hint: &str) -> Result<std::path::PathBuf, String> {
    let path = match std::env::var_os(env) {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(default)
        }
    };
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing: {hint}", path.display()))
    }
}

/// A finished process's stdout then stderr, as text: what an assertion message shows.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("free port");
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the free port");
    }

    #[test]
    fn wait_for_returns_value_error_or_timeout() {
        let mut calls = 0;
        let got = wait_for(
            "three calls",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                Ok((calls == 3).then_some(calls))
            },
        );
        assert_eq!(got, Ok(3));

        let err = wait_for::<()>("nothing", Duration::from_secs(5), Duration::ZERO, || {
            Err("gave up".to_string())
        });
        assert_eq!(err, Err("gave up".to_string()));

        let timeout = wait_for::<()>(
            "Godot",
            Duration::from_millis(30),
            Duration::from_millis(10),
            || Ok(None),
        )
        .expect_err("must time out");
        assert!(timeout.contains("waiting for Godot"), "{timeout}");
    }

    #[test]
    fn tail_lines_keeps_the_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").expect("write log");
        assert_eq!(tail_lines(&path, 2), "c\nd");
        assert_eq!(tail_lines(&path, 10), "a\nb\nc\nd");
        assert!(tail_lines(&dir.path().join("missing"), 2).starts_with("<cannot read"));

        std::fs::write(&path, format!("{}\nend\n", "é".repeat(1000))).expect("write log");
        let tail = tail_lines(&path, 2);
        assert_eq!(
            tail,
            format!("{} [...]\nend", "é".repeat(TAIL_LINE_MAX_CHARS))
        );
    }
}
