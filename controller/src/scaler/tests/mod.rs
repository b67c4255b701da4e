//! The scaler's decision, tested directly: upstream's replica calculator
//! cases, behaviour arithmetic, the plan around them, and properties.

mod algorithm_cases;
mod behavior_cases;
mod honesty_cases;
mod plan_cases;
mod properties;
pub(super) mod support;
mod tenancy_cases;
mod upstream_vectors;
