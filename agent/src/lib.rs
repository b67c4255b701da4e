//! vertice-agent: streams database dumps through compression and SHA-256 into
//! object stores, and restores, lists and verifies them.

pub mod artifact;
pub mod backup_id;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod hooks;
pub mod interrupt;
pub mod manifest;
pub mod names;
pub mod pipeline;
pub mod probe;
pub mod report;
pub mod retention;
pub mod run;
pub mod secret;
pub mod secret_files;
pub mod store;
pub mod summary;
pub use bytes;
