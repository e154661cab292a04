//! Integration tests of the HDFS harness against a real Hadoop 2.7.3 NameNode + DataNode.
//!
//! Needs the jars (`bash .ci/hadoop.sh`) and `java`; the tests fail (never skip) without them.

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;

use ember_testkit::hdfs::{BLOCK_SIZE, HdfsCluster};
use futures::TryStreamExt;
use hdfs_native_object_store::{HdfsObjectStore, HdfsObjectStoreBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// `len` deterministic pseudo-random bytes (xorshift), different for each `seed`.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

fn block_size() -> usize {
    usize::try_from(BLOCK_SIZE).expect("block size fits usize")
}

/// The finalized block files (`blk_<id>`, without the `.meta` checksums) below `dir`.
fn block_files(dir: &Path) -> usize {
    let mut count = 0;
    for entry in fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            count += block_files(&path);
        } else if name.starts_with("blk_") && !name.ends_with(".meta") {
            count += 1;
        }
    }
    count
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Starts a cluster; a failure panics with the message as is (it quotes the logs' tails).
fn start() -> HdfsCluster {
    HdfsCluster::start().unwrap_or_else(|err| panic!("cannot start HDFS: {err}"))
}

#[test]
fn fs_shell_round_trip_and_cleanup_on_drop() {
    let hdfs = start();
    assert!(
        hdfs.url().starts_with("hdfs://127.0.0.1:"),
        "{}",
        hdfs.url()
    );
    assert!(!hdfs.url().ends_with('/'), "{}", hdfs.url());
    assert_eq!(hdfs.url(), format!("hdfs://127.0.0.1:{}", hdfs.port()));

    let local = tempfile::tempdir().expect("local temp dir");
    let csv: String = (0..20_000)
        .map(|i| format!("{i},name-{i},{}\n", i * 7))
        .collect();
    let input = local.path().join("x.csv");
    fs::write(&input, &csv).expect("write the local csv");

    hdfs.fs(&["-mkdir", "-p", "/data/in"]).expect("mkdir");
    hdfs.fs(&["-put", path_str(&input), "/data/in/x.csv"])
        .expect("put");

    let listing = hdfs.fs(&["-ls", "-R", "/data"]).expect("ls -R");
    let line = listing
        .lines()
        .find(|line| line.ends_with(" /data/in/x.csv"))
        .unwrap_or_else(|| panic!("x.csv not listed:\n{listing}"));
    assert!(
        line.split_whitespace()
            .any(|field| field == csv.len().to_string()),
        "size {} not in {line:?}",
        csv.len()
    );
    assert!(listing.contains(" /data/in\n"), "{listing}");

    let cat = hdfs.fs(&["-cat", "/data/in/x.csv"]).expect("cat");
    assert!(cat == csv, "cat differs from the file put");

    let output = local.path().join("back.csv");
    hdfs.fs(&["-get", "/data/in/x.csv", path_str(&output)])
        .expect("get");
    assert!(
        fs::read(&output).expect("read back") == csv.as_bytes(),
        "the file got back differs"
    );

    // Errors carry FsShell's stderr.
    let err = hdfs
        .fs(&["-ls", "/no/such/dir"])
        .expect_err("ls of a missing path fails");
    assert!(err.contains("No such file or directory"), "{err}");

    // Drop stops both JVMs (the NameNode port closes) and removes the temp dir.
    let port = hdfs.port();
    let dir = hdfs.dir().to_path_buf();
    assert!(dir.join("logs").join("datanode.log").is_file());
    drop(hdfs);
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "the NameNode still listens on {port} after drop"
    );
    if std::env::var_os(ember_testkit::hdfs::KEEP_DIR_ENV).is_none() {
        assert!(!dir.exists(), "{} not removed", dir.display());
    }
}

#[test]
fn object_store_client_against_real_hdfs() {
    let hdfs = start();
    let store: HdfsObjectStore = HdfsObjectStoreBuilder::new()
        .with_url(hdfs.url())
        .build()
        .expect("build HdfsObjectStore");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let local = tempfile::tempdir().expect("local temp dir");

    // A multi-block object: 3 full blocks and a partial one.
    let data = pseudo_random(3 * block_size() + 123_457, 1);
    let path = ObjectPath::from("ember/rust/data.bin");
    runtime.block_on(async {
        store
            .put(&path, PutPayload::from(data.clone()))
            .await
            .expect("put");
        let meta = store.head(&path).await.expect("head");
        assert_eq!(meta.size, data.len() as u64);
        let got = store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("get bytes");
        assert!(got[..] == data[..], "object read back differs");
        // A range across the first block boundary.
        let start = BLOCK_SIZE - 100;
        let range = store
            .get_range(&path, start..start + 200)
            .await
            .expect("get_range");
        assert!(range[..] == data[block_size() - 100..block_size() + 100]);
    });

    // The NameNode stored it with the cluster's small block size, i.e. as 4 blocks.
    let stat = hdfs
        .fs(&["-stat", "%o %b %r", "/ember/rust/data.bin"])
        .expect("stat");
    assert_eq!(stat.trim(), format!("{BLOCK_SIZE} {} 1", data.len()));
    assert_eq!(
        block_files(&hdfs.dir().join("data")),
        4,
        "blocks on the DataNode"
    );

    // Rust-written -> read by Hadoop's own client.
    let fetched = local.path().join("from-rust.bin");
    hdfs.fs(&["-get", "/ember/rust/data.bin", path_str(&fetched)])
        .expect("FsShell -get of the Rust-written file");
    assert!(
        fs::read(&fetched).expect("read fetched") == data,
        "FsShell read different bytes"
    );

    // Hadoop-written (multi-block) -> read by the Rust client.
    let shell_data = pseudo_random(2 * block_size() + 999, 2);
    let shell_file = local.path().join("from-shell.bin");
    fs::write(&shell_file, &shell_data).expect("write local file");
    hdfs.fs(&["-mkdir", "-p", "/ember/shell"]).expect("mkdir");
    hdfs.fs(&["-put", path_str(&shell_file), "/ember/shell/from-shell.bin"])
        .expect("FsShell -put");

    let renamed = ObjectPath::from("ember/renamed/data.bin");
    let multipart = ObjectPath::from("ember/multipart/part.bin");
    let multipart_data = pseudo_random(2 * block_size() + block_size() / 2, 3);
    runtime.block_on(async {
        let got = store
            .get(&ObjectPath::from("ember/shell/from-shell.bin"))
            .await
            .expect("get the FsShell-written file")
            .bytes()
            .await
            .expect("get bytes");
        assert!(
            got[..] == shell_data[..],
            "Rust client read different bytes"
        );

        // Rename (into a directory that does not exist yet).
        store.rename(&path, &renamed).await.expect("rename");
        let err = store.head(&path).await.expect_err("old path gone");
        assert!(
            matches!(err, object_store::Error::NotFound { .. }),
            "{err:?}"
        );
        let moved = store
            .get(&renamed)
            .await
            .expect("get renamed")
            .bytes()
            .await
            .expect("bytes");
        assert!(moved[..] == data[..], "renamed object differs");

        // Multipart upload in 1 MiB parts (what DataFusion's writers use).
        let upload = store
            .put_multipart(&multipart)
            .await
            .expect("put_multipart");
        let mut writer = WriteMultipart::new_with_chunk_size(upload, block_size());
        for chunk in multipart_data.chunks(300_000) {
            writer.write(chunk);
        }
        writer.finish().await.expect("finish multipart");
        let got = store
            .get(&multipart)
            .await
            .expect("get multipart")
            .bytes()
            .await
            .expect("bytes");
        assert!(got[..] == multipart_data[..], "multipart object differs");

        // Overwrite replaces the content.
        let small = ObjectPath::from("ember/small.txt");
        store
            .put(&small, PutPayload::from("first"))
            .await
            .expect("put");
        store
            .put(&small, PutPayload::from("second"))
            .await
            .expect("overwrite");
        let got = store.get(&small).await.expect("get").bytes().await;
        assert_eq!(&got.expect("bytes")[..], b"second");
        store.delete(&small).await.expect("delete small");

        // List: every object once, no leftover temporary files of the atomic puts.
        let mut listed: Vec<(String, u64)> = store
            .list(Some(&ObjectPath::from("ember")))
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .expect("list");
        listed.sort();
        assert_eq!(
            listed,
            vec![
                (multipart.to_string(), multipart_data.len() as u64),
                (renamed.to_string(), data.len() as u64),
                (
                    "ember/shell/from-shell.bin".to_string(),
                    shell_data.len() as u64
                ),
            ]
        );
        let by_dir = store
            .list_with_delimiter(Some(&ObjectPath::from("ember")))
            .await
            .expect("list_with_delimiter");
        let mut dirs: Vec<String> = by_dir
            .common_prefixes
            .iter()
            .map(ToString::to_string)
            .collect();
        dirs.sort();
        assert_eq!(
            dirs,
            [
                "ember/multipart",
                "ember/renamed",
                "ember/rust",
                "ember/shell"
            ]
        );
        assert!(by_dir.objects.is_empty(), "{:?}", by_dir.objects);

        // Delete.
        store.delete(&renamed).await.expect("delete");
        let err = store.get(&renamed).await.expect_err("deleted");
        assert!(
            matches!(err, object_store::Error::NotFound { .. }),
            "{err:?}"
        );
    });

    // Hadoop sees the Rust client's rename and delete.
    let listing = hdfs.fs(&["-ls", "-R", "/ember"]).expect("ls -R");
    assert!(
        listing.contains(" /ember/shell/from-shell.bin"),
        "{listing}"
    );
    assert!(listing.contains(" /ember/multipart/part.bin"), "{listing}");
    assert!(!listing.contains("data.bin"), "{listing}");
    assert!(!listing.contains(".tmp"), "{listing}");
    hdfs.fs(&["-test", "-e", "/ember/renamed/data.bin"])
        .expect_err("deleted file must not exist");
}

#[test]
fn start_without_jars_says_how_to_install_them() {
    let empty = tempfile::tempdir().expect("temp dir");
    let err = HdfsCluster::start_from(empty.path()).expect_err("no jars there");
    assert!(err.contains("bash .ci/hadoop.sh"), "{err}");
}
