//! A folder on an object store (local file system or HDFS), addressed like Ember addresses
//! every path: a local path or a URL. Stream checkpoints, the stream sink and its sink log read
//! and write through it.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};

/// A folder: its store, its path in the store, and the URL shown in messages.
#[derive(Debug, Clone)]
pub struct Dir {
    store: Arc<dyn ObjectStore>,
    base: Path,
    url: String,
}

impl Dir {
    /// The folder at `location` (local path, `file://` or `hdfs://` URL).
    ///
    /// # Errors
    /// [`Error::Storage`] when the location cannot be parsed or has no store.
    pub fn open(location: &str, registry: &dyn ObjectStoreRegistry) -> Result<Self> {
        let storage = |message: String| Error::storage(location, message);
        let with_slash = format!("{}/", location.trim_end_matches('/'));
        let url = ListingTableUrl::parse(&with_slash).map_err(|e| storage(e.to_string()))?;
        let store = registry
            .get_store(url.object_store().as_ref())
            .map_err(|e| storage(e.to_string()))?;
        Ok(Self {
            store,
            base: url.prefix().clone(),
            url: url.as_str().trim_end_matches('/').to_string(),
        })
    }

    /// The folder `rel` under this one.
    pub fn sub(&self, rel: &str) -> Self {
        Self {
            store: Arc::clone(&self.store),
            base: self.path(rel),
            url: format!("{}/{rel}", self.url),
        }
    }

    /// The URL of this folder (for messages and reports).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, rel: &str) -> Path {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.base.clone(), |p, part| p.join(part))
    }

    fn error(&self, rel: &str, e: impl std::fmt::Display) -> Error {
        Error::storage(format!("{}/{rel}", self.url), e)
    }

    /// Writes `bytes` to the file `rel`, replacing it. The object store writes a temporary
    /// file and renames it, so readers see the old or the new file, never a part.
    ///
    /// # Errors
    /// [`Error::Storage`] naming the file.
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(rel, e))
    }

    /// Writes `bytes` to the file `rel` only if there is none (the object store's
    /// create-if-absent put, atomic on local disk and HDFS). Returns whether it wrote; `false`:
    /// another writer made the file first.
    ///
    /// # Errors
    /// [`Error::Storage`] naming the file.
    pub async fn put_new(&self, rel: &str, bytes: Bytes) -> Result<bool> {
        let create = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..object_store::PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from_bytes(bytes), create)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Takes the lease of this folder (the file `_ember_lock` in it) for `holder`
    /// ([`crate::storage::lease`]).
    ///
    /// # Errors
    /// [`Error::Locked`] naming who holds it; storage errors.
    pub async fn lease(&self, holder: super::lease::Holder<'_>) -> Result<super::lease::Lease> {
        super::lease::Lease::acquire(
            Arc::clone(&self.store),
            self.path(super::lease::LOCK_FILE),
            holder,
        )
        .await
    }

    /// Writes `bytes` to the file whose path below this folder is `parts`, one folder or file
    /// name each. A `/` inside a part is escaped (`%2F`, as Spark's `escapePathName` and the
    /// batch sink do) instead of making a sub-folder. Returns the path written, relative.
    ///
    /// # Errors
    /// [`Error::Storage`] naming the file.
    pub async fn put_parts(&self, parts: &[String], bytes: Bytes) -> Result<String> {
        let path = parts
            .iter()
            .fold(self.base.clone(), |p, part| p.join(part.as_str()));
        let rel = path
            .as_ref()
            .strip_prefix(self.base.as_ref())
            .unwrap_or(path.as_ref())
            .trim_start_matches('/')
            .to_string();
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.error(&rel, e))?;
        Ok(rel)
    }

    /// Reads the file `rel`; `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::Storage`] naming the file, for other failures.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| self.error(rel, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Names of the files directly in the folder `rel` (no sub-folders); empty when it does not
    /// exist.
    ///
    /// # Errors
    /// [`Error::Storage`] naming the folder.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel);
        match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(listing) => Ok(listing
                .objects
                .into_iter()
                .filter_map(|o| o.location.filename().map(str::to_string))
                .collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// The files directly in the folder `rel` with their sizes in bytes (no sub-folders),
    /// sorted by name; empty when it does not exist.
    ///
    /// # Errors
    /// [`Error::Storage`] naming the folder.
    pub async fn list_sized(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        let prefix = self.path(rel);
        let mut files: Vec<(String, u64)> =
            match self.store.list_with_delimiter(Some(&prefix)).await {
                Ok(listing) => listing
                    .objects
                    .into_iter()
                    .filter_map(|o| o.location.filename().map(|n| (n.to_string(), o.size)))
                    .collect(),
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(self.error(rel, e)),
            };
        files.sort();
        Ok(files)
    }

    /// Renames the file `from` to `to` (both relative to this folder), replacing `to`: one
    /// rename on a local or HDFS store, no data copied. Returns whether `from` was there (a
    /// missing `from` is not an error: a rename done before is not done again).
    ///
    /// # Errors
    /// [`Error::Storage`] naming `from`.
    pub async fn rename(&self, from: &str, to: &str) -> Result<bool> {
        match self.store.rename(&self.path(from), &self.path(to)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(from, e)),
        }
    }

    /// Every file under the folder `rel`, recursively, as paths relative to this folder.
    ///
    /// # Errors
    /// [`Error::Storage`] naming the folder.
    pub async fn list_all(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel);
        let base = self.base.as_ref().to_string();
        let objects: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(o) => o,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.error(rel, e)),
        };
        Ok(objects
            .into_iter()
            .map(|o| {
                let full = o.location.as_ref().to_string();
                full.strip_prefix(&base)
                    .unwrap_or(&full)
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect())
    }

    /// Removes the folder `rel` if it is empty (best effort: a folder with files, or one that
    /// cannot be removed, stays). Object stores delete files only, and on the local file
    /// system and HDFS the folders they emptied stay behind; a folder per micro-batch would
    /// pile up and make every listing longer.
    pub async fn remove_folder_if_empty(&self, rel: &str) {
        let url = format!("{}/{rel}", self.url);
        if url.starts_with("file:") {
            if let Ok(Ok(folder)) = url::Url::parse(&url).map(|u| u.to_file_path()) {
                let _ = std::fs::remove_dir(folder);
            }
        } else {
            // A non-recursive delete: HDFS refuses it for a folder that is not empty.
            let _ = self.store.delete(&self.path(rel)).await;
        }
    }

    /// Deletes the file `rel`; a missing file is not an error. Returns whether the store said
    /// it was there (a store that deletes missing files silently says `true`).
    ///
    /// # Errors
    /// [`Error::Storage`] naming the file.
    pub async fn delete(&self, rel: &str) -> Result<bool> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(rel, e)),
        }
    }
}
