//! The Vertice controller: one module per controller (backup, scaler,
//! failover), each a pure part, a thin I/O shell and its own `run`; what
//! they share in `shared`, `context`, `events`, `watches` and `leader`; and
//! the process around them in `runtime`.

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
pub mod shared;
pub mod watches;
