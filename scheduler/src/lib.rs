//! Ember's scheduler side: the batch job runner and its output committer, and embedded mode
//! (an in-process Ballista scheduler + executor). The cluster's scheduler process builds on
//! the same pieces.
#![warn(missing_docs)]

pub mod embedded;
pub mod error;
pub mod job;

pub use error::{Error, Result};
