//! Parallel PostgreSQL backups and restores (`--jobs N`, N > 1).
//!
//! ```text
//! backup:  export snapshot ─┬─ pg_dump --snapshot (schema, sequences, small tables) → dump.pgdump
//!                           └─ N workers: COPY table | block range TO STDOUT        → data-NNNNN.copy
//! restore: CREATE DATABASE staging → pre-data + data (pg_restore) → parts by N sessions
//!          → indexes and keys by N sessions → the rest of post-data (pg_restore)
//!          → the staging database takes the target's place
//! ```
//! [`plan`] (pure: which tables, which ranges, the SQL), [`source`] (the
//! snapshot's holder and the workers' sessions), [`backup`] (the workers),
//! [`staging`] (the database a restore builds and swaps in), [`restore`].

pub mod auto;
pub mod backup;
mod copy_reader;
pub mod plan;
pub mod post_data;
pub mod restore;
pub mod source;
pub mod staging;
