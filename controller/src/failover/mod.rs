//! The failover controller: `plan` is the whole decision, a pure state
//! machine over the spec, the vantages' observations, the state kept in
//! status and the route as read, one function per rule of precedence;
//! `reconciler` reads, plans, patches the VirtualService and applies only
//! the status fields the controller owns; `run` is the controller's loop.

pub mod admission;
pub mod freshness;
pub mod plan;
pub mod reconciler;
pub mod run;
pub mod state;
pub mod virtual_service;
pub mod votes;
pub mod weights;

pub use admission::Refusal;
pub use plan::{plan, Inputs, Plan};
pub use run::start;

#[cfg(test)]
mod tests;
