//! Where backups come from: `pg_dump` for PostgreSQL, the replication
//! protocol for Redis, the raft snapshot API for Vault / OpenBao.

pub mod pg_archive;
pub mod pg_version;
pub mod postgres;
pub mod redis_sync;
pub mod vault;
