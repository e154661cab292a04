//! Ember's executor side: the runtime environment tasks run in (memory pool, spill folder,
//! object stores), used by embedded mode's in-process executor, and the executor process
//! (`ember executor`) with its task counts and `/metrics`.
#![warn(missing_docs)]

pub mod http;
pub mod process;
pub mod runtime;
pub mod tasks;
