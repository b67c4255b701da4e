//! The failover state machine. Order of precedence:
//! 0. a refusal of the tenancy rules (another namespace's VirtualService,
//!    a Secret not opted in): the route was not even read; touch nothing;
//! 1. a route that does not match the replicas: touch nothing;
//! 2. blind observers (too few fresh, sane vantages): hold, never switch;
//!    too few heard *yet* (runners within their grace): hold quietly;
//! 3. nothing known yet / no healthy replica: hold;
//! 4. traffic on an unhealthy replica: fail over at once (whole weights).
//!    The flap limit and `minSwitchInterval` do not hold it there: they
//!    limit switches between healthy choices, and staying on a replica a
//!    quorum reports down is never the safer choice;
//! 5. a failback or switchover in progress: take the next step when due;
//! 6. traffic on healthy replicas but not the preferred ones: a planned
//!    switchover starts at once in steps; a failback only when enabled,
//!    after `failbackAfter` of continuous health, outside the flap limit
//!    and the minimum interval.

use chrono::{DateTime, Duration, Utc};
use vertice_crds::common::{Condition, ConditionStatus};
use vertice_crds::failover::{
    FailoverPhase, FailoverReplica, Health, ReplicaWeight, SwitchRecord, Transition,
    VantageObservation, VerticeFailoverSpec, MAX_SWITCH_HISTORY,
};
use vertice_crds::tenancy::{CROSS_NAMESPACE_REFUSED, SECRET_NOT_ALLOWED};

use super::admission::Refusal;
use super::freshness::Sighting;
use super::state::OwnedStatus;
use super::votes;
use super::weights;
use crate::context::Event;
use crate::shared::set_observed;

pub const REASON_FAILOVER: &str = "Failover";
pub const REASON_FAILBACK: &str = "Failback";
pub const REASON_SWITCHOVER: &str = "Switchover";

/// The condition saying whether losing one vantage leaves a failover able
/// to act (and only a majority able to).
pub const QUORUM_RESILIENT: &str = "QuorumResilient";
const OBSERVERS_READY: &str = "ObserversReady";
/// `ObserversReady` reason while vantages disagree (held quietly).
const DISAGREE: &str = "VantagesDisagree";

/// Longest wait before looking again without an event.
const MAX_REQUEUE: i64 = 60;

pub struct Inputs<'a> {
    pub spec: &'a VerticeFailoverSpec,
    pub generation: Option<i64>,
    pub observations: &'a [VantageObservation],
    /// When this controller heard from each vantage, by its own clock.
    pub sighting: &'a Sighting,
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
    /// The monotonic clock read with `now`: the tracker's instants
    /// (`sighting`) are compared with it, never with the wall clock.
    pub instant: std::time::Instant,
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
        sighting,
        previous,
        route,
        switchover_to,
        refused,
        now,
        instant,
    } = input;
    let clock = votes::Clock { now, instant };
    let votes = votes::tally(spec, observations, sighting, &previous.health, clock);
    let status = OwnedStatus {
        health: votes.health.clone(),
        switches: previous.switches.clone(),
        last_switch_time: previous.last_switch_time,
        last_switch_reason: previous.last_switch_reason.clone(),
        transition: previous.transition.clone(),
        conditions: previous.conditions.clone(),
        observed_generation: generation,
        ..OwnedStatus::default()
    };
    let mut d = Decision {
        spec,
        previous,
        generation,
        now,
        votes,
        status,
        out: Outcome::new(now),
    };
    if let Some(at) = d.votes.next_change_at {
        d.out.wake_at(at);
    }
    // Without a list of vantages, those that reported so far are not yet
    // all there will be: a new failover (or a controller that just started)
    // gives them one staleness period before judging the quorum.
    let in_grace = instant <= sighting.since + votes::monotonic(votes::stale_after(spec));
    quorum_resilience(
        &mut d.status,
        &mut d.out,
        previous,
        spec,
        observations,
        generation,
        in_grace,
    );
    let verdict = d.decide(refused, route, switchover_to);
    d.out.finish(
        d.status,
        previous,
        verdict.phase,
        &verdict.message,
        verdict.pinned,
    )
}

/// What a rule decided: the phase, the message of the `Ready` condition,
/// and whether the flap limit pins the failover (`None`: leave `Pinned` as
/// it was).
struct Verdict {
    phase: FailoverPhase,
    message: String,
    pinned: Option<bool>,
}

impl Verdict {
    fn new(phase: FailoverPhase, message: impl Into<String>, pinned: Option<bool>) -> Self {
        Verdict {
            phase,
            message: message.into(),
            pinned,
        }
    }
}

/// Where healthy traffic should go: the replicas asked for by a switchover
/// (when healthy) or the best healthy ones, as even weights.
struct Aim<'a> {
    requested: Option<&'a str>,
    preferred: Vec<&'a str>,
    target: Vec<ReplicaWeight>,
}

/// The flap limit and the minimum interval between switches, as of now.
struct Limits {
    /// Switches within the flap window.
    recent: usize,
    pinned_until: Option<DateTime<Utc>>,
    interval_until: Option<DateTime<Utc>>,
}

/// One decision in the making: the inputs every rule reads, the status and
/// the side results they build.
struct Decision<'a> {
    spec: &'a VerticeFailoverSpec,
    previous: &'a OwnedStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
    votes: votes::Votes,
    status: OwnedStatus,
    out: Outcome,
}

impl<'a> Decision<'a> {
    /// The rules in their order of precedence (the module's comment): the
    /// first that decides ends the decision.
    fn decide(
        &mut self,
        refused: Option<&Refusal>,
        route: Result<Vec<ReplicaWeight>, String>,
        switchover_to: Option<&'a str>,
    ) -> Verdict {
        if let Some(refusal) = refused {
            return self.refused(refusal);
        }
        let current = match route {
            Ok(current) => current,
            Err(why) => return self.route_mismatch(why),
        };
        self.status.active_replica = weights::leading(&current).map(String::from);
        self.status.weights = current.clone();
        if let Some(held) = self.hold_for_observers() {
            return held;
        }
        let healthy: Vec<&'a FailoverReplica> = self
            .spec
            .replicas
            .iter()
            .filter(|r| self.health_of(&r.name) == Health::Healthy)
            .collect();
        if healthy.is_empty() {
            return self.no_healthy_replica();
        }
        let aim = self.aim(&healthy, switchover_to);
        let limits = self.limits();
        if let Some(verdict) = self.fail_over(&current, &aim, &limits) {
            return verdict;
        }
        if let Some(verdict) = self.continue_transition(&current, &aim) {
            return verdict;
        }
        if current == aim.target {
            let phase = self.settled_phase(&current);
            let message = format!("traffic on {}", weights::show(&current));
            return Verdict::new(phase, message, Some(false));
        }
        self.move_healthy_traffic(current, &aim, &limits)
    }

    /// Rule 0: Refused by the tenancy rules: the route was not read.
    fn refused(&mut self, refusal: &Refusal) -> Verdict {
        // Weights read from another namespace are not kept on show once
        // that namespace is refused; our own route's stay as last seen.
        if !matches!(refusal, Refusal::CrossNamespace { .. }) {
            self.keep_route_as_shown();
        }
        Verdict::new(refusal.phase(), refusal.to_string(), None)
    }

    /// Rule 1: The route does not match the replicas: touch nothing.
    fn route_mismatch(&mut self, why: String) -> Verdict {
        self.keep_route_as_shown();
        Verdict::new(FailoverPhase::RouteMismatch, why, None)
    }

    fn keep_route_as_shown(&mut self) {
        self.status.weights = self.previous.weights.clone();
        self.status.active_replica = self.previous.active_replica.clone();
    }

    /// Rule 2: Blind observers hold the routing with an alarm; vantages not yet
    /// heard, or disagreeing for less than a staleness period, hold it
    /// quietly. Sets `ObserversReady` either way.
    fn hold_for_observers(&mut self) -> Option<Verdict> {
        let (blind, quiet) = observers(
            &self.votes,
            self.previous,
            self.spec,
            self.now,
            &mut self.out,
        );
        let observers_ok = blind.is_none() && quiet.is_none();
        let observers_reason = if observers_ok {
            "QuorumHeard"
        } else if blind.is_some() {
            "ObserversStale"
        } else if self.votes.disagree.is_some() {
            DISAGREE
        } else {
            "WaitingForVantages"
        };
        let message = blind
            .as_deref()
            .or(quiet.as_deref())
            .unwrap_or(&self.votes.summary);
        set(
            &mut self.status,
            self.now,
            self.generation,
            OBSERVERS_READY,
            observers_ok,
            observers_reason,
            message,
        );
        if observers_reason == DISAGREE && !was_disagreeing(self.previous) {
            restamp_disagreement(&mut self.status, self.now);
        }
        if let Some(why) = &blind {
            let message = format!("holding the routing: {why}");
            return Some(Verdict::new(FailoverPhase::ObserversStale, message, None));
        }
        let why = quiet?;
        // Runners get one staleness period to be heard (a new failover, a
        // controller that just started or took over), and vantages one to
        // agree: hold without an alarm, in the phase we were in.
        let phase = match self.previous.phase {
            Some(
                p @ (FailoverPhase::Healthy
                | FailoverPhase::FailedOver
                | FailoverPhase::FailingBack
                | FailoverPhase::SwitchingOver
                | FailoverPhase::Pinned
                | FailoverPhase::ObserversStale
                | FailoverPhase::NoHealthyReplica),
            ) => p,
            _ => FailoverPhase::Observing,
        };
        let message = format!("holding the routing: {why}");
        Some(Verdict::new(phase, message, None))
    }

    /// Rule 3: Nothing known yet, or no healthy replica: hold.
    fn no_healthy_replica(&self) -> Verdict {
        let phase = if self
            .spec
            .replicas
            .iter()
            .all(|r| self.health_of(&r.name) == Health::Unknown)
        {
            FailoverPhase::Observing
        } else {
            FailoverPhase::NoHealthyReplica
        };
        Verdict::new(phase, "no replica is healthy; holding the routing", None)
    }

    /// Rule 4: Traffic on an unhealthy replica: fail over at once, whole weights.
    fn fail_over(
        &mut self,
        current: &[ReplicaWeight],
        aim: &Aim<'_>,
        limits: &Limits,
    ) -> Option<Verdict> {
        let active_unhealthy: Vec<&str> = weights::active(current)
            .into_iter()
            .filter(|a| self.health_of(a) == Health::Unhealthy)
            .collect();
        if active_unhealthy.is_empty() {
            return None;
        }
        let target = &aim.target;
        self.status.transition = None;
        let mut message = format!(
            "{} down ({}); traffic to {}",
            active_unhealthy.join(", "),
            votes_text(&self.status, &active_unhealthy),
            weights::show(target)
        );
        // Neither the flap limit nor minSwitchInterval applies: traffic
        // leaves a replica reported down for a healthy one at once (a
        // GitOps revert of the weights to a dead primary is undone). They
        // still hold every failback and switchover.
        if limits.pinned_until.is_some() || limits.interval_until.is_some() {
            message.push_str(
                " (the flap limit and minSwitchIntervalSeconds hold failbacks and switchovers, \
                 never traffic on a replica reported down)",
            );
        }
        self.out
            .before
            .push(Event::warning("FailoverStarted", message.as_str()));
        self.out.after.push(Event::warning(
            "FailedOver",
            format!("traffic moved: {}", weights::show(target)),
        ));
        record_switch(
            &mut self.status,
            self.now,
            REASON_FAILOVER,
            current,
            target,
            &message,
        );
        let phase = self.settled_phase(target);
        self.status.weights = target.clone();
        self.status.active_replica = weights::leading(target).map(String::from);
        self.out.set_patch(target.clone(), Some(REASON_FAILOVER));
        // A full flap window stays shown as it was (Pinned, if it was).
        let pinned = limits.pinned_until.is_none().then_some(false);
        Some(Verdict::new(phase, message, pinned))
    }

    /// Rule 5: A failback or switchover in progress: stop it when its target
    /// turned unhealthy or the switchover was withdrawn, else take the next
    /// step when due.
    fn continue_transition(&mut self, current: &[ReplicaWeight], aim: &Aim<'_>) -> Option<Verdict> {
        let t = self.status.transition.clone()?;
        let cancelled = t.reason == REASON_SWITCHOVER
            && aim
                .requested
                .is_none_or(|r| weights::leading(&t.to) != Some(r));
        let target_down = weights::active(&t.to)
            .iter()
            .any(|r| self.health_of(r) != Health::Healthy);
        if cancelled || target_down {
            self.status.transition = None;
            // Decide afresh from the weights as they are, on the next pass.
            self.out.wake_at(self.now + Duration::seconds(1));
            let message = format!(
                "{} to {} stopped at {}",
                t.reason.to_lowercase(),
                weights::show(&t.to),
                weights::show(current)
            );
            self.out
                .after
                .push(Event::normal("TransitionStopped", message.as_str()));
            let phase = self.settled_phase(current);
            return Some(Verdict::new(phase, message, Some(false)));
        }
        if self.now < t.next_step_at {
            self.out.wake_at(t.next_step_at);
            let message = format!(
                "step {} of {} done: {}",
                t.step,
                t.steps,
                weights::show(current)
            );
            return Some(Verdict::new(transition_phase(&t), message, Some(false)));
        }
        Some(self.take_step(t))
    }

    /// Rule 6: Healthy traffic, but not where it should be: a switchover starts
    /// at once; a failback only when enabled, after `failbackAfter` of
    /// continuous health, outside the flap limit and the minimum interval.
    fn move_healthy_traffic(
        &mut self,
        current: Vec<ReplicaWeight>,
        aim: &Aim<'_>,
        limits: &Limits,
    ) -> Verdict {
        let policy = &self.spec.policy;
        let (reason, steps) = if aim.requested.is_some() {
            (REASON_SWITCHOVER, policy.switchover_steps)
        } else {
            (REASON_FAILBACK, policy.failback_steps)
        };
        if reason == REASON_FAILBACK {
            if let Some(held) = self.hold_failback(&current, aim, limits) {
                return held;
            }
        }
        let message = format!(
            "{} from {} to {}",
            reason.to_lowercase(),
            weights::show(&current),
            weights::show(&aim.target)
        );
        record_switch(
            &mut self.status,
            self.now,
            reason,
            &current,
            &aim.target,
            &message,
        );
        let t = Transition {
            reason: reason.to_string(),
            from: current,
            to: aim.target.clone(),
            step: 0,
            steps,
            next_step_at: self.now,
        };
        self.out.switch = Some(reason);
        self.take_step(t)
    }

    /// Why a failback waits, if it does: automatic failback off, the
    /// replicas gaining traffic not healthy for `failbackAfter` yet, the
    /// flap limit, or the minimum interval.
    fn hold_failback(
        &mut self,
        current: &[ReplicaWeight],
        aim: &Aim<'_>,
        limits: &Limits,
    ) -> Option<Verdict> {
        let policy = &self.spec.policy;
        let phase = self.settled_phase(current);
        if !policy.auto_failback {
            let message = format!(
                "better replicas {} are healthy; automatic failback is off",
                aim.preferred.join(", ")
            );
            return Some(Verdict::new(phase, message, Some(false)));
        }
        let hold = Duration::seconds(i64::from(policy.failback_after_seconds));
        let ready_at = aim
            .target
            .iter()
            .zip(current)
            .filter(|(t, c)| t.weight > c.weight)
            .filter_map(|(g, _)| self.status.health.iter().find(|h| h.name == g.replica))
            .map(|h| h.since + hold)
            .max();
        if let Some(at) = ready_at.filter(|at| *at > self.now) {
            self.out.wake_at(at);
            let message = format!(
                "{} healthy again; failback after {at}",
                aim.preferred.join(", ")
            );
            return Some(Verdict::new(phase, message, Some(false)));
        }
        if let Some(until) = limits.pinned_until {
            self.out.wake_at(until);
            let message = format!(
                "{} switches within {}s: failback pinned until {until}",
                limits.recent, policy.flap_window_seconds
            );
            return Some(Verdict::new(FailoverPhase::Pinned, message, Some(true)));
        }
        if let Some(until) = limits.interval_until {
            self.out.wake_at(until);
            let message = format!("failback waits for minSwitchInterval until {until}");
            return Some(Verdict::new(phase, message, Some(false)));
        }
        None
    }

    /// The next step of `t`: patch its weights, finish or schedule the next.
    fn take_step(&mut self, mut t: Transition) -> Verdict {
        t.step += 1;
        let next = weights::step(&t.from, &t.to, t.step, t.steps);
        self.status.weights = next.clone();
        self.status.active_replica = weights::leading(&next).map(String::from);
        let switchover = t.reason == REASON_SWITCHOVER;
        let (phase, message) = if t.step >= t.steps {
            self.status.transition = None;
            let reason = if switchover {
                "SwitchedOver"
            } else {
                "FailedBack"
            };
            let message = format!("traffic on {}", weights::show(&next));
            self.out.after.push(Event::normal(reason, message.as_str()));
            (self.settled_phase(&next), message)
        } else {
            let message = format!("step {} of {}: {}", t.step, t.steps, weights::show(&next));
            let reason = if switchover {
                "SwitchoverStep"
            } else {
                "FailbackStep"
            };
            self.out.after.push(Event::normal(reason, message.as_str()));
            let step_interval = i64::from(self.spec.policy.step_interval_seconds);
            t.next_step_at = self.now + Duration::seconds(step_interval);
            self.out.wake_at(t.next_step_at);
            let phase = transition_phase(&t);
            self.status.transition = Some(t);
            (phase, message)
        };
        let switch = self.out.switch;
        self.out.set_patch(next, switch);
        Verdict::new(phase, message, Some(false))
    }

    fn health_of(&self, name: &str) -> Health {
        self.status
            .health
            .iter()
            .find(|h| h.name == name)
            .map_or(Health::Unknown, |h| h.health)
    }

    /// Where healthy traffic should go.
    fn aim(&self, healthy: &[&'a FailoverReplica], switchover_to: Option<&'a str>) -> Aim<'a> {
        let order: Vec<&str> = self.spec.replicas.iter().map(|r| r.name.as_str()).collect();
        let requested = switchover_to.filter(|r| healthy.iter().any(|h| h.name == *r));
        let preferred: Vec<&'a str> = match requested {
            Some(r) => vec![r],
            None => best(healthy),
        };
        let target = weights::even(&order, &preferred);
        Aim {
            requested,
            preferred,
            target,
        }
    }

    /// The flap limit and the minimum interval between switches.
    fn limits(&self) -> Limits {
        let policy = &self.spec.policy;
        let now = self.now;
        let window = Duration::seconds(i64::from(policy.flap_window_seconds));
        let recent: Vec<&SwitchRecord> = self
            .status
            .switches
            .iter()
            .filter(|s| now - s.time < window)
            .collect();
        let pinned_until = (recent.len() >= policy.max_switches as usize)
            .then(|| recent.first().map(|s| s.time + window))
            .flatten();
        let min_interval = Duration::seconds(i64::from(policy.min_switch_interval_seconds));
        let interval_until = self
            .status
            .last_switch_time
            .map(|t| t + min_interval)
            .filter(|t| *t > now);
        Limits {
            recent: recent.len(),
            pinned_until,
            interval_until,
        }
    }

    /// FailedOver while the traffic is on replicas below the top priority,
    /// else Healthy.
    fn settled_phase(&self, weights: &[ReplicaWeight]) -> FailoverPhase {
        let replicas = &self.spec.replicas;
        let top = replicas.iter().map(|r| r.priority).max().unwrap_or(0);
        let active_top = weights::active(weights)
            .iter()
            .filter_map(|a| replicas.iter().find(|r| r.name == *a))
            .map(|r| r.priority)
            .max();
        if active_top.is_some_and(|p| p < top) {
            FailoverPhase::FailedOver
        } else {
            FailoverPhase::Healthy
        }
    }
}

/// The phase while `t` is under way.
fn transition_phase(t: &Transition) -> FailoverPhase {
    if t.reason == REASON_SWITCHOVER {
        FailoverPhase::SwitchingOver
    } else {
        FailoverPhase::FailingBack
    }
}

/// Condition `QuorumResilient`, and a Warning when it turns false: a
/// failover whose vantages and quorum cannot survive the loss of one
/// vantage (two regions, two runners) holds traffic on a dead region's
/// replica; one whose quorum is below a majority lets a partitioned
/// minority act. Said once, and kept on show until the spec is fixed.
///
/// When `policy.vantages` is not listed the vantages are those that
/// reported, and the first runner of a new failover reports alone: a
/// weakness is then judged only once the grace is over (`in_grace` false;
/// the runners' writes wake the controller), the condition meanwhile left
/// as it was.
fn quorum_resilience(
    status: &mut OwnedStatus,
    out: &mut Outcome,
    previous: &OwnedStatus,
    spec: &VerticeFailoverSpec,
    observations: &[VantageObservation],
    generation: Option<i64>,
    in_grace: bool,
) {
    let Ok(quorum) = votes::Quorum::of(spec, observations) else {
        // The blind message names spec.policy.quorum.
        return;
    };
    if quorum.vantages.is_empty() {
        return;
    }
    if !quorum.listed && in_grace && quorum.weakness().is_some() {
        return;
    }
    let (ok, reason, message) = match quorum.weakness() {
        None => (
            true,
            "MajoritySurvives",
            format!(
                "the loss of any one of the {} vantages leaves a majority that can act",
                quorum.vantages.len()
            ),
        ),
        Some((reason, message)) => (false, reason, message),
    };
    let was = vertice_crds::common::find_condition(&previous.conditions, QUORUM_RESILIENT);
    let newly_weak = !ok && was.is_none_or(|c| c.reason != reason);
    if newly_weak {
        out.after
            .push(Event::warning("QuorumNotResilient", message.as_str()));
    }
    set(
        status,
        out.now,
        generation,
        QUORUM_RESILIENT,
        ok,
        reason,
        &message,
    );
}

/// Whether `ObserversReady` already said the vantages disagree (quietly, or
/// for too long).
fn was_disagreeing(previous: &OwnedStatus) -> bool {
    vertice_crds::common::find_condition(&previous.conditions, OBSERVERS_READY).is_some_and(|c| {
        c.status == ConditionStatus::False && (c.reason == DISAGREE || c.reason == "ObserversStale")
    })
}

/// A disagreement that starts while `ObserversReady` is already False for
/// another reason (`WaitingForVantages` after a restart) starts its own
/// clock: `set_condition` keeps `lastTransitionTime` while the status stays
/// False (the Kubernetes convention, kept for every other condition and
/// reason), which would date the disagreement from the wait and cut its
/// quiet hold short. So this one change of reason into `VantagesDisagree`
/// takes a fresh `lastTransitionTime`.
fn restamp_disagreement(status: &mut OwnedStatus, now: DateTime<Utc>) {
    if let Some(c) = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == OBSERVERS_READY)
    {
        c.last_transition_time = now;
    }
}

/// Whether the observers are blind, or held quietly (waiting for runners to
/// be heard, or disagreeing for less than a staleness period): (blind,
/// quiet). A disagreement's start is the `ObserversReady` condition's
/// `lastTransitionTime`, taken afresh when its reason turns to
/// `VantagesDisagree` (see [`restamp_disagreement`]).
fn observers(
    votes: &votes::Votes,
    previous: &OwnedStatus,
    spec: &VerticeFailoverSpec,
    now: DateTime<Utc>,
    out: &mut Outcome,
) -> (Option<String>, Option<String>) {
    if let Some(why) = &votes.blind {
        return (Some(why.clone()), None);
    }
    if let Some(why) = &votes.waiting {
        return (None, Some(why.clone()));
    }
    let Some(why) = &votes.disagree else {
        return (None, None);
    };
    let limit = votes::stale_after(spec);
    let since = vertice_crds::common::find_condition(&previous.conditions, OBSERVERS_READY)
        .filter(|_| was_disagreeing(previous))
        .map_or(now, |c| c.last_transition_time);
    if now - since > limit {
        let why = format!(
            "{why}; the vantages have disagreed for more than {}s",
            limit.num_seconds()
        );
        return (Some(why), None);
    }
    out.wake_at(since + limit + Duration::seconds(1));
    let why = format!(
        "{why}; vantages that fail every replica while another sees one up are set aside, \
         held for up to {}s while they may be seeing the same outage a moment apart",
        limit.num_seconds()
    );
    (None, Some(why))
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
    let condition = Condition::new(type_, ok, reason, message, now);
    set_observed(&mut status.conditions, generation, condition);
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

    fn set_patch(&mut self, weights: Vec<ReplicaWeight>, switch: Option<&'static str>) {
        self.patch = Some(weights);
        self.switch = switch;
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
            self.after.push(Event::new(warn, reason, message));
        }
        phase_conditions(&mut status, now, phase, message, pinned);
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

/// The conditions a phase shows: `Ready`, `RouteResolved`, and `Pinned`
/// when `pinned` says (the flap limit's message when it pins).
fn phase_conditions(
    status: &mut OwnedStatus,
    now: DateTime<Utc>,
    phase: FailoverPhase,
    message: &str,
    pinned: Option<bool>,
) {
    let generation = status.observed_generation;
    let ready = matches!(
        phase,
        FailoverPhase::Healthy
            | FailoverPhase::FailedOver
            | FailoverPhase::FailingBack
            | FailoverPhase::SwitchingOver
    );
    set(
        status,
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
            status,
            now,
            generation,
            "RouteResolved",
            false,
            phase.as_str(),
            message,
        );
    } else {
        set(
            status,
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
        set(status, now, generation, "Pinned", pinned, reason, text);
    }
}
