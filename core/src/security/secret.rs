//! The cluster secret: what every process of a cluster (scheduler, executors, drivers, the
//! `ember` commands) holds, and an outsider does not.
//!
//! It is a file of 64 hex digits (32 random bytes). The processes never send the secret
//! itself: they send a token derived from it (HMAC-SHA256 of a fixed label, hex), so that a
//! header that ends up in a log does not give away the secret file's content. The token is a
//! credential too, which is why every listener can also speak TLS (`[tls]`).
//!
//! Where the file is, in order: `--cluster-secret-file` / `EMBER_CLUSTER_SECRET_FILE`, the
//! configuration file's `[security] cluster_secret_file`, then the default
//! `$EMBER_HOME/cluster.secret` (`EMBER_HOME` defaults to `~/.config/ember`). `ember scheduler`
//! creates the file when none exists (only its owner may read it) and says where; every other
//! process reads it, so on one machine a cluster needs no setting at all, and on several the
//! file is copied (as Spark's `spark.authenticate.secret`).

use std::path::{Path, PathBuf};

use crate::config::Secret;
use crate::error::{Error, Result};

/// The label the token is derived from; a new scheme would change it.
const TOKEN_LABEL: &[u8] = b"ember cluster token v1";

/// Random bytes in a generated secret.
const SECRET_BYTES: usize = 32;

/// A cluster secret and the token derived from it.
#[derive(Clone)]
pub struct ClusterSecret {
    path: PathBuf,
    token: Secret,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSecret")
            .field("path", &self.path)
            .field("token", &self.token)
            .finish()
    }
}

/// The default folder of Ember's per-user files: `$EMBER_HOME`, else `~/.config/ember`.
pub fn ember_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("EMBER_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config").join("ember"))
}

/// The default cluster secret file, `$EMBER_HOME/cluster.secret`.
pub fn default_path() -> Option<PathBuf> {
    ember_home().map(|h| h.join("cluster.secret"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two byte strings.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ClusterSecret {
    /// The secret in `text` (read from `path`).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] when it is shorter than 32 characters.
    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        let secret = text.trim();
        if secret.len() < 32 {
            return Err(Error::InvalidSetting {
                setting: format!("cluster secret {}", path.display()),
                message: "holds fewer than 32 characters; remove it and let `ember scheduler` make one, or write 64 random hex digits".into(),
            });
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, TOKEN_LABEL);
        Ok(Self {
            path: path.to_path_buf(),
            token: Secret::new(hex(tag.as_ref())),
        })
    }

    /// Reads the secret file at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, and [`ClusterSecret::from_text`]'s.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(path, &text)
    }

    /// Reads the secret file at `path`, creating it with a new random secret (mode 0600, its
    /// folder 0700) when it does not exist. Returns whether it was created. Two processes that
    /// race to create it read the same file: creation is exclusive.
    ///
    /// # Errors
    /// [`Error::Io`] when it can be neither read nor created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        use std::io::Write;
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
            set_mode(dir, 0o700);
        }
        let mut bytes = [0u8; SECRET_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| io(std::io::Error::other("no random bytes from the OS")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(format!("{}\n", hex(&bytes)).as_bytes())
                    .map_err(io)?;
                Ok((Self::load(path)?, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::load(path)?, false))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The file the secret came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token processes present (hex, 64 characters).
    pub fn token(&self) -> &str {
        self.token.expose()
    }

    /// Whether `presented` is this secret's token (constant time).
    pub fn verifies(&self, presented: &str) -> bool {
        same(self.token.expose().as_bytes(), presented.trim().as_bytes())
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_secret_is_read_back_private_and_its_token_is_not_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ember").join("cluster.secret");
        let (first, created) = ClusterSecret::load_or_create(&path).expect("created");
        assert!(created);
        let (again, created) = ClusterSecret::load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(first.token(), again.token());
        let text = std::fs::read_to_string(&path).expect("file");
        assert_eq!(text.trim().len(), 64);
        assert!(!first.token().contains(text.trim()));
        assert!(first.verifies(first.token()) && !first.verifies("nope"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
        }
        assert!(!format!("{first:?}").contains(first.token()));
        let short = ClusterSecret::from_text(&path, "short").expect_err("too short");
        assert!(
            short.to_string().contains("fewer than 32 characters"),
            "{short}"
        );
    }
}
