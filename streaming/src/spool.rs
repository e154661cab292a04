//! A folder of files as a stream's source (`[source] kind = "files"`), as Flume's spooling
//! directory source and Spark's file stream source (`cleanSource`): files dropped into the
//! folder (local or HDFS) are read once, line by line, in micro-batches, then renamed
//! `<name>.COMPLETED` or deleted.
//!
//! The rules, documented in `docs/streaming.md` ("File sources"):
//! - A file must be complete when it appears (write it elsewhere or under a hidden or `.tmp`
//!   name, then rename it into the folder, as Flume asks). Names starting with `.` or `_`,
//!   ending in `.tmp`, `._COPYING_` (`hdfs dfs -put` in progress) or the completed suffix are
//!   not read. Sub-folders are not read.
//! - Files are taken in name order (log rotation names files by time), at most
//!   `max_files_per_trigger` per micro-batch. The batch's plan (`offsets/<id>` in the
//!   checkpoint) lists each file's name and size before anything is read; a file whose size
//!   differs when it is read fails the batch (it was still being written).
//! - Each line is one record: its offset is its line number (from 1), `\r\n` and `\n` both
//!   end a line, and a last line without a newline counts. `.gz` files are gunzipped.
//! - After the batch's commit mark (`commits/<id>`), its files are renamed or deleted. A crash
//!   between the commit and the renames is finished by the next run before it plans, so a file
//!   leaves the folder only after its lines were committed, and is never read twice.

use std::io::Read;

use ember_core::storage::Dir;

use crate::error::{Error, Result};
use crate::kafka::Record;

/// What happens to a file once its batch committed (`after`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum After {
    /// Renamed `<name><completed_suffix>` in the same folder (Flume's default).
    #[default]
    Rename,
    /// Deleted (Flume's `deletePolicy = immediate`).
    Delete,
}

/// `[source] kind = "files"` of a streaming job, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    /// The folder watched (local path or `hdfs://` URL).
    pub path: String,
    /// What happens to a file after its batch committed.
    pub after: After,
    /// The suffix a read file is renamed with (`.COMPLETED`, Flume's `fileSuffix`).
    pub completed_suffix: String,
    /// At most this many files per micro-batch (Spark's `maxFilesPerTrigger`).
    pub max_files_per_trigger: usize,
}

/// One file a batch reads, as its plan lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedFile {
    /// The file's name in the folder.
    pub name: String,
    /// Its size when the batch was planned, bytes.
    pub size: u64,
}

/// The watched folder of a `files` source.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: Dir,
    source: FileSource,
}

impl Spool {
    /// The folder of `source`, on the store `registry` gives.
    ///
    /// # Errors
    /// [`Error::SourceFile`] for a local folder that does not exist;
    /// [`ember_core::Error::Storage`] when the location has no store.
    pub fn open(
        source: &FileSource,
        registry: &dyn datafusion::execution::object_store::ObjectStoreRegistry,
    ) -> Result<Self> {
        // A local folder must exist (a mistyped path would wait forever for files); an HDFS
        // folder may be created later (Flume's spooldir needs it at start, Spark's file source
        // too; HDFS listings do not tell a missing folder from an empty one here).
        let local = match source.path.split_once("://") {
            None => Some(source.path.as_str()),
            Some(("file", rest)) => Some(rest),
            Some(_) => None,
        };
        if let Some(folder) = local
            && !std::path::Path::new(folder).is_dir()
        {
            return Err(Error::SourceFile {
                file: source.path.clone(),
                message: "no such folder: [source] path must be an existing folder".into(),
            });
        }
        Ok(Self {
            dir: Dir::open(&source.path, registry)?,
            source: source.clone(),
        })
    }

    /// The folder's URL.
    pub fn url(&self) -> &str {
        self.dir.url()
    }

    fn file_error(&self, name: &str, message: impl Into<String>) -> Error {
        Error::SourceFile {
            file: format!("{}/{name}", self.dir.url()),
            message: message.into(),
        }
    }

    /// Whether a file of this name is read (see the module's rules).
    pub fn is_candidate(&self, name: &str) -> bool {
        !(name.starts_with('.')
            || name.starts_with('_')
            || name.ends_with(".tmp")
            || name.ends_with("._COPYING_")
            || name.ends_with(&self.source.completed_suffix))
    }

    /// Every file to read, in name order.
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] when the folder cannot be listed.
    pub async fn pending_all(&self) -> Result<Vec<PlannedFile>> {
        Ok(self
            .dir
            .list_sized("")
            .await?
            .into_iter()
            .filter(|(name, _)| self.is_candidate(name))
            .map(|(name, size)| PlannedFile { name, size })
            .collect())
    }

    /// The files to read next, in name order, at most `max_files_per_trigger`.
    ///
    /// # Errors
    /// [`ember_core::Error::Storage`] when the folder cannot be listed.
    pub async fn pending(&self) -> Result<Vec<PlannedFile>> {
        let mut files = self.pending_all().await?;
        files.truncate(self.source.max_files_per_trigger);
        Ok(files)
    }

    /// The lines of `file` as records of partition `index` (the file's place in its plan),
    /// offsets = line numbers from 1.
    ///
    /// # Errors
    /// [`Error::SourceFile`] when the file is gone, has another size than planned, or is a
    /// `.gz` that cannot be gunzipped; storage errors.
    pub async fn read(&self, file: &PlannedFile, index: i32) -> Result<Vec<Record>> {
        let bytes = self.dir.get(&file.name).await?.ok_or_else(|| {
            self.file_error(
                &file.name,
                "planned for this batch but gone from the folder (was it moved by hand?)",
            )
        })?;
        if bytes.len() as u64 != file.size {
            return Err(self.file_error(
                &file.name,
                format!(
                    "{} bytes when the batch was planned, {} now: a file must be complete when it appears in the folder (write it under a .tmp or hidden name, then rename it)",
                    file.size,
                    bytes.len()
                ),
            ));
        }
        let gunzipped = if file.name.ends_with(".gz") {
            let mut out = Vec::with_capacity(bytes.len() * 4);
            flate2::read::MultiGzDecoder::new(bytes.as_ref())
                .read_to_end(&mut out)
                .map_err(|e| self.file_error(&file.name, format!("cannot gunzip: {e}")))?;
            Some(out)
        } else {
            None
        };
        let text: &[u8] = gunzipped.as_deref().unwrap_or(&bytes);
        Ok(lines(text)
            .enumerate()
            .map(|(i, line)| Record {
                partition: index,
                offset: i64::try_from(i + 1).unwrap_or(i64::MAX),
                payload: line.to_vec(),
            })
            .collect())
    }

    /// Renames or deletes `files` (a committed batch's), those still in the folder: a second
    /// call does nothing. Returns how many it moved or deleted.
    ///
    /// # Errors
    /// [`Error::SourceFile`] naming the file that cannot be renamed or deleted.
    pub async fn finish(&self, files: &[PlannedFile]) -> Result<usize> {
        let mut done = 0;
        for file in files {
            let was_there = match self.source.after {
                After::Rename => {
                    let to = format!("{}{}", file.name, self.source.completed_suffix);
                    self.dir.rename(&file.name, &to).await
                }
                After::Delete => self.dir.delete(&file.name).await,
            };
            done += usize::from(was_there.map_err(|e| self.file_error(&file.name, e.to_string()))?);
        }
        Ok(done)
    }
}

/// The lines of `text`: split at `\n`, a `\r` before it dropped; a last line without a
/// newline counts, the empty rest after a final newline does not.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let empty = text.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_newlines_and_the_last_one_counts_without_one() {
        let all = |t: &[u8]| lines(t).map(<[u8]>::to_vec).collect::<Vec<_>>();
        assert_eq!(all(b""), Vec::<Vec<u8>>::new());
        assert_eq!(all(b"\n"), vec![b"".to_vec()]);
        assert_eq!(all(b"a\r\nb\n"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            all(b"a\n\nc"),
            vec![b"a".to_vec(), b"".to_vec(), b"c".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_folder_gives_complete_files_in_name_order_and_finishes_them_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let folder = tmp.path();
        for (name, text) in [
            ("b.log", "3\n"),
            ("a.log", "1\r\n2"),
            (".hidden", "x\n"),
            ("_SUCCESS", ""),
            ("c.log.tmp", "x\n"),
            ("d.log.COMPLETED", "x\n"),
        ] {
            std::fs::write(folder.join(name), text).expect("write");
        }
        let gz = folder.join("c.log.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).expect("gz"),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(&mut encoder, b"4\n5\n").expect("gz write");
        encoder.finish().expect("gz finish");
        let source = FileSource {
            path: folder.display().to_string(),
            after: After::Rename,
            completed_suffix: ".COMPLETED".into(),
            max_files_per_trigger: 10,
        };
        let registry = datafusion::execution::object_store::DefaultObjectStoreRegistry::new();
        let spool = Spool::open(&source, &registry).expect("open");
        let files = spool.pending().await.expect("list");
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.log", "b.log", "c.log.gz"]);
        let mut read = Vec::new();
        for (i, f) in files.iter().enumerate() {
            for r in spool.read(f, i as i32).await.expect("read") {
                read.push((
                    r.partition,
                    r.offset,
                    String::from_utf8(r.payload).expect("utf8"),
                ));
            }
        }
        assert_eq!(
            read,
            [
                (0, 1, "1".to_string()),
                (0, 2, "2".into()),
                (1, 1, "3".into()),
                (2, 1, "4".into()),
                (2, 2, "5".into())
            ]
        );
        // A file that grew after the plan is refused.
        std::fs::write(folder.join("b.log"), "3\n33\n").expect("grow");
        let e = spool.read(&files[1], 1).await.expect_err("grown");
        assert!(
            e.to_string()
                .contains("2 bytes when the batch was planned, 5 now"),
            "{e}"
        );
        assert_eq!(spool.finish(&files).await.expect("finish"), 3);
        assert_eq!(spool.finish(&files).await.expect("again"), 0);
        assert!(folder.join("a.log.COMPLETED").exists() && !folder.join("a.log").exists());
        assert!(spool.pending().await.expect("list").is_empty());
    }
}
