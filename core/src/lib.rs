//! Ember's core, shared by every role (client, scheduler, executor, embedded): errors, job
//! manifests and their parameters, SQL files, Ember's SQL functions and plan nodes (the
//! distributed Parquet sink) with their codecs, and the session every role builds the same
//! way.
#![warn(missing_docs)]

pub mod api;
pub mod codec;
pub mod config;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod params;
pub mod report;
pub mod session;
pub mod sink;
pub mod sql_file;
pub mod storage;
pub mod telemetry;
pub mod threads;
pub mod udf;

pub use error::{Error, ErrorKind, Result};
