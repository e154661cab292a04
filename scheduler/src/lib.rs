//! Ember's scheduler side: the batch job runner and its output committer, embedded mode (an
//! in-process Ballista scheduler + executor), and the scheduler process (`ember scheduler`) with
//! its job service, REST API and web UI.
#![warn(missing_docs)]

pub mod embedded;
pub mod error;
pub mod flight_sql;
pub mod job;
pub mod server;
pub mod web;

pub use error::{Error, Result};
