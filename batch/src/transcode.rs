//! Preparing CSV inputs that the distributed scan cannot read as they are, into plain UTF-8
//! `.csv` files in the run's staging folder, which the job then reads:
//! - gzip-compressed CSV: DataFusion 55's plan serialization drops a CSV scan's compression
//!   ("the compression type is not on the wire", `CsvSource::try_from_proto`), so executors
//!   would read `.csv.gz` bytes as text. Decompressing once also lets the scan split the file
//!   into byte ranges read in parallel, which a gzip stream cannot be;
//! - CSV in another encoding than UTF-8 (Latin-1, Windows-1252, UTF-16, …), because
//!   DataFusion's CSV reader only reads UTF-8.
//!
//! The conversion streams (constant memory, whatever the file size). Decoding uses `encoding_rs` (the WHATWG Encoding Standard that browsers
//! implement), so `latin1` and `iso-8859-1` decode as windows-1252, their superset; no byte
//! sequence is an error in those encodings, and malformed sequences in multi-byte ones become
//! U+FFFD (counted and reported in the run's log).

use std::io::Write;
use std::sync::Arc;

use encoding_rs::{CoderResult, Decoder, Encoding};
use flate2::write::MultiGzDecoder;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

/// Writes one file of `store` as plain UTF-8 at `to` in `to_store`: decompressed when `gzip`, decoded from `encoding`
/// when given (`None`: the bytes are UTF-8 already and copied as they are; the CSV reader
/// checks them). Returns the number of malformed sequences replaced with U+FFFD.
///
/// # Errors
/// [`Failed`], naming the step that failed: reading the file or writing the copy (storage),
/// or decompressing it (the file's bytes).
pub(crate) async fn to_utf8(
    store: &Arc<dyn ObjectStore>,
    from: &Path,
    gzip: bool,
    encoding: Option<&'static Encoding>,
    to_store: &Arc<dyn ObjectStore>,
    to: &Path,
) -> Result<usize, Failed> {
    let mut source = store
        .get(from)
        .await
        .map_err(|e| Failed::Read(e.to_string()))?
        .into_stream();
    let mut sink = BufWriter::new(Arc::clone(to_store), to.clone());
    let mut decoder = encoding.map(Encoding::new_decoder_without_bom_handling);
    let mut gunzip = gzip.then(|| MultiGzDecoder::new(Vec::new()));
    let mut replaced = 0;
    while let Some(chunk) = source.next().await {
        let chunk = chunk.map_err(|e| Failed::Read(e.to_string()))?;
        let bytes = match gunzip.as_mut() {
            Some(gz) => {
                gz.write_all(&chunk)
                    .map_err(|e| Failed::Decompress(e.to_string()))?;
                std::mem::take(gz.get_mut())
            }
            None => chunk.to_vec(),
        };
        let text = decode(decoder.as_mut(), bytes, false, &mut replaced);
        sink.write_all(&text)
            .await
            .map_err(|e| Failed::Write(e.to_string()))?;
    }
    let rest = match gunzip {
        Some(gz) => gz.finish().map_err(|e| Failed::Decompress(e.to_string()))?,
        None => Vec::new(),
    };
    let text = decode(decoder.as_mut(), rest, true, &mut replaced);
    sink.write_all(&text)
        .await
        .map_err(|e| Failed::Write(e.to_string()))?;
    sink.shutdown()
        .await
        .map_err(|e| Failed::Write(e.to_string()))?;
    Ok(replaced)
}

/// Why [`to_utf8`] failed, with the underlying error's message.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Reading the source file from its store failed: storage's fault, retryable.
    Read(String),
    /// The source is not valid gzip: the file's fault.
    Decompress(String),
    /// Writing the copy failed (a full disk, a lost DataNode): storage's fault, retryable.
    Write(String),
}

fn decode(
    decoder: Option<&mut Decoder>,
    bytes: Vec<u8>,
    last: bool,
    replaced: &mut usize,
) -> Vec<u8> {
    let Some(decoder) = decoder else {
        return bytes;
    };
    let bytes = bytes.as_slice();
    let capacity = decoder
        .max_utf8_buffer_length(bytes.len())
        .unwrap_or(bytes.len() * 3 + 16);
    let mut out = String::with_capacity(capacity);
    let (result, _read, had_errors) = decoder.decode_to_string(bytes, &mut out, last);
    debug_assert_eq!(
        result,
        CoderResult::InputEmpty,
        "buffer sized by max_utf8_buffer_length"
    );
    if had_errors {
        *replaced += out.matches('\u{FFFD}').count();
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn latin1_and_gzip_to_utf8() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // "Café,£5\n" in Latin-1: é = 0xE9, £ = 0xA3.
        let latin1 = b"name,price\nCaf\xe9,\xa35\n".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&latin1).expect("gzip");
        let gz = gz.finish().expect("gzip");
        for (name, bytes, gzip) in [("a.csv", latin1.clone(), false), ("a.csv.gz", gz, true)] {
            let from = Path::from(name);
            store.put(&from, bytes.into()).await.expect("put");
            let to = Path::from(format!("out/{name}.utf8.csv"));
            let enc = Encoding::for_label(b"latin1");
            let replaced = to_utf8(&store, &from, gzip, enc, &store, &to)
                .await
                .expect("transcode");
            assert_eq!(replaced, 0);
            let out = store
                .get(&to)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(
                std::str::from_utf8(&out).expect("utf8"),
                "name,price\nCafé,£5\n"
            );
        }
        // UTF-8 and gzip: only decompressed.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all("a\n£\n".as_bytes()).expect("gzip");
        store
            .put(&Path::from("u.csv.gz"), gz.finish().expect("gzip").into())
            .await
            .expect("put");
        to_utf8(
            &store,
            &Path::from("u.csv.gz"),
            true,
            None,
            &store,
            &Path::from("u.csv"),
        )
        .await
        .expect("gunzip");
        let out = store
            .get(&Path::from("u.csv"))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&out[..], "a\n£\n".as_bytes());
    }
}
