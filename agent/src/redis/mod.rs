//! Redis formats: the RDB snapshot (its checksum, its structure) and restoring
//! one into a running instance.

pub mod census;
pub mod checksum;
pub mod live_restore;
pub mod lzf;
pub mod packed;
pub mod rdb;
pub mod resp;
pub mod staging;
pub mod wire;
