//! The status, decision and Events of one poll, filled in step by step by
//! `plan`: each method is one step's writing, in upstream's order.

use chrono::{DateTime, Utc};
use vertice_crds::common::{keep_transition_times, Condition};
use vertice_crds::scaler::{
    Decision, Direction, ScaleReason, VerticeScalerSpec, VerticeScalerStatus,
};

use super::super::algorithm::Tolerances;
use super::super::behavior;
use super::super::conditions::{
    ABLE_TO_SCALE, DRY_RUN, PAUSED, SCALED_DOWN, SCALED_UP, SCALE_HELD, SCALING_ACTIVE,
    SCALING_LIMITED,
};
use super::super::overlap::Refusal;
use super::config::Config;
use super::explain::{self, scale_note};
use super::metric::{self, Context};
use super::policy::{self, Proposals};
use super::replicas::{Desired, Step};
use super::types::{Observed, Plan, PromResult};
use crate::events::Event;
use crate::shared::set_observed;

/// The status, decision and Events of one poll, filled in step by step.
pub(super) struct Draft<'a> {
    status: VerticeScalerStatus,
    pub decision: Decision,
    events: Vec<Event>,
    history: &'a VerticeScalerStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
}

impl<'a> Draft<'a> {
    pub(super) fn new(
        spec: &VerticeScalerSpec,
        generation: Option<i64>,
        observed: &Observed,
        history: &'a VerticeScalerStatus,
        now: DateTime<Utc>,
    ) -> Self {
        let current = observed.spec_replicas;
        let status = VerticeScalerStatus {
            current_replicas: Some(observed.status_replicas),
            desired_replicas: Some(current),
            last_scale_time: history.last_scale_time,
            observed_generation: generation,
            conditions: history.conditions.clone(),
            recommendations: history.recommendations.clone(),
            scale_events: history.scale_events.clone(),
            last_decision: None,
        };
        let decision = Decision {
            time: now,
            current_replicas: current,
            desired_replicas: current,
            direction: Direction::None,
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            rollout_in_progress: observed.rollout_in_progress,
            not_acted: spec.dry_run || observed.paused || observed.refusal.is_some(),
            ..Decision::default()
        };
        Draft {
            status,
            decision,
            events: Vec::new(),
            history,
            generation,
            now,
        }
    }

    pub(super) fn cond(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        let condition = Condition::new(type_, ok, reason, message, self.now);
        set_observed(&mut self.status.conditions, self.generation, condition);
    }

    fn previous_reason(&self) -> Option<ScaleReason> {
        self.history.last_decision.as_ref().map(|d| d.reason)
    }

    /// A spec that cannot be acted on: nothing is computed; warned of once.
    pub(super) fn invalid_spec(mut self, e: String) -> Plan {
        let reason = ScaleReason::InvalidSpec;
        self.decision.reason = reason;
        self.decision.message = e.clone();
        self.cond(SCALING_ACTIVE, false, reason.as_str(), &e);
        if self.previous_reason() != Some(reason) {
            self.events.push(Event::warning(reason.as_str(), e));
        }
        self.finish(false, false)
    }

    /// Each metric's outcome into the decision, and `ScalingActive`.
    pub(super) fn metrics(
        &mut self,
        spec: &VerticeScalerSpec,
        observed: &Observed,
        cfg: &Config,
    ) -> Proposals {
        let tolerances = Tolerances {
            up: cfg.behavior.up.tolerance,
            down: cfg.behavior.down.tolerance,
        };
        let mut proposals = Proposals::new();
        for (metric, max_staleness) in spec.metrics.iter().zip(&cfg.staleness) {
            let cx = Context {
                observed,
                tolerances,
                timing: &cfg.timing,
                max_staleness: *max_staleness,
            };
            let evaluated = metric::evaluate(metric, &cx);
            let md = proposals.add(metric, evaluated, observed.spec_replicas);
            self.decision.metrics.push(md);
        }
        let refused = refusals(spec, observed).first().map(|(reason, _)| *reason);
        let (ok, reason, message) =
            policy::scaling_active(&self.decision.metrics, &proposals, refused);
        self.cond(SCALING_ACTIVE, ok, reason, &message);
        proposals
    }

    /// upstream: a target scaled to zero by hand is not autoscaled.
    pub(super) fn scaling_disabled(&mut self) -> Desired {
        let step = Step {
            replicas: 0,
            reason: ScaleReason::ScalingDisabled,
            message: "scaling is disabled since the replica count of the target is zero".into(),
        };
        self.cond(SCALING_ACTIVE, false, step.reason.as_str(), &step.message);
        Desired {
            step,
            limited_by: None,
            winner: None,
            stabilized: None,
        }
    }

    /// The desired count into the decision and its conditions.
    pub(super) fn record(&mut self, desired: Desired, current: i32) {
        if let Some((recommendation, winner)) = desired.winner {
            self.decision.winner = Some(winner);
            self.decision.recommendation = Some(recommendation);
        }
        if let Some(s) = desired.stabilized {
            self.status.recommendations = s.recommendations;
            self.decision.stabilized = Some(s.step.replicas);
            self.cond(ABLE_TO_SCALE, true, s.step.reason.as_str(), &s.step.message);
        }
        let Step {
            replicas,
            reason,
            message,
        } = desired.step;
        match desired.limited_by {
            Some(limit) => self.cond(SCALING_LIMITED, true, limit.as_str(), &message),
            None => self.cond(
                SCALING_LIMITED,
                false,
                ScaleReason::DesiredWithinRange.as_str(),
                "the desired count is within the acceptable range",
            ),
        }
        self.decision.message = message;
        self.decision.limited_by = desired.limited_by;
        self.decision.desired_replicas = replicas;
        self.decision.direction = Direction::of(current, replicas);
        self.decision.reason = reason;
    }

    /// Whether the decision is carried out, what history that leaves, and
    /// the Events that announce it.
    pub(super) fn act(
        mut self,
        spec: &VerticeScalerSpec,
        observed: &Observed,
        cfg: &Config,
        proposals: &Proposals,
    ) -> Plan {
        let current = observed.spec_replicas;
        let desired = self.decision.desired_replicas;
        // The decision's own reason, before a refusal replaces it.
        let scale_reason = self.decision.reason;
        let change = desired != current && scale_reason != ScaleReason::ScalingDisabled;
        let act = change && !self.decision.not_acted;
        if let Some(refusal) = &observed.refusal {
            self.refused(refusal);
        } else if self.decision.not_acted {
            self.not_acted(observed.paused);
        }
        let to = if act { desired } else { current };
        self.status.scale_events = behavior::record_scale(
            &cfg.behavior,
            &self.history.scale_events,
            current,
            to,
            self.now,
        );
        if act {
            self.status.last_scale_time = Some(self.now);
            let reason = if desired > current {
                SCALED_UP
            } else {
                SCALED_DOWN
            };
            let note = scale_note(&self.decision, current);
            self.events.push(Event::normal(reason, note));
        }
        // A refused scaler holds nothing (it does not act), and its decision
        // reason is the refusal's, so the previous-reason check below would
        // never see MetricBroken again and warn on every poll: the refusal's
        // own Event is what it says.
        let held = ScaleReason::MetricBroken;
        if scale_reason == held
            && observed.refusal.is_none()
            && self.previous_reason() != Some(held)
        {
            let note = self.decision.message.clone();
            self.events.push(Event::warning(SCALE_HELD, note));
        }
        let refusal_events = explain::refusal_events(&refusals(spec, observed), self.history);
        self.events.extend(refusal_events);
        if proposals.fallback {
            let event = explain::fallback_event(&spec.metrics, &self.decision, self.history);
            self.events.extend(event);
        }
        self.finish(act, proposals.fallback)
    }

    /// Another autoscaler owns the target: the decision is explained (what
    /// this scaler would do), the reason says why nothing is done.
    fn refused(&mut self, refusal: &Refusal) {
        let shown = self.history.conditions.iter().any(|c| {
            c.type_ == ABLE_TO_SCALE && c.reason == refusal.reason && c.message == refusal.message
        });
        self.decision.reason = refusal.reason;
        self.decision.message = refusal.message.clone();
        self.cond(
            ABLE_TO_SCALE,
            false,
            refusal.reason.as_str(),
            &refusal.message,
        );
        if !shown {
            let note = refusal.message.clone();
            self.events
                .push(Event::warning(refusal.reason.as_str(), note));
        }
    }

    /// Paused or a dry run: decided and explained, not acted on.
    fn not_acted(&mut self, paused: bool) {
        let (reason, why) = if paused {
            (
                PAUSED,
                format!(
                    "the {} annotation is set",
                    vertice_crds::scaler::PAUSED_ANNOTATION
                ),
            )
        } else {
            (DRY_RUN, "spec.dryRun is set".to_string())
        };
        let message = format!("{why}: decisions are made and explained, not acted on");
        self.cond(ABLE_TO_SCALE, false, reason, &message);
    }

    fn finish(self, scale: bool, fallback: bool) -> Plan {
        let Draft {
            mut status,
            decision,
            events,
            history,
            ..
        } = self;
        status.desired_replicas = Some(decision.desired_replicas);
        keep_transition_times(&mut status.conditions, &history.conditions);
        let desired = decision.desired_replicas;
        let current = decision.current_replicas;
        status.last_decision = Some(decision);
        Plan {
            desired,
            current: Some(current),
            scale,
            status,
            events,
            fallback_active: fallback,
            previous: history.clone(),
        }
    }
}

/// The distinct refusals among the metrics' answers, in metric order.
fn refusals(spec: &VerticeScalerSpec, observed: &Observed) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for metric in &spec.metrics {
        if let Some(PromResult::Refused { reason, message }) =
            observed.prometheus.get(&metric.display_name())
        {
            if !out.iter().any(|(_, m)| m == message) {
                out.push((reason, message.clone()));
            }
        }
    }
    out
}
