//! A real S3-protocol server for tests: s3s-fs (Apache-2.0, Rust, crates.io) serving a
//! temporary folder on 127.0.0.1, from the binary `.ci/s3.sh` installs, with an access key and
//! a secret. Ember talks to it with object_store's AWS client, as it would to AWS S3 or MinIO.
//!
//! ```no_run
//! use ember_testkit::s3::S3Server;
//!
//! let s3 = S3Server::start().expect("start s3s-fs");
//! let bucket = s3.bucket("warehouse").expect("bucket");
//! // Give Ember's processes `s3.env()`, then use `s3://warehouse/...` paths.
//! ```

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{free_port, tail_lines, wait_for};

/// Environment variable naming s3s-fs's binary (default `~/.cache/ember-tools/bin/s3s-fs`).
pub const S3S_FS_ENV: &str = "EMBER_S3S_FS";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The test credentials.
const ACCESS_KEY: &str = "ember-test";
const SECRET_KEY: &str = "ember-test-secret-0123456789";

/// A running s3s-fs server.
pub struct S3Server {
    child: Child,
    port: u16,
    dir: TempDir,
}

/// The s3s-fs binary: `$EMBER_S3S_FS` or `~/.cache/ember-tools/bin/s3s-fs`.
///
/// # Errors
/// A message saying to run `bash .ci/s3.sh` when it is missing.
pub fn s3s_fs() -> Result<PathBuf, String> {
    crate::util::installed_tool(
        S3S_FS_ENV,
        ".cache/ember-tools/bin/s3s-fs",
        "run `bash .ci/s3.sh` (CI does)",
    )
}

impl S3Server {
    /// Starts a server on a free port over a new temporary folder and waits (bounded) until it
    /// accepts connections.
    ///
    /// # Errors
    /// When s3s-fs is missing, does not start, or does not listen within 30 s (with its log).
    pub fn start() -> Result<Self, String> {
        let bin = s3s_fs()?;
        let dir = tempfile::Builder::new()
            .prefix("ember-s3-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root).map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let log = dir.path().join("s3s-fs.log");
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .map_err(|e| e.to_string())?,
            ))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let ready = wait_for(
            "s3s-fs to accept connections",
            START_TIMEOUT,
            Duration::from_millis(100),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("s3s-fs exited with {status}"));
                }
                Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
            },
        );
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{e}\n{}", tail_lines(&log, 30)));
        }
        Ok(Self { child, port, dir })
    }

    /// Creates bucket `name` (s3s-fs keeps a bucket as a folder of its root) and returns
    /// `s3://name`.
    ///
    /// # Errors
    /// When the folder cannot be made.
    pub fn bucket(&self, name: &str) -> Result<String, String> {
        std::fs::create_dir_all(self.dir.path().join("root").join(name))
            .map_err(|e| e.to_string())?;
        Ok(format!("s3://{name}"))
    }

    /// Uploads `bytes` as `key` of `bucket` through the S3 protocol (object_store's AWS
    /// client with this server's endpoint and credentials).
    ///
    /// # Errors
    /// The client's message.
    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_allow_http(true)
            .build()
            .map_err(|e| e.to_string())?;
        ember_core::threads::block_on(store.put(&object_store::path::Path::from(key), bytes.into()))
            .map(|_| ())
            .map_err(|e| format!("put s3://{bucket}/{key}: {e}"))
    }

    /// The endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The standard AWS variables that point a client at this server: endpoint, region,
    /// credentials, plain HTTP. Ember's processes read them as any AWS client does.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The server's log, last lines (for failure messages).
    pub fn logs(&self) -> String {
        format!(
            "--- s3s-fs\n{}",
            tail_lines(&self.dir.path().join("s3s-fs.log"), 30)
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
