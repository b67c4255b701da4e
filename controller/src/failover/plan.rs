//! The failover state machine. Order of precedence:
//! 0. a refusal of the tenancy rules (another namespace's VirtualService,
//!    a Secret not opted in): the route was not even read; touch nothing;
//! 1. a route that does not match the replicas: touch nothing;
//! 2. blind observers (too few fresh, sane vantages): hold, never switch;
//! 3. nothing known yet / no healthy replica: hold;
//! 4. traffic on an unhealthy replica: fail over at once (whole weights),
//!    unless the flap limit pins routing or `minSwitchInterval` holds it;
//! 5. a failback or switchover in progress: take the next step when due;
//! 6. traffic on healthy replicas but not the preferred ones: a planned
//!    switchover starts at once in steps; a failback only when enabled,
//!    after `failbackAfter` of continuous health, outside the flap limit
//!    and the minimum interval.

use chrono::{DateTime, Duration, Utc};
use vertice_crds::common::{set_condition, Condition};
use vertice_crds::failover::{
    FailoverPhase, FailoverReplica, Health, ReplicaWeight, SwitchRecord, Transition,
    VantageObservation, VerticeFailoverSpec, MAX_SWITCH_HISTORY,
};
use vertice_crds::tenancy::{CROSS_NAMESPACE_REFUSED, SECRET_NOT_ALLOWED};

use super::admission::Refusal;
use super::state::OwnedStatus;
use super::votes;
use super::weights;
use crate::context::Event;

pub const REASON_FAILOVER: &str = "Failover";
pub const REASON_FAILBACK: &str = "Failback";
pub const REASON_SWITCHOVER: &str = "Switchover";

/// Longest wait before looking again without an event.
const MAX_REQUEUE: i64 = 60;

pub struct Inputs<'a> {
    pub spec: &'a VerticeFailoverSpec,
    pub generation: Option<i64>,
    pub observations: &'a [VantageObservation],
    /// Our fields of the status as read.
    pub previous: &'a OwnedStatus,
    /// The route's weights per replica (spec order), or why the route does
    /// not match the replicas.
    pub route: Result<Vec<ReplicaWeight>, String>,
    /// A planned switchover asked for by annotation.
    pub switchover_to: Option<&'a str>,
    /// Why the controller may not steer this failover's route at all
    /// (`admission`); `route` is then not read.
    pub refused: Option<&'a Refusal>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What to apply to status, as if `patch` succeeded.
    pub status: OwnedStatus,
    /// New weights for the route, spec order.
    pub patch: Option<Vec<ReplicaWeight>>,
    /// Why the weights change (`Failover`, `Failback`, `Switchover`) when
    /// this starts a switch; None for a later step.
    pub switch: Option<&'static str>,
    /// Events before the patch is sent, and after it landed (or when
    /// nothing is patched).
    pub before_patch: Vec<Event>,
    pub events: Vec<Event>,
    pub requeue_after: std::time::Duration,
}

pub fn plan(input: Inputs<'_>) -> Plan {
    let Inputs {
        spec,
        generation,
        observations,
        previous,
        route,
        switchover_to,
        refused,
        now,
    } = input;
    let policy = &spec.policy;
    let votes = votes::tally(spec, observations, &previous.health, now);
    let mut status = OwnedStatus {
        health: votes.health.clone(),
        switches: previous.switches.clone(),
        last_switch_time: previous.last_switch_time,
        last_switch_reason: previous.last_switch_reason.clone(),
        transition: previous.transition.clone(),
        conditions: previous.conditions.clone(),
        observed_generation: generation,
        ..OwnedStatus::default()
    };
    let mut out = Outcome::new(now);
    if let Some(at) = votes.next_stale_at {
        out.wake_at(at);
    }

    if let Some(refusal) = refused {
        // Weights read from another namespace are not kept on show once
        // that namespace is refused; our own route's stay as last seen.
        if !matches!(refusal, Refusal::CrossNamespace { .. }) {
            status.weights = previous.weights.clone();
            status.active_replica = previous.active_replica.clone();
        }
        let message = refusal.to_string();
        return out.finish(status, previous, refusal.phase(), &message, None);
    }

    let current = match route {
        Ok(current) => current,
        Err(why) => {
            status.weights = previous.weights.clone();
            status.active_replica = previous.active_replica.clone();
            return out.finish(status, previous, FailoverPhase::RouteMismatch, &why, None);
        }
    };
    status.active_replica = weights::leading(&current).map(String::from);
    status.weights = current.clone();

    let observers_ok = votes.blind.is_none();
    set(
        &mut status,
        now,
        generation,
        "ObserversReady",
        observers_ok,
        if observers_ok {
            "QuorumHeard"
        } else {
            "ObserversStale"
        },
        votes
            .blind
            .as_deref()
            .unwrap_or("a quorum of vantages is observing"),
    );
    if let Some(why) = &votes.blind {
        let message = format!("holding the routing: {why}");
        return out.finish(
            status,
            previous,
            FailoverPhase::ObserversStale,
            &message,
            None,
        );
    }

    let health_of = |name: &str| {
        status
            .health
            .iter()
            .find(|h| h.name == name)
            .map_or(Health::Unknown, |h| h.health)
    };
    let healthy: Vec<&FailoverReplica> = spec
        .replicas
        .iter()
        .filter(|r| health_of(&r.name) == Health::Healthy)
        .collect();
    if healthy.is_empty() {
        let phase = if spec
            .replicas
            .iter()
            .all(|r| health_of(&r.name) == Health::Unknown)
        {
            FailoverPhase::Observing
        } else {
            FailoverPhase::NoHealthyReplica
        };
        let message = "no replica is healthy; holding the routing";
        return out.finish(status, previous, phase, message, None);
    }

    let order: Vec<&str> = spec.replicas.iter().map(|r| r.name.as_str()).collect();
    let requested = switchover_to.filter(|r| healthy.iter().any(|h| h.name == *r));
    let preferred: Vec<&str> = match requested {
        Some(r) => vec![r],
        None => best(&healthy),
    };
    let target = weights::even(&order, &preferred);
    let top = spec.replicas.iter().map(|r| r.priority).max().unwrap_or(0);
    let settled_phase = |weights: &[ReplicaWeight]| {
        let active_top = weights::active(weights)
            .iter()
            .filter_map(|a| spec.replicas.iter().find(|r| r.name == *a))
            .map(|r| r.priority)
            .max();
        if active_top.is_some_and(|p| p < top) {
            FailoverPhase::FailedOver
        } else {
            FailoverPhase::Healthy
        }
    };

    // The flap limit and the minimum interval between switches.
    let window = Duration::seconds(i64::from(policy.flap_window_seconds));
    let recent: Vec<&SwitchRecord> = status
        .switches
        .iter()
        .filter(|s| now - s.time < window)
        .collect();
    let pinned_until = (recent.len() >= policy.max_switches as usize)
        .then(|| recent.first().map(|s| s.time + window))
        .flatten();
    let min_interval = Duration::seconds(i64::from(policy.min_switch_interval_seconds));
    let interval_until = status
        .last_switch_time
        .map(|t| t + min_interval)
        .filter(|t| *t > now);

    let active_unhealthy: Vec<&str> = weights::active(&current)
        .into_iter()
        .filter(|a| health_of(a) == Health::Unhealthy)
        .collect();
    if !active_unhealthy.is_empty() {
        status.transition = None;
        let message = format!(
            "{} down ({}); traffic to {}",
            active_unhealthy.join(", "),
            votes_text(&status, &active_unhealthy),
            weights::show(&target)
        );
        if let Some(until) = pinned_until {
            out.wake_at(until);
            let why = format!(
                "{} switches within {}s: routing pinned until {until}; {message}",
                recent.len(),
                policy.flap_window_seconds
            );
            return out.finish(status, previous, FailoverPhase::Pinned, &why, Some(true));
        }
        if let Some(until) = interval_until {
            out.wake_at(until);
            let why = format!("waiting for minSwitchInterval until {until}; {message}");
            let phase = previous.phase.unwrap_or(FailoverPhase::Healthy);
            return out.finish(status, previous, phase, &why, Some(false));
        }
        out.before.push(warning("FailoverStarted", &message));
        out.after.push(warning(
            "FailedOver",
            &format!("traffic moved: {}", weights::show(&target)),
        ));
        record_switch(
            &mut status,
            now,
            REASON_FAILOVER,
            &current,
            &target,
            &message,
        );
        let phase = settled_phase(&target);
        status.weights = target.clone();
        status.active_replica = weights::leading(&target).map(String::from);
        return out.patch(target, Some(REASON_FAILOVER)).finish(
            status,
            previous,
            phase,
            &message,
            Some(false),
        );
    }

    // A transition in steps.
    if let Some(t) = status.transition.clone() {
        let cancelled = t.reason == REASON_SWITCHOVER
            && requested.is_none_or(|r| weights::leading(&t.to) != Some(r));
        let target_down = weights::active(&t.to)
            .iter()
            .any(|r| health_of(r) != Health::Healthy);
        if cancelled || target_down {
            status.transition = None;
            // Decide afresh from the weights as they are, on the next pass.
            out.wake_at(now + Duration::seconds(1));
            let message = format!(
                "{} to {} stopped at {}",
                t.reason.to_lowercase(),
                weights::show(&t.to),
                weights::show(&current)
            );
            out.after.push(normal("TransitionStopped", &message));
            let phase = settled_phase(&current);
            return out.finish(status, previous, phase, &message, Some(false));
        }
        let phase = if t.reason == REASON_SWITCHOVER {
            FailoverPhase::SwitchingOver
        } else {
            FailoverPhase::FailingBack
        };
        if now < t.next_step_at {
            out.wake_at(t.next_step_at);
            let message = format!(
                "step {} of {} done: {}",
                t.step,
                t.steps,
                weights::show(&current)
            );
            return out.finish(status, previous, phase, &message, Some(false));
        }
        return take_step(
            out,
            status,
            previous,
            t,
            now,
            policy.step_interval_seconds,
            settled_phase,
        );
    }

    if current == target {
        let phase = settled_phase(&current);
        let message = format!("traffic on {}", weights::show(&current));
        return out.finish(status, previous, phase, &message, Some(false));
    }

    // Healthy traffic, but not where it should be.
    let (reason, steps) = if requested.is_some() {
        (REASON_SWITCHOVER, spec.policy.switchover_steps)
    } else {
        (REASON_FAILBACK, spec.policy.failback_steps)
    };
    if reason == REASON_FAILBACK {
        let phase = settled_phase(&current);
        if !policy.auto_failback {
            let message = format!(
                "better replicas {} are healthy; automatic failback is off",
                preferred.join(", ")
            );
            return out.finish(status, previous, phase, &message, Some(false));
        }
        let hold = Duration::seconds(i64::from(policy.failback_after_seconds));
        let gaining: Vec<&ReplicaWeight> = target
            .iter()
            .zip(&current)
            .filter(|(t, c)| t.weight > c.weight)
            .map(|(t, _)| t)
            .collect();
        let ready_at = gaining
            .iter()
            .filter_map(|g| status.health.iter().find(|h| h.name == g.replica))
            .map(|h| h.since + hold)
            .max();
        if let Some(at) = ready_at.filter(|at| *at > now) {
            out.wake_at(at);
            let message = format!(
                "{} healthy again; failback after {at}",
                preferred.join(", ")
            );
            return out.finish(status, previous, phase, &message, Some(false));
        }
        if let Some(until) = pinned_until {
            out.wake_at(until);
            let message = format!(
                "{} switches within {}s: failback pinned until {until}",
                recent.len(),
                policy.flap_window_seconds
            );
            return out.finish(
                status,
                previous,
                FailoverPhase::Pinned,
                &message,
                Some(true),
            );
        }
        if let Some(until) = interval_until {
            out.wake_at(until);
            let message = format!("failback waits for minSwitchInterval until {until}");
            return out.finish(status, previous, phase, &message, Some(false));
        }
    }
    let message = format!(
        "{} from {} to {}",
        reason.to_lowercase(),
        weights::show(&current),
        weights::show(&target)
    );
    record_switch(&mut status, now, reason, &current, &target, &message);
    let t = Transition {
        reason: reason.to_string(),
        from: current.clone(),
        to: target.clone(),
        step: 0,
        steps,
        next_step_at: now,
    };
    out.switch = Some(reason);
    take_step(
        out,
        status,
        previous,
        t,
        now,
        policy.step_interval_seconds,
        settled_phase,
    )
}

/// The next step of `t`: patch its weights, finish or schedule the next.
fn take_step(
    mut out: Outcome,
    mut status: OwnedStatus,
    previous: &OwnedStatus,
    mut t: Transition,
    now: DateTime<Utc>,
    step_interval: u32,
    settled_phase: impl Fn(&[ReplicaWeight]) -> FailoverPhase,
) -> Plan {
    t.step += 1;
    let next = weights::step(&t.from, &t.to, t.step, t.steps);
    status.weights = next.clone();
    status.active_replica = weights::leading(&next).map(String::from);
    let switchover = t.reason == REASON_SWITCHOVER;
    let (phase, message) = if t.step >= t.steps {
        status.transition = None;
        let reason = if switchover {
            "SwitchedOver"
        } else {
            "FailedBack"
        };
        let message = format!("traffic on {}", weights::show(&next));
        out.after.push(normal(reason, &message));
        (settled_phase(&next), message)
    } else {
        let message = format!("step {} of {}: {}", t.step, t.steps, weights::show(&next));
        out.after.push(normal(
            if switchover {
                "SwitchoverStep"
            } else {
                "FailbackStep"
            },
            &message,
        ));
        t.next_step_at = now + Duration::seconds(i64::from(step_interval));
        out.wake_at(t.next_step_at);
        status.transition = Some(t);
        let phase = if switchover {
            FailoverPhase::SwitchingOver
        } else {
            FailoverPhase::FailingBack
        };
        (phase, message)
    };
    let switch = out.switch;
    out.patch(next, switch)
        .finish(status, previous, phase, &message, Some(false))
}

/// The healthy replicas of the highest priority.
fn best<'a>(healthy: &[&'a FailoverReplica]) -> Vec<&'a str> {
    let top = healthy.iter().map(|r| r.priority).max().unwrap_or(0);
    healthy
        .iter()
        .filter(|r| r.priority == top)
        .map(|r| r.name.as_str())
        .collect()
}

fn votes_text(status: &OwnedStatus, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|n| status.health.iter().find(|h| h.name == *n))
        .map(|h| format!("{}: {} vantage(s) down", h.name, h.down_votes))
        .collect::<Vec<_>>()
        .join(", ")
}

fn record_switch(
    status: &mut OwnedStatus,
    now: DateTime<Utc>,
    reason: &str,
    from: &[ReplicaWeight],
    to: &[ReplicaWeight],
    message: &str,
) {
    status.switches.push(SwitchRecord {
        time: now,
        reason: reason.to_string(),
        from: from.to_vec(),
        to: to.to_vec(),
        message: message.to_string(),
    });
    let excess = status.switches.len().saturating_sub(MAX_SWITCH_HISTORY);
    status.switches.drain(..excess);
    status.last_switch_time = Some(now);
    status.last_switch_reason = Some(reason.to_string());
}

fn set(
    status: &mut OwnedStatus,
    now: DateTime<Utc>,
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) {
    let mut condition = Condition::new(type_, ok, reason, message, now);
    condition.observed_generation = generation;
    set_condition(&mut status.conditions, condition);
}

fn warning(reason: &'static str, note: &str) -> Event {
    Event {
        warning: true,
        reason,
        note: note.to_string(),
    }
}

fn normal(reason: &'static str, note: &str) -> Event {
    Event {
        warning: false,
        reason,
        note: note.to_string(),
    }
}

/// Collects a plan's side results while the decision is made.
struct Outcome {
    now: DateTime<Utc>,
    wake: Option<DateTime<Utc>>,
    patch: Option<Vec<ReplicaWeight>>,
    switch: Option<&'static str>,
    before: Vec<Event>,
    after: Vec<Event>,
}

impl Outcome {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            wake: None,
            patch: None,
            switch: None,
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    fn wake_at(&mut self, at: DateTime<Utc>) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn patch(mut self, weights: Vec<ReplicaWeight>, switch: Option<&'static str>) -> Self {
        self.patch = Some(weights);
        self.switch = switch;
        self
    }

    /// Sets the phase and the conditions; phase changes into a held state
    /// raise their Event once.
    fn finish(
        mut self,
        mut status: OwnedStatus,
        previous: &OwnedStatus,
        phase: FailoverPhase,
        message: &str,
        pinned: Option<bool>,
    ) -> Plan {
        let now = self.now;
        let generation = status.observed_generation;
        let entered = previous.phase != Some(phase);
        let held_event = match phase {
            FailoverPhase::Pinned => Some(("Pinned", true)),
            FailoverPhase::ObserversStale => Some(("ObserversStale", true)),
            FailoverPhase::NoHealthyReplica => Some(("NoHealthyReplica", true)),
            FailoverPhase::RouteMismatch => Some(("RouteMismatch", true)),
            FailoverPhase::CrossNamespaceRefused => Some((CROSS_NAMESPACE_REFUSED, true)),
            FailoverPhase::SecretNotAllowed => Some((SECRET_NOT_ALLOWED, true)),
            _ => None,
        };
        if let (true, Some((reason, warn))) = (entered, held_event) {
            self.after.push(Event {
                warning: warn,
                reason,
                note: message.to_string(),
            });
        }
        let ready = matches!(
            phase,
            FailoverPhase::Healthy
                | FailoverPhase::FailedOver
                | FailoverPhase::FailingBack
                | FailoverPhase::SwitchingOver
        );
        set(
            &mut status,
            now,
            generation,
            "Ready",
            ready,
            phase.as_str(),
            message,
        );
        if matches!(
            phase,
            FailoverPhase::RouteMismatch
                | FailoverPhase::CrossNamespaceRefused
                | FailoverPhase::SecretNotAllowed
        ) {
            // A refused failover's route was not read: not resolved either.
            set(
                &mut status,
                now,
                generation,
                "RouteResolved",
                false,
                phase.as_str(),
                message,
            );
        } else {
            set(
                &mut status,
                now,
                generation,
                "RouteResolved",
                true,
                "RouteMatched",
                "every replica is a destination of the route",
            );
        }
        if let Some(pinned) = pinned {
            let (reason, text) = if pinned {
                ("FlapLimit", message)
            } else {
                ("WithinLimit", "switches are within the flap limit")
            };
            set(&mut status, now, generation, "Pinned", pinned, reason, text);
        }
        status.phase = Some(phase);
        let wait = self
            .wake
            .map(|w| (w - now).num_milliseconds().max(1000))
            .unwrap_or(MAX_REQUEUE * 1000)
            .min(MAX_REQUEUE * 1000);
        Plan {
            status,
            patch: self.patch,
            switch: self.switch,
            before_patch: self.before,
            events: self.after,
            requeue_after: std::time::Duration::from_millis(u64::try_from(wait).unwrap_or(1000)),
        }
    }
}
