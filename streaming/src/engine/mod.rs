//! The micro-batch engine: plans a batch (offset ranges, write-ahead), reads it from Kafka,
//! parses and quarantines, runs the windowed SQL over the new events plus the state, emits the
//! windows the watermark closed, and commits (output files, state, commit mark, group offsets).
//!
//! One batch, in order (the numbers are the crash points the recovery rules cover):
//! 1. `offsets/<id>` is written (the plan). A crash before: the batch never existed.
//! 2. The ranges are read and parsed, in this process (`ember run`) or by one Ballista task per
//!    range on the executors (`ember submit`, see [`crate::scan`]). Late events (below the
//!    watermark before the batch) and malformed messages are the batch's quarantine.
//! 3. The new watermark is computed from the plan's processing time and the batch's events.
//! 4. The SQL runs over `events` = state ∪ new events, or, for an output whose aggregates
//!    merge, its aggregation runs over the new events and is merged with the state's shards
//!    (`batch`); rows whose `window_end` is in `(watermark before, watermark after]` are emitted
//!    (append mode: each window once).
//! 5. Output and quarantine files are written, named by batch id, then committed: the batch's
//!    sink log entry (`_ember_sink/<id>.json`) for a Parquet output, which makes them visible
//!    to readers of the log at once, or one Delta commit with the stream's `txn` for a Delta
//!    output. A crash here or later: the restart runs plan `<id>` again, which writes the same
//!    files and entry over these (a Delta table that has the batch's `txn` is left as it is).
//! 6. `state/<id>.parquet`: the events of windows still open, for outputs that keep events;
//!    `state/<id>-<output>.json`: the manifest of the shards (one row of partial aggregates per
//!    open (window, key)) that step 4's merge tasks wrote, for an output whose aggregates
//!    merge ([`crate::partial`], `state`).
//! 7. `commits/<id>`. After it, the batch is done; 8. the group offsets are committed to Kafka
//!    (for lag tools only).
//!
//! A `files` source ([`crate::spool`]) runs the same steps: its plan lists the files (name and
//! size) instead of offset ranges, and after step 7 the files are renamed or deleted instead of
//! step 8 (a restart finishes them first).
//!
//! The engine's parts: `stream` (the stream, its constructors and the Kafka trigger loop),
//! `files` (the trigger loop of a folder of files),
//! `batch` (one micro-batch from plan to commit), `progress` (what a committed batch reports),
//! `rules` (the budget split over partitions, the events kept for open windows), `state` (the
//! state between batches, saved and loaded) and
//! [`failpoint`] (the crash points tests arm).

mod batch;
pub mod failpoint;
mod files;
mod progress;
mod rules;
mod state;
mod stream;

pub use rules::{OnOffsetsLost, offsets_lost, retain, split_budget};
pub use stream::{Stream, StreamReport};
