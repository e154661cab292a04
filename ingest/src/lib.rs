//! Ember's database connectors, as Sqoop's import and export: a job's `[[input]]` of `format = "mysql"`
//! or `"postgres"` reads a table or a query through `datafusion-table-providers` (its
//! connection pools, type mapping and Arrow conversion), in `splits` key ranges that run as
//! one task each on the executors (`split_by`, as Sqoop's `--split-by`), optionally only the
//! rows after the last value of a check column committed with the output (`incremental`, as
//! Sqoop's `--incremental append | lastmodified`).
//!
//! - [`database::connection`]: the URL, the password (from an `EMBER_*` variable or a file,
//!   never printed) and the connection pools of both databases;
//! - [`database::sql`]: the SQL Ember sends (quoting, literals, split and incremental ranges);
//! - [`database::scan`]: the table and its scan node, carried to the executors by Ember's
//!   plan codecs ([`codecs`]);
//! - [`database::register`]: what the batch runner calls for each database input;
//! - [`database::export`]: a job's output into a table, as `sqoop export`, in one
//!   transaction, inserted or upserted on a key.

pub mod database;
pub mod error;

pub use database::export::export;
pub use database::register::{Mark, Registered, register};
pub use database::scan::codecs;
pub use error::{Error, Result};
