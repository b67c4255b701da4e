//! Test harness: starts real servers (PostgreSQL, Redis, SeaweedFS) on
//! 127.0.0.1, on free ports, in temporary directories, and stops them when
//! dropped. A missing server binary fails the test with the command that
//! installs it; nothing is silently skipped.

pub mod agent;
pub mod fixtures;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod redis_server;
pub mod seaweedfs;
pub mod store;

pub use agent::Agent;
pub use postgres::Postgres;
pub use redis_server::RedisServer;
pub use seaweedfs::SeaweedFs;
pub use store::TestStore;
