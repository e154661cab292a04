//! A small disk for fault tests: a tmpfs of a chosen size, mounted in a private mount namespace
//! that only this harness and the commands it starts can see, so a test can fill it and watch
//! what a full disk does to a run.
//!
//! ```no_run
//! use ember_testkit::small_disk::SmallDisk;
//!
//! let disk = SmallDisk::new(64 << 20).expect("a 64 MiB tmpfs");
//! let out = disk.command("df").arg(disk.path()).output().expect("df");
//! assert!(String::from_utf8_lossy(&out.stdout).contains("tmpfs"));
//! disk.fill_leaving(1 << 20).expect("leave 1 MiB free");
//! // The mount disappears with its namespace when `disk` is dropped.
//! ```
//!
//! How: `unshare --user --map-root-user --mount` runs a shell that mounts the tmpfs on a fresh
//! temp dir and then waits for its stdin to close. Commands run inside with `nsenter` (same
//! user and mount namespace, working directory kept); the harness itself reads and writes the
//! disk through `/proc/<pid>/root/<path>`. No global mount is made, nothing outlives the test
//! (the shell exits when the harness's pipe closes, even if the test is killed), and it works
//! for root and, where unprivileged user namespaces are allowed, for any user.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::util::wait_child;

/// Bound on the mount's start and stop.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Printed by the namespace's shell once the tmpfs is mounted.
const READY: &str = "mounted";
/// The file [`SmallDisk::fill_leaving`] writes.
const FILLER: &str = ".filler";

/// Mounts the tmpfs on `$1` (size `$2` bytes), says so, then lives until stdin closes.
const HOLDER_SCRIPT: &str = r#"mount -t tmpfs -o "size=$2" ember-small-disk "$1" || exit 1
echo mounted
exec cat >/dev/null
"#;

/// A tmpfs of a fixed size in a private mount namespace; see the module docs.
pub struct SmallDisk {
    /// The mount point, as commands from [`SmallDisk::command`] see it.
    path: PathBuf,
    holder: Child,
    stdin: Option<ChildStdin>,
    /// The mount point's folder (empty on the host side); removed on drop.
    _dir: TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` bytes (rounded up to whole pages) and waits (at most 20 s)
    /// until it is mounted.
    ///
    /// Errors (it never skips): `unshare` (util-linux) is missing, or user and mount
    /// namespaces are not allowed here (the message quotes `unshare`'s stderr).
    pub fn new(size: u64) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("ember-small-disk-")
            .tempdir()
            .map_err(|err| format!("cannot create a mount point: {err}"))?;
        let path = dir.path().to_path_buf();
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(HOLDER_SCRIPT)
            .arg("sh")
            .arg(&path)
            .arg(size.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run `unshare` (util-linux): {err}"))?;
        let stdin = holder.stdin.take();
        let stdout = holder.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mounted = rx
            .recv_timeout(TIMEOUT)
            .is_ok_and(|line| line.trim() == READY);
        let mut disk = Self {
            path,
            holder,
            stdin,
            _dir: dir,
        };
        if !mounted {
            let stderr = disk.stop();
            return Err(format!(
                "cannot mount a {size}-byte tmpfs with `unshare --user --map-root-user \
                 --mount` within {TIMEOUT:?} (user and mount namespaces must be allowed): \
                 {stderr}"
            ));
        }
        Ok(disk)
    }

    /// The mount point, as seen by commands from [`SmallDisk::command`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` (inside the disk) as the harness reaches it: `/proc/<pid>/root/<path>`.
    pub fn outside(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(relative)
    }

    /// `program` run in the disk's namespace (`nsenter`), in the current working directory
    /// unless the caller sets another with [`Command::current_dir`]: paths under
    /// [`SmallDisk::path`] are on the tmpfs, every other path is the host's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &self.holder.id().to_string()])
            .args(["--user", "--mount", "--preserve-credentials", "--wd=."])
            .arg(program);
        command
    }

    /// Free bytes on the disk (`statvfs`: available blocks × block size).
    pub fn free(&self) -> Result<u64, String> {
        let out = Command::new("stat")
            .args(["--file-system", "--format=%a %S"])
            .arg(self.outside(&self.path))
            .output()
            .map_err(|err| format!("cannot run stat: {err}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(blocks)), Some(Ok(size))) => Ok(blocks * size),
            _ => Err(format!(
                "stat -f of the small disk: unexpected output {text:?} ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// Writes a filler file so that about `bytes` stay free (whole pages; the filler replaces
    /// an earlier one). Returns the free bytes after the fill.
    pub fn fill_leaving(&self, bytes: u64) -> Result<u64, String> {
        self.unfill()?;
        let free = self.free()?;
        let filler = self.outside(&self.path.join(FILLER));
        let size = free.saturating_sub(bytes);
        let file = std::fs::File::create(&filler)
            .map_err(|err| format!("cannot create {}: {err}", filler.display()))?;
        // tmpfs allocates the pages of every byte written; a sparse file would not fill it.
        let chunk = vec![0xA5u8; 1 << 20];
        let mut writer = std::io::BufWriter::new(file);
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut writer, &chunk[..n])
                .map_err(|err| format!("cannot write {}: {err}", filler.display()))?;
            left -= n as u64;
        }
        std::io::Write::flush(&mut writer)
            .map_err(|err| format!("cannot write {}: {err}", filler.display()))?;
        self.free()
    }

    /// Removes the filler of [`SmallDisk::fill_leaving`], if any.
    pub fn unfill(&self) -> Result<(), String> {
        let filler = self.outside(&self.path.join(FILLER));
        match std::fs::remove_file(&filler) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(format!("cannot remove {}: {err}", filler.display())),
        }
    }

    /// Closes the holder's stdin (it exits, the namespace and its mount go) and returns what it
    /// wrote to stderr.
    fn stop(&mut self) -> String {
        drop(self.stdin.take());
        if !matches!(wait_child(&mut self.holder, TIMEOUT), Ok(Some(_))) {
            let _ = self.holder.kill();
            let _ = self.holder.wait();
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.holder.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr.trim().to_string()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for SmallDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmallDisk")
            .field("path", &self.path)
            .field("holder", &self.holder.id())
            .finish_non_exhaustive()
    }
}
