//! `plan(spec, observed, history, now)`: one poll's decision, explained.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use vertice_crds::common::{set_condition, Condition};
use vertice_crds::scaler::{
    Decision, MetricDecision, ScalerMetric, VerticeScalerSpec, VerticeScalerStatus,
};

use super::algorithm::{self, Proposal, Timing, Tolerances};
use super::behavior::{self, Behavior};
use super::pods::{self, PodMetrics, PodView, Resource};
use super::quantity;
use super::windows::{self, Window};
use crate::context::Event;
use crate::schedule::parse_duration;

/// A sample older than this is stale unless the metric says otherwise.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::minutes(2);
const DEFAULT_CPU_INITIALIZATION: Duration = Duration::minutes(5);
const DEFAULT_READINESS_DELAY: Duration = Duration::seconds(30);

/// One Prometheus query's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PromResult {
    /// The sum of the result vector (or the scalar) and its sample time.
    Value {
        value: f64,
        time: DateTime<Utc>,
    },
    /// An empty vector: the series is gone, which is not a zero.
    Empty,
    Error(String),
    /// The administrator's rules forbid the query (a Secret not opted in):
    /// nothing was sent. `reason` is the condition and Event reason.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// Everything one poll observed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// The target's `/scale`: `spec.replicas` and `status.replicas`.
    pub spec_replicas: i32,
    pub status_replicas: i32,
    /// The pods of `status.selector`.
    pub pods: Vec<PodView>,
    /// PodMetrics of those pods, when a CPU or memory metric asked for them.
    pub pod_metrics: Option<Result<Vec<PodMetrics>, String>>,
    /// By metric name.
    pub prometheus: BTreeMap<String, PromResult>,
    pub rollout_in_progress: bool,
    /// The pause annotation is set.
    pub paused: bool,
}

/// What to do and what to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub desired: i32,
    /// Patch `/scale` to `desired`.
    pub scale: bool,
    pub status: VerticeScalerStatus,
    pub events: Vec<Event>,
    pub fallback_active: bool,
    /// The status to write instead when the scale patch fails.
    previous: VerticeScalerStatus,
}

impl Plan {
    /// The scale patch failed: nothing changed, so no scale event is
    /// recorded; the condition says why.
    pub fn scale_failed(&mut self, message: &str, now: DateTime<Utc>) {
        let mut status = self.status.clone();
        status.scale_events = self.previous.scale_events.clone();
        status.last_scale_time = self.previous.last_scale_time;
        if let Some(d) = status.last_decision.as_mut() {
            d.reason = "FailedUpdateScale".into();
            d.message = message.to_string();
        }
        set_condition(
            &mut status.conditions,
            Condition::new("AbleToScale", false, "FailedUpdateScale", message, now),
        );
        self.status = status;
        self.scale = false;
        self.events = vec![Event {
            warning: true,
            reason: "FailedUpdateScale",
            note: message.to_string(),
        }];
    }
}

/// A metric's outcome before policies.
enum Outcome {
    Ok(Proposal),
    Broken { state: &'static str, error: String },
}

struct Config {
    windows: Vec<Window>,
    timing: Timing,
    staleness: Vec<Duration>,
    behavior: Behavior,
}

fn config(
    spec: &VerticeScalerSpec,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Result<Config, String> {
    let windows = spec
        .schedules
        .iter()
        .enumerate()
        .map(|(i, w)| Window::parse(i, w))
        .collect::<Result<Vec<_>, _>>()?;
    let duration = |field: &str, value: &Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => parse_duration(text)
            .ok_or_else(|| format!("spec.{field} {text:?}: use a duration such as 30s or 5m")),
    };
    let timing = Timing {
        now,
        cpu_initialization_period: duration(
            "cpuInitializationPeriod",
            &spec.cpu_initialization_period,
            DEFAULT_CPU_INITIALIZATION,
        )?,
        initial_readiness_delay: duration(
            "initialReadinessDelay",
            &spec.initial_readiness_delay,
            DEFAULT_READINESS_DELAY,
        )?,
        readiness_for_all_resources: observed.rollout_in_progress,
    };
    let mut names = BTreeSet::new();
    let mut staleness = Vec::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        if !names.insert(m.display_name()) {
            return Err(format!(
                "spec.metrics[{i}].name {:?} is used twice: give each metric its own name",
                m.display_name()
            ));
        }
        staleness.push(duration(
            &format!("metrics[{i}].maxStaleness"),
            &m.max_staleness,
            DEFAULT_MAX_STALENESS,
        )?);
        if let Some(r) = m.cpu.as_ref().or(m.memory.as_ref()) {
            if let Some(v) = &r.target_average_value {
                quantity::milli(v)
                    .map_err(|e| format!("spec.metrics[{i}].targetAverageValue: {e}"))?;
            }
        }
    }
    if let Some(b) = &spec.behavior {
        for (direction, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
            match rules.as_ref().and_then(|r| r.tolerance) {
                // NaN compares false with everything: no ratio would ever be
                // within it, so every wobble would scale.
                Some(t) if t.is_nan() || t < 0.0 => {
                    return Err(format!(
                        "spec.behavior.{direction}.tolerance {t}: use a number of 0 or more, such as 0.1 (the default)"
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(Config {
        windows,
        timing,
        staleness,
        behavior: Behavior::from_spec(spec.behavior.as_ref()),
    })
}

fn milli_of(value: f64) -> i64 {
    (value * 1000.0)
        .round()
        .clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

fn newest_sample(samples: &BTreeMap<String, pods::PodSample>) -> Option<DateTime<Utc>> {
    samples.values().map(|s| s.timestamp).max()
}

/// One metric's proposal, or why it has none.
fn evaluate(
    metric: &ScalerMetric,
    observed: &Observed,
    tolerances: Tolerances,
    timing: &Timing,
    max_staleness: Duration,
) -> (Outcome, f64, &'static str) {
    let current = observed.spec_replicas;
    let broken = |state, error: String| Outcome::Broken { state, error };
    let stale_before = timing.now - max_staleness;
    let stale = |newest: Option<DateTime<Utc>>| {
        let age = newest
            .map(|t| (timing.now - t).num_seconds())
            .unwrap_or_default();
        broken(
            "Stale",
            format!(
                "the newest sample is {age}s old, more than maxStaleness ({}s)",
                max_staleness.num_seconds()
            ),
        )
    };
    let resource = match (&metric.cpu, &metric.memory) {
        (Some(r), _) => Some((Resource::Cpu, r)),
        (None, Some(r)) => Some((Resource::Memory, r)),
        _ => None,
    };
    let (outcome, target, target_type) = if let Some((resource, r)) = resource {
        let (target, target_type) = match (r.target_average_utilization, &r.target_average_value) {
            (Some(u), _) => (f64::from(u), "Utilization"),
            (None, Some(v)) => (
                quantity::milli(v).unwrap_or(0) as f64 / 1000.0,
                "AverageValue",
            ),
            (None, None) => (0.0, "Utilization"),
        };
        let outcome = match &observed.pod_metrics {
            None => broken("Error", "resource metrics were not fetched".into()),
            Some(Err(e)) => broken(
                "Error",
                format!("unable to get metrics for resource {}: {e}", resource.key()),
            ),
            Some(Ok(list)) => match pods::samples(list, resource, r.container.as_deref()) {
                Err(e) => broken("Error", e),
                Ok(samples) if newest_sample(&samples).is_some_and(|t| t < stale_before) => {
                    stale(newest_sample(&samples))
                }
                Ok(mut samples) => {
                    // Some samples are fresh: a pod whose own sample is older
                    // than maxStaleness counts as a pod without one (full on
                    // a scale-down, idle on a scale-up, left out on target),
                    // so one lagging pod neither holds the metric nor
                    // drives it.
                    samples.retain(|_, s| s.timestamp >= stale_before);
                    let result = match (r.target_average_utilization, &r.target_average_value) {
                        (Some(u), _) => algorithm::resource_utilization(
                            current,
                            u,
                            resource,
                            r.container.as_deref(),
                            &observed.pods,
                            &samples,
                            tolerances,
                            timing,
                        ),
                        (None, Some(v)) => algorithm::resource_average_value(
                            current,
                            quantity::milli(v).unwrap_or(0),
                            resource,
                            &observed.pods,
                            &samples,
                            tolerances,
                            timing,
                        ),
                        (None, None) => {
                            Err("set targetAverageUtilization or targetAverageValue".into())
                        }
                    };
                    match result {
                        Ok(p) => Outcome::Ok(p),
                        Err(e) if e.starts_with("did not receive metrics") => broken("NoData", e),
                        Err(e) => broken("Error", e),
                    }
                }
            },
        };
        (outcome, target, target_type)
    } else if let Some(p) = &metric.prometheus {
        let name = metric.display_name();
        let (target, target_type) = match (p.target_value, p.target_average_value) {
            (Some(v), _) => (v, "Value"),
            (None, Some(v)) => (v, "AverageValue"),
            (None, None) => (0.0, "Value"),
        };
        let outcome = match observed.prometheus.get(&name) {
            None => broken("Error", "the query was not run".into()),
            Some(PromResult::Error(e)) => broken("Error", e.clone()),
            Some(PromResult::Refused { message, .. }) => broken("Error", message.clone()),
            Some(PromResult::Empty) => broken(
                "NoData",
                "the query returned an empty result: the series it selects are gone".into(),
            ),
            Some(PromResult::Value { value, .. }) if !value.is_finite() => broken(
                "Error",
                format!("the query returned {value}, not a number to scale on"),
            ),
            Some(PromResult::Value { value, time }) => {
                let usage = milli_of(*value);
                let result = match (p.target_value, p.target_average_value) {
                    (Some(t), _) => algorithm::external_value(
                        current,
                        usage,
                        milli_of(t),
                        &observed.pods,
                        tolerances,
                    ),
                    (None, Some(t)) => algorithm::external_average_value(
                        observed.status_replicas,
                        usage,
                        milli_of(t),
                        tolerances,
                    ),
                    (None, None) => Err("set targetValue or targetAverageValue".into()),
                };
                match result {
                    Ok(mut proposal) => {
                        proposal.sample_time = Some(*time);
                        Outcome::Ok(proposal)
                    }
                    Err(e) => broken("Error", e),
                }
            }
        };
        (outcome, target, target_type)
    } else {
        (
            broken(
                "Error",
                "the metric sets none of cpu, memory, prometheus".into(),
            ),
            0.0,
            "Value",
        )
    };
    let outcome = match outcome {
        Outcome::Ok(p) if p.sample_time.is_some_and(|t| t < stale_before) => stale(p.sample_time),
        other => other,
    };
    (outcome, target, target_type)
}

/// What the failure policies leave of the proposals.
struct Proposals {
    /// The largest proposal and its metric.
    best: Option<(i32, String)>,
    /// A broken `HoldScaleDown` metric forbids going below the current count.
    hold: Vec<String>,
    fallback: bool,
    all_broken: bool,
}

fn policy_type(metric: &ScalerMetric) -> &str {
    metric
        .on_failure
        .as_ref()
        .map(|p| p.type_.as_str())
        .unwrap_or("HoldScaleDown")
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

/// A Warning Event per refusal the previous decision did not already show,
/// so a refusal is announced once, not every poll.
fn refusal_events(
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
        .map(|(reason, message)| Event {
            warning: true,
            reason,
            note: message.clone(),
        })
        .collect()
}

pub fn plan(
    spec: &VerticeScalerSpec,
    generation: Option<i64>,
    observed: &Observed,
    history: &VerticeScalerStatus,
    now: DateTime<Utc>,
) -> Plan {
    let current = observed.spec_replicas;
    let mut status = VerticeScalerStatus {
        current_replicas: Some(observed.status_replicas),
        desired_replicas: Some(current),
        last_scale_time: history.last_scale_time,
        observed_generation: generation,
        conditions: history.conditions.clone(),
        recommendations: history.recommendations.clone(),
        scale_events: history.scale_events.clone(),
        last_decision: None,
    };
    let mut decision = Decision {
        time: now,
        current_replicas: current,
        desired_replicas: current,
        direction: "None".into(),
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        rollout_in_progress: observed.rollout_in_progress,
        not_acted: spec.dry_run || observed.paused,
        ..Decision::default()
    };
    let previous_reason = history.last_decision.as_ref().map(|d| d.reason.clone());
    let mut events = Vec::new();
    let finish = |mut status: VerticeScalerStatus,
                  decision: Decision,
                  events: Vec<Event>,
                  scale: bool,
                  fallback: bool| {
        status.desired_replicas = Some(decision.desired_replicas);
        let desired = decision.desired_replicas;
        status.last_decision = Some(decision);
        Plan {
            desired,
            scale,
            status,
            events,
            fallback_active: fallback,
            previous: history.clone(),
        }
    };
    let cond =
        |status: &mut VerticeScalerStatus, type_: &str, ok: bool, reason: &str, message: &str| {
            let mut c = Condition::new(type_, ok, reason, message, now);
            c.observed_generation = generation;
            set_condition(&mut status.conditions, c);
        };

    let cfg = match config(spec, observed, now) {
        Ok(cfg) => cfg,
        Err(e) => {
            decision.reason = "InvalidSpec".into();
            decision.message = e.clone();
            cond(&mut status, "ScalingActive", false, "InvalidSpec", &e);
            if previous_reason.as_deref() != Some("InvalidSpec") {
                events.push(Event {
                    warning: true,
                    reason: "InvalidSpec",
                    note: e,
                });
            }
            return finish(status, decision, events, false, false);
        }
    };
    cond(
        &mut status,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the scaler read the target's scale",
    );
    let bounds = windows::bounds(spec.min_replicas, spec.max_replicas, &cfg.windows, now);
    decision.min_replicas = bounds.min;
    decision.max_replicas = bounds.max;
    decision.open_windows = bounds.open.clone();

    // Every metric is evaluated, also when a bound decides, so the status
    // always shows what the metrics say.
    let tolerances = Tolerances {
        up: cfg.behavior.up.tolerance,
        down: cfg.behavior.down.tolerance,
    };
    let mut proposals = Proposals {
        best: None,
        hold: Vec::new(),
        fallback: false,
        all_broken: true,
    };
    for (i, metric) in spec.metrics.iter().enumerate() {
        let name = metric.display_name();
        let (outcome, target, target_type) =
            evaluate(metric, observed, tolerances, &cfg.timing, cfg.staleness[i]);
        let mut md = MetricDecision {
            name: name.clone(),
            target,
            target_type: target_type.into(),
            ..Default::default()
        };
        let policy = policy_type(metric);
        let candidate = match outcome {
            Outcome::Ok(p) => {
                proposals.all_broken = false;
                md.state = "Ok".into();
                md.value = Some(p.value);
                md.ratio = Some((p.ratio * 1000.0).round() / 1000.0);
                md.proposal = Some(p.replicas);
                md.sample_time = p.sample_time;
                // A scale-up-only signal never votes for fewer replicas.
                (policy != "ScaleUpOnly" || p.replicas > current).then_some(p.replicas)
            }
            Outcome::Broken { state, error } => {
                md.state = state.into();
                md.error = Some(error);
                md.failure_policy = Some(policy.into());
                match policy {
                    "Fallback" => {
                        proposals.fallback = true;
                        metric.on_failure.as_ref().and_then(|p| p.replicas)
                    }
                    "ScaleUpOnly" => None,
                    _ => {
                        proposals.hold.push(name.clone());
                        None
                    }
                }
            }
        };
        if let Some(r) = candidate {
            if proposals.best.as_ref().is_none_or(|(b, _)| r > *b) {
                proposals.best = Some((r, name.clone()));
            }
        }
        decision.metrics.push(md);
    }
    let refusals = refusals(spec, observed);
    let broken: Vec<&MetricDecision> = decision
        .metrics
        .iter()
        .filter(|m| m.state != "Ok")
        .collect();
    if broken.is_empty() {
        cond(
            &mut status,
            "ScalingActive",
            true,
            "ValidMetricFound",
            "the scaler computes replicas from every metric",
        );
    } else {
        let summary = broken
            .iter()
            .map(|m| format!("{}: {}", m.name, m.error.as_deref().unwrap_or(&m.state)))
            .collect::<Vec<_>>()
            .join("; ");
        let reason = if proposals.all_broken {
            "FailedGetMetrics"
        } else {
            "SomeMetricsBroken"
        };
        match refusals.first() {
            // A refusal is the administrator's rule, not a passing fault:
            // the reason names it; scaling on that metric is off until the
            // spec or the Secret changes, and goes on from the others.
            Some((refused_reason, _)) => cond(
                &mut status,
                "ScalingActive",
                !proposals.all_broken,
                refused_reason,
                &summary,
            ),
            None => cond(
                &mut status,
                "ScalingActive",
                !proposals.all_broken,
                reason,
                &summary,
            ),
        }
    }

    let mut scale_reason: &str;
    let mut limited_by: Option<&str> = None;
    let desired;
    if current == 0 && spec.min_replicas != 0 {
        // upstream: a target scaled to zero by hand is not autoscaled.
        desired = 0;
        scale_reason = "ScalingDisabled";
        decision.message =
            "scaling is disabled since the replica count of the target is zero".into();
        cond(
            &mut status,
            "ScalingActive",
            false,
            "ScalingDisabled",
            &decision.message,
        );
    } else if current > bounds.max {
        desired = bounds.max;
        scale_reason = if bounds.lowered_cap {
            "ScheduleCap"
        } else {
            "TooManyReplicas"
        };
        limited_by = Some(scale_reason);
        decision.message = format!("current replicas above the maximum of {}", bounds.max);
    } else if current < bounds.min {
        desired = bounds.min;
        scale_reason = if bounds.raised_floor {
            "ScheduleFloor"
        } else {
            "TooFewReplicas"
        };
        limited_by = Some(scale_reason);
        decision.message = format!("current replicas below the minimum of {}", bounds.min);
    } else {
        let healthy_best = proposals.best.clone();
        let held =
            !proposals.hold.is_empty() && healthy_best.as_ref().is_none_or(|(b, _)| *b < current);
        let all_silent = healthy_best.is_none();
        if held || all_silent {
            // Never scale down on a broken metric: hold, and record nothing
            // in the stabilization history (upstream skips it on errors too).
            desired = current;
            if held {
                scale_reason = "MetricBroken";
                decision.message = format!(
                    "holding {current} replicas: {} broken, and the healthy metrics alone would scale down",
                    proposals.hold.join(", ")
                );
            } else {
                scale_reason = "NoProposal";
                decision.message = "no metric proposes a change".into();
            }
            decision.winner = None;
        } else {
            let (recommendation, winner) = healthy_best.unwrap_or((current, String::new()));
            decision.winner = Some(winner);
            decision.recommendation = Some(recommendation);
            let stabilized = behavior::stabilize(
                &cfg.behavior,
                &history.recommendations,
                current,
                recommendation,
                now,
            );
            status.recommendations = stabilized.recommendations.clone();
            decision.stabilized = Some(stabilized.replicas);
            cond(
                &mut status,
                "AbleToScale",
                true,
                stabilized.reason,
                match stabilized.reason {
                    "ScaleUpStabilized" => "recent recommendations were lower than current one, applying the lowest recent recommendation",
                    "ScaleDownStabilized" => "recent recommendations were higher than current one, applying the highest recent recommendation",
                    _ => "recommended size matches current size",
                },
            );
            let limited = behavior::limit_rate(
                &cfg.behavior,
                &history.scale_events,
                current,
                stabilized.replicas,
                bounds.min,
                bounds.max,
                now,
            );
            desired = limited.replicas;
            scale_reason = limited.reason;
            if limited.reason == "TooFewReplicas" && bounds.raised_floor && desired == bounds.min {
                scale_reason = "ScheduleFloor";
            }
            if limited.reason == "TooManyReplicas" && bounds.lowered_cap && desired == bounds.max {
                scale_reason = "ScheduleCap";
            }
            if desired != stabilized.replicas {
                limited_by = Some(scale_reason);
            } else if stabilized.replicas != recommendation {
                scale_reason = stabilized.reason;
            }
            decision.message = match scale_reason {
                "ScaleUpLimit" => {
                    "the desired replica count is increasing faster than the maximum scale rate"
                        .into()
                }
                "ScaleDownLimit" => {
                    "the desired replica count is decreasing faster than the maximum scale rate"
                        .into()
                }
                "TooManyReplicas" => {
                    "the desired replica count is more than the maximum replica count".into()
                }
                "TooFewReplicas" => {
                    "the desired replica count is less than the minimum replica count".into()
                }
                "ScheduleFloor" => {
                    format!("schedule window {} sets the floor", bounds.open.join(", "))
                }
                "ScheduleCap" => format!(
                    "schedule window {} sets the ceiling",
                    bounds.open.join(", ")
                ),
                "ScaleUpStabilized" | "ScaleDownStabilized" => format!(
                    "stabilized from {recommendation} to {}",
                    stabilized.replicas
                ),
                _ => "the desired count is within the acceptable range".into(),
            };
        }
    }
    match limited_by {
        Some(reason) => cond(
            &mut status,
            "ScalingLimited",
            true,
            reason,
            &decision.message,
        ),
        None => cond(
            &mut status,
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        ),
    }
    decision.limited_by = limited_by.map(Into::into);
    decision.desired_replicas = desired;
    decision.direction = match desired.cmp(&current) {
        std::cmp::Ordering::Greater => "ScaleUp",
        std::cmp::Ordering::Less => "ScaleDown",
        std::cmp::Ordering::Equal => "None",
    }
    .into();
    if scale_reason.is_empty() {
        scale_reason = "DesiredWithinRange";
    }
    decision.reason = scale_reason.into();

    let change = desired != current && scale_reason != "ScalingDisabled";
    let act = change && !decision.not_acted;
    if decision.not_acted {
        let (reason, why) = if observed.paused {
            (
                "Paused",
                format!(
                    "the {} annotation is set",
                    vertice_crds::scaler::PAUSED_ANNOTATION
                ),
            )
        } else {
            ("DryRun", "spec.dryRun is set".to_string())
        };
        cond(
            &mut status,
            "AbleToScale",
            false,
            reason,
            &format!("{why}: decisions are made and explained, not acted on"),
        );
    }
    if act {
        status.scale_events =
            behavior::record_scale(&cfg.behavior, &history.scale_events, current, desired, now);
        status.last_scale_time = Some(now);
        let (reason, word) = if desired > current {
            ("ScaledUp", "above")
        } else {
            ("ScaledDown", "below")
        };
        let why = match (&decision.winner, decision.limited_by.as_deref()) {
            (_, Some(limit)) => limit.to_string(),
            (Some(w), None) => format!("{w} {word} target"),
            (None, None) => scale_reason.to_string(),
        };
        events.push(Event {
            warning: false,
            reason,
            note: format!("New size: {desired}; reason: {why}"),
        });
    } else {
        status.scale_events =
            behavior::record_scale(&cfg.behavior, &history.scale_events, current, current, now);
    }
    if scale_reason == "MetricBroken" && previous_reason.as_deref() != Some("MetricBroken") {
        events.push(Event {
            warning: true,
            reason: "ScaleHeld",
            note: decision.message.clone(),
        });
    }
    events.extend(refusal_events(&refusals, history));
    let fallback_was = history.last_decision.as_ref().is_some_and(|d| {
        d.metrics
            .iter()
            .any(|m| m.state != "Ok" && m.failure_policy.as_deref() == Some("Fallback"))
    });
    if proposals.fallback && !fallback_was {
        events.push(Event {
            warning: true,
            reason: "FallbackActive",
            note: "a broken metric proposes its fallback replicas".into(),
        });
    }
    finish(status, decision, events, act, proposals.fallback)
}
