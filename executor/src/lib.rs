//! Ember's executor process (`ember executor`): a Ballista executor with Ember's session
//! (functions, plan nodes, codecs, object stores, memory and spill settings), its task counts
//! and its `/metrics`.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod http;
pub mod process;
pub mod tasks;

pub use error::{Error, Result};
