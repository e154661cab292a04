//! Confined paths: `[security] allowed_paths` lists the folders (local or URLs) that jobs,
//! streams and served tables may read and write. With a list, every job input and output,
//! stream output and checkpoint, Flight SQL table, and every file a plan scans or writes on the
//! cluster must be under one of them; without one, any path is allowed (the default).
//!
//! Paths are compared after normalization: a local path becomes an absolute `file://` URL,
//! `.` and `..` are resolved lexically, and a folder matches on whole path segments
//! (`/data/` allows `/data/x.csv`, not `/database/x.csv`). For a glob, its folder before the
//! first wildcard is what must be allowed. Symbolic links are not followed: an allowed folder
//! should not hold links to places outside it.

use url::Url;

use crate::error::{Error, Result};

/// The allowed folders; empty: every path is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathPolicy {
    allowed: Vec<Url>,
}

/// A path as a normalized URL with its folder segments, or `None` when it is not a path Ember
/// can read.
fn normalize(path: &str) -> Option<Url> {
    let path = path.trim();
    // The part before the first wildcard: what a glob can reach.
    let path = match path.find(['*', '?', '[']) {
        Some(i) => &path[..i],
        None => path,
    };
    let mut url = if path.contains("://") {
        Url::parse(path).ok()?
    } else {
        let absolute = std::path::absolute(path).ok()?;
        Url::from_file_path(absolute).ok()?
    };
    // Lexical `.` and `..`; the URL parser already removes them, this keeps a trailing `/`.
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_string).collect())
        .unwrap_or_default();
    let mut clean: Vec<String> = Vec::new();
    for s in segments {
        match s.as_str() {
            "." => {}
            ".." => {
                clean.pop();
            }
            _ => clean.push(s),
        }
    }
    url.set_path(&format!("/{}", clean.join("/")));
    Some(url)
}

/// Whether `path` is `folder` or under it (whole segments).
fn under(path: &Url, folder: &Url) -> bool {
    if path.scheme() != folder.scheme()
        || path.host_str() != folder.host_str()
        || path.port_or_known_default() != folder.port_or_known_default()
    {
        return false;
    }
    let folder = folder.path().trim_end_matches('/');
    let path = path.path();
    folder.is_empty()
        || path == folder
        || path
            .strip_prefix(folder)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl PathPolicy {
    /// A policy allowing `folders` (local paths or URLs); none: everything.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for an entry that is not a path or URL.
    pub fn new(folders: &[String]) -> Result<Self> {
        let mut allowed = Vec::with_capacity(folders.len());
        for f in folders.iter().filter(|f| !f.trim().is_empty()) {
            allowed.push(normalize(f).ok_or_else(|| {
                Error::InvalidSetting {
                    setting:
                        "[security] allowed_paths / --allowed-path / EMBER_SECURITY_ALLOWED_PATHS"
                            .into(),
                    message: format!("`{f}` is not a path or URL"),
                }
            })?);
        }
        Ok(Self { allowed })
    }

    /// Whether every path is allowed (no list).
    pub fn is_open(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether `path` is under an allowed folder.
    pub fn allows(&self, path: &str) -> bool {
        if self.is_open() {
            return true;
        }
        normalize(path).is_some_and(|p| self.allowed.iter().any(|f| under(&p, f)))
    }

    /// Checks `path`, which is `what` (e.g. "input `raw_sales`", "output").
    ///
    /// # Errors
    /// [`Error::PathNotAllowed`] naming `what`, the path and the allowed folders.
    pub fn check(&self, what: &str, path: &str) -> Result<()> {
        if self.allows(path) {
            return Ok(());
        }
        Err(Error::PathNotAllowed {
            what: what.to_string(),
            path: path.to_string(),
            allowed: self
                .allowed
                .iter()
                .map(Url::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_match_on_whole_segments_and_dot_dot_cannot_escape() {
        let p =
            PathPolicy::new(&["/data/".into(), "hdfs://nn:9000/warehouse".into()]).expect("policy");
        assert!(p.allows("/data/x.csv") && p.allows("/data") && p.allows("file:///data/a/b"));
        assert!(p.allows("/data/*/x.csv") && p.allows("hdfs://nn:9000/warehouse/t/"));
        assert!(!p.allows("/database/x.csv"));
        assert!(!p.allows("/data/../etc/hostname"));
        assert!(!p.allows("/etc/hostname"));
        assert!(!p.allows("hdfs://other:9000/warehouse/t"));
        assert!(!p.allows("hdfs://nn:9000/warehouses"));
        assert!(!p.allows("/*"));
        let err = p
            .check("output", "/etc/x")
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("output /etc/x is outside the allowed paths (file:///data, hdfs://nn:9000/warehouse)"),
            "{err}"
        );
        assert!(PathPolicy::default().allows("/etc/hostname"));
    }
}
