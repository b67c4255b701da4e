//! Stabilization windows and rate policies, as upstream computes them.

use chrono::Duration;
use vertice_crds::scaler::{
    PolicyType, ScaleEvent, ScalingBehavior, ScalingPolicy, ScalingRules, SelectPolicy,
    TimedRecommendation,
};

use super::support::t0;
use crate::scaler::behavior::*;

fn rec(seconds_ago: i64, replicas: i32) -> TimedRecommendation {
    TimedRecommendation {
        time: t0() - Duration::seconds(seconds_ago),
        replicas,
    }
}

fn event(seconds_ago: i64, change: i32) -> ScaleEvent {
    ScaleEvent {
        time: t0() - Duration::seconds(seconds_ago),
        change,
    }
}

fn rules(window: Option<i32>, policies: &[(&str, i32, i32)], select: Option<&str>) -> ScalingRules {
    ScalingRules {
        stabilization_window_seconds: window,
        policies: policies
            .iter()
            .map(|(t, v, p)| ScalingPolicy {
                type_: PolicyType::parse(t).expect("a policy type"),
                value: *v,
                period_seconds: *p,
            })
            .collect(),
        select_policy: select.map(|s| SelectPolicy::parse(s).expect("a select policy")),
        tolerance: None,
    }
}

fn with(up: Option<ScalingRules>, down: Option<ScalingRules>) -> Behavior {
    Behavior::from_spec(Some(&ScalingBehavior {
        scale_up: up,
        scale_down: down,
    }))
}

#[test]
fn defaults_are_the_hpa_documented_ones() {
    let b = Behavior::from_spec(None);
    assert_eq!(b.up.window, Duration::zero());
    assert_eq!(b.down.window, Duration::seconds(300));
    // Up: 4 pods or 100 % per 15 s, whichever is more.
    assert_eq!(scale_up_limit(1, &[], &b.up, t0()), 5);
    assert_eq!(scale_up_limit(10, &[], &b.up, t0()), 20);
    // Down: 100 % per 15 s.
    assert_eq!(scale_down_limit(10, &[], &b.down, t0()), 0);
    assert_eq!(b.up.tolerance, 0.1);
}

#[test]
fn scale_events_inside_the_period_use_up_the_allowance() {
    let b = Behavior::from_spec(None);
    // 10 → 20 five seconds ago: the period started at 10, so 20 is the limit.
    assert_eq!(scale_up_limit(20, &[event(5, 10)], &b.up, t0()), 20);
    // Sixteen seconds later the event is outside the 15 s period.
    assert_eq!(scale_up_limit(20, &[event(16, 10)], &b.up, t0()), 40);
    // A scale-down inside the period raises the base of a scale-up.
    assert_eq!(scale_up_limit(6, &[event(5, -4)], &b.up, t0()), 20);
    let limited = limit_rate(&b, &[event(5, 10)], 20, 50, 1, 100, t0());
    assert_eq!(
        (limited.replicas, limited.reason.as_str()),
        (20, "ScaleUpLimit")
    );
}

#[test]
fn select_policy_picks_the_largest_or_smallest_change() {
    let policies = [("Pods", 1, 60), ("Percent", 10, 60)];
    let max = with(None, Some(rules(Some(0), &policies, None)));
    let min = with(None, Some(rules(Some(0), &policies, Some("Min"))));
    let off = with(None, Some(rules(Some(0), &policies, Some("Disabled"))));
    assert_eq!(scale_down_limit(50, &[], &max.down, t0()), 45);
    assert_eq!(scale_down_limit(50, &[], &min.down, t0()), 49);
    assert_eq!(scale_down_limit(50, &[], &off.down, t0()), 50);
    let limited = limit_rate(&off, &[], 50, 10, 1, 100, t0());
    assert_eq!(
        (limited.replicas, limited.reason.as_str()),
        (50, "ScaleDownLimit")
    );
    let up_min = with(
        Some(rules(
            None,
            &[("Pods", 4, 60), ("Percent", 100, 60)],
            Some("Min"),
        )),
        None,
    );
    assert_eq!(scale_up_limit(10, &[], &up_min.up, t0()), 14);
}

#[test]
fn percent_rounds_up_on_the_way_up_and_truncates_on_the_way_down() {
    let b = with(
        Some(rules(None, &[("Percent", 50, 60)], None)),
        Some(rules(None, &[("Percent", 50, 60)], None)),
    );
    assert_eq!(scale_up_limit(3, &[], &b.up, t0()), 5); // ceil(4.5)
    assert_eq!(scale_down_limit(3, &[], &b.down, t0()), 1); // int(1.5)
    assert_eq!(scale_up_limit(1, &[], &b.up, t0()), 2); // ceil(1.5): never stuck
}

#[test]
fn bounds_win_over_rates_with_their_own_reason() {
    let b = Behavior::from_spec(None);
    let l = limit_rate(&b, &[], 4, 30, 1, 6, t0());
    assert_eq!((l.replicas, l.reason.as_str()), (6, "TooManyReplicas"));
    let l = limit_rate(&b, &[], 4, 0, 2, 6, t0());
    assert_eq!((l.replicas, l.reason.as_str()), (2, "TooFewReplicas"));
    let l = limit_rate(&b, &[], 4, 5, 2, 6, t0());
    assert_eq!((l.replicas, l.reason.as_str()), (5, "DesiredWithinRange"));
}

#[test]
fn the_scale_down_window_keeps_the_highest_recent_recommendation() {
    let b = Behavior::from_spec(None);
    let history = [rec(200, 10), rec(100, 8)];
    let s = stabilize(&b, &history, 10, 5, t0());
    assert_eq!((s.replicas, s.reason.as_str()), (10, "ScaleDownStabilized"));
    // 101 s later the 10 has left the 300 s window; the 8 has not.
    let later = t0() + Duration::seconds(101);
    let s = stabilize(&b, &history, 10, 5, later);
    assert_eq!(s.replicas, 8);
    // Every recommendation is remembered, one per value, newest time.
    assert!(s
        .recommendations
        .iter()
        .any(|r| r.replicas == 5 && r.time == later));
    assert!(!s.recommendations.iter().any(|r| r.replicas == 10));
}

#[test]
fn the_scale_up_window_keeps_the_lowest_recent_recommendation() {
    let b = with(Some(rules(Some(60), &[], None)), None);
    let s = stabilize(&b, &[rec(30, 4)], 4, 10, t0());
    assert_eq!((s.replicas, s.reason.as_str()), (4, "ScaleUpStabilized"));
    let s = stabilize(&b, &[rec(61, 4), rec(30, 7)], 4, 10, t0());
    assert_eq!(s.replicas, 7);
}

#[test]
fn a_first_decision_does_not_scale_down_at_once() {
    let b = Behavior::from_spec(None);
    let s = stabilize(&b, &[], 6, 2, t0());
    assert_eq!(s.replicas, 6);
    // With no scale-down window it does.
    let b = with(None, Some(rules(Some(0), &[], None)));
    assert_eq!(stabilize(&b, &[], 6, 2, t0()).replicas, 2);
}

#[test]
fn history_stays_bounded_and_merging_events_only_tightens() {
    let b = with(None, Some(rules(Some(3600), &[], None)));
    let mut history = Vec::new();
    for i in 0..500 {
        let s = stabilize(
            &b,
            &history,
            100,
            i % 200,
            t0() + Duration::seconds(i64::from(i)),
        );
        history = s.recommendations;
    }
    assert!(history.len() <= MAX_RECOMMENDATIONS);
    let mut events = Vec::new();
    for i in 0..200 {
        events = record_scale(&b, &events, 10, 11, t0() + Duration::milliseconds(i));
    }
    let ups: i32 = events.iter().map(|e| e.change).sum();
    assert!(events.len() <= MAX_SCALE_EVENTS);
    assert_eq!(ups, 200, "merged events keep their total change");
}
