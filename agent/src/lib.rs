//! vertice-agent: streams database dumps through compression and SHA-256 into
//! object stores, and restores, lists and verifies them.

pub mod backup_id;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod error;
pub mod hooks;
pub mod interrupt;
pub mod manifest;
pub mod names;
pub mod pipeline;
pub mod probe;
pub mod redis;
pub mod report;
pub mod retention;
pub mod run;
pub mod secret_files;
pub mod source;
pub mod store;
pub mod summary;
pub mod target;
pub use bytes;
