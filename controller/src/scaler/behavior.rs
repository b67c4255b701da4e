//! Stabilization windows and rate policies, as the HPA's
//! `normalizeDesiredReplicasWithBehaviors`: the raw recommendation is
//! remembered; the result is the current count moved no further than the
//! most conservative recommendation inside each direction's window, then no
//! faster than the policies allow, then into the bounds.

use chrono::{DateTime, Duration, Utc};
use vertice_crds::scaler::{
    PolicyType, ScaleEvent, ScaleReason, ScalingBehavior, ScalingPolicy, ScalingRules,
    TimedRecommendation,
};

/// At most this many recommendations are kept in status: one per distinct
/// value inside the window, so this bounds the status without changing any
/// answer until the window holds more distinct values than this.
pub const MAX_RECOMMENDATIONS: usize = 64;
/// At most this many scale events per direction; older ones are merged into
/// the next, which only ever makes the rate limit stricter.
pub const MAX_SCALE_EVENTS: usize = 64;

pub use vertice_crds::scaler::SelectPolicy as Select;

#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub window: Duration,
    pub policies: Vec<(bool, i32, Duration)>,
    pub select: Select,
    pub tolerance: f64,
}

/// Both directions with the HPA's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

pub const DEFAULT_TOLERANCE: f64 = 0.1;

fn rules(
    given: Option<&ScalingRules>,
    window: i32,
    default_policies: &[(bool, i32, i64)],
) -> Rules {
    let given = given.cloned().unwrap_or_default();
    let policies = if given.policies.is_empty() {
        default_policies
            .iter()
            .map(|(pods, v, p)| (*pods, *v, Duration::seconds(*p)))
            .collect()
    } else {
        given
            .policies
            .iter()
            .map(
                |ScalingPolicy {
                     type_,
                     value,
                     period_seconds,
                 }| {
                    (
                        *type_ == PolicyType::Pods,
                        *value,
                        Duration::seconds(i64::from(*period_seconds)),
                    )
                },
            )
            .collect()
    };
    Rules {
        window: Duration::seconds(i64::from(
            given.stabilization_window_seconds.unwrap_or(window),
        )),
        policies,
        select: given.select_policy.unwrap_or(Select::Max),
        tolerance: given.tolerance.unwrap_or(DEFAULT_TOLERANCE),
    }
}

impl Behavior {
    /// The HPA's documented defaults: up 0 s window, max(4 pods, 100 %) per
    /// 15 s; down 300 s window, 100 % per 15 s.
    pub fn from_spec(spec: Option<&ScalingBehavior>) -> Self {
        let spec = spec.cloned().unwrap_or_default();
        Behavior {
            up: rules(
                spec.scale_up.as_ref(),
                0,
                &[(true, 4, 15), (false, 100, 15)],
            ),
            down: rules(spec.scale_down.as_ref(), 300, &[(false, 100, 15)]),
        }
    }

    fn longest_period(&self) -> Duration {
        self.up
            .policies
            .iter()
            .chain(&self.down.policies)
            .map(|p| p.2)
            .max()
            .unwrap_or_else(Duration::zero)
    }
}

/// Stabilization's answer and how it got there.
#[derive(Debug, Clone, PartialEq)]
pub struct Stabilized {
    pub replicas: i32,
    /// `ScaleUpStabilized`, `ScaleDownStabilized` or `ReadyForNewScale`.
    pub reason: ScaleReason,
    /// The history with `recommendation` recorded, pruned and bounded.
    pub recommendations: Vec<TimedRecommendation>,
}

/// upstream `stabilizeRecommendationWithBehaviors`, on the history kept in
/// status. A first decision starts from the current count, as upstream's
/// `maybeInitScaleDownStabilizationWindow` does, so a fresh scaler does not
/// scale down at once.
pub fn stabilize(
    behavior: &Behavior,
    history: &[TimedRecommendation],
    current: i32,
    recommendation: i32,
    now: DateTime<Utc>,
) -> Stabilized {
    let mut history = history.to_vec();
    if history.is_empty() {
        history.push(TimedRecommendation {
            time: now,
            replicas: current,
        });
    }
    let up_cutoff = now - behavior.up.window;
    let down_cutoff = now - behavior.down.window;
    let (mut up, mut down) = (recommendation, recommendation);
    for r in &history {
        if r.time > up_cutoff {
            up = up.min(r.replicas);
        }
        if r.time > down_cutoff {
            down = down.max(r.replicas);
        }
    }
    let replicas = current.max(up).min(down);
    let reason = if replicas == recommendation {
        ScaleReason::ReadyForNewScale
    } else if recommendation >= current {
        ScaleReason::ScaleUpStabilized
    } else {
        ScaleReason::ScaleDownStabilized
    };
    // Keep what either window can still see; per value only its latest time
    // matters to a min or max over a window, so one entry per value is exact.
    let oldest_cutoff = up_cutoff.min(down_cutoff);
    history.retain(|r| r.time > oldest_cutoff && r.replicas != recommendation);
    history.push(TimedRecommendation {
        time: now,
        replicas: recommendation,
    });
    history.sort_by_key(|r| r.time);
    if history.len() > MAX_RECOMMENDATIONS {
        let drop = history.len() - MAX_RECOMMENDATIONS;
        history.drain(..drop);
    }
    Stabilized {
        replicas,
        reason,
        recommendations: history,
    }
}

/// upstream `getReplicasChangePerPeriod`, for one direction's events.
fn change_in_period(events: &[ScaleEvent], period: Duration, now: DateTime<Utc>, up: bool) -> i32 {
    let cutoff = now - period;
    events
        .iter()
        .filter(|e| e.time > cutoff && (e.change > 0) == up && e.change != 0)
        .map(|e| e.change.abs())
        .sum()
}

/// upstream `calculateScaleUpLimitWithScalingRules`.
pub fn scale_up_limit(
    current: i32,
    events: &[ScaleEvent],
    rules: &Rules,
    now: DateTime<Utc>,
) -> i32 {
    let mut result = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::MAX,
        Select::Max => i32::MIN,
    };
    for (pods, value, period) in &rules.policies {
        let added = change_in_period(events, *period, now, true);
        let deleted = change_in_period(events, *period, now, false);
        let start = current - added + deleted;
        let proposed = if *pods {
            start.saturating_add(*value)
        } else {
            // Rounded up: a percentage that adds less than one pod must
            // still add one, or a small target could never grow.
            (f64::from(start) * (1.0 + f64::from(*value) / 100.0)).ceil() as i32
        };
        result = match rules.select {
            Select::Min => result.min(proposed),
            _ => result.max(proposed),
        };
    }
    result
}

/// upstream `calculateScaleDownLimitWithBehaviors`.
pub fn scale_down_limit(
    current: i32,
    events: &[ScaleEvent],
    rules: &Rules,
    now: DateTime<Utc>,
) -> i32 {
    let mut result = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::MIN,
        Select::Max => i32::MAX,
    };
    for (pods, value, period) in &rules.policies {
        let added = change_in_period(events, *period, now, true);
        let deleted = change_in_period(events, *period, now, false);
        let start = current - added + deleted;
        let proposed = if *pods {
            start.saturating_sub(*value)
        } else {
            // Truncated, as upstream's int32() conversion.
            (f64::from(start) * (1.0 - f64::from(*value) / 100.0)) as i32
        };
        result = match rules.select {
            Select::Min => result.max(proposed),
            _ => result.min(proposed),
        };
    }
    result
}

/// The rate-limited, bounded result and the reason for its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub replicas: i32,
    /// `ScaleUpLimit`, `TooManyReplicas`, `ScaleDownLimit`, `TooFewReplicas`
    /// or `DesiredWithinRange`.
    pub reason: ScaleReason,
}

/// upstream `convertDesiredReplicasWithBehaviorRate`.
pub fn limit_rate(
    behavior: &Behavior,
    events: &[ScaleEvent],
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: DateTime<Utc>,
) -> Limited {
    if desired > current {
        let limit = scale_up_limit(current, events, &behavior.up, now).max(current);
        let (allowed, reason) = if max > limit {
            (limit, ScaleReason::ScaleUpLimit)
        } else {
            (max, ScaleReason::TooManyReplicas)
        };
        if desired > allowed {
            return Limited {
                replicas: allowed,
                reason,
            };
        }
    } else if desired < current {
        let limit = scale_down_limit(current, events, &behavior.down, now).min(current);
        let (allowed, reason) = if min < limit {
            (limit, ScaleReason::ScaleDownLimit)
        } else {
            (min, ScaleReason::TooFewReplicas)
        };
        if desired < allowed {
            return Limited {
                replicas: allowed,
                reason,
            };
        }
    }
    Limited {
        replicas: desired,
        reason: ScaleReason::DesiredWithinRange,
    }
}

/// Records a scale change, dropping events no policy period can see and
/// merging the oldest when there are too many.
pub fn record_scale(
    behavior: &Behavior,
    events: &[ScaleEvent],
    from: i32,
    to: i32,
    now: DateTime<Utc>,
) -> Vec<ScaleEvent> {
    let cutoff = now - behavior.longest_period();
    let mut events: Vec<ScaleEvent> = events.iter().filter(|e| e.time > cutoff).cloned().collect();
    if to != from {
        events.push(ScaleEvent {
            time: now,
            change: to - from,
        });
    }
    for up in [true, false] {
        while events.iter().filter(|e| (e.change > 0) == up).count() > MAX_SCALE_EVENTS {
            let mut same = events
                .iter()
                .enumerate()
                .filter(|(_, e)| (e.change > 0) == up)
                .map(|(i, _)| i);
            let (Some(a), Some(b)) = (same.next(), same.next()) else {
                break;
            };
            // The older change is counted for as long as the newer one.
            events[b].change += events[a].change;
            events.remove(a);
        }
    }
    events
}
