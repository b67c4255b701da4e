//! Failure policies: what each metric's outcome leaves of the proposals,
//! and how the metrics' health reads in the `ScalingActive` condition.

use vertice_crds::scaler::{FailurePolicyType, MetricDecision, MetricState, ScalerMetric};

use super::super::conditions::{FAILED_GET_METRICS, SOME_METRICS_BROKEN, VALID_METRIC_FOUND};
use super::metric::Evaluated;

/// What the failure policies leave of the proposals.
#[derive(Debug, Default)]
pub(super) struct Proposals {
    /// The largest proposal and its metric.
    pub best: Option<(i32, String)>,
    /// A broken `HoldScaleDown` metric forbids going below the current count.
    pub hold: Vec<String>,
    pub fallback: bool,
    pub all_broken: bool,
}

impl Proposals {
    pub fn new() -> Self {
        Proposals {
            all_broken: true,
            ..Default::default()
        }
    }

    /// Counts `metric`'s outcome under its failure policy; returns what the
    /// decision shows of it.
    pub fn add(
        &mut self,
        metric: &ScalerMetric,
        evaluated: Evaluated,
        current: i32,
    ) -> MetricDecision {
        let name = metric.display_name();
        let mut md = MetricDecision {
            name: name.clone(),
            target: evaluated.target,
            target_type: evaluated.target_type,
            ..Default::default()
        };
        let policy = policy_type(metric);
        let candidate = match evaluated.outcome {
            Ok(p) => {
                self.all_broken = false;
                md.state = MetricState::Ok;
                md.value = Some(p.value);
                md.ratio = Some((p.ratio * 1000.0).round() / 1000.0);
                md.proposal = Some(p.replicas);
                md.sample_time = p.sample_time;
                // A scale-up-only signal never votes for fewer replicas.
                (policy != FailurePolicyType::ScaleUpOnly || p.replicas > current)
                    .then_some(p.replicas)
            }
            Err(broken) => {
                md.state = broken.state;
                md.value = broken.value;
                md.error = Some(broken.error);
                md.failure_policy = Some(policy);
                match policy {
                    FailurePolicyType::Fallback => {
                        self.fallback = true;
                        metric.on_failure.as_ref().and_then(|p| p.replicas)
                    }
                    FailurePolicyType::ScaleUpOnly => None,
                    FailurePolicyType::HoldScaleDown => {
                        self.hold.push(name.clone());
                        None
                    }
                }
            }
        };
        if let Some(r) = candidate {
            if self.best.as_ref().is_none_or(|(b, _)| r > *b) {
                self.best = Some((r, name));
            }
        }
        md
    }
}

fn policy_type(metric: &ScalerMetric) -> FailurePolicyType {
    metric
        .on_failure
        .as_ref()
        .map(|p| p.type_)
        .unwrap_or(FailurePolicyType::HoldScaleDown)
}

/// The `ScalingActive` condition the metrics call for: status, reason,
/// message. `refused`: the reason of the first refused query, which names
/// the administrator's rule rather than a passing fault.
pub(super) fn scaling_active(
    metrics: &[MetricDecision],
    proposals: &Proposals,
    refused: Option<&'static str>,
) -> (bool, &'static str, String) {
    let broken: Vec<&MetricDecision> = metrics.iter().filter(|m| m.state.is_broken()).collect();
    if broken.is_empty() {
        return (
            true,
            VALID_METRIC_FOUND,
            "the scaler computes replicas from every metric".into(),
        );
    }
    let summary = broken
        .iter()
        .map(|m| format!("{}: {}", m.name, error_or_state(m)))
        .collect::<Vec<_>>()
        .join("; ");
    let reason = if proposals.all_broken {
        FAILED_GET_METRICS
    } else {
        SOME_METRICS_BROKEN
    };
    // A refusal is the administrator's rule, not a passing fault: the
    // reason names it; scaling on that metric is off until the spec or the
    // Secret changes, and goes on from the others.
    (!proposals.all_broken, refused.unwrap_or(reason), summary)
}

/// A broken metric's error, or its state when it has none.
pub(super) fn error_or_state(m: &MetricDecision) -> &str {
    m.error.as_deref().unwrap_or(m.state.as_str())
}
