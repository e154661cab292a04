//! The output committer: a run writes into `<output>/_temporary/<run_id>/` and, only when every
//! step succeeded, its files are moved into place with *dynamic partition overwrite* (Spark's
//! `partitionOverwriteMode=dynamic`, with FileOutputCommitter's `_temporary` staging): each
//! partition folder the run produced replaces the one in the output; partitions the run did not
//! produce are left as they are. A failed run removes its staging folder and leaves the
//! previous output untouched.
//!
//! Layout of an output folder:
//! ```text
//! <output>/order_date=2011-12-09/<write_id>_<n>.parquet   committed data, hive-style partitions
//! <output>/_quarantine/order_date=…/…parquet              committed rejected rows, same rule
//! <output>/_SUCCESS                                       JSON report of the last committed run
//! <output>/_temporary/<run_id>/{data,quarantine,inputs}/  a run in progress (removed after)
//! ```
//!
//! Only the files that successful tasks reported are committed (their "commit messages", as in
//! Spark's commit protocol; see `ember_core::sink`); anything else in staging (a failed or
//! duplicate task attempt's files) is removed with it.
//!
//! Commit order: write the commit's plan (every move and delete, and the `_SUCCESS` text) to
//! `_temporary/<run_id>/_COMMIT`; delete `_SUCCESS`; move the new files in; delete the
//! replaced ones; write `_SUCCESS`. The moves are renames (milliseconds, no data copied on a
//! local or HDFS store). A crash *during* those renames leaves `_SUCCESS` absent (readers can
//! tell the output is not consistent) and the plan in place: the next run of the output
//! applies it again first ([`Committer::recover`]), so the commit ends as if it had not been
//! interrupted. An incremental import *appends* (no file is replaced). All storage goes
//! through `object_store`, so the same code commits on the local file system and on HDFS.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::error::{Error, Result};

/// Folder under the output holding runs in progress.
pub const STAGING_DIR: &str = "_temporary";
/// Folder under the output holding rejected rows.
pub const QUARANTINE_DIR: &str = "_quarantine";
/// File under the output holding the JSON report of the last committed run.
pub const SUCCESS_FILE: &str = "_SUCCESS";
/// File in a run's staging folder holding its commit plan, written before the first rename.
pub const COMMIT_FILE: &str = "_COMMIT";

/// A commit, written down before it starts ([`Committer::commit`]): object paths to move and
/// to delete, and the `_SUCCESS` text.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CommitPlan {
    moves: Vec<(String, String)>,
    deletes: Vec<String>,
    success: String,
}

/// A part of a run's staging folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Output rows; committed to `<output>/`.
    Data,
    /// Rejected rows; committed to `<output>/_quarantine/`.
    Quarantine,
    /// Inputs the run converted (e.g. re-encoded to UTF-8); never committed.
    Inputs,
    /// Views computed once per run (`cache = true`); never committed.
    Cache,
}

impl Area {
    fn staging_name(self) -> &'static str {
        match self {
            Area::Data => "data",
            Area::Quarantine => "quarantine",
            Area::Inputs => "inputs",
            Area::Cache => "cache",
        }
    }
}

/// What a commit moved into place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitSummary {
    /// Partition folders written per area (e.g. `order_date=2011-12-09`; empty string for an
    /// unpartitioned output), sorted.
    pub partitions: BTreeMap<&'static str, Vec<String>>,
    /// How many of those partitions replaced existing files.
    pub replaced: usize,
    /// Files moved into place.
    pub files: usize,
    /// Bytes moved into place.
    pub bytes: u64,
}

/// Stages and commits the files of one run to one output folder.
#[derive(Debug, Clone)]
pub struct Committer {
    store: Arc<dyn ObjectStore>,
    root_url: Url,
    root: Path,
    run_id: String,
    /// On the local file system: the output folder did not exist before this run, so a failed
    /// first run removes the (empty) folder it created.
    created_root: bool,
}

impl Committer {
    /// A committer for `output` (a local path or URL) and run `run_id`, using the object store
    /// the session has for that URL.
    ///
    /// # Errors
    /// [`Error::Output`] when the path is not a valid location or has no object store.
    pub fn new(ctx: &SessionContext, output: &str, run_id: &str) -> Result<Self> {
        let bad = |message: String| Error::Output {
            path: output.to_string(),
            message,
        };
        if output.contains(['*', '?', '[']) {
            return Err(bad("an output path cannot be a glob".to_string()));
        }
        let url = ListingTableUrl::parse(output).map_err(|e| bad(e.strip_backtrace()))?;
        let store = ctx
            .runtime_env()
            .object_store(url.object_store())
            .map_err(|e| bad(e.strip_backtrace()))?;
        let mut root_url = url.get_url().clone();
        if !root_url.path().ends_with('/') {
            let with_slash = format!("{}/", root_url.path());
            root_url.set_path(&with_slash);
        }
        let root = url.prefix().clone();
        let created_root =
            root_url.scheme() == "file" && root_url.to_file_path().is_ok_and(|p| !p.exists());
        Ok(Self {
            store,
            root_url,
            root,
            run_id: run_id.to_string(),
            created_root,
        })
    }

    /// The run id this committer stages for.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The output folder as a URL, with a trailing `/`.
    pub fn output_url(&self) -> &Url {
        &self.root_url
    }

    /// The object store of the output.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `relative` (`/`-separated, URL-encoded parts, as Delta's `add.path`) under the output
    /// folder, as the object store spells it.
    ///
    /// # Errors
    /// [`Error::Storage`] for a path that does not decode.
    pub fn output_path(&self, relative: &str) -> Result<Path> {
        let relative = Path::from_url_path(relative)
            .map_err(|e| Error::storage(format!("path {relative}"), e.into()))?;
        Ok(Path::from_iter(self.root.parts().chain(relative.parts())))
    }

    fn staging_root(&self) -> Path {
        self.root
            .clone()
            .join(STAGING_DIR)
            .join(self.run_id.as_str())
    }

    /// The object store path of an area of this run's staging folder.
    pub fn staging_path(&self, area: Area) -> Path {
        self.staging_root().join(area.staging_name())
    }

    /// The URL of an area of this run's staging folder, with a trailing `/` (what DataFusion
    /// writers and readers take).
    pub fn staging_url(&self, area: Area) -> String {
        format!(
            "{}{}/{}/{}/",
            self.root_url,
            STAGING_DIR,
            self.run_id,
            area.staging_name()
        )
    }

    fn target(&self, area: Area) -> Path {
        match area {
            Area::Data => self.root.clone(),
            Area::Quarantine => self.root.clone().join(QUARANTINE_DIR),
            Area::Inputs | Area::Cache => self.staging_path(area),
        }
    }

    async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| Error::storage(format!("listing {prefix}"), e))
    }

    /// The files tasks reported for an area, grouped by partition folder (relative to the
    /// area). Only these are committed: files of failed or duplicate task attempts are in
    /// staging too, but no successful task reported them.
    ///
    /// # Errors
    /// [`Error::Storage`] when a reported file is missing (a lost write must fail the run,
    /// not shrink the output).
    async fn staged(
        &self,
        area: Area,
        reported: &[String],
    ) -> Result<BTreeMap<String, Vec<ObjectMeta>>> {
        let prefix = self.staging_path(area);
        let mut groups: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for relative in reported {
            let location = Path::parse(format!("{prefix}/{relative}"))
                .map_err(|e| Error::storage(format!("reported file {relative}"), e.into()))?;
            let meta = self.store.head(&location).await.map_err(|e| {
                Error::storage(
                    format!("a task reported {location} but it cannot be read"),
                    e,
                )
            })?;
            let partition = relative
                .rsplit_once('/')
                .map_or("", |(dir, _)| dir)
                .to_string();
            groups.entry(partition).or_default().push(meta);
        }
        Ok(groups)
    }

    /// Existing committed files of one partition (`""`: the files directly in the target,
    /// ignoring `_`/`.`-prefixed entries such as `_quarantine` and `_SUCCESS`).
    async fn existing(&self, target: &Path, partition: &str) -> Result<Vec<Path>> {
        if partition.is_empty() {
            let listing = self
                .store
                .list_with_delimiter(Some(target))
                .await
                .map_err(|e| Error::storage(format!("listing {target}"), e))?;
            return Ok(listing
                .objects
                .into_iter()
                .map(|m| m.location)
                .filter(|p| p.filename().is_some_and(|f| !f.starts_with(['_', '.'])))
                .collect());
        }
        let dir = join(target, partition);
        Ok(self
            .list(&dir)
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect())
    }

    /// Moves the files reported for each area into place, writes `success(&summary)` (the
    /// run's JSON report) to `<output>/_SUCCESS`, and removes the staging folder. With
    /// `append`, the files are added to their partitions (an incremental import); otherwise
    /// each partition written replaces the committed one (dynamic partition overwrite).
    ///
    /// Before the first rename, the whole commit (moves, deletes, `_SUCCESS`) is written to
    /// `_temporary/<run_id>/_COMMIT`: a run that dies during the renames is finished by the
    /// next run's [`Committer::recover`], so a commit is never left half done.
    ///
    /// # Errors
    /// [`Error::Storage`] when a listing, rename, delete or write fails. After the plan is
    /// written `_SUCCESS` is then absent, and the next run finishes the commit (the caller
    /// keeps the staging folder: [`Committer::commit_begun`]).
    pub async fn commit(
        &self,
        areas: &[(Area, Vec<String>)],
        append: bool,
        success: impl FnOnce(&CommitSummary) -> Vec<u8>,
    ) -> Result<CommitSummary> {
        let mut summary = CommitSummary::default();
        let mut plan = CommitPlan::default();
        for (area, reported) in areas {
            let groups = self.staged(*area, reported).await?;
            let target = self.target(*area);
            let staging = self.staging_path(*area);
            let mut names = Vec::with_capacity(groups.len());
            for (partition, files) in groups {
                let old = if append {
                    Vec::new()
                } else {
                    self.existing(&target, &partition).await?
                };
                if !old.is_empty() {
                    summary.replaced += 1;
                }
                let mut moved = Vec::with_capacity(files.len());
                for meta in files {
                    let relative: Vec<_> = meta
                        .location
                        .prefix_match(&staging)
                        .map(|p| p.map(|part| part.as_ref().to_string()).collect())
                        .unwrap_or_default();
                    let to = relative
                        .iter()
                        .fold(target.clone(), |p, part| p.join(part.as_str()));
                    summary.files += 1;
                    summary.bytes += meta.size;
                    plan.moves.push((meta.location.to_string(), to.to_string()));
                    moved.push(to);
                }
                plan.deletes.extend(
                    old.iter()
                        .filter(|p| !moved.contains(p))
                        .map(ToString::to_string),
                );
                names.push(partition);
            }
            summary.partitions.insert(area.staging_name(), names);
        }
        plan.success = String::from_utf8_lossy(&success(&summary)).into_owned();
        let intent = self.staging_dir().join(COMMIT_FILE);
        let body = serde_json::to_vec(&plan).unwrap_or_default();
        self.store
            .put(&intent, PutPayload::from(body))
            .await
            .map_err(|e| Error::storage(format!("writing {intent}"), e))?;
        self.apply(&plan).await?;
        self.cleanup().await?;
        Ok(summary)
    }

    /// Carries out a commit plan: deletes `_SUCCESS`, moves the files still in staging (a
    /// file already moved is skipped), deletes the replaced ones, writes `_SUCCESS`.
    /// Idempotent, so a plan interrupted anywhere can be applied again.
    async fn apply(&self, plan: &CommitPlan) -> Result<()> {
        let success_path = self.root.clone().join(SUCCESS_FILE);
        match self.store.delete(&success_path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::storage(format!("deleting {success_path}"), e)),
        }
        for (from, to) in &plan.moves {
            let (from, to) = (Path::from(from.as_str()), Path::from(to.as_str()));
            if let Err(e) = self.store.rename(&from, &to).await {
                // Moved before the interruption. A store may report the missing source as
                // `NotFound` or, as HDFS does, as an RPC error (`FileNotFoundException`).
                let source_gone = matches!(
                    self.store.head(&from).await,
                    Err(object_store::Error::NotFound { .. })
                );
                if !(source_gone && self.store.head(&to).await.is_ok()) {
                    return Err(Error::storage(format!("moving {from} to {to}"), e));
                }
            }
        }
        for path in &plan.deletes {
            let path = Path::from(path.as_str());
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::storage(format!("deleting {path}"), e)),
            }
        }
        self.store
            .put(
                &success_path,
                PutPayload::from(plan.success.clone().into_bytes()),
            )
            .await
            .map_err(|e| Error::storage(format!("writing {success_path}"), e))?;
        Ok(())
    }

    /// Finishes the commits that runs of this output began and did not end (a process killed
    /// during its renames): each `_temporary/<run>/_COMMIT` is applied again and its staging
    /// folder removed. The staging folders of other runs that did not begin their commit (a
    /// run that failed and could not clean up: its storage was full or unreachable) are
    /// removed, as Hadoop's `FileOutputCommitter` job cleanup removes `_temporary`. Call with
    /// the output's lock held: no other run of the output is alive. Returns the run ids
    /// finished.
    ///
    /// # Errors
    /// [`Error::Storage`] when the plan cannot be read or applied.
    pub async fn recover(&self) -> Result<Vec<String>> {
        let staging = self.root.clone().join(STAGING_DIR);
        let runs = match self.store.list_with_delimiter(Some(&staging)).await {
            Ok(listing) => listing.common_prefixes,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Error::storage(format!("listing {staging}"), e)),
        };
        let mut finished = Vec::new();
        for run in runs {
            let Some(run_id) = run.filename().map(str::to_string) else {
                continue;
            };
            if run_id == self.run_id {
                continue;
            }
            let other = Committer {
                run_id: run_id.clone(),
                created_root: false,
                ..self.clone()
            };
            let intent = run.clone().join(COMMIT_FILE);
            let bytes = match self.store.get(&intent).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map_err(|e| Error::storage(format!("reading {intent}"), e))?,
                Err(object_store::Error::NotFound { .. }) => {
                    tracing::warn!(run_id = %run_id, "removing the staging folder of a run that did not commit");
                    other.cleanup().await?;
                    continue;
                }
                Err(e) => return Err(Error::storage(format!("reading {intent}"), e)),
            };
            let plan: CommitPlan = serde_json::from_slice(&bytes).map_err(|e| Error::Output {
                path: intent.to_string(),
                message: format!("an interrupted commit's plan cannot be read: {e}"),
            })?;
            tracing::warn!(run_id = %run_id, files = plan.moves.len(), "finishing the commit of an interrupted run");
            self.apply(&plan).await?;
            other.cleanup().await?;
            finished.push(run_id);
        }
        Ok(finished)
    }

    /// Whether this run wrote its commit plan (`_temporary/<run>/_COMMIT`). After a failed
    /// commit the staging folder is then kept, plan and files, so that the next run's
    /// [`Committer::recover`] finishes the commit (as Hadoop's `FileOutputCommitter` v1
    /// recovers a job from its committed task output). Also `true` when the store cannot tell
    /// (it is unreachable): removing a plan whose renames had begun would leave the output
    /// half committed for good.
    pub async fn commit_begun(&self) -> bool {
        let intent = self.staging_dir().join(COMMIT_FILE);
        !matches!(
            self.store.head(&intent).await,
            Err(object_store::Error::NotFound { .. })
        )
    }

    /// The JSON report of the last committed run (`<output>/_SUCCESS`), if any.
    ///
    /// # Errors
    /// [`Error::Storage`] when it exists but cannot be read.
    pub async fn last_success(&self) -> Result<Option<Vec<u8>>> {
        let path = self.root.clone().join(SUCCESS_FILE);
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| Error::storage(format!("reading {path}"), e))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(format!("reading {path}"), e)),
        }
    }

    fn staging_dir(&self) -> Path {
        self.root
            .clone()
            .join(STAGING_DIR)
            .join(self.run_id.as_str())
    }

    /// Removes this run's staging folder (after a commit, or after a failure), and
    /// `<output>/_temporary/` when no other run uses it.
    ///
    /// Files go through the object store. Object stores have no folders, so on the local file
    /// system the folders that renames left empty are removed here too.
    ///
    /// # Errors
    /// [`Error::Storage`] when listing or deleting fails.
    pub async fn cleanup(&self) -> Result<()> {
        let root = self.staging_root();
        for meta in self.list(&root).await? {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::storage(format!("deleting {}", meta.location), e)),
            }
        }
        if self.root_url.scheme() == "file"
            && let Ok(output) = self.root_url.to_file_path()
        {
            let staging = output.join(STAGING_DIR);
            let run = staging.join(&self.run_id);
            match std::fs::remove_dir_all(&run) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::storage(
                        format!("removing {}", run.display()),
                        object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        },
                    ));
                }
            }
            // Fails, as it should, while another run is staging there.
            let _ = std::fs::remove_dir(&staging);
            self.remove_empty_root();
        } else {
            // Stores with real folders (HDFS) keep the ones renames emptied; a non-recursive
            // delete removes a folder only when it is empty.
            self.remove_empty_folders(root).await;
            let _ = self
                .store
                .delete(&self.root.clone().join(STAGING_DIR))
                .await;
        }
        Ok(())
    }

    /// On the local file system, removes the output folder when this run created it and it is
    /// still empty (a failed first run leaves no folder behind).
    pub fn remove_empty_root(&self) {
        if self.created_root
            && let Ok(output) = self.root_url.to_file_path()
        {
            // Fails, as it should, once a commit (or another run) has put files there.
            let _ = std::fs::remove_dir(&output);
        }
    }

    /// Deletes the empty folders under and including `folder`, deepest first (best effort).
    async fn remove_empty_folders(&self, folder: Path) {
        let mut stack = vec![folder];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            if let Ok(listing) = self.store.list_with_delimiter(Some(&dir)).await {
                stack.extend(listing.common_prefixes);
            }
            found.push(dir);
        }
        for dir in found.iter().rev() {
            let _ = self.store.delete(dir).await;
        }
    }
}

fn join(base: &Path, relative: &str) -> Path {
    relative
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(base.clone(), |p, part| p.join(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit interrupted after its first rename (its plan written, `_SUCCESS` deleted) is
    /// finished by the next run's `recover`: every file in place, the replaced one gone, the
    /// plan's `_SUCCESS` written, the staging folder removed.
    #[tokio::test]
    async fn an_interrupted_commit_is_finished_by_the_next_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let old = out.join("d=1/old.parquet");
        std::fs::create_dir_all(old.parent().expect("dir")).expect("mkdir");
        std::fs::write(&old, "old").expect("old");
        std::fs::write(out.join(SUCCESS_FILE), "previous").expect("success");
        let ctx = SessionContext::new();
        let killed = Committer::new(&ctx, &out.display().to_string(), "run-1").expect("c1");
        let staging = out.join("_temporary/run-1/data");
        for (folder, name) in [("d=1", "a.parquet"), ("d=2", "b.parquet")] {
            std::fs::create_dir_all(staging.join(folder)).expect("mkdir");
            std::fs::write(staging.join(folder).join(name), name).expect("file");
        }
        let root = killed.root.clone();
        let moves = [("d=1", "a.parquet"), ("d=2", "b.parquet")]
            .iter()
            .map(|(f, n)| {
                let from = killed.staging_path(Area::Data).join(*f).join(*n);
                let to = root.clone().join(*f).join(*n);
                (from.to_string(), to.to_string())
            })
            .collect::<Vec<_>>();
        let plan = CommitPlan {
            moves,
            deletes: vec![root.clone().join("d=1").join("old.parquet").to_string()],
            success: "{\"run_id\":\"run-1\"}".into(),
        };
        std::fs::write(
            out.join("_temporary/run-1").join(COMMIT_FILE),
            serde_json::to_vec(&plan).expect("json"),
        )
        .expect("plan");
        // The killed run had deleted _SUCCESS and moved its first file.
        std::fs::remove_file(out.join(SUCCESS_FILE)).expect("rm");
        std::fs::rename(staging.join("d=1/a.parquet"), out.join("d=1/a.parquet")).expect("mv");

        let next = Committer::new(&ctx, &out.display().to_string(), "run-2").expect("c2");
        assert_eq!(next.recover().await.expect("recover"), ["run-1"]);
        assert_eq!(
            std::fs::read_to_string(out.join("d=1/a.parquet")).expect("a"),
            "a.parquet"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("d=2/b.parquet")).expect("b"),
            "b.parquet"
        );
        assert!(!old.exists(), "the replaced file is still there");
        assert_eq!(
            std::fs::read_to_string(out.join(SUCCESS_FILE)).expect("_SUCCESS"),
            plan.success
        );
        assert!(
            !out.join("_temporary/run-1").exists(),
            "staging left behind"
        );
        // Nothing left to finish.
        assert!(next.recover().await.expect("again").is_empty());
    }
}
