//! The flap limit and the minimum interval limit switches between healthy
//! choices; they never keep traffic on a replica a quorum reports down.

use vertice_crds::failover::{FailoverPhase, ReplicaWeight};

use super::support::{a_down, all_up, spec, Sim};

fn on_a() -> Vec<ReplicaWeight> {
    crate::failover::weights::even(&["a", "b"], &["a"])
}

#[test]
fn a_gitops_revert_to_the_dead_primary_is_undone_while_pinned() {
    let mut sim = Sim::new(
        spec(serde_json::json!({"maxSwitches": 1, "minSwitchIntervalSeconds": 600})),
        &["eu", "us", "witness"],
    );
    for _ in 0..3 {
        sim.round(all_up);
    }
    for _ in 0..3 {
        sim.round(a_down);
    }
    assert_eq!(sim.weight("b"), 100);
    // The flap window is full and the interval runs for 10 minutes; GitOps
    // reverts the weights to a, which every vantage reports down.
    sim.route = on_a();
    sim.round(a_down);
    assert_eq!((sim.weight("a"), sim.weight("b")), (0, 100), "left on a");
    assert_eq!(sim.patches.len(), 2);
    assert_eq!(sim.events(), vec!["FailoverStarted", "FailedOver"]);
    assert_eq!(sim.phase(), Some(FailoverPhase::FailedOver));
    let last = sim.status.switches.last().expect("switch");
    assert!(
        last.message
            .contains("never traffic on a replica reported down"),
        "{}",
        last.message
    );
    // a returns: the failback is what the flap limit holds.
    for _ in 0..30 {
        sim.round(all_up);
    }
    assert_eq!(sim.weight("b"), 100);
    assert_eq!(sim.phase(), Some(FailoverPhase::Pinned));
}
