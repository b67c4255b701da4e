//! Types shared by the Vertice agent and controller.
//!
//! This crate holds no I/O and no Kubernetes client: only the configuration
//! vocabulary both sides must agree on (store locations, compression, …), so a
//! value the controller writes is parsed by the agent with the very same code.

pub mod compression;
pub mod store_location;

pub use compression::Compression;
pub use store_location::{StoreLocation, StoreLocationError};
