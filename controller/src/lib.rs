//! The Vertice controller: one module per reconciler, each a pure part and a
//! thin I/O shell, plus what the binary needs around them.

pub mod backup;
pub mod config;
pub mod context;
pub mod error;
pub mod events;
pub mod failover;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod permissions;
pub mod rbac;
pub mod runtime;
pub mod scaler;
pub mod schedule;
pub mod secret_labels;
