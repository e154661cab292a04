//! Database inputs (MySQL/MariaDB, PostgreSQL); see the crate documentation.

pub mod connection;
pub mod export;
pub mod register;
pub mod scan;
pub mod sql;
