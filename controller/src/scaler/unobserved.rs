//! The status of a poll that could not read its target. It says so in
//! every place a reader looks: the counts are not shown as if current, the
//! decision column (`kubectl get vsc`) names the failure, the conditions
//! carry a sentence that says what to fix, and a Warning Event is recorded
//! when that sentence first appears (not every poll).

use chrono::{DateTime, Utc};
use vertice_crds::common::{remove_condition, Condition};
use vertice_crds::scaler::{
    Decision, Direction, ScaleReason, VerticeScalerSpec, VerticeScalerStatus,
};

use super::conditions::{ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED};
use super::observe::TargetError;
use crate::events::Event;
use crate::shared::set_observed;

/// Why the target was not read: `reason` is the condition, decision and
/// Event reason (`TargetNotFound`, `InvalidTarget`, `FailedGetScale`).
pub struct Unobserved<'a> {
    pub reason: ScaleReason,
    pub message: &'a str,
    /// The target does not exist: it has no replicas, and the history of
    /// recommendations and scale changes belonged to the object now gone.
    pub gone: bool,
}

impl<'a> Unobserved<'a> {
    /// The failure to read the target, told in `message` (its sentence).
    pub fn from_error(e: &TargetError, message: &'a str) -> Self {
        Unobserved {
            reason: e.reason(),
            message,
            gone: matches!(e, TargetError::NotFound { .. }),
        }
    }
}

pub fn plan(
    spec: &VerticeScalerSpec,
    generation: Option<i64>,
    history: &VerticeScalerStatus,
    why: &Unobserved<'_>,
    now: DateTime<Utc>,
) -> (VerticeScalerStatus, Vec<Event>) {
    let mut status = history.clone();
    status.observed_generation = generation;
    let previous = history.last_decision.clone().unwrap_or_default();
    // `Decision`'s counts are plain integers in the CRD (not optional), so a
    // target that does not exist reads 0 there; the decision's reason
    // (TargetNotFound) says they are no counts, and the fields a reader
    // sees first, status.currentReplicas / desiredReplicas (the columns of
    // `kubectl get vsc`), are absent.
    let (current, desired) = if why.gone {
        status.current_replicas = None;
        status.desired_replicas = None;
        status.recommendations.clear();
        status.scale_events.clear();
        (0, 0)
    } else {
        // Last seen, kept in the decision only; the reason says they are old.
        (previous.current_replicas, previous.desired_replicas)
    };
    status.last_decision = Some(Decision {
        time: now,
        current_replicas: current,
        desired_replicas: desired,
        direction: Direction::None,
        reason: why.reason,
        message: why.message.to_string(),
        metrics: Vec::new(),
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        not_acted: true,
        ..Decision::default()
    });
    let shown = history
        .conditions
        .iter()
        .any(|c| c.type_ == ABLE_TO_SCALE && c.reason == why.reason && c.message == why.message);
    for type_ in [ABLE_TO_SCALE, SCALING_ACTIVE] {
        let condition = Condition::new(type_, false, why.reason.as_str(), why.message, now);
        set_observed(&mut status.conditions, generation, condition);
    }
    // Nothing is computed, so nothing is limited: an old "within range"
    // would read as a judgement on a target that is not there.
    remove_condition(&mut status.conditions, SCALING_LIMITED);
    let events = if shown {
        Vec::new()
    } else {
        vec![Event::warning(why.reason.as_str(), why.message)]
    };
    (status, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::tests::support::{cpu_metric, spec, t0};
    use vertice_crds::common::{find_condition, set_condition};

    fn steady() -> VerticeScalerStatus {
        let mut status = VerticeScalerStatus {
            current_replicas: Some(4),
            desired_replicas: Some(4),
            ..Default::default()
        };
        status.last_decision = Some(Decision {
            current_replicas: 4,
            desired_replicas: 4,
            reason: ScaleReason::DesiredWithinRange,
            ..Decision::default()
        });
        set_condition(
            &mut status.conditions,
            Condition::new(
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "in range",
                t0(),
            ),
        );
        status
    }

    #[test]
    fn a_missing_target_clears_the_counts_and_says_what_to_fix_once() {
        let s = spec(1, 10, vec![cpu_metric(50)]);
        let message = "Deployment shop/workers not found: create it or fix spec.targetRef";
        let why = Unobserved {
            reason: ScaleReason::TargetNotFound,
            message,
            gone: true,
        };
        let (status, events) = plan(&s, Some(3), &steady(), &why, t0());
        assert_eq!(
            (status.current_replicas, status.desired_replicas),
            (None, None)
        );
        let d = status.last_decision.clone().expect("decision");
        assert_eq!(
            (d.reason.as_str(), d.message.as_str()),
            ("TargetNotFound", message)
        );
        assert!(d.not_acted);
        for type_ in ["AbleToScale", "ScalingActive"] {
            let c = find_condition(&status.conditions, type_).expect("condition");
            assert_eq!(
                (c.reason.as_str(), c.message.as_str()),
                ("TargetNotFound", message)
            );
            assert_eq!(c.observed_generation, Some(3));
        }
        assert!(find_condition(&status.conditions, "ScalingLimited").is_none());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].note, message);
        // The next poll finds the same: no second Event, the same status.
        let (again, events) = plan(
            &s,
            Some(3),
            &status,
            &why,
            t0() + chrono::Duration::seconds(15),
        );
        assert!(events.is_empty());
        assert!(!crate::scaler::reconciler::decision_changed(
            &status, &again
        ));
    }

    #[test]
    fn a_failed_read_keeps_the_last_counts_and_names_the_failure() {
        let s = spec(1, 10, vec![cpu_metric(50)]);
        let why = Unobserved {
            reason: ScaleReason::FailedGetScale,
            message: "get the scale of Widget w: forbidden (403)",
            gone: false,
        };
        let (status, events) = plan(&s, None, &steady(), &why, t0());
        assert_eq!(status.current_replicas, Some(4));
        assert_eq!(
            status.last_decision.as_ref().map(|d| d.reason.as_str()),
            Some("FailedGetScale")
        );
        assert_eq!(events[0].reason, "FailedGetScale");
        // A new cause is a new message: announced again.
        let other = Unobserved {
            message: "get the scale of Widget w: connection refused",
            ..why
        };
        let (_, events) = plan(&s, None, &status, &other, t0());
        assert_eq!(events.len(), 1);
    }
}
