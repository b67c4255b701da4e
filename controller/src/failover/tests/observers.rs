//! Who may decide: quorums that survive the loss of a region (or say they
//! cannot), a total outage told apart from blind observers, freshness by
//! the controller's own clock, and the grace runners get to be heard.

use chrono::Duration;
use vertice_crds::common::ConditionStatus;
use vertice_crds::failover::{FailoverPhase, Health};

use super::support::{a_down, all_up, spec, Sim};

fn condition<'a>(sim: &'a Sim, type_: &str) -> &'a vertice_crds::common::Condition {
    sim.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:?}", sim.status.conditions))
}

fn health(sim: &Sim, replica: &str) -> Health {
    sim.status
        .health
        .iter()
        .find(|h| h.name == replica)
        .map_or(Health::Unknown, |h| h.health)
}

fn regions(policy: serde_json::Value, vantages: &[&str]) -> Sim {
    let mut sim = Sim::new(spec(policy), vantages);
    for _ in 0..3 {
        sim.round(all_up);
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    sim
}

fn three() -> serde_json::Value {
    serde_json::json!({"vantages": ["eu", "us", "witness"]})
}

#[test]
fn two_vantages_cannot_leave_a_dead_region_and_say_so_at_once() {
    let mut sim = Sim::new(
        spec(serde_json::json!({"vantages": ["eu", "us"], "quorum": 2})),
        &["eu", "us"],
    );
    sim.round(all_up);
    let c = condition(&sim, "QuorumResilient");
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "LossOfOneVantageBlinds")
    );
    assert!(c.message.contains("spec.policy.vantages"), "{}", c.message);
    assert!(c.message.contains("witness"), "{}", c.message);
    assert!(sim.events().contains(&"QuorumNotResilient"));
    sim.round(all_up);
    assert!(!sim.events().contains(&"QuorumNotResilient"), "said once");
    // eu's region goes, its runner with it: us alone may not act.
    for _ in 0..10 {
        sim.round_where(|v| v == "us", a_down);
    }
    assert!(sim.patches.is_empty());
    assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
    let ready = condition(&sim, "ObserversReady");
    assert!(ready.message.contains("witness"), "{}", ready.message);
}

#[test]
fn three_vantages_leave_the_primarys_dead_region() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    assert_eq!(
        condition(&sim, "QuorumResilient").reason,
        "MajoritySurvives"
    );
    // eu (pg a and its runner) is gone; us and the witness see a down.
    for _ in 0..3 {
        sim.round_where(|v| v != "eu", a_down);
    }
    assert_eq!((sim.weight("a"), sim.weight("b")), (0, 100));
    assert_eq!(sim.phase(), Some(FailoverPhase::FailedOver));
    let a = sim.status.health.iter().find(|h| h.name == "a").expect("a");
    assert_eq!((a.health, a.down_votes), (Health::Unhealthy, 2));
}

#[test]
fn a_quorum_of_every_vantage_acts_with_the_reachable_majority() {
    let mut sim = regions(
        serde_json::json!({"vantages": ["eu", "us", "witness"], "quorum": 3}),
        &["eu", "us", "witness"],
    );
    let lost = sim.now;
    // eu's frozen word (a up) holds until eu is stale (23 s), then the two
    // vantages still heard, a majority of three, decide together.
    while sim.weight("b") != 100 {
        sim.round_where(|v| v != "eu", a_down);
        assert!(sim.now - lost <= Duration::seconds(30), "{:?}", sim.status);
    }
    assert!(sim.now - lost >= Duration::seconds(23));
    assert_ne!(sim.phase(), Some(FailoverPhase::ObserversStale));
}

#[test]
fn losing_the_standbys_region_keeps_traffic_and_never_flaps() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    let b_down = |_: &str, r: &str| r != "b";
    for _ in 0..60 {
        sim.round_where(|v| v != "us", b_down);
        assert_eq!(sim.weight("a"), 100);
    }
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    assert_eq!(health(&sim, "b"), Health::Unhealthy);
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
}

#[test]
fn a_quorum_below_a_majority_is_named() {
    let mut sim = Sim::new(
        spec(serde_json::json!({"vantages": ["eu", "us", "witness"], "quorum": 1})),
        &["eu", "us", "witness"],
    );
    sim.round(all_up);
    let c = condition(&sim, "QuorumResilient");
    assert_eq!(c.reason, "MinorityCanAct");
    assert!(c.message.contains("spec.policy.quorum"), "{}", c.message);
}

#[test]
fn a_quorum_no_reporting_vantages_can_reach_names_spec_policy_quorum() {
    // No list of vantages: the two that reported can never make three.
    let mut sim = Sim::new(spec(serde_json::json!({"quorum": 3})), &["eu", "us"]);
    for _ in 0..3 {
        sim.round(all_up);
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
    let ready = condition(&sim, "ObserversReady");
    assert!(
        ready.message.contains("spec.policy.quorum is 3"),
        "{}",
        ready.message
    );
}

#[test]
fn a_total_outage_is_no_healthy_replica_not_blind_observers() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    let mut events = Vec::new();
    for _ in 0..5 {
        sim.round(|_, _| false);
        events.extend(sim.events());
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::NoHealthyReplica));
    assert!(events.contains(&"NoHealthyReplica"), "{events:?}");
    assert!(!events.contains(&"ObserversStale"), "{events:?}");
    assert_eq!(
        condition(&sim, "ObserversReady").status,
        ConditionStatus::True
    );
    assert!(sim.patches.is_empty());
    // A single vantage that fails everything has no peer to contradict it.
    let mut alone = regions(serde_json::json!({}), &["eu"]);
    for _ in 0..5 {
        alone.round(|_, _| false);
    }
    assert_eq!(alone.phase(), Some(FailoverPhase::NoHealthyReplica));
}

#[test]
fn a_vantage_failing_everything_while_a_peer_sees_a_replica_is_blind() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    // eu's network is gone; us and the witness see both replicas.
    for _ in 0..5 {
        sim.round(|v, _| v != "eu");
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    assert_eq!(health(&sim, "a"), Health::Healthy);
    // ... and with the witness also lost, us alone is not a majority: once
    // the witness is stale (23 s), eu and us disagree; held quietly for one
    // staleness period, then blind.
    let lost = sim.now;
    let mut disagreed_at = None;
    while sim.phase() != Some(FailoverPhase::ObserversStale) {
        sim.round_where(|v| v != "witness", |v, _| v != "eu");
        if disagreed_at.is_none() && condition(&sim, "ObserversReady").reason == "VantagesDisagree"
        {
            disagreed_at = Some(sim.now);
        }
        if sim.phase() != Some(FailoverPhase::ObserversStale) {
            assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
            assert!(sim.events().is_empty(), "{:?}", sim.events());
        }
        assert!(sim.now - lost < Duration::seconds(120), "{:?}", sim.status);
    }
    let disagreed_at = disagreed_at.expect("a quiet disagreement first");
    assert!(disagreed_at - lost > Duration::seconds(23));
    assert!(sim.now - disagreed_at > Duration::seconds(23));
    assert!(sim.now - disagreed_at <= Duration::seconds(30));
    assert_eq!(sim.events(), vec!["ObserversStale"]);
    let ready = condition(&sim, "ObserversReady");
    assert!(
        ready.message.contains("failing every replica"),
        "{}",
        ready.message
    );
}

#[test]
fn a_live_runner_60_s_behind_keeps_deciding() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    sim.skew = vec![("eu".into(), Duration::seconds(-60))];
    for _ in 0..20 {
        sim.round(all_up);
        assert_ne!(sim.phase(), Some(FailoverPhase::ObserversStale));
    }
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!(sim.weight("b"), 100, "{:?}", sim.status);
}

#[test]
fn a_runner_120_s_ahead_that_dies_is_stale_after_the_limit_not_130_s() {
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    sim.skew = vec![("eu".into(), Duration::seconds(120))];
    for _ in 0..3 {
        sim.round(all_up);
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    // The limit is 3 × 5 + 3 + 5 = 23 s.
    let plan = sim.silence(23);
    assert_eq!(plan.status.phase, Some(FailoverPhase::Healthy));
    sim.silence(1);
    assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
    assert_eq!(sim.events(), vec!["ObserversStale"]);
}

#[test]
fn after_a_restart_frozen_votes_never_count_and_live_runners_are_heard_at_their_next_write() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    // eu's region dies just as the controller restarts: its last entry
    // (a up) stays in status.
    sim.restart_controller();
    sim.decide();
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy), "held quietly");
    assert!(sim.events().is_empty(), "{:?}", sim.events());
    for _ in 0..3 {
        sim.round_where(|v| v != "eu", a_down);
        let a = sim.status.health.iter().find(|h| h.name == "a").expect("a");
        assert_eq!(a.up_votes, 0, "eu's frozen vote counted");
    }
    assert_eq!(sim.weight("b"), 100);
}

#[test]
fn after_a_restart_with_every_runner_dead_observers_turn_stale_after_one_period() {
    let mut sim = regions(serde_json::json!({}), &["eu"]);
    sim.restart_controller();
    sim.decide();
    sim.silence(20);
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    assert!(sim.events().is_empty());
    assert_eq!(
        condition(&sim, "ObserversReady").reason,
        "WaitingForVantages"
    );
    sim.silence(3);
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    sim.silence(1);
    assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
}

#[test]
fn a_new_failover_gives_its_runners_one_staleness_period() {
    for policy in [
        serde_json::json!({"vantages": ["eu"]}),
        serde_json::json!({}),
    ] {
        let mut sim = Sim::new(spec(policy), &["eu"]);
        // No runner has written yet.
        sim.vantages.clear();
        let plan = sim.silence(1);
        assert_eq!(plan.status.phase, Some(FailoverPhase::Observing));
        assert_eq!(plan.requeue_after, std::time::Duration::from_secs(22));
        // One vantage cannot survive its own loss, and is told so; nothing
        // says the observers are stale.
        let alarms = |sim: &Sim| -> Vec<&'static str> {
            sim.events()
                .into_iter()
                .filter(|e| *e != "QuorumNotResilient")
                .collect()
        };
        assert!(alarms(&sim).is_empty(), "{:?}", sim.events());
        sim.silence(22);
        assert_eq!(sim.phase(), Some(FailoverPhase::Observing));
        assert!(alarms(&sim).is_empty(), "{:?}", sim.events());
        sim.silence(1);
        assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
        assert_eq!(sim.events(), vec!["ObserversStale"]);
    }
}

#[test]
fn a_vantage_not_in_the_spec_never_votes() {
    // "rogue" still reports (it was taken out of policy.vantages, or was
    // never in it): its word does not count, not even to make a quorum.
    let mut sim = regions(three(), &["eu", "us", "witness", "rogue"]);
    for _ in 0..10 {
        sim.round(|v, r| !(r == "a" && (v == "rogue" || v == "eu")));
    }
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    let a = sim.status.health.iter().find(|h| h.name == "a").expect("a");
    assert_eq!((a.health, a.down_votes), (Health::Healthy, 1));
}

#[test]
fn replicas_a_runner_reports_that_are_not_in_the_spec_are_ignored() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    // eu fails a and b, but also reports a replica "z" (an older spec) up:
    // it still fails every replica of this spec, and the others see b.
    for (_, replicas, _) in &mut sim.vantages {
        replicas.push(("z".into(), super::support::Counter::default()));
    }
    for _ in 0..5 {
        sim.round(|v, r| r == "z" || v != "eu");
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    // eu is excluded as blind: "z" up does not make it a witness of a.
    let a = sim.status.health.iter().find(|h| h.name == "a").expect("a");
    assert_eq!(
        (a.health, a.down_votes, a.up_votes),
        (Health::Healthy, 0, 2)
    );
    let ready = condition(&sim, "ObserversReady");
    assert!(ready.message.contains("eu"), "{}", ready.message);
}

#[test]
fn vantages_that_see_a_total_outage_a_round_apart_never_look_blind() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    // eu's region is lost; traffic moves to b; eu's word turns stale.
    for _ in 0..8 {
        sim.round_where(|v| v != "eu", a_down);
    }
    assert_eq!(sim.weight("b"), 100);
    assert!(condition(&sim, "ObserversReady")
        .message
        .contains("not heard from"));
    // Then b fails, seen by us one round before the witness.
    let mut events = Vec::new();
    // (The witness's writes lag: us fails everything at the threshold while
    // the witness still shows b up.)
    for _ in 0..4 {
        sim.round_where(|v| v == "us", |_, _| false);
        events.extend(sim.events());
    }
    for _ in 0..6 {
        sim.round_where(|v| v != "eu", |_, _| false);
        events.extend(sim.events());
    }
    assert!(!events.contains(&"ObserversStale"), "{events:?}");
    assert!(events.contains(&"NoHealthyReplica"), "{events:?}");
    assert_eq!(sim.phase(), Some(FailoverPhase::NoHealthyReplica));
}

/// Vantages, quorum, floor, [(heard, votes needed)], weakness.
type Case = (
    usize,
    Option<u32>,
    usize,
    &'static [(usize, usize)],
    Option<&'static str>,
);

#[test]
fn quorum_floor_votes_needed_and_weakness() {
    use crate::failover::votes::Quorum;
    let cases: &[Case] = &[
        // (vantages, quorum, floor, [(heard, votes needed)], weakness)
        (1, None, 1, &[(1, 1)], Some("LossOfOneVantageBlinds")),
        (2, Some(2), 2, &[(2, 2)], Some("LossOfOneVantageBlinds")),
        (2, Some(1), 1, &[(2, 1), (1, 1)], Some("MinorityCanAct")),
        (3, None, 2, &[(3, 2), (2, 2)], None),
        (3, Some(3), 2, &[(3, 3), (2, 2)], None),
        (3, Some(1), 1, &[(3, 1)], Some("MinorityCanAct")),
        (4, None, 3, &[(4, 3), (3, 3)], None),
        (5, Some(4), 3, &[(5, 4), (4, 4), (3, 3)], None),
    ];
    for (n, quorum, floor, needed, weakness) in cases {
        let names: Vec<String> = (0..*n).map(|i| format!("v{i}")).collect();
        let mut policy = serde_json::json!({ "vantages": names });
        if let Some(q) = quorum {
            policy["quorum"] = serde_json::json!(q);
        }
        let q = Quorum::of(&spec(policy), &[]).expect("quorum");
        assert_eq!(q.floor(), *floor, "{n} vantages, quorum {quorum:?}");
        for (heard, votes) in *needed {
            assert_eq!(
                q.needed(*heard),
                *votes,
                "{n}/{quorum:?} with {heard} heard"
            );
        }
        assert_eq!(q.weakness().map(|(r, _)| r), *weakness, "{n}/{quorum:?}");
    }
}

#[test]
fn after_a_restart_a_disagreement_is_held_quietly_for_a_whole_period() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    // eu's network is gone: it fails everything while the others see both.
    for _ in 0..5 {
        sim.round(|v, _| v != "eu");
    }
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    // The witness's region is lost as the controller restarts: first a wait
    // for the vantages to be heard, then eu and us disagree.
    sim.restart_controller();
    let restarted = sim.now;
    let mut waited = false;
    let mut disagreed_at = None;
    while sim.phase() != Some(FailoverPhase::ObserversStale) {
        sim.round_where(|v| v != "witness", |v, _| v != "eu");
        let reason = condition(&sim, "ObserversReady").reason.clone();
        match (disagreed_at, reason.as_str()) {
            (None, "WaitingForVantages") => waited = true,
            (None, "VantagesDisagree") => disagreed_at = Some(sim.now),
            _ => {}
        }
        if sim.phase() != Some(FailoverPhase::ObserversStale) {
            assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
            assert!(sim.events().is_empty(), "{:?}", sim.events());
        }
        assert!(sim.now - restarted < Duration::seconds(120));
    }
    assert!(waited, "a wait came first");
    let disagreed_at = disagreed_at.expect("a quiet disagreement");
    // Measured from the disagreement's own start, not from the wait's.
    assert!(
        sim.now - disagreed_at > Duration::seconds(23),
        "stale {}s after the disagreement started",
        (sim.now - disagreed_at).num_seconds()
    );
    assert!(sim.now - disagreed_at <= Duration::seconds(30));
    assert_eq!(sim.events(), vec!["ObserversStale"]);
}

#[test]
fn a_wall_clock_step_back_never_keeps_a_dead_runners_votes() {
    let mut sim = regions(serde_json::json!({}), &["eu"]);
    // eu's runner dies; the wall clock is stepped back an hour (NTP).
    sim.silence(10);
    sim.step_wall_clock(-Duration::hours(1));
    let plan = sim.silence(1);
    assert_eq!(plan.status.phase, Some(FailoverPhase::Healthy));
    // It still wakes when eu turns stale: 23 s after its last write.
    assert_eq!(plan.requeue_after, std::time::Duration::from_secs(12));
    sim.silence(12);
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    sim.silence(1);
    assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
}

#[test]
fn a_wall_clock_step_forward_never_makes_live_runners_stale() {
    let mut sim = regions(three(), &["eu", "us", "witness"]);
    sim.step_wall_clock(Duration::minutes(10));
    // The controller looks before the runners' next writes.
    sim.silence(1);
    assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
    assert!(sim.events().is_empty(), "{:?}", sim.events());
    for _ in 0..10 {
        sim.round(all_up);
        assert_eq!(sim.phase(), Some(FailoverPhase::Healthy));
        assert!(sim.events().is_empty(), "{:?}", sim.events());
    }
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!(sim.weight("b"), 100);
}

#[test]
fn a_staleness_limit_within_the_runners_heartbeat_holds_and_names_the_field() {
    // Period 5 s, timeout 3 s: a runner writes at least every 10 s, and
    // 2 × 5 + 3 = 13 is the bound (stored before the API server's rule).
    let mut sim = Sim::new(
        spec(serde_json::json!({"observerStaleAfterSeconds": 13})),
        &["eu", "us", "witness"],
    );
    for _ in 0..3 {
        sim.round(all_up);
    }
    for _ in 0..5 {
        sim.round(a_down);
    }
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    assert_eq!(sim.phase(), Some(FailoverPhase::ObserversStale));
    for type_ in ["ObserversReady", "Ready"] {
        let c = condition(&sim, type_);
        assert_eq!(c.status, ConditionStatus::False);
        assert!(
            c.message.contains("spec.policy.observerStaleAfterSeconds")
                && c.message.contains("spec.check.periodSeconds"),
            "{}",
            c.message
        );
    }
    // One second more and it decides.
    let mut sim = Sim::new(
        spec(serde_json::json!({"observerStaleAfterSeconds": 14})),
        &["eu", "us", "witness"],
    );
    for _ in 0..3 {
        sim.round(all_up);
    }
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!(sim.weight("b"), 100);
}

#[test]
fn unlisted_vantages_are_judged_for_resilience_only_after_their_grace() {
    // No policy.vantages: three runners start one after the other.
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu", "us", "witness"]);
    let late = sim.vantages.split_off(1);
    let mut events = Vec::new();
    sim.round(all_up);
    events.extend(sim.events());
    assert!(
        sim.status
            .conditions
            .iter()
            .all(|c| c.type_ != "QuorumResilient"),
        "{:?}",
        sim.status.conditions
    );
    for v in late {
        sim.vantages.push(v);
        sim.round(all_up);
        events.extend(sim.events());
    }
    for _ in 0..12 {
        sim.round(all_up);
        events.extend(sim.events());
    }
    assert!(!events.contains(&"QuorumNotResilient"), "{events:?}");
    assert_eq!(
        condition(&sim, "QuorumResilient").reason,
        "MajoritySurvives"
    );

    // A runner that stays alone is told so, once, after the grace.
    let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
    let mut warned = Vec::new();
    for _ in 0..12 {
        let plan = sim.round(all_up);
        if plan.events.iter().any(|e| e.reason == "QuorumNotResilient") {
            warned.push(sim.now);
        }
    }
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0] - super::support::t0() > Duration::seconds(23));
    assert!(warned[0] - super::support::t0() <= Duration::seconds(30));
    assert_eq!(
        condition(&sim, "QuorumResilient").reason,
        "LossOfOneVantageBlinds"
    );
}
