//! Table-style scenarios through the simulator: detection, quorum, blind
//! observers, failback, anti-thrash, planned switchover.

use vertice_crds::failover::{FailoverPhase, Health};

use super::support::{a_down, all_up, spec, Sim};

fn warm(sim: &mut Sim) {
    for _ in 0..3 {
        sim.round(all_up);
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
}

#[test]
fn nothing_moves_before_health_is_known() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    sim.round(all_up);
    assert_eq!(sim.phase(), Some(FailoverPhase::Observing));
    assert!(sim.patches.is_empty());
}

#[test]
fn detection_is_exactly_the_failure_threshold_in_rounds() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    warm(&mut sim);
    sim.round(a_down);
    sim.round(a_down);
    assert!(sim.patches.is_empty(), "two failures are not three");
    // The last probe that still saw a up.
    let last_good = sim.now - chrono::Duration::seconds(10);
    sim.round(a_down);
    assert_eq!((sim.weight("a"), sim.weight("b")), (0, 100));
    assert_eq!(sim.patches.len(), 1);
    // On the third failing probe: period × threshold after the last good one.
    assert_eq!(sim.patches[0].0 - last_good, chrono::Duration::seconds(15));
    assert_eq!(sim.phase(), Some(FailoverPhase::FailedOver));
    assert_eq!(sim.events(), vec!["FailoverStarted", "FailedOver"]);
    assert_eq!(sim.status.last_switch_reason.as_deref(), Some("Failover"));
}

#[test]
fn one_vantage_of_three_cannot_fail_a_replica_over() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu", "us", "ap"]);
    warm(&mut sim);
    for _ in 0..10 {
        sim.round(|v, r| !(v == "eu" && r == "a"));
    }
    assert!(sim.patches.is_empty());
    // Two of three agree: a majority.
    for _ in 0..3 {
        sim.round(|v, r| !(v != "ap" && r == "a"));
    }
    assert_eq!(sim.weight("b"), 100);
    let a = sim.status.health.iter().find(|h| h.name == "a").expect("a");
    assert_eq!((a.health, a.down_votes), (Health::Unhealthy, 2));
}

#[test]
fn stale_observers_hold_the_routing_and_say_so() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    warm(&mut sim);
    sim.round(a_down);
    sim.round(a_down);
    // The runner dies: 3 × 5 + 3 + 5 = 23 s later its word is stale.
    sim.silence(24);
    assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
    assert_eq!(sim.events(), vec!["ObserversStale"]);
    sim.silence(600);
    assert!(sim.patches.is_empty());
    assert!(sim.events().is_empty(), "the event is raised once");
}

#[test]
fn the_plan_wakes_up_when_a_vantage_would_turn_stale() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    let plan = sim.round(all_up);
    assert_eq!(plan.requeue_after, std::time::Duration::from_secs(23));
}

#[test]
fn a_vantage_failing_everything_is_blind_not_a_witness() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu", "us", "ap"]);
    warm(&mut sim);
    // eu loses its network; us sees a down; ap is fine: eu is not heard,
    // and 1 vote of the 2 heard is not enough.
    for _ in 0..5 {
        sim.round(|v, r| v != "eu" && !(v == "us" && r == "a"));
    }
    assert!(sim.patches.is_empty());
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    let a = sim.status.health.iter().find(|h| h.name == "a").expect("a");
    assert_eq!((a.health, a.down_votes), (Health::Healthy, 1));
    let ready = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "ObserversReady")
        .expect("condition");
    assert!(
        ready
            .message
            .starts_with("2 of 3 vantages heard, 2 needed (eu failing every replica"),
        "{}",
        ready.message
    );
}

#[test]
fn failback_waits_for_continuous_health_then_moves_in_steps() {
    let mut sim = Sim::new(spec(serde_json::json!({"failbackSteps": 4})), &["eu"]);
    warm(&mut sim);
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!(sim.weight("b"), 100);
    // a comes back: healthy after 2 successes, then 60 s of health.
    sim.round(all_up);
    sim.round(all_up);
    let healthy_at = sim.now;
    while sim.now - healthy_at < chrono::Duration::seconds(55) {
        sim.round(all_up);
        assert_eq!(sim.weight("b"), 100, "no failback before the hold");
    }
    sim.round(all_up);
    assert_eq!((sim.weight("a"), sim.weight("b")), (25, 75));
    assert_eq!(sim.phase(), Some(FailoverPhase::FailingBack));
    assert_eq!(sim.events(), vec!["FailbackStep"]);
    // Steps 10 s apart; rounds are 5 s.
    sim.round(all_up);
    assert_eq!(sim.weight("a"), 25);
    sim.round(all_up);
    assert_eq!(sim.weight("a"), 50);
    for _ in 0..4 {
        sim.round(all_up);
    }
    assert_eq!((sim.weight("a"), sim.weight("b")), (100, 0));
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    assert!(sim.status.transition.is_none());
    let reasons: Vec<&str> = sim
        .status
        .switches
        .iter()
        .map(|s| s.reason.as_str())
        .collect();
    assert_eq!(reasons, vec!["Failover", "Failback"]);
}

#[test]
fn a_failback_target_that_fails_again_is_left_at_once() {
    let mut sim = Sim::new(
        spec(serde_json::json!({"failbackSteps": 4, "minSwitchIntervalSeconds": 0})),
        &["eu"],
    );
    warm(&mut sim);
    for _ in 0..3 {
        sim.round(a_down);
    }
    for _ in 0..14 {
        sim.round(all_up);
    }
    assert!(
        sim.weight("a") > 0 && sim.weight("a") < 100,
        "mid-failback: {:?}",
        sim.route
    );
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!((sim.weight("a"), sim.weight("b")), (0, 100));
    assert!(sim.status.transition.is_none());
}

#[test]
fn no_automatic_failback_when_it_is_off() {
    let mut sim = Sim::new(spec(serde_json::json!({"autoFailback": false})), &["eu"]);
    warm(&mut sim);
    for _ in 0..3 {
        sim.round(a_down);
    }
    for _ in 0..100 {
        sim.round(all_up);
    }
    assert_eq!(sim.weight("b"), 100);
    assert_eq!(sim.phase(), Some(FailoverPhase::FailedOver));
}

#[test]
fn min_switch_interval_never_holds_traffic_on_a_replica_reported_down() {
    let three: serde_json::Value = serde_json::json!({"minSwitchIntervalSeconds": 60});
    let mut s = spec(three);
    s.replicas.push(
        serde_json::from_value(serde_json::json!({"name": "c", "host": "pg-c", "priority": 1}))
            .expect("c"),
    );
    let mut sim = Sim::new(s, &["eu"]);
    warm(&mut sim);
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!(sim.weight("b"), 100);
    let switched = sim.now;
    // b dies at once: c is healthy, so traffic leaves b after the failure
    // threshold, not 60 s after the last switch.
    let b_and_a_down = |_: &str, r: &str| r == "c";
    for _ in 0..3 {
        sim.round(b_and_a_down);
    }
    assert_eq!(sim.weight("c"), 100);
    assert_eq!(sim.now - switched, chrono::Duration::seconds(15));
    assert!(
        sim.status.switches[1]
            .message
            .contains("minSwitchIntervalSeconds"),
        "{}",
        sim.status.switches[1].message
    );
    // b and then a come back: failback still waits for the interval.
    let moved_to_c = sim.now;
    while sim.weight("a") != 100 {
        sim.round(all_up);
        assert!(sim.now - moved_to_c < chrono::Duration::seconds(200));
    }
    assert!(sim.now - moved_to_c >= chrono::Duration::seconds(60));
}

#[test]
fn flapping_pins_the_routing() {
    let mut sim = Sim::new(
        spec(
            serde_json::json!({"minSwitchIntervalSeconds": 0, "failbackAfterSeconds": 0, "maxSwitches": 3}),
        ),
        &["eu"],
    );
    warm(&mut sim);
    for cycle in 0..10 {
        for _ in 0..3 {
            sim.round(a_down);
        }
        for _ in 0..3 {
            sim.round(all_up);
        }
        let _ = cycle;
    }
    // Three switches in the window, then pinned.
    assert_eq!(sim.patches.len(), 3, "{:?}", sim.patches);
    assert!(sim.status.conditions.iter().any(|c| c.type_ == "Pinned"));
}

#[test]
fn planned_switchover_drains_in_steps_and_stays() {
    let mut sim = Sim::new(spec(serde_json::json!({"switchoverSteps": 2})), &["eu"]);
    warm(&mut sim);
    sim.switchover_to = Some("b".into());
    sim.round(all_up);
    assert_eq!((sim.weight("a"), sim.weight("b")), (50, 50));
    assert_eq!(sim.phase(), Some(FailoverPhase::SwitchingOver));
    sim.round(all_up);
    sim.round(all_up);
    assert_eq!((sim.weight("a"), sim.weight("b")), (0, 100));
    for _ in 0..50 {
        sim.round(all_up);
    }
    assert_eq!(
        sim.weight("b"),
        100,
        "no failback while the switchover is asked for"
    );
    // The annotation removed: failback by the usual rules (a healthy long enough).
    sim.switchover_to = None;
    sim.round(all_up);
    assert_eq!(sim.weight("a"), 100);
}

#[test]
fn a_switchover_to_an_unhealthy_or_unknown_replica_is_ignored() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    warm(&mut sim);
    sim.switchover_to = Some("nope".into());
    sim.round(all_up);
    assert!(sim.patches.is_empty());
    for _ in 0..3 {
        sim.round(|_, r| r == "a");
    }
    sim.switchover_to = Some("b".into());
    for _ in 0..3 {
        sim.round(|_, r| r == "a");
    }
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
}

#[test]
fn no_healthy_replica_holds_the_routing() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu", "us"]);
    warm(&mut sim);
    // Both vantages see both replicas fail: they agree, a total outage.
    for _ in 0..4 {
        sim.round(|_, _| false);
    }
    assert!(sim.patches.is_empty());
    assert_eq!(sim.phase(), Some(FailoverPhase::NoHealthyReplica));
}

#[test]
fn a_route_that_does_not_match_touches_nothing() {
    let s = spec(serde_json::json!({}));
    let plan = crate::failover::plan(crate::failover::Inputs {
        spec: &s,
        generation: Some(1),
        observations: &[],
        sighting: &crate::failover::freshness::Sighting {
            since: super::support::instant0(),
            vantages: Default::default(),
        },
        previous: &Default::default(),
        route: Err("replica \"b\" (host pg-b) is not a destination of the route".into()),
        switchover_to: None,
        refused: None,
        now: super::support::t0(),
        instant: super::support::instant0(),
    });
    assert_eq!(plan.patch, None);
    assert_eq!(plan.status.phase, Some(FailoverPhase::RouteMismatch));
    assert_eq!(
        plan.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        vec!["RouteMismatch"]
    );
}

#[test]
fn equal_priorities_share_traffic() {
    let mut s = spec(serde_json::json!({"failbackAfterSeconds": 0, "minSwitchIntervalSeconds": 0}));
    s.replicas[1].priority = 10;
    let mut sim = Sim::new(s, &["eu"]);
    for _ in 0..3 {
        sim.round(all_up);
    }
    assert_eq!((sim.weight("a"), sim.weight("b")), (50, 50));
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!((sim.weight("a"), sim.weight("b")), (0, 100));
}

#[test]
fn a_refused_failover_steers_nothing_and_says_why_once() {
    use crate::failover::Refusal;
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    warm(&mut sim);
    sim.refused = Some(Refusal::CrossNamespace {
        from: "team-a".into(),
        to: "team-b".into(),
    });
    // a goes down: without the refusal this is a failover.
    for _ in 0..5 {
        sim.round(a_down);
        assert_eq!(sim.last.as_ref().and_then(|p| p.patch.as_ref()), None);
    }
    assert!(sim.patches.is_empty());
    assert_eq!(sim.phase(), Some(FailoverPhase::CrossNamespaceRefused));
    let ready = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.reason, "CrossNamespaceRefused");
    assert_eq!(
        ready.message,
        "spec.virtualService.namespace team-b: a VerticeFailover may steer only VirtualServices \
         of its own namespace (team-a) unless the administrator allows team-a:team-b (--allow-cross-namespace)"
    );
    assert!(
        sim.status.weights.is_empty(),
        "nothing of the other namespace's route is shown: {:?}",
        sim.status.weights
    );
    // One Warning on entering the phase, none while it lasts.
    sim.refused = Some(Refusal::CrossNamespace {
        from: "team-a".into(),
        to: "team-b".into(),
    });
    sim.round(a_down);
    assert!(sim.events().is_empty(), "{:?}", sim.events());

    // A Secret refusal is its own phase and Event.
    sim.refused = Some(Refusal::Secret {
        field: "spec.check.http.caBundleSecretRef".into(),
        problem: crate::secret_labels::SecretProblem::Unreadable {
            namespace: "team-a".into(),
            name: "ca".into(),
        },
    });
    sim.round(a_down);
    assert_eq!(sim.phase(), Some(FailoverPhase::SecretNotAllowed));
    assert_eq!(sim.events(), vec!["SecretNotAllowed"]);
    assert!(sim.patches.is_empty());

    // Allowed again: the decision resumes from the route as it is.
    sim.refused = None;
    sim.round(a_down);
    assert_eq!((sim.weight("a"), sim.weight("b")), (0, 100));
    assert_eq!(sim.phase(), Some(FailoverPhase::FailedOver));
}
