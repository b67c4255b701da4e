//! The scaler: `plan` (`decide/`, one file per step) is the whole
//! decision, pure (no client, no clock); `observe` and `prometheus` gather
//! its input, `reconciler` acts on it, and `run` starts the controller.
//!
//! Order, as the HPA's `reconcileAutoscaler`: a target scaled to zero by
//! hand is left alone; a count outside the bounds is brought inside them;
//! otherwise every metric proposes (the largest proposal wins), the
//! proposal is stabilized, rate-limited and bounded. Ours on top: a broken
//! metric (error, no data, stale) is handled by its failure policy instead
//! of reading as zero, schedule windows move the bounds, and every step is
//! written into `status.lastDecision`.

pub mod algorithm;
pub mod behavior;
pub mod cache;
pub mod conditions;
pub mod decide;
pub mod fair;
pub mod limit;
pub mod observe;
pub mod overlap;
pub mod pods;
pub mod prometheus;
pub mod quantity;
pub mod reconciler;
pub mod run;
pub mod selector;
pub mod simulate;
pub mod unobserved;
pub mod windows;

pub use decide::{plan, Observed, Plan, PromResult};
pub use run::start;

#[cfg(test)]
mod tests;
