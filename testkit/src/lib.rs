//! Test harnesses that start real services on 127.0.0.1 for Ember's tests.
//!
//! - [`hdfs::HdfsCluster`]: a real HDFS (Hadoop 2.7.3 NameNode + DataNode, two JVMs) from the
//!   jars that `bash .ci/hadoop.sh` installs; needs `java` (Java 8 or later; CI uses 17).
//! - [`database`]: MariaDB and PostgreSQL servers in temporary folders.
//! - [`ember::EmberCluster`]: an `ember scheduler` and executors, as processes.
//! - [`query`]: reading Parquet outputs back (local or `hdfs://`).
//! - [`flight_sql`]: a Flight SQL client with results as rows.
//! - [`reference`]: the daily revenue job folded independently in Rust.
//! - [`versions`]: two versions of the same three days, told apart by their totals.
//! - [`small_disk`]: a tmpfs of a chosen size in a private mount namespace (a disk to fill).
//! - [`util`]: free ports, bounded waits, log tails.
#![warn(missing_docs)]

pub mod database;
pub mod ember;
pub mod flight_sql;
pub mod hdfs;
pub mod kafka;
pub mod query;
pub mod reference;
pub mod s3;
pub mod small_disk;
pub mod util;
pub mod versions;

pub use hdfs::HdfsCluster;
