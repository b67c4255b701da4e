//! From the proposals to the desired count, in upstream's order
//! (`reconcileAutoscaler` and `normalizeDesiredReplicasWithBehaviors`):
//! bounds first, then hold, then stabilization, then rate limits. Each
//! step returns its count, its reason and its sentence.

use chrono::{DateTime, Utc};
use vertice_crds::scaler::{ScaleEvent, ScaleReason, TimedRecommendation};

use super::super::behavior::{self, Behavior};
use super::super::windows::Bounds;
use super::policy::Proposals;

/// One step's answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Step {
    pub replicas: i32,
    pub reason: ScaleReason,
    pub message: String,
}

/// The desired count and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Desired {
    pub step: Step,
    /// The bound or rate policy that decided, if one did.
    pub limited_by: Option<ScaleReason>,
    /// The winning metric and its proposal, when the metrics decided.
    pub winner: Option<(i32, String)>,
    /// Stabilization's answer, when it ran.
    pub stabilized: Option<Stabilized>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stabilized {
    pub step: Step,
    /// The history with this poll's recommendation recorded.
    pub recommendations: Vec<TimedRecommendation>,
}

/// The history the behaviour steps read.
pub(super) struct History<'a> {
    pub recommendations: &'a [TimedRecommendation],
    pub scale_events: &'a [ScaleEvent],
}

/// Every step after "scaled to zero by hand", which the caller handles.
pub(super) fn desired(
    current: i32,
    bounds: &Bounds,
    proposals: &Proposals,
    behavior: &Behavior,
    history: &History<'_>,
    now: DateTime<Utc>,
) -> Desired {
    if let Some(step) = outside_bounds(current, bounds) {
        return Desired {
            limited_by: Some(step.reason),
            step,
            winner: None,
            stabilized: None,
        };
    }
    let best = match (held(current, proposals), &proposals.best) {
        (None, Some(best)) => best.clone(),
        (step, _) => {
            // Never scale down on a broken metric: hold, and record nothing
            // in the stabilization history (upstream skips it on errors too).
            let step = step.unwrap_or_else(|| Step {
                replicas: current,
                reason: ScaleReason::NoProposal,
                message: "no metric proposes a change".into(),
            });
            return Desired {
                step,
                limited_by: None,
                winner: None,
                stabilized: None,
            };
        }
    };
    let recommendation = best.0;
    let stabilized = stabilization(
        behavior,
        history.recommendations,
        current,
        recommendation,
        now,
    );
    let limited = rate_limit(
        behavior,
        history.scale_events,
        current,
        stabilized.step.replicas,
        bounds,
        now,
    );
    let (step, limited_by) = if limited.replicas != stabilized.step.replicas {
        (limited.clone(), Some(limited.reason))
    } else if stabilized.step.replicas != recommendation {
        let step = Step {
            message: format!(
                "stabilized from {recommendation} to {}",
                stabilized.step.replicas
            ),
            ..stabilized.step.clone()
        };
        (step, None)
    } else {
        (limited, None)
    };
    Desired {
        step,
        limited_by,
        winner: Some(best),
        stabilized: Some(stabilized),
    }
}

/// upstream: a count outside the bounds is brought inside them, whatever
/// the metrics say.
fn outside_bounds(current: i32, bounds: &Bounds) -> Option<Step> {
    if current > bounds.max {
        let reason = if bounds.lowered_cap {
            ScaleReason::ScheduleCap
        } else {
            ScaleReason::TooManyReplicas
        };
        return Some(Step {
            replicas: bounds.max,
            reason,
            message: format!("current replicas above the maximum of {}", bounds.max),
        });
    }
    if current < bounds.min {
        let reason = if bounds.raised_floor {
            ScaleReason::ScheduleFloor
        } else {
            ScaleReason::TooFewReplicas
        };
        return Some(Step {
            replicas: bounds.min,
            reason,
            message: format!("current replicas below the minimum of {}", bounds.min),
        });
    }
    None
}

/// A broken `HoldScaleDown` metric while the healthy ones would scale down
/// (or propose nothing): the count stays.
fn held(current: i32, proposals: &Proposals) -> Option<Step> {
    let healthy_below = proposals.best.as_ref().is_none_or(|(b, _)| *b < current);
    (!proposals.hold.is_empty() && healthy_below).then(|| Step {
        replicas: current,
        reason: ScaleReason::MetricBroken,
        message: format!(
            "holding {current} replicas: {} broken, and the healthy metrics alone would scale down",
            proposals.hold.join(", ")
        ),
    })
}

/// upstream `stabilizeRecommendationWithBehaviors`; the message is the
/// `AbleToScale` condition's, as upstream's.
fn stabilization(
    behavior: &Behavior,
    history: &[TimedRecommendation],
    current: i32,
    recommendation: i32,
    now: DateTime<Utc>,
) -> Stabilized {
    let s = behavior::stabilize(behavior, history, current, recommendation, now);
    let message = match s.reason {
        ScaleReason::ScaleUpStabilized => "recent recommendations were lower than current one, applying the lowest recent recommendation",
        ScaleReason::ScaleDownStabilized => "recent recommendations were higher than current one, applying the highest recent recommendation",
        _ => "recommended size matches current size",
    };
    Stabilized {
        step: Step {
            replicas: s.replicas,
            reason: s.reason,
            message: message.into(),
        },
        recommendations: s.recommendations,
    }
}

/// upstream `convertDesiredReplicasWithBehaviorRate`, with a bound that a
/// schedule window set named as such.
fn rate_limit(
    behavior: &Behavior,
    events: &[ScaleEvent],
    current: i32,
    stabilized: i32,
    bounds: &Bounds,
    now: DateTime<Utc>,
) -> Step {
    let limited = behavior::limit_rate(
        behavior, events, current, stabilized, bounds.min, bounds.max, now,
    );
    let reason = match limited.reason {
        ScaleReason::TooFewReplicas if bounds.raised_floor && limited.replicas == bounds.min => {
            ScaleReason::ScheduleFloor
        }
        ScaleReason::TooManyReplicas if bounds.lowered_cap && limited.replicas == bounds.max => {
            ScaleReason::ScheduleCap
        }
        other => other,
    };
    Step {
        replicas: limited.replicas,
        reason,
        message: limit_message(reason, bounds),
    }
}

fn limit_message(reason: ScaleReason, bounds: &Bounds) -> String {
    match reason {
        ScaleReason::ScaleUpLimit => {
            "the desired replica count is increasing faster than the maximum scale rate".into()
        }
        ScaleReason::ScaleDownLimit => {
            "the desired replica count is decreasing faster than the maximum scale rate".into()
        }
        ScaleReason::TooManyReplicas => {
            "the desired replica count is more than the maximum replica count".into()
        }
        ScaleReason::TooFewReplicas => {
            "the desired replica count is less than the minimum replica count".into()
        }
        ScaleReason::ScheduleFloor => {
            format!("schedule window {} sets the floor", bounds.open.join(", "))
        }
        ScaleReason::ScheduleCap => {
            format!(
                "schedule window {} sets the ceiling",
                bounds.open.join(", ")
            )
        }
        _ => "the desired count is within the acceptable range".into(),
    }
}
