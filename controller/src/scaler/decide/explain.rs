//! The Events a decision announces, each once: the scale itself, a hold, a
//! refused query, a fallback taking over.

use vertice_crds::scaler::{
    Decision, FailurePolicyType, MetricState, ScaleReason, ScalerMetric, TargetType,
    VerticeScalerStatus,
};

use super::super::conditions::FALLBACK_ACTIVE;
use super::policy::error_or_state;
use crate::events::Event;

/// The note of a ScaledUp / ScaledDown Event: from, to, and a reason that
/// explains that direction ("scaled up from 1 to 10: cpu above its target
/// (…); capped at maxReplicas 10"), never a bare reason word that reads
/// as the opposite ("TooManyReplicas" on a scale-up).
pub fn scale_note(d: &Decision, current: i32) -> String {
    let desired = d.desired_replicas;
    let verb = if desired > current {
        "scaled up"
    } else {
        "scaled down"
    };
    let limit = limit_phrase(d);
    let winner = d
        .winner
        .as_ref()
        .and_then(|w| d.metrics.iter().find(|m| &m.name == w));
    let why = match winner {
        // No metric decided: the count was outside the bounds.
        None => bound_phrase(d),
        Some(m) => {
            let metric = if m.state == MetricState::Ok {
                let side = if desired > current { "above" } else { "below" };
                let unit = if m.target_type == TargetType::Utilization {
                    "%"
                } else {
                    ""
                };
                let value = m.value.map(|v| v.to_string()).unwrap_or_default();
                let proposal = m.proposal.unwrap_or(desired);
                format!(
                    "{} {side} its target ({value}{unit} against {}{unit}, proposing {proposal})",
                    m.name, m.target
                )
            } else {
                let proposal = d.recommendation.unwrap_or(desired);
                format!("{} is broken and its fallback proposes {proposal}", m.name)
            };
            match (&limit, d.recommendation, d.stabilized) {
                (Some(limit), _, _) => format!("{metric}; {limit}"),
                (None, Some(r), Some(s)) if r != s => format!("{metric}, stabilized to {s}"),
                (None, _, _) => metric,
            }
        }
    };
    format!("{verb} from {current} to {desired}: {why}")
}

/// What limited a scale the metrics asked for.
fn limit_phrase(d: &Decision) -> Option<String> {
    let windows = d.open_windows.join(", ");
    Some(match d.limited_by? {
        ScaleReason::TooManyReplicas => format!("capped at maxReplicas {}", d.max_replicas),
        ScaleReason::TooFewReplicas => format!("held at minReplicas {}", d.min_replicas),
        ScaleReason::ScheduleCap => {
            format!("capped at {} by schedule window {windows}", d.max_replicas)
        }
        ScaleReason::ScheduleFloor => {
            format!("held at {} by schedule window {windows}", d.min_replicas)
        }
        ScaleReason::ScaleUpLimit => "limited by the scale-up rate policy".to_string(),
        ScaleReason::ScaleDownLimit => "limited by the scale-down rate policy".to_string(),
        _ => return None,
    })
}

/// Why a scale no metric decided happened: the bound it crossed.
fn bound_phrase(d: &Decision) -> String {
    let windows = d.open_windows.join(", ");
    match d.limited_by {
        Some(ScaleReason::TooFewReplicas) => format!("below minReplicas {}", d.min_replicas),
        Some(ScaleReason::TooManyReplicas) => format!("above maxReplicas {}", d.max_replicas),
        Some(ScaleReason::ScheduleFloor) => format!(
            "below the floor of {} set by schedule window {windows}",
            d.min_replicas
        ),
        Some(ScaleReason::ScheduleCap) => format!(
            "above the ceiling of {} set by schedule window {windows}",
            d.max_replicas
        ),
        _ => d.message.clone(),
    }
}

/// A Warning Event per refusal the previous decision did not already show,
/// so a refusal is announced once, not every poll.
pub(super) fn refusal_events(
    refusals: &[(&'static str, String)],
    history: &VerticeScalerStatus,
) -> Vec<Event> {
    let shown = |message: &str| {
        history.last_decision.as_ref().is_some_and(|d| {
            d.metrics
                .iter()
                .any(|m| m.error.as_deref() == Some(message))
        })
    };
    refusals
        .iter()
        .filter(|(_, message)| !shown(message))
        .map(|(reason, message)| Event::warning(reason, message.clone()))
        .collect()
}

/// `FallbackActive`, when a fallback took over since the last decision.
pub(super) fn fallback_event(
    metrics: &[ScalerMetric],
    decision: &Decision,
    history: &VerticeScalerStatus,
) -> Option<Event> {
    let falling = |state: MetricState, policy: Option<FailurePolicyType>| {
        state.is_broken() && policy == Some(FailurePolicyType::Fallback)
    };
    let fallback_was = history
        .last_decision
        .as_ref()
        .is_some_and(|d| d.metrics.iter().any(|m| falling(m.state, m.failure_policy)));
    if fallback_was {
        return None;
    }
    let falling_back: Vec<String> = decision
        .metrics
        .iter()
        .zip(metrics)
        .filter(|(m, _)| falling(m.state, m.failure_policy))
        .map(|(m, s)| {
            let replicas = s.on_failure.as_ref().and_then(|p| p.replicas).unwrap_or(0);
            format!(
                "{} is broken ({}) and proposes its fallback of {replicas} replicas",
                m.name,
                error_or_state(m)
            )
        })
        .collect();
    Some(Event::warning(FALLBACK_ACTIVE, falling_back.join("; ")))
}
