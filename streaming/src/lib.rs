//! Ember's streaming engine: Kafka micro-batches, event-time windows with watermarks, exactly
//! once into partitioned Parquet. Spark Structured Streaming's model (offsets and commits logs,
//! state per batch, append-mode windows), declared like a batch job (manifest + SQL). Guide:
//! `docs/streaming.md`.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod consumers;
pub mod engine;
pub mod error;
pub mod event;
pub mod kafka;
pub mod lookup;
pub mod manifest;
pub mod partial;
pub mod produce;
pub mod scan;
pub mod sink;
pub mod spool;
pub mod watermark;
pub mod window_query;

pub use error::{Error, Result};
