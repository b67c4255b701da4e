//! Types shared by the Vertice agent and controller.
//!
//! This crate holds no I/O and no Kubernetes client: the custom resources and
//! the configuration vocabulary both sides must agree on (store locations,
//! compression, hooks, notifications, the run summary), so a value the
//! controller writes is parsed by the agent with the very same code.

pub mod agent_env;
pub mod backup;
pub mod backup_status;
pub mod common;
pub mod compression;
pub mod crd_yaml;
pub mod cron_rules;
pub mod drill;
pub mod drill_spec;
pub mod duration;
pub mod failover;
pub mod failover_status;
pub mod hooks;
pub mod notifications;
pub mod pg_options;
pub mod redact;
pub mod run_summary;
pub mod scaler;
pub mod store_location;
pub mod tenancy;

pub use backup::{VerticeBackup, VerticeBackupSpec};
pub use backup_status::VerticeBackupStatus;
pub use compression::Compression;
pub use failover::{VerticeFailover, VerticeFailoverSpec};
pub use scaler::{VerticeScaler, VerticeScalerSpec};
pub use store_location::{StoreLocation, StoreLocationError};
