//! Ember's executor side: the runtime environment tasks run in (memory pool, spill folder).
//! Embedded mode uses it for its in-process executor; the cluster's executor process will too.
#![warn(missing_docs)]

pub mod runtime;
