//! The whole decision: failure policies, schedules, bounds, dry run,
//! conditions and Events.

use chrono::Duration;
use vertice_crds::common::find_condition;
use vertice_crds::scaler::{
    FailurePolicy, FailurePolicyType, ScaleReason, ScalingBehavior, ScalingRules, ScheduleWindow,
    TimedRecommendation, VerticeScalerStatus,
};

use super::support::*;
use crate::scaler::decide::{plan, Observed, PromResult};
use crate::scaler::pods::Readiness;

fn observed(replicas: i32, cpu: &[&str], queue: Option<PromResult>) -> Observed {
    Observed {
        spec_replicas: replicas,
        status_replicas: replicas,
        pods: pods(replicas as usize, 1000),
        pod_metrics: Some(Ok(pod_metrics(cpu))),
        prometheus: queue
            .into_iter()
            .map(|q| ("queue".to_string(), q))
            .collect(),
        ..Default::default()
    }
}

fn value(v: f64) -> Option<PromResult> {
    Some(PromResult::Value {
        value: v,
        time: t0() - Duration::seconds(5),
    })
}

/// History in which the scale-down window saw only low recommendations.
fn settled(replicas: i32) -> VerticeScalerStatus {
    VerticeScalerStatus {
        recommendations: vec![TimedRecommendation {
            time: t0() - Duration::seconds(30),
            replicas,
        }],
        ..Default::default()
    }
}

#[test]
fn the_largest_proposal_wins_and_is_explained() {
    let s = spec(1, 20, vec![cpu_metric(50), prom_metric("queue", 100.0)]);
    // CPU 100 % against 50 % → 8; queue 600 against 100 → ceil(6 × 4) = 24 → max 20.
    let p = plan(
        &s,
        Some(1),
        &observed(4, &["1", "1", "1", "1"], value(600.0)),
        &settled(4),
        t0(),
    );
    let d = p.status.last_decision.clone().expect("decision");
    assert_eq!(d.winner.as_deref(), Some("queue"));
    assert_eq!(d.recommendation, Some(24));
    // Default up rate: max(4 + 4, 4 × 2) = 8 within 15 s.
    assert_eq!(
        (
            p.desired,
            d.reason.as_str(),
            d.limited_by.map(ScaleReason::as_str)
        ),
        (8, "ScaleUpLimit", Some("ScaleUpLimit"))
    );
    assert!(p.scale);
    assert_eq!(d.metrics[0].proposal, Some(8));
    assert_eq!(d.metrics[0].value, Some(100.0));
    assert_eq!(d.metrics[1].ratio, Some(6.0));
    assert_eq!(p.events[0].reason, "ScaledUp");
    assert_eq!(
        p.events[0].note,
        "scaled up from 4 to 8: queue above its target (600 against 100, proposing 24); \
         limited by the scale-up rate policy"
    );
    assert_eq!(p.status.scale_events.len(), 1);
    let limited = find_condition(&p.status.conditions, "ScalingLimited").expect("condition");
    assert!(limited.is_true());
    assert_eq!(limited.reason, "ScaleUpLimit");
}

#[test]
fn a_broken_metric_holds_a_scale_down() {
    let s = spec(1, 20, vec![cpu_metric(50), prom_metric("queue", 100.0)]);
    for broken in [
        PromResult::Empty,
        PromResult::Error("connection refused".into()),
    ] {
        // CPU alone would go from 6 to 2.
        let p = plan(
            &s,
            None,
            &observed(6, &["100m"; 6], Some(broken.clone())),
            &settled(2),
            t0(),
        );
        let d = p.status.last_decision.clone().expect("decision");
        assert_eq!((p.desired, p.scale), (6, false));
        assert_eq!(d.reason, "MetricBroken");
        assert!(d.message.contains("queue"), "{}", d.message);
        assert_eq!(
            d.metrics[1].failure_policy.map(FailurePolicyType::as_str),
            Some("HoldScaleDown")
        );
        assert_eq!(p.events[0].reason, "ScaleHeld");
        // Nothing recorded: recovery is judged as if the break never happened.
        assert_eq!(p.status.recommendations, settled(2).recommendations);
    }
    let empty = plan(
        &s,
        None,
        &observed(6, &["100m"; 6], Some(PromResult::Empty)),
        &settled(2),
        t0(),
    );
    assert_eq!(
        empty.status.last_decision.expect("decision").metrics[1].state,
        "NoData"
    );
    // A scale-up asked by a healthy metric still happens.
    let p = plan(
        &s,
        None,
        &observed(2, &["1", "1"], Some(PromResult::Empty)),
        &settled(2),
        t0(),
    );
    assert_eq!(p.desired, 4);
}

#[test]
fn a_stale_sample_is_broken() {
    let mut s = spec(1, 20, vec![cpu_metric(50), prom_metric("queue", 100.0)]);
    let old = Some(PromResult::Value {
        value: 10.0,
        time: t0() - Duration::minutes(3),
    });
    let p = plan(
        &s,
        None,
        &observed(6, &["100m"; 6], old.clone()),
        &settled(2),
        t0(),
    );
    let d = p.status.last_decision.expect("decision");
    assert_eq!(
        (p.desired, d.reason.as_str(), d.metrics[1].state.as_str()),
        (6, "MetricBroken", "Stale")
    );
    s.metrics[1].max_staleness = Some("5m".into());
    let p = plan(&s, None, &observed(6, &["100m"; 6], old), &settled(2), t0());
    assert_eq!(p.desired, 2);
}

#[test]
fn one_lagging_pod_does_not_make_the_metric_stale() {
    let s = spec(1, 20, vec![cpu_metric(50)]);
    // Six pods at 10 % of 1 CPU; one pod's sample is 3 minutes old.
    let mut o = observed(6, &["100m"; 6], None);
    if let Some(Ok(list)) = o.pod_metrics.as_mut() {
        list[5].timestamp = t0() - Duration::minutes(3);
    }
    let p = plan(&s, None, &o, &settled(2), t0());
    let d = p.status.last_decision.expect("decision");
    assert_eq!(d.metrics[0].state, "Ok", "{:?}", d.metrics[0].error);
    // The lagging pod counts as a pod without a sample, full on the way
    // down: (5 × 100m + 1000m) of 6 CPU = 25 % → ceil(0.5 × 6) = 3.
    assert_eq!((d.metrics[0].proposal, p.desired), (Some(3), 3));
    assert_eq!(d.metrics[0].sample_time, Some(t0() - Duration::seconds(10)));
    // Every sample that old: nothing is fresh, the metric is stale.
    if let Some(Ok(list)) = o.pod_metrics.as_mut() {
        for m in list.iter_mut() {
            m.timestamp = t0() - Duration::minutes(3);
        }
    }
    let p = plan(&s, None, &o, &settled(2), t0());
    let d = p.status.last_decision.expect("decision");
    assert_eq!((d.metrics[0].state.as_str(), p.desired), ("Stale", 6));
    assert_eq!(
        d.metrics[0].error.as_deref(),
        Some("the newest sample (from 2026-12-02T09:57:00Z) is older than maxStaleness (120s)")
    );
}

#[test]
fn tolerance_takes_any_number_of_zero_or_more() {
    let mut s = spec(1, 20, vec![cpu_metric(50)]);
    let with = |up: f64| {
        Some(ScalingBehavior {
            scale_up: Some(ScalingRules {
                tolerance: Some(up),
                ..Default::default()
            }),
            scale_down: None,
        })
    };
    // 150 % against 50 %: ratio 3, inside a tolerance of 2.5 (above the
    // old cap of 1): no change.
    s.behavior = with(2.5);
    let p = plan(
        &s,
        None,
        &observed(2, &["1500m"; 2], None),
        &settled(2),
        t0(),
    );
    assert_eq!(p.desired, 2);
    for bad in [-0.1, f64::NAN] {
        s.behavior = with(bad);
        let p = plan(
            &s,
            None,
            &observed(2, &["1500m"; 2], None),
            &settled(2),
            t0(),
        );
        let d = p.status.last_decision.expect("decision");
        assert_eq!(d.reason, "InvalidSpec");
        assert!(
            d.message.starts_with("spec.behavior.scaleUp.tolerance"),
            "{}",
            d.message
        );
    }
}

#[test]
fn scale_up_only_and_fallback_policies() {
    let mut s = spec(1, 20, vec![cpu_metric(50), prom_metric("queue", 100.0)]);
    s.metrics[1].on_failure = Some(FailurePolicy {
        type_: FailurePolicyType::ScaleUpOnly,
        replicas: None,
    });
    // Broken ScaleUpOnly does not hold CPU's scale-down.
    let p = plan(
        &s,
        None,
        &observed(6, &["100m"; 6], Some(PromResult::Empty)),
        &settled(2),
        t0(),
    );
    assert_eq!(p.desired, 2);
    // Healthy, it only ever adds: a low queue does not vote for fewer.
    let p = plan(
        &s,
        None,
        &observed(6, &["500m"; 6], value(0.0)),
        &settled(6),
        t0(),
    );
    assert_eq!(p.desired, 6);
    s.metrics[1].on_failure = Some(FailurePolicy {
        type_: FailurePolicyType::Fallback,
        replicas: Some(8),
    });
    let p = plan(
        &s,
        None,
        &observed(4, &["100m"; 4], Some(PromResult::Error("timeout".into()))),
        &settled(4),
        t0(),
    );
    assert_eq!((p.desired, p.fallback_active), (8, true));
    let fallback = p.events.iter().find(|e| e.reason == "FallbackActive");
    assert_eq!(
        fallback.map(|e| e.note.as_str()),
        Some("queue is broken (timeout) and proposes its fallback of 8 replicas")
    );
    let scaled = p.events.iter().find(|e| e.reason == "ScaledUp");
    assert_eq!(
        scaled.map(|e| e.note.as_str()),
        Some("scaled up from 4 to 8: queue is broken and its fallback proposes 8")
    );
    // Never below what healthy metrics ask.
    let p = plan(
        &s,
        None,
        &observed(10, &["1"; 10], Some(PromResult::Error("timeout".into()))),
        &settled(10),
        t0(),
    );
    assert_eq!(p.desired, 20);
}

#[test]
fn every_metric_broken_holds_and_says_so() {
    let s = spec(1, 20, vec![cpu_metric(50)]);
    let mut o = observed(3, &[], None);
    o.pod_metrics = Some(Err(
        "the server could not find the requested resource".into()
    ));
    let p = plan(&s, None, &o, &settled(1), t0());
    assert_eq!(p.desired, 3);
    let active = find_condition(&p.status.conditions, "ScalingActive").expect("condition");
    assert!(!active.is_true());
    assert_eq!(active.reason, "FailedGetMetrics");
    assert!(active
        .message
        .contains("could not find the requested resource"));
}

#[test]
fn schedule_windows_move_the_bounds() {
    let mut s = spec(2, 30, vec![cpu_metric(50)]);
    s.schedules = vec![ScheduleWindow {
        name: "business-hours".into(),
        cron: "0 9 * * 1-5".into(),
        time_zone: Some("Europe/Berlin".into()),
        duration: "8h".into(),
        lead_time: Some("15m".into()),
        min_replicas: Some(10),
        max_replicas: None,
    }];
    // 2026-12-02 is a Wednesday; 10:00 UTC is 11:00 in Berlin.
    let p = plan(
        &s,
        None,
        &observed(3, &["100m"; 3], None),
        &settled(1),
        t0(),
    );
    let d = p.status.last_decision.expect("decision");
    assert_eq!((p.desired, d.reason.as_str()), (10, "ScheduleFloor"));
    assert_eq!(d.open_windows, vec!["business-hours".to_string()]);
    assert_eq!(d.min_replicas, 10);
    // 07:45 UTC = 08:45 Berlin: the lead time has opened it.
    let prewarm = t0() - Duration::minutes(135);
    assert_eq!(
        plan(
            &s,
            None,
            &observed(3, &["100m"; 3], None),
            &settled(1),
            prewarm
        )
        .desired,
        10
    );
    // 07:44 UTC: closed; CPU asks for 1 and spec.minReplicas (2) is the floor.
    let before = t0() - Duration::minutes(136);
    assert_eq!(
        plan(
            &s,
            None,
            &observed(3, &["100m"; 3], None),
            &settled(1),
            before
        )
        .desired,
        2
    );
}

#[test]
fn a_target_scaled_to_zero_by_hand_is_left_alone() {
    let s = spec(1, 20, vec![prom_metric("queue", 100.0)]);
    let p = plan(
        &s,
        None,
        &observed(0, &[], value(900.0)),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!((p.desired, p.scale), (0, false));
    let d = p.status.last_decision.expect("decision");
    assert_eq!(d.reason, "ScalingDisabled");
    // With minReplicas 0 the queue brings it up from zero.
    let s = spec(0, 20, vec![prom_metric("queue", 100.0)]);
    let p = plan(
        &s,
        None,
        &observed(0, &[], value(250.0)),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!(p.desired, 3);
}

#[test]
fn dry_run_and_pause_decide_without_acting() {
    let mut s = spec(1, 20, vec![cpu_metric(50)]);
    s.dry_run = true;
    let p = plan(&s, None, &observed(2, &["1", "1"], None), &settled(2), t0());
    assert_eq!((p.desired, p.scale), (4, false));
    let d = p.status.last_decision.clone().expect("decision");
    assert!(d.not_acted);
    assert_eq!(
        find_condition(&p.status.conditions, "AbleToScale")
            .expect("condition")
            .reason,
        "DryRun"
    );
    assert!(p.events.is_empty());
    assert!(p.status.scale_events.is_empty());
    s.dry_run = false;
    let mut o = observed(2, &["1", "1"], None);
    o.paused = true;
    let p = plan(&s, None, &o, &settled(2), t0());
    assert!(!p.scale);
    assert_eq!(
        find_condition(&p.status.conditions, "AbleToScale")
            .expect("condition")
            .reason,
        "Paused"
    );
}

#[test]
fn an_invalid_spec_is_named_and_nothing_moves() {
    let s = spec(
        1,
        20,
        vec![prom_metric("queue", 100.0), prom_metric("queue", 5.0)],
    );
    let p = plan(
        &s,
        None,
        &observed(3, &[], value(1.0)),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!((p.desired, p.scale), (3, false));
    let d = p.status.last_decision.expect("decision");
    assert_eq!(d.reason, "InvalidSpec");
    assert!(
        d.message
            .contains("spec.metrics[1].name \"queue\" is used twice"),
        "{}",
        d.message
    );
    assert_eq!(p.events[0].reason, "InvalidSpec");
}

#[test]
fn a_failed_scale_patch_records_no_scale_event() {
    let s = spec(1, 20, vec![cpu_metric(50)]);
    let mut p = plan(&s, None, &observed(2, &["1", "1"], None), &settled(2), t0());
    assert!(p.scale);
    p.scale_failed("scale Deployment web: forbidden", t0());
    assert!(!p.scale);
    assert!(p.status.scale_events.is_empty());
    assert_eq!(p.status.last_scale_time, None);
    assert_eq!(
        find_condition(&p.status.conditions, "AbleToScale")
            .expect("condition")
            .reason,
        "FailedUpdateScale"
    );
}

#[test]
fn out_of_bounds_counts_come_back_inside_at_once() {
    let s = spec(2, 5, vec![cpu_metric(50)]);
    let p = plan(
        &s,
        None,
        &observed(9, &["500m"; 9], None),
        &settled(9),
        t0(),
    );
    assert_eq!(
        (
            p.desired,
            p.status.last_decision.expect("d").reason.as_str()
        ),
        (5, "TooManyReplicas")
    );
    let p = plan(&s, None, &observed(1, &["500m"], None), &settled(1), t0());
    assert_eq!(p.desired, 2);
}

#[test]
fn configured_behaviour_is_followed() {
    let mut s = spec(1, 50, vec![cpu_metric(50)]);
    s.behavior = Some(ScalingBehavior {
        scale_up: Some(ScalingRules {
            policies: vec![vertice_crds::scaler::ScalingPolicy {
                type_: vertice_crds::scaler::PolicyType::Pods,
                value: 1,
                period_seconds: 60,
            }],
            ..Default::default()
        }),
        scale_down: Some(ScalingRules {
            stabilization_window_seconds: Some(0),
            ..Default::default()
        }),
    });
    let p = plan(&s, None, &observed(4, &["1"; 4], None), &settled(4), t0());
    assert_eq!(p.desired, 5);
    let p = plan(
        &s,
        None,
        &observed(4, &["100m"; 4], None),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!(p.desired, 1);
}

#[test]
fn during_a_rollout_unready_surge_pods_do_not_drive_a_memory_scale_up() {
    let mut s = spec(1, 20, vec![cpu_metric(50)]);
    s.metrics[0].cpu = None;
    s.metrics[0].memory = Some(vertice_crds::scaler::ResourceMetric {
        target_average_utilization: Some(40),
        target_average_value: None,
        container: None,
    });
    // Every pod uses 1 Mi of a 2 Mi request (50 % against 40 %); the third
    // is a surge pod, just started and not ready.
    let mut o = observed(2, &["100m", "100m", "100m"], None);
    o.status_replicas = 3;
    let mut surge = pod("p2", 1000);
    surge.start_time = Some(t0() - Duration::seconds(20));
    surge.ready = Some((Readiness::False, t0() - Duration::seconds(20)));
    o.pods.push(surge);
    for p in &mut o.pods {
        p.requests
            .get_mut("app")
            .map(|r| r.insert("memory", 2 * 1_048_576_000));
    }
    let normal = plan(&s, None, &o, &settled(2), t0());
    o.rollout_in_progress = true;
    let rolling = plan(&s, None, &o, &settled(2), t0());
    // Outside a rollout the HPA counts the surge pod's memory like any
    // other: ratio 1.25 on 3 pods → 4. During one it is unready and counts 0
    // on the way up: 33 % → 0.83, which flips direction → keep 2.
    assert_eq!((normal.desired, rolling.desired), (4, 2));
    assert!(rolling.status.last_decision.expect("d").rollout_in_progress);
}
