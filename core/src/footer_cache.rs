//! The process's cache of Parquet footers: DataFusion's LRU cache ([`DefaultCache`], keyed by
//! the file's path in its object store), except that the footers of a stream's **state
//! shards** are not kept.
//!
//! A stream on a 1 s trigger writes new shards every micro-batch (`state/<batch id>-<output>/
//! *.parquet` in its checkpoint, [`state_shard_folder`]); the next micro-batch's two merge jobs
//! read them (planned on the scheduler, read on the executors), and a later commit deletes them.
//! Kept, their footers filled a scheduler's cache at about 1.8 MB a minute and an executor's at
//! 0.7 MB a minute (a soak at 100 events/s) up to the cache's limit (50 MiB by default), with
//! files nobody reads again, pushing out the footers of the tables that queries read repeatedly
//! (BENCHMARKS.md, "Soak"). Not keeping them costs an executor a second footer read when both
//! merge jobs of a micro-batch read the same shard on it.

use std::time::Duration;

use datafusion::common::{HashMap, TableReference};
use datafusion::execution::cache::cache_manager::CachedFileMetadataEntry;
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::cache::{Cache, CacheEntryInfo};
use object_store::path::Path;

/// The folder, relative to a stream's checkpoint, of output number `output`'s partial-aggregate
/// shards after micro-batch `batch_id`: `state/<batch id>-<output>`. The stream's checkpoint
/// names it through this function, so that the footer cache's rule ([`is_state_shard`]) and the
/// layout cannot drift apart.
pub fn state_shard_folder(batch_id: u64, output: usize) -> String {
    format!("state/{batch_id}-{output}")
}

/// Whether `path` is a file directly in a state shard folder ([`state_shard_folder`]): its
/// parent is `<digits>-<digits>` in a folder named `state`.
pub fn is_state_shard(path: &Path) -> bool {
    let parts: Vec<_> = path.parts().collect();
    let [.., state, folder, _file] = parts.as_slice() else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    state.as_ref() == "state"
        && folder
            .as_ref()
            .split_once('-')
            .is_some_and(|(batch, output)| digits(batch) && digits(output))
}

/// DataFusion's LRU footer cache that does not keep state shards' footers ([`is_state_shard`]).
pub struct FooterCache {
    inner: DefaultCache<Path, CachedFileMetadataEntry>,
}

impl FooterCache {
    /// An empty cache of at most `limit` bytes (footers' decoded sizes, as DataFusion counts).
    pub fn new(limit: usize) -> Self {
        Self {
            inner: DefaultCache::new(limit).with_name("EmberFileMetadataCache"),
        }
    }

    /// What the cache holds now, in bytes.
    pub fn memory_used(&self) -> usize {
        self.inner.memory_used()
    }
}

impl Cache<Path, CachedFileMetadataEntry> for FooterCache {
    fn get(&self, key: &Path) -> Option<CachedFileMetadataEntry> {
        self.inner.get(key)
    }

    /// Keeps `value`, unless `key` is a state shard: then nothing is kept (and an entry the
    /// key may have is dropped, as DataFusion's cache does with a value over its limit).
    fn put(&self, key: &Path, value: CachedFileMetadataEntry) -> Option<CachedFileMetadataEntry> {
        if is_state_shard(key) {
            return self.inner.remove(key);
        }
        self.inner.put(key, value)
    }

    fn remove(&self, k: &Path) -> Option<CachedFileMetadataEntry> {
        self.inner.remove(k)
    }

    fn contains_key(&self, k: &Path) -> bool {
        self.inner.contains_key(k)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn clear(&self) {
        self.inner.clear();
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    fn cache_limit(&self) -> usize {
        self.inner.cache_limit()
    }

    fn update_cache_limit(&self, limit: usize) {
        self.inner.update_cache_limit(limit);
    }

    fn cache_ttl(&self) -> Option<Duration> {
        self.inner.cache_ttl()
    }

    fn update_cache_ttl(&self, ttl: Option<Duration>) {
        self.inner.update_cache_ttl(ttl);
    }

    fn drop_table_entries(&self, table_ref: &TableReference) -> datafusion::common::Result<()> {
        self.inner.drop_table_entries(table_ref)
    }

    fn list_entries(&self) -> HashMap<Path, CacheEntryInfo<CachedFileMetadataEntry>> {
        self.inner.list_entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_in_a_state_shard_folder_are_shards() {
        let shard = |p: &str| is_state_shard(&Path::from(p));
        let folder = state_shard_folder(42, 1);
        assert!(shard(&format!(
            "out/_checkpoint/{folder}/part-00003.parquet"
        )));
        assert!(shard(&format!("{folder}/new.parquet")));
        for other in [
            "out/_checkpoint/state/42.parquet",
            "out/_checkpoint/state/42-1.json/part.parquet/x",
            "out/state/42-x/part.parquet",
            "out/states/42-1/part.parquet",
            "out/window_date=2011-12-09/window_hour=10/part-b00000042.parquet",
            "state/42-1",
        ] {
            assert!(!shard(other), "{other}");
        }
    }
}
