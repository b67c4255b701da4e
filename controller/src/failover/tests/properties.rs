//! Properties over random health sequences: weights always valid, never a
//! switch while observers are blind, no thrash.

use chrono::Duration;
use proptest::prelude::*;
use vertice_crds::failover::FailoverPhase;

use super::support::{spec, Sim};
use crate::failover::weights;

/// One round: per (vantage, replica) up or down, or the runner silent.
#[derive(Debug, Clone)]
enum Round {
    Probe(Vec<bool>),
    Silent(i64),
}

fn rounds() -> impl Strategy<Value = Vec<Round>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::collection::vec(any::<bool>(), 6).prop_map(Round::Probe),
            1 => (1i64..60).prop_map(Round::Silent),
        ],
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn weights_stay_valid_and_switches_never_thrash(rounds in rounds(), steps in 1u32..5, min_interval in 0u32..90) {
        let policy = serde_json::json!({"failbackSteps": steps, "minSwitchIntervalSeconds": min_interval,
            "failbackAfterSeconds": 20, "maxSwitches": 3, "flapWindowSeconds": 300});
        let mut sim = Sim::new(spec(policy), &["eu", "us", "ap"]);
        for round in rounds {
            let before = sim.route.clone();
            let plan = match round {
                Round::Probe(bits) => sim.round(|v, r| {
                    let vi = ["eu", "us", "ap"].iter().position(|x| *x == v).unwrap_or(0);
                    let ri = usize::from(r == "b");
                    bits[vi * 2 + ri]
                }).clone(),
                Round::Silent(s) => sim.silence(s).clone(),
            };
            prop_assert!(weights::valid(&sim.route), "invalid weights {:?}", sim.route);
            if plan.status.phase == Some(FailoverPhase::ObserversStale) {
                prop_assert_eq!(&before, &sim.route, "moved while blind");
            }
        }
        // A failback never starts with maxSwitches already in the window,
        // nor sooner than the minimum interval after the previous switch.
        // (A failover off a replica reported down is never held.)
        let switches = &sim.status.switches;
        for (i, s) in switches.iter().enumerate() {
            if s.reason == "Failover" {
                continue;
            }
            let before = &switches[..i];
            let in_window = before.iter().filter(|b| s.time - b.time < Duration::seconds(300)).count();
            prop_assert!(in_window < 3, "a failback at {} with {} switches in the window", s.time, in_window);
            if let Some(b) = before.last() {
                prop_assert!(s.time - b.time >= Duration::seconds(i64::from(min_interval)), "switches {} and {} too close", b.time, s.time);
            }
        }
    }

    #[test]
    fn alternating_results_below_the_threshold_never_switch(pattern in prop::collection::vec(1u32..3, 1..60)) {
        // Failure runs shorter than the failure threshold (3) never fail over.
        let mut sim = Sim::new(spec(serde_json::json!({})), &["eu"]);
        for _ in 0..3 {
            sim.round(super::support::all_up);
        }
        for run in pattern {
            for _ in 0..run {
                sim.round(super::support::a_down);
            }
            sim.round(super::support::all_up);
        }
        prop_assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    }
}
