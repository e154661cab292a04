//! A lease: one holder at a time of something on shared storage (a plain Parquet output that a
//! batch run commits into, a stream's checkpoint that one driver advances).
//!
//! The lease is a file (e.g. `<output>/_ember_lock`; readers skip `_` files), created only if
//! absent (the object store's create-if-absent put, atomic on local disk and HDFS). It holds
//! the owner (run or driver id, job, host, process id) and an expiry; the holder renews it
//! every [`RENEW`] while it lives and deletes it when it ends. A second taker finds it and
//! fails with one line naming the owner ([`Error::Locked`]). A lease left by a process that
//! was killed is taken over once it has expired, or at once when its process is gone from this
//! very host.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The lease file's name, below the folder it guards.
pub const LOCK_FILE: &str = "_ember_lock";

/// How long a lease lives without renewal.
const LEASE: Duration = Duration::from_secs(120);

/// How often a live run renews its lock.
const RENEW: Duration = Duration::from_secs(30);

/// What the lock file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    /// What holds it: `run`, `stream driver`.
    #[serde(default)]
    kind: String,
    run_id: String,
    job: String,
    host: String,
    pid: u32,
    /// When the run took the lock, RFC 3339 UTC.
    since: String,
    /// Until when it holds without renewal, milliseconds since the Unix epoch.
    expires_ms: i64,
}

impl Owner {
    fn json(&self) -> PutPayload {
        PutPayload::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// `kind run of job J (host H, process P) since T`, for messages.
    fn describe(&self) -> String {
        format!(
            "{} {} of job {} (host {}, process {}) since {}",
            self.kind, self.run_id, self.job, self.host, self.pid, self.since
        )
    }

    /// Why it is stale, for the take-over warning: how long ago the lock expired (seconds),
    /// or that its process is gone.
    fn staleness(&self) -> String {
        let ago_ms = Utc::now().timestamp_millis() - self.expires_ms;
        if ago_ms > 0 {
            format!("expired {:.1} s ago", ago_ms as f64 / 1000.0)
        } else {
            format!("process {} is gone from this host", self.pid)
        }
    }

    /// Whether a new run may take the lock from this owner: it expired, or its process is
    /// gone from this host.
    fn is_stale(&self, host: &str) -> bool {
        Utc::now().timestamp_millis() > self.expires_ms
            || (self.host == host && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// A held lease; [`Lease::release`] deletes it. Dropped without release (the holder's future
/// was dropped: a cancelled job), it stops renewing and deletes it in the background.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    run_id: String,
    /// Until when the lease holds by its last successful write (ms since the Unix epoch): no
    /// one takes it over before, so it is still this holder's even when it cannot be read.
    expires_ms: Arc<AtomicI64>,
    renewer: tokio::task::JoinHandle<()>,
    released: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        if !self.released
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (store, path, run_id, expires_ms) = (
                Arc::clone(&self.store),
                self.path.clone(),
                self.run_id.clone(),
                self.expires_ms.load(Ordering::Relaxed),
            );
            handle.spawn(async move {
                delete_if_mine(store.as_ref(), &path, &run_id, expires_ms).await;
            });
        }
    }
}

/// Margin kept before a lease's expiry when its file cannot be read: a clock step or a slow
/// delete must not remove a lock another holder has just taken over.
const UNREAD_MARGIN_MS: i64 = 10_000;

/// Deletes the lock at `path` if `run_id` holds it. When the file cannot be read (an HDFS
/// block whose DataNode is gone; the delete itself is the NameNode's and still works) it is
/// deleted if this holder's lease has not expired (`expires_ms`, less [`UNREAD_MARGIN_MS`]):
/// until then no one else may have taken it over.
async fn delete_if_mine(store: &dyn ObjectStore, path: &Path, run_id: &str, expires_ms: i64) {
    let mine = match read(store, path).await {
        Ok(owner) => owner.is_some_and(|owner| owner.run_id == run_id),
        Err(e) => {
            let held = Utc::now().timestamp_millis() < expires_ms - UNREAD_MARGIN_MS;
            if !held {
                tracing::warn!(lock = %path, error = %e, "the lock cannot be read and its lease has expired: left in place");
            }
            held
        }
    };
    if mine && let Err(e) = store.delete(path).await {
        tracing::warn!(lock = %path, error = %e, "could not remove the lock");
    }
}

/// Who takes a lease, and on what.
#[derive(Debug, Clone)]
pub struct Holder<'a> {
    /// What the lease guards, for the error (`output file:///…/`, `stream checkpoint …`).
    pub what: &'a str,
    /// The lock file's URL, for storage errors (`file:///…/_ember_lock`).
    pub url: &'a str,
    /// What holds it, for the error: `run`, `stream driver`.
    pub kind: &'a str,
    /// The run or stream id.
    pub id: &'a str,
    /// The job's name.
    pub job: &'a str,
    /// Advice for the one who is refused.
    pub hint: &'a str,
}

impl Lease {
    /// Takes the lease at `path` of `store` for `holder`.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder; [`Error::Storage`] when the file cannot be written
    /// or read.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        path: Path,
        holder: Holder<'_>,
    ) -> Result<Self> {
        let host = host_name();
        let owner = |now: i64| Owner {
            kind: holder.kind.to_string(),
            run_id: holder.id.to_string(),
            job: holder.job.to_string(),
            host: host.clone(),
            pid: std::process::id(),
            since: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            expires_ms: now + LEASE.as_millis() as i64,
        };
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        for _ in 0..2 {
            let mine = owner(Utc::now().timestamp_millis());
            match store.put_opts(&path, mine.json(), create.clone()).await {
                Ok(_) => {
                    let expires_ms = Arc::new(AtomicI64::new(mine.expires_ms));
                    let renewer = tokio::spawn(renew(
                        Arc::clone(&store),
                        path.clone(),
                        mine,
                        Arc::clone(&expires_ms),
                    ));
                    return Ok(Self {
                        store,
                        path,
                        run_id: holder.id.to_string(),
                        expires_ms,
                        renewer,
                        released: false,
                    });
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    return Err(Error::storage(holder.url, format!("taking the lock: {e}")));
                }
            }
            let held = read(store.as_ref(), &path)
                .await
                .map_err(|e| Error::storage(holder.url, format!("reading the lock: {e}")))?;
            match held {
                Some(other) if !other.is_stale(&host) => {
                    return Err(Error::Locked {
                        what: holder.what.to_string(),
                        holder: other.describe(),
                        hint: holder.hint.to_string(),
                    });
                }
                // Stale, or gone between the put and the read: take it over.
                _ => {
                    match &held {
                        Some(other) => tracing::warn!(
                            lock = %path,
                            previous = %other.describe(),
                            why = %other.staleness(),
                            "taking over a stale output lock"
                        ),
                        None => {
                            tracing::warn!(lock = %path, "taking over an output lock released meanwhile")
                        }
                    }
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            return Err(Error::storage(
                                holder.url,
                                format!("removing the stale lock: {e}"),
                            ));
                        }
                    }
                }
            }
        }
        Err(Error::Locked {
            what: holder.what.to_string(),
            holder: "another run that took it at the same moment".into(),
            hint: holder.hint.to_string(),
        })
    }

    /// Deletes the lock (if it is still this run's).
    pub async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        let expires_ms = self.expires_ms.load(Ordering::Relaxed);
        delete_if_mine(self.store.as_ref(), &self.path, &self.run_id, expires_ms).await;
    }
}

/// The lock's owner at `path`; `None` when there is no lock. An unreadable lock (a crash
/// while writing it) counts as stale (`None` too).
async fn read(store: &dyn ObjectStore, path: &Path) -> Result<Option<Owner>, object_store::Error> {
    match store.get(path).await {
        Ok(got) => Ok(serde_json::from_slice(&got.bytes().await?).ok()),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pushes the lock's expiry forward every [`RENEW`] until aborted; `expires_ms` follows the
/// last expiry written.
async fn renew(
    store: Arc<dyn ObjectStore>,
    path: Path,
    mut owner: Owner,
    expires_ms: Arc<AtomicI64>,
) {
    loop {
        tokio::time::sleep(RENEW).await;
        owner.expires_ms = Utc::now().timestamp_millis() + LEASE.as_millis() as i64;
        match store.put(&path, owner.json()).await {
            Ok(_) => expires_ms.store(owner.expires_ms, Ordering::Relaxed),
            Err(e) => tracing::warn!(lock = %path, error = %e, "could not renew the output lock"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutResult,
    };
    use std::sync::atomic::AtomicBool;

    /// An in-memory store whose reads fail while `unreadable` is set (as an HDFS block whose
    /// DataNode is gone); writes, deletes and listings still work (the NameNode's).
    #[derive(Debug, Default)]
    struct Unreadable {
        inner: InMemory,
        unreadable: AtomicBool,
    }

    impl std::fmt::Display for Unreadable {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Unreadable")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Unreadable {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            if self.unreadable.load(Ordering::Relaxed) {
                return Err(object_store::Error::Generic {
                    store: "Unreadable",
                    source: "All DataNodes failed".into(),
                });
            }
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn holder(id: &str) -> Holder<'_> {
        Holder {
            what: "output memory:///out/",
            url: "memory:///out/_ember_lock",
            kind: "run",
            id,
            job: "j",
            hint: "",
        }
    }

    async fn exists(store: &Unreadable) -> bool {
        store
            .inner
            .head(&Path::from("out/_ember_lock"))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_held_lock_that_cannot_be_read_is_still_released() {
        let store = Arc::new(Unreadable::default());
        let lease = Lease::acquire(store.clone(), Path::from("out/_ember_lock"), holder("a"))
            .await
            .expect("take the lock");
        store.unreadable.store(true, Ordering::Relaxed);
        lease.release().await;
        assert!(!exists(&store).await, "the lock is left");

        // A lease past its expiry is left in place when it cannot be read: another holder may
        // have taken it over.
        store.unreadable.store(false, Ordering::Relaxed);
        let lease = Lease::acquire(store.clone(), Path::from("out/_ember_lock"), holder("b"))
            .await
            .expect("take the lock again");
        lease
            .expires_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        store.unreadable.store(true, Ordering::Relaxed);
        lease.release().await;
        assert!(
            exists(&store).await,
            "an expired lease's lock was removed unread"
        );

        // Readable, it is removed only by its holder.
        store.unreadable.store(false, Ordering::Relaxed);
        delete_if_mine(
            store.as_ref(),
            &Path::from("out/_ember_lock"),
            "a",
            i64::MAX,
        )
        .await;
        assert!(exists(&store).await, "another run's lock was removed");
    }

    fn owner(host: &str, pid: u32, expires_ms: i64) -> Owner {
        Owner {
            kind: "run".into(),
            run_id: "r".into(),
            job: "j".into(),
            host: host.into(),
            pid,
            since: String::new(),
            expires_ms,
        }
    }

    #[test]
    fn a_lock_is_stale_once_expired_or_when_its_process_is_gone_here() {
        let future = Utc::now().timestamp_millis() + 60_000;
        let here = host_name();
        assert!(!owner(&here, std::process::id(), future).is_stale(&here));
        assert!(owner(&here, std::process::id(), 0).is_stale(&here));
        // No process has this id on Linux (pid_max is at most 2^22).
        assert!(owner(&here, u32::MAX, future).is_stale(&here));
        // On another host the process cannot be checked: only expiry counts.
        assert!(!owner("elsewhere", u32::MAX, future).is_stale(&here));
        // The warning says why in words, not as an epoch.
        let expired = owner(&here, 7, Utc::now().timestamp_millis() - 90_500).staleness();
        assert!(
            expired.starts_with("expired 90.") && expired.ends_with(" s ago"),
            "{expired}"
        );
        assert_eq!(
            owner(&here, u32::MAX, future).staleness(),
            format!("process {} is gone from this host", u32::MAX)
        );
    }
}
