//! One range task's records: bytes in, Arrow batches of text columns out.
//!
//! [`RangeReader`] is fed the bytes of one file from its range's start (in chunks of any size,
//! in order) and parses them with `csv-core` (quotes, doubled quotes, an escape character,
//! comment lines, CR/LF/CRLF line ends, a UTF-8 BOM at the file's start). Each record becomes a
//! row, or is *malformed*:
//! - it has more or fewer fields than the input's columns (`too many fields (9, expected 8)`),
//! - it is not valid UTF-8 (`invalid UTF-8`),
//! - the file ends inside a quoted field (`unterminated quote`).
//!
//! A malformed record is, by [`crate::manifest::OnMalformed`], a row whose columns are NULL with its raw text
//! (decoded lossily) and reason in `_corrupt_record` / `_corrupt_reason` (Spark's PERMISSIVE
//! mode, with a reason), or the task's error naming file, line and reason (`FAILFAST`).
//!
//! **Byte ranges** (Hadoop's `LineRecordReader` rule, made safe for quoted newlines): a task
//! whose range starts at byte `s > 0` starts at `A = 1 +` the first `\n` at or after `s - 1`,
//! and owns the records whose first byte is before the next range's `A`. Its own start is a
//! guess (that `\n` could be inside a quoted field); the previous task, which parsed up to
//! there from a start known to be right, checks it: if one of its records spans the next
//! range's `A`, the guess was wrong and the task fails with [`SPLIT_INSIDE_QUOTES`] (the run
//! then reads the file again with one task per file). So a split never reads a record twice,
//! never loses one, and costs nothing when no quoted newline falls on a range's edge.

use std::sync::Arc;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};
use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, RecordBatchOptions, StringBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};

use super::CsvFile;
use crate::manifest::CsvOptions;

/// Text every error of a quoted field spanning a range's start carries; the batch runner
/// looks for it (errors reach it as text through Ballista) and reads the input again with one
/// task per file.
pub const SPLIT_INSIDE_QUOTES: &str = "a quoted field spans the start of a byte range";

/// UTF-8's byte order mark.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// Where a projected column of the scan comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    /// The record's field `i` (text; empty is NULL).
    Field(usize),
    /// Partition column `k`: the file's value ([`super::CsvFile::partition_values`]).
    Partition(usize),
    /// `_file`: the file's URL.
    File,
    /// `_line`: the 1-based line on which the record starts.
    Line,
    /// `_corrupt_record`: a malformed record's raw text.
    CorruptRecord,
    /// `_corrupt_reason`: why the record is malformed.
    CorruptReason,
}

/// A malformed record met in `FAILFAST` mode, before its line is known absolutely.
#[derive(Debug)]
pub(crate) struct Malformed {
    /// 1-based line, counted from the first byte fed unless [`RangeReader::line_offset`] was
    /// given.
    pub line: u64,
    /// Why.
    pub reason: String,
    /// Raw text, lossily decoded, at most 200 characters.
    pub text: String,
}

/// What [`RangeReader::feed`] tells its caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Feed more bytes.
    More,
    /// Every record of the range is read; stop reading.
    Done,
}

enum Builder {
    Text(StringBuilder),
    Line(Int64Builder),
    /// The same value (NULL if none) in every row: the file's name or partition value.
    Const(Option<String>, usize),
}

/// The reader of one range of one file; see the module documentation.
pub(crate) struct RangeReader {
    parser: Reader,
    comment: Option<u8>,
    fail: bool,
    expected: usize,
    file: String,
    schema: SchemaRef,
    sources: Vec<Source>,
    builders: Vec<Builder>,
    rows: usize,
    batch_size: usize,
    done: Vec<RecordBatch>,
    /// Absolute position of the next byte to feed.
    pos: u64,
    /// Bytes before the range's own start (`A`) are skipped.
    skip_until: Option<u64>,
    /// The next range's start hint `s'` (search `\n` from `s' - 1`), and its `A'` once found.
    next_hint: Option<u64>,
    next_start: Option<u64>,
    /// The first record of the file is its header.
    header_pending: bool,
    /// At a file's start: its first bytes, until there are enough to see a BOM.
    head: Option<Vec<u8>>,
    out: Vec<u8>,
    ends: Vec<usize>,
    nout: usize,
    nend: usize,
    /// Raw bytes of the current record that came in earlier chunks.
    raw: Vec<u8>,
    raw_start: u64,
    line_at_raw_start: u64,
    failed: Option<Malformed>,
}

impl RangeReader {
    /// A reader of `file`'s bytes from `from`: the range `[start, ..)` whose next range starts
    /// at `next` (none: the file's last range). `expected` fields per record; `sources` says
    /// what each column of `schema` holds; `fail`: a malformed record is an error, not a row.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        options: &CsvOptions,
        fail: bool,
        expected: usize,
        file: &CsvFile,
        start: u64,
        next: Option<u64>,
        schema: SchemaRef,
        sources: Vec<Source>,
        batch_size: usize,
    ) -> Self {
        let parser = ReaderBuilder::new()
            .delimiter(options.delimiter as u8)
            .quote(options.quote as u8)
            .escape(options.escape.map(|c| c as u8))
            .comment(options.comment.map(|c| c as u8))
            .build();
        let builders = sources
            .iter()
            .map(|s| match s {
                Source::Line => Builder::Line(Int64Builder::with_capacity(batch_size)),
                Source::File => Builder::Const(Some(file.name.clone()), 0),
                Source::Partition(k) => {
                    Builder::Const(file.partition_values.get(*k).cloned().flatten(), 0)
                }
                _ => Builder::Text(StringBuilder::with_capacity(batch_size, batch_size * 16)),
            })
            .collect();
        let from = if start == 0 { 0 } else { start - 1 };
        Self {
            parser,
            comment: options.comment.map(|c| c as u8),
            fail,
            expected,
            file: file.name.clone(),
            schema,
            sources,
            builders,
            rows: 0,
            batch_size: batch_size.max(1),
            done: Vec::new(),
            pos: from,
            skip_until: (start > 0).then_some(u64::MAX),
            next_hint: next,
            next_start: None,
            header_pending: start == 0 && options.header,
            head: (start == 0).then(Vec::new),
            out: vec![0; 4096],
            ends: vec![0; expected.max(1) + 8],
            nout: 0,
            nend: 0,
            raw: Vec::new(),
            raw_start: 0,
            line_at_raw_start: 1,
            failed: None,
        }
    }

    /// The byte to read from: the range's start, minus one to see a `\n` just before it.
    pub(crate) fn read_from(&self) -> u64 {
        self.pos
    }

    /// Sets the number of lines before the bytes fed (`\n` in `[0, read_from)`), so that
    /// `_line` and errors count from the file's first line.
    pub(crate) fn line_offset(&mut self, lines: u64) {
        // csv-core's line is 1-based: one more than the `\n` before.
        self.parser.set_line(lines + 1);
        self.line_at_raw_start = lines + 1;
    }

    /// The malformed record that stopped the reader (`FAILFAST`), if any.
    pub(crate) fn take_failure(&mut self) -> Option<Malformed> {
        self.failed.take()
    }

    /// Full batches so far.
    pub(crate) fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.done)
    }

    /// Feeds the next bytes of the file.
    ///
    /// # Errors
    /// [`SPLIT_INSIDE_QUOTES`]; a malformed record in `FAILFAST` mode (then
    /// [`RangeReader::take_failure`] has it).
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Flow> {
        let flow = match self.head.take() {
            Some(mut head) => {
                head.extend_from_slice(chunk);
                if head.len() < BOM.len() {
                    self.head = Some(head);
                    return Ok(Flow::More);
                }
                self.feed_head(&head)?
            }
            None => self.feed_bytes(chunk)?,
        };
        if flow == Flow::Done {
            self.flush()?;
        }
        Ok(flow)
    }

    /// The file's first bytes (at least a BOM's length, or all of a shorter file), a BOM
    /// dropped. (csv-core drops one too, but takes a BOM alone in a chunk for the file's end.)
    fn feed_head(&mut self, head: &[u8]) -> Result<Flow> {
        if head.starts_with(BOM) {
            self.pos = BOM.len() as u64;
            self.raw_start = self.pos;
            self.feed_bytes(&head[BOM.len()..])
        } else {
            self.feed_bytes(head)
        }
    }

    fn feed_bytes(&mut self, chunk: &[u8]) -> Result<Flow> {
        let chunk_start = self.pos;
        self.pos += chunk.len() as u64;
        self.find_next_start(chunk, chunk_start);
        let mut chunk = chunk;
        let mut offset = chunk_start;
        if let Some(until) = self.skip_until {
            if until == u64::MAX {
                match memchr::memchr(b'\n', chunk) {
                    Some(i) => {
                        let a = chunk_start + i as u64 + 1;
                        self.skip_until = Some(a);
                        self.line_at_raw_start = self.parser.line() + 1;
                        self.parser.set_line(self.line_at_raw_start);
                    }
                    // No line end yet: nothing of this range is owned until one comes.
                    None => return Ok(Flow::More),
                }
            }
            let until = self.skip_until.unwrap_or_default();
            let skip = (until - chunk_start).min(chunk.len() as u64) as usize;
            chunk = &chunk[skip..];
            offset += skip as u64;
            if offset < until {
                return Ok(Flow::More);
            }
            self.skip_until = None;
            self.raw_start = until;
        }
        if chunk.is_empty() {
            // An empty slice would tell csv-core that the file ended.
            return Ok(Flow::More);
        }
        self.parse(chunk, offset, false)
    }

    /// The file ended: the last record, if any, is read.
    ///
    /// # Errors
    /// As [`RangeReader::feed`].
    pub(crate) fn finish(&mut self) -> Result<()> {
        if let Some(head) = self.head.take()
            && self.feed_head(&head)? == Flow::Done
        {
            return self.flush();
        }
        if self.skip_until.is_none() {
            // A `\n` that is not part of the file tells a record left open by a quote (the
            // `\n` goes into the field, no record ends) from one merely missing its line end.
            let open = self.parse(b"\n", self.pos, true)? == Flow::More && self.mid_record();
            self.parse(b"", self.pos, open)?;
        }
        self.flush()
    }

    fn mid_record(&self) -> bool {
        self.nout > 0 || self.nend > 0 || !self.raw.is_empty()
    }

    fn find_next_start(&mut self, chunk: &[u8], chunk_start: u64) {
        let (Some(hint), None) = (self.next_hint, self.next_start) else {
            return;
        };
        let from = hint.saturating_sub(1);
        let end = chunk_start + chunk.len() as u64;
        if end <= from {
            return;
        }
        let skip = from.saturating_sub(chunk_start) as usize;
        if let Some(i) = memchr::memchr(b'\n', &chunk[skip..]) {
            self.next_start = Some(chunk_start + (skip + i) as u64 + 1);
        }
    }

    /// Parses `chunk` (at absolute `offset`); `eof_probe`: the bytes are not the file's (the
    /// `\n` or the empty input of [`RangeReader::finish`]): they are not raw text, and a
    /// record that ends on the empty input was left open by a quote.
    fn parse(&mut self, chunk: &[u8], offset: u64, eof_probe: bool) -> Result<Flow> {
        let mut i = 0;
        let mut record_from = 0;
        loop {
            // An empty slice tells csv-core the file ended: only `finish` passes one.
            if i == chunk.len() && !chunk.is_empty() {
                if !eof_probe {
                    self.raw.extend_from_slice(&chunk[record_from..]);
                }
                return Ok(Flow::More);
            }
            let (result, nin, nout, nend) = self.parser.read_record(
                &chunk[i..],
                &mut self.out[self.nout..],
                &mut self.ends[self.nend..],
            );
            i += nin;
            self.nout += nout;
            self.nend += nend;
            match result {
                ReadRecordResult::InputEmpty => {
                    if !eof_probe {
                        self.raw.extend_from_slice(&chunk[record_from..]);
                    }
                    return Ok(Flow::More);
                }
                ReadRecordResult::OutputFull => {
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record => {
                    let end = offset + i as u64;
                    let unterminated = eof_probe && chunk.is_empty();
                    let flow = if self.raw.is_empty() {
                        let raw = if eof_probe {
                            &[][..]
                        } else {
                            &chunk[record_from..i]
                        };
                        self.record(raw, end, unterminated)
                    } else {
                        let mut raw = std::mem::take(&mut self.raw);
                        if !eof_probe {
                            raw.extend_from_slice(&chunk[record_from..i]);
                        }
                        let flow = self.record(&raw, end, unterminated);
                        raw.clear();
                        self.raw = raw;
                        flow
                    }?;
                    self.nout = 0;
                    self.nend = 0;
                    record_from = i;
                    self.raw_start = end;
                    self.line_at_raw_start = self.parser.line();
                    if flow == Flow::Done {
                        return Ok(Flow::Done);
                    }
                }
                ReadRecordResult::End => return Ok(Flow::Done),
            }
        }
    }

    /// One record: `raw` its bytes (leading blank and comment lines included), ending at
    /// absolute `end`.
    fn record(&mut self, raw: &[u8], end: u64, unterminated: bool) -> Result<Flow> {
        let lead = leading_skip(raw, self.comment);
        let content_start = self.raw_start + lead as u64;
        if self.next_start.is_some_and(|a| content_start >= a) {
            return Ok(Flow::Done);
        }
        if let Some(a) = self.next_start
            && end > a
        {
            return Err(DataFusionError::Execution(format!(
                "{SPLIT_INSIDE_QUOTES} (file {}, byte {a})",
                self.file
            )));
        }
        if std::mem::take(&mut self.header_pending) {
            return Ok(Flow::More);
        }
        let line = self.line_at_raw_start + memchr::memchr_iter(b'\n', &raw[..lead]).count() as u64;
        let reason = if unterminated {
            Some("unterminated quote".to_string())
        } else if self.nend != self.expected {
            let (what, n) = if self.nend > self.expected {
                ("too many", self.nend)
            } else {
                ("too few", self.nend)
            };
            Some(format!("{what} fields ({n}, expected {})", self.expected))
        } else {
            None
        };
        let reason = match reason {
            Some(reason) => Some(reason),
            None => match std::str::from_utf8(&self.out[..self.nout]) {
                Ok(fields) => {
                    append_fields(
                        &self.sources,
                        &mut self.builders,
                        fields,
                        &self.ends[..self.nend],
                        line,
                    );
                    self.rows += 1;
                    None
                }
                Err(e) => {
                    let field =
                        self.ends[..self.nend].partition_point(|&end| end <= e.valid_up_to());
                    Some(format!("invalid UTF-8 in field {}", field + 1))
                }
            },
        };
        if let Some(reason) = reason {
            let text = raw_text(&raw[lead..]);
            if self.fail {
                let short: String = text.chars().take(200).collect();
                let message = format!("malformed CSV line {line} of {}: {reason}", self.file);
                self.failed = Some(Malformed {
                    line,
                    reason,
                    text: short,
                });
                return Err(DataFusionError::Execution(message));
            }
            self.append_malformed(line, &text, &reason);
        }
        if self.rows >= self.batch_size {
            self.flush()?;
        }
        Ok(Flow::More)
    }

    fn append_malformed(&mut self, line: u64, text: &str, reason: &str) {
        for (source, builder) in self.sources.iter().zip(self.builders.iter_mut()) {
            match (source, builder) {
                (Source::CorruptRecord, Builder::Text(b)) => b.append_value(text),
                (Source::CorruptReason, Builder::Text(b)) => b.append_value(reason),
                (Source::Line, Builder::Line(b)) => b.append_value(line as i64),
                (_, Builder::Const(_, n)) => *n += 1,
                (_, Builder::Text(b)) => b.append_null(),
                (_, Builder::Line(b)) => b.append_null(),
            }
        }
        self.rows += 1;
    }

    /// Turns the rows so far into a batch.
    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Text(b) => Arc::new(b.finish()),
                    Builder::Line(b) => Arc::new(b.finish()),
                    Builder::Const(value, n) => {
                        let array = datafusion::arrow::array::StringArray::from_iter(
                            std::iter::repeat_n(value.as_deref(), *n),
                        );
                        *n = 0;
                        Arc::new(array)
                    }
                }
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        self.done.push(batch);
        self.rows = 0;
        Ok(())
    }
}

/// Appends one well-formed record: `fields` its text, `ends` where each field ends in it.
fn append_fields(
    sources: &[Source],
    builders: &mut [Builder],
    fields: &str,
    ends: &[usize],
    line: u64,
) {
    for (source, builder) in sources.iter().zip(builders.iter_mut()) {
        match (source, builder) {
            (Source::Field(f), Builder::Text(b)) => {
                let from = if *f == 0 { 0 } else { ends[f - 1] };
                // Fields split at ASCII delimiters of valid UTF-8 are valid UTF-8.
                match fields.get(from..ends[*f]) {
                    Some(value) if !value.is_empty() => b.append_value(value),
                    _ => b.append_null(),
                }
            }
            (Source::Line, Builder::Line(b)) => b.append_value(line as i64),
            (_, Builder::Const(_, n)) => *n += 1,
            (_, Builder::Text(b)) => b.append_null(),
            (_, Builder::Line(b)) => b.append_null(),
        }
    }
}

/// The length of the blank lines (`\r`, `\n`) and comment lines in front of a record.
fn leading_skip(raw: &[u8], comment: Option<u8>) -> usize {
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' | b'\n' => i += 1,
            c if Some(c) == comment => match memchr::memchr(b'\n', &raw[i..]) {
                Some(n) => i += n + 1,
                None => return raw.len(),
            },
            _ => break,
        }
    }
    i
}

/// A record's raw text: lossily decoded, without its line end.
fn raw_text(raw: &[u8]) -> String {
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
