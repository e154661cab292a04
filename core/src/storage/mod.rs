//! Where Ember reads and writes: the local file system (`file://` and plain paths) and HDFS
//! (`hdfs://namenode:port/path`, through `hdfs-native-object-store`). Every role (client,
//! scheduler, executors, embedded) installs the same [`EmberObjectStoreRegistry`] in its
//! runtime. Ballista intends this: the client's session state, the scheduler's session builder
//! and the executors' runtime producer all carry it.
//!
//! S3 (`s3://bucket/path`, also `s3a://`, through object_store's AWS store) and HDFS stores are
//! created on first use, one per bucket or NameNode. S3 settings come from the standard
//! `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, as every AWS client reads them), overridden by
//! `storage.s3.options`; commits and leases use S3's conditional put (`If-None-Match: *`),
//! which AWS S3 and MinIO honour.
//!
//! HDFS stores are created with the configured client options.
//! `hdfs:///path` (no NameNode in the URL) uses `storage.hdfs.namenode`, as Hadoop's
//! `fs.defaultFS` does. The HDFS user is `HADOOP_USER_NAME`, as for every Hadoop client; the
//! `storage.hdfs.user` setting sets it at process start ([`apply_process_environment`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::{Result, plan_datafusion_err};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use hdfs_native_object_store::HdfsObjectStoreBuilder;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

use crate::config::StorageSettings;

mod dir;
pub mod lease;

pub use dir::Dir;

/// The object store registry of every Ember runtime: DataFusion's default registry (the local
/// file system, and stores registered explicitly) plus HDFS stores created on demand.
#[derive(Debug)]
pub struct EmberObjectStoreRegistry {
    inner: DefaultObjectStoreRegistry,
    hdfs_namenode: Option<String>,
    hdfs_options: BTreeMap<String, String>,
    s3_options: BTreeMap<String, String>,
}

impl EmberObjectStoreRegistry {
    /// A registry for `settings`.
    pub fn new(settings: &StorageSettings) -> Self {
        Self {
            inner: DefaultObjectStoreRegistry::new(),
            hdfs_namenode: settings.hdfs_namenode.clone(),
            hdfs_options: settings.hdfs_options.clone(),
            s3_options: settings.s3_options.clone(),
        }
    }

    /// The S3 store of `url`'s bucket: the `AWS_*` variables, then `storage.s3.options`.
    fn s3_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| plan_datafusion_err!("{url} names no bucket (s3://bucket/path)"))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (key, value) in &self.s3_options {
            let config = crate::config::s3_config_key(key)
                .map_err(|m| plan_datafusion_err!("storage.s3.options: {m}"))?;
            builder = builder.with_config(config, value);
        }
        let store = builder
            .build()
            .map_err(|e| plan_datafusion_err!("cannot create an S3 client for {url}: {e}"))?;
        Ok(Arc::new(store))
    }

    fn hdfs_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let namenode = match url.host_str() {
            Some(host) if !host.is_empty() => match url.port() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            },
            _ => self.hdfs_namenode.clone().ok_or_else(|| {
                plan_datafusion_err!(
                    "{url} names no NameNode and no default is configured (storage.hdfs.namenode / --hdfs-namenode / EMBER_STORAGE_HDFS_NAMENODE)"
                )
            })?,
        };
        let store = HdfsObjectStoreBuilder::new()
            .with_url(namenode.clone())
            .with_config(self.hdfs_options.clone())
            .build()
            .map_err(|e| {
                plan_datafusion_err!("cannot create an HDFS client for {namenode}: {e}")
            })?;
        Ok(Arc::new(store))
    }
}

impl ObjectStoreRegistry for EmberObjectStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match self.inner.get_store(url) {
            Ok(store) => Ok(store),
            Err(_) if matches!(url.scheme(), "hdfs" | "viewfs" | "s3" | "s3a") => {
                let store = if url.scheme().starts_with("s3") {
                    self.s3_store(url)?
                } else {
                    self.hdfs_store(url)?
                };
                self.inner.register_store(url, Arc::clone(&store));
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }
}

/// Applies storage settings that Hadoop clients read from the environment: `HADOOP_USER_NAME`
/// from `storage.hdfs.user`. Call it once at process start, before any other thread exists.
#[allow(unsafe_code)]
pub fn apply_process_environment(settings: &StorageSettings) {
    if let Some(user) = &settings.hdfs_user {
        // SAFETY: called from `main` before the async runtime and any other thread start, so
        // no other thread reads the environment concurrently.
        unsafe { std::env::set_var("HADOOP_USER_NAME", user) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_use_the_default_store_and_hdfs_without_namenode_is_an_error() {
        let registry = EmberObjectStoreRegistry::new(&StorageSettings::default());
        let file = Url::parse("file:///tmp/x.csv").expect("url");
        assert!(registry.get_store(&file).is_ok());
        let hdfs = Url::parse("hdfs:///data/x.csv").expect("url");
        let err = registry
            .get_store(&hdfs)
            .expect_err("no namenode")
            .to_string();
        assert!(
            err.contains("names no NameNode and no default is configured"),
            "{err}"
        );
        let gcs = Url::parse("gs://bucket/x").expect("url");
        assert!(registry.get_store(&gcs).is_err());
        let settings = StorageSettings {
            s3_options: [("colour".to_string(), "blue".to_string())].into(),
            ..StorageSettings::default()
        };
        let err = EmberObjectStoreRegistry::new(&settings)
            .get_store(&Url::parse("s3://bucket/x").expect("url"))
            .expect_err("unknown option")
            .to_string();
        assert!(err.contains("unknown option `colour`"), "{err}");
    }
}
