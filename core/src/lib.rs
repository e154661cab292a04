//! Ember's core, shared by every role (client, scheduler, executor, embedded): errors and their
//! kinds, job manifests and their parameters, SQL files, Ember's SQL functions and plan nodes
//! (the distributed Parquet sink) with their codecs, the one session recipe every role uses
//! ([`session::SessionBuilder`]), the runtime and object stores, the tables Ember writes (the
//! stream sink log), the REST API's bodies, and the configuration file.
#![warn(missing_docs)]

pub mod api;
pub mod codec;
pub mod config;
pub mod csv;
pub mod error;
pub mod footer_cache;
pub mod manifest;
pub mod metrics;
pub mod params;
pub mod report;
pub mod rest;
pub mod runtime;
pub mod security;
pub mod serve;
pub mod session;
pub mod signal;
pub mod sink;
pub mod sql_file;
pub mod standalone;
pub mod storage;
pub mod table;
pub mod telemetry;
pub mod threads;
pub mod udf;

pub use error::{Classify, Error, ErrorKind, Result};
