//! The runtime environment of a session: how much memory its tasks may use before operators
//! spill (sorts, aggregations, joins), where spill files go, and Ember's object stores.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datafusion::error::Result;
use std::num::NonZeroUsize;

use crate::footer_cache::FooterCache;
use crate::storage::EmberObjectStoreRegistry;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, DEFAULT_FILE_STATISTICS_MEMORY_LIMIT, DEFAULT_METADATA_CACHE_LIMIT,
    FileMetadataCache, FileStatisticsCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// Memory per task slot when no limit is given, in bytes: 512 MiB. Spark sizes executors
/// per core the same way. Measured on the 10 M-row daily revenue job with 2 slots: a 1 GiB
/// pool keeps peak RSS near 1.2 GB, and the run is faster than unbounded, which peaked at
/// 2.25 GB (see BENCHMARKS.md).
pub const DEFAULT_MEMORY_PER_SLOT: u64 = 512 * 1024 * 1024;

/// Settings of an executor's runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Where files are read and written (local, HDFS).
    pub storage: crate::config::StorageSettings,
    /// Memory for all running tasks, in bytes, shared fairly between spilling operators
    /// (DataFusion's `FairSpillPool`); sorts, aggregations and joins spill to disk beyond it.
    /// `Some(0)`: unbounded (DataFusion's default). `None`: [`DEFAULT_MEMORY_PER_SLOT`] × task
    /// slots.
    pub memory_limit: Option<u64>,
    /// Folder for spill files. `None`: the OS temporary folder.
    pub spill_dir: Option<PathBuf>,
    /// Memory for Parquet footers kept across queries, in bytes: the limit of the process's one
    /// footer cache (DataFusion's file metadata cache, its `metadata_cache_limit`; see
    /// [`shared_caches`]), least recently used footers evicted first. `Some(0)`: nothing kept.
    /// `None`: the process's current limit, [`DEFAULT_METADATA_CACHE_LIMIT`] (50 MiB) unless a
    /// runtime of the process set another. The cache is the process's, so its last setting
    /// holds for every session: a process gives all its runtimes the same value.
    pub metadata_cache_limit: Option<u64>,
}

impl RuntimeOptions {
    /// The memory pool size for an executor with `slots` task slots, in bytes; `None` when
    /// unbounded.
    pub fn memory_pool_bytes(&self, slots: usize) -> Option<u64> {
        match self.memory_limit {
            Some(0) => None,
            Some(limit) => Some(limit),
            None => Some(DEFAULT_MEMORY_PER_SLOT * slots.max(1) as u64),
        }
    }
}

/// The process's caches of Parquet footers (DataFusion's file metadata cache, up to 50 MiB, which
/// does not keep a stream's state shards: [`FooterCache`]) and of file statistics (up to 20 MiB),
/// shared by every runtime [`runtime_env`] builds.
///
/// A Ballista executor builds one runtime per client session and keeps the last 16 sessions'
/// (its session runtime cache); with a cache per runtime, each session's would fill to its own
/// limit, 16 × 70 MiB in all. Entries are checked against the file's size and modification time
/// before use, so sharing them between sessions is safe.
///
/// The cost: an executor's one cache keeps footers across sessions and fills to its limit, where
/// a session's own cache went when the session left Ballista's cache. Under a stream at a 1 s
/// trigger an executor's cache filled by about 40 MB of footers an hour, most of them the state
/// shards each micro-batch reads once, which it no longer keeps ([`FooterCache`]); the
/// executors grew +73 MiB/h against +20 with no footer cache and +36 with one per session, side
/// by side (BENCHMARKS.md, "The executors' faster growth is their footer cache").
/// `RuntimeOptions::metadata_cache_limit` (`--metadata-cache-limit`) bounds it lower;
/// [`metadata_cache_bytes`] tells its fill.
fn shared_caches() -> (Arc<FileMetadataCache>, Arc<FileStatisticsCache>) {
    let (metadata, statistics) = caches();
    (
        Arc::clone(metadata) as Arc<FileMetadataCache>,
        Arc::clone(statistics) as Arc<FileStatisticsCache>,
    )
}

/// The process's two caches, made on first use.
fn caches() -> &'static (Arc<FooterCache>, Arc<FileStatisticsCache>) {
    static CACHES: OnceLock<(Arc<FooterCache>, Arc<FileStatisticsCache>)> = OnceLock::new();
    CACHES.get_or_init(|| {
        (
            Arc::new(FooterCache::new(DEFAULT_METADATA_CACHE_LIMIT)),
            Arc::new(
                DefaultCache::new(DEFAULT_FILE_STATISTICS_MEMORY_LIMIT)
                    .with_name("EmberFileStatisticsCache"),
            ),
        )
    })
}

/// What the process's footer cache holds now, in bytes, as DataFusion counts it (each footer's
/// decoded size; its limit is `CacheManager::get_metadata_cache_limit`). `/metrics` shows it, so
/// that an operator can tell the cache filling from other growth (docs/operations.md, "Memory
/// over time").
pub fn metadata_cache_bytes() -> u64 {
    let (footers, _) = caches();
    u64::try_from(footers.memory_used()).unwrap_or(u64::MAX)
}

/// Builds the runtime environment for `options` and an executor with `slots` task slots: the
/// memory pool, the spill folder and Ember's object stores.
///
/// DataFusion 55's cache of file listings is off: it keeps a folder's listing with no expiry by
/// default, so a long-running scheduler or `ember serve` would never see the files a job or a
/// stream writes after the first query (seen in Ember's sink log test). The footer and
/// statistics caches are the process's (see [`shared_caches`]); `options.metadata_cache_limit`
/// sets the footer cache's limit.
///
/// # Errors
/// DataFusion's, if the spill folder cannot be used.
pub fn runtime_env(options: &RuntimeOptions, slots: usize) -> Result<Arc<RuntimeEnv>> {
    let (metadata, statistics) = shared_caches();
    // DataFusion applies the config's limit to a given cache (`update_cache_limit`), so the
    // current limit is passed on when the options leave it.
    let footer_limit = match options.metadata_cache_limit {
        Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        None => metadata.cache_limit(),
    };
    let cache = CacheManagerConfig::default()
        .with_list_files_cache(None)
        .with_list_files_cache_limit(0)
        .with_file_metadata_cache(Some(metadata))
        .with_metadata_cache_limit(footer_limit)
        .with_file_statistics_cache(Some(statistics));
    let mut builder = RuntimeEnvBuilder::new()
        .with_cache_manager(cache)
        .with_object_store_registry(Arc::new(EmberObjectStoreRegistry::new(&options.storage)));
    if let Some(limit) = options.memory_pool_bytes(slots) {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        // Errors name the 5 largest consumers, so "out of memory" says which operator.
        let top = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
        builder = builder.with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(limit),
            top,
        )));
    }
    if let Some(dir) = &options.spill_dir {
        builder = builder.with_temp_file_path(dir.clone());
    }
    builder.build_arc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_default_is_per_slot_and_zero_is_unbounded() {
        let default = RuntimeOptions::default();
        assert_eq!(default.memory_pool_bytes(2), Some(1024 * 1024 * 1024));
        let explicit = RuntimeOptions {
            memory_limit: Some(5_000),
            ..Default::default()
        };
        assert_eq!(explicit.memory_pool_bytes(8), Some(5_000));
        let unbounded = RuntimeOptions {
            memory_limit: Some(0),
            ..Default::default()
        };
        assert_eq!(unbounded.memory_pool_bytes(2), None);
        let env = runtime_env(&default, 2).expect("runtime");
        assert!(matches!(
            env.memory_pool.memory_limit(),
            datafusion::execution::memory_pool::MemoryLimit::Finite(n) if n == 1 << 30
        ));
    }

    /// One test, since the caches are the process's: tests running at once would change each
    /// other's limits.
    #[tokio::test]
    async fn every_runtime_shares_one_footer_cache_which_keeps_what_queries_read_up_to_its_limit() {
        let one = runtime_env(&RuntimeOptions::default(), 2).expect("runtime");
        let other = runtime_env(&RuntimeOptions::default(), 8).expect("runtime");
        let (a, b) = (&one.cache_manager, &other.cache_manager);
        assert!(Arc::ptr_eq(
            &a.get_file_metadata_cache(),
            &b.get_file_metadata_cache()
        ));
        assert_eq!(a.get_metadata_cache_limit(), DEFAULT_METADATA_CACHE_LIMIT);
        let (sa, sb) = (
            a.get_file_statistic_cache().expect("a statistics cache"),
            b.get_file_statistic_cache().expect("a statistics cache"),
        );
        assert!(Arc::ptr_eq(&sa, &sb));
        assert!(
            a.get_list_files_cache().is_none(),
            "listings are not cached"
        );

        // A query's footers stay in the cache, counted by `metadata_cache_bytes`.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sales.parquet");
        write_parquet(&file).await;
        query(&file, None).await;
        let used = metadata_cache_bytes();
        assert!(used > 0, "the footer is kept");
        assert_eq!(a.get_metadata_cache_limit(), DEFAULT_METADATA_CACHE_LIMIT);
        // A stream's state shard is read once: its footer is not kept.
        let shards = dir
            .path()
            .join(crate::footer_cache::state_shard_folder(7, 0));
        std::fs::create_dir_all(&shards).expect("shard folder");
        let shard = shards.join("part-00000.parquet");
        write_parquet(&shard).await;
        query(&shard, None).await;
        assert_eq!(metadata_cache_bytes(), used, "a shard's footer is not kept");

        // A runtime that sets the limit sets it for the process; one that leaves it keeps it.
        query(&file, Some(1 << 20)).await;
        assert_eq!(a.get_metadata_cache_limit(), 1 << 20, "the one cache");
        assert_eq!(metadata_cache_bytes(), used);
        query(&file, None).await;
        assert_eq!(a.get_metadata_cache_limit(), 1 << 20);
        query(&file, Some(0)).await;
        assert_eq!(
            (metadata_cache_bytes(), a.get_metadata_cache_limit()),
            (0, 0),
            "nothing kept at 0"
        );
    }

    async fn write_parquet(file: &std::path::Path) {
        datafusion::prelude::SessionContext::new()
            .sql(&format!(
                "COPY (SELECT * FROM (VALUES (1), (2), (3)) AS t(qty)) TO '{}'",
                file.display()
            ))
            .await
            .expect("plan")
            .collect()
            .await
            .expect("write");
    }

    /// Sums the file's `qty` in a session whose runtime has `limit` as its footer cache's.
    async fn query(file: &std::path::Path, limit: Option<u64>) {
        use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
        let options = RuntimeOptions {
            metadata_cache_limit: limit,
            ..Default::default()
        };
        let runtime = runtime_env(&options, 1).expect("runtime");
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let path = file.display().to_string();
        ctx.register_parquet("sales", &path, ParquetReadOptions::default())
            .await
            .expect("register");
        let rows = ctx
            .sql("SELECT sum(qty) FROM sales WHERE qty > 1")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }
}
