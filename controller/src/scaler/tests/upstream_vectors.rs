//! Vectors of upstream's `replica_calculator_test.go`, restated as tables in
//! our own terms. Upstream's pods have two containers with the same request
//! and usage; here each pod has one container with their sum, which gives
//! the same utilization, ratios and answers.

use std::collections::BTreeMap;

use chrono::Duration;

use super::support::*;
use crate::scaler::algorithm::*;
use crate::scaler::pods::{PodSample, PodView, Readiness, Resource};

/// A pod whose Ready condition went False five seconds after it started,
/// ten minutes ago: it has never been ready.
fn never_ready(mut p: PodView) -> PodView {
    p.start_time = Some(t0() - Duration::minutes(10));
    p.ready = Some((
        Readiness::False,
        t0() - Duration::minutes(10) + Duration::seconds(5),
    ));
    p
}

/// Samples for the pods named, in order; `None` is a pod without one.
fn sparse(values: &[Option<i64>]) -> BTreeMap<String, PodSample> {
    let all = samples(&values.iter().map(|v| v.unwrap_or(0)).collect::<Vec<_>>());
    all.into_iter()
        .zip(values)
        .filter(|(_, v)| v.is_some())
        .map(|(kv, _)| kv)
        .collect()
}

struct Utilization {
    name: &'static str,
    current: i32,
    /// Per pod request (milli-CPU); one pod each.
    requests: &'static [i64],
    /// Per pod usage; `None` has no sample.
    usage: &'static [Option<i64>],
    never_ready: &'static [usize],
    target: i32,
    tolerances: Tolerances,
    want_replicas: i32,
    want_utilization: f64,
}

const T: Tolerances = TOLERANCE;

#[test]
fn utilization_vectors() {
    let cases = [
        Utilization {
            name: "inside the default tolerance (TestReplicaCalcTolerance)",
            current: 3,
            requests: &[1800, 2000, 2200],
            usage: &[Some(2020), Some(2060), Some(2040)],
            never_ready: &[],
            target: 100,
            tolerances: T,
            want_replicas: 3,
            want_utilization: 102.0,
        },
        Utilization {
            name: "outside a zero tolerance",
            current: 3,
            requests: &[1800, 2000, 2200],
            usage: &[Some(1818), Some(2020), Some(2222)],
            never_ready: &[],
            target: 100,
            tolerances: Tolerances { up: 0.0, down: 0.0 },
            want_replicas: 4,
            want_utilization: 101.0,
        },
        Utilization {
            name: "inside a 200 % scale-up tolerance (above the old cap of 1)",
            current: 3,
            requests: &[1800, 2000, 2200],
            usage: &[Some(3780), Some(3820), Some(3800)],
            never_ready: &[],
            target: 100,
            tolerances: Tolerances { up: 2.0, down: 0.1 },
            want_replicas: 3,
            want_utilization: 190.0,
        },
        Utilization {
            name: "outside an 8 % scale-up tolerance, superfluous scale-down one",
            current: 3,
            requests: &[1800, 2000, 2200],
            usage: &[Some(2200), Some(2160), Some(2180)],
            never_ready: &[],
            target: 100,
            tolerances: Tolerances {
                up: 0.08,
                down: 2.0,
            },
            want_replicas: 4,
            want_utilization: 109.0,
        },
        Utilization {
            name: "inside a 36 % scale-down tolerance",
            current: 3,
            requests: &[1800, 2000, 2200],
            usage: &[Some(1320), Some(1280), Some(1300)],
            never_ready: &[],
            target: 100,
            tolerances: Tolerances {
                up: 0.1,
                down: 0.36,
            },
            want_replicas: 3,
            want_utilization: 65.0,
        },
        Utilization {
            name: "outside a 34 % scale-down tolerance",
            current: 3,
            requests: &[1800, 2000, 2200],
            usage: &[Some(1320), Some(1280), Some(1300)],
            never_ready: &[],
            target: 100,
            tolerances: Tolerances {
                up: 0.1,
                down: 0.34,
            },
            want_replicas: 2,
            want_utilization: 65.0,
        },
        Utilization {
            name: "missing samples on a scale-down count full (TestReplicaCalcMissingMetrics)",
            current: 4,
            requests: &[2000, 2000, 2000, 2000],
            usage: &[Some(800), Some(190), None, None],
            never_ready: &[],
            target: 100,
            tolerances: T,
            want_replicas: 3,
            want_utilization: 24.0,
        },
        Utilization {
            name: "missing sample at exactly the target: no change (…NoChangeEq)",
            current: 2,
            requests: &[2000, 2000],
            usage: &[Some(2000), None],
            never_ready: &[],
            target: 100,
            tolerances: T,
            want_replicas: 2,
            want_utilization: 100.0,
        },
        Utilization {
            name: "missing sample above the target rebalances inside the tolerance (…NoChangeGt)",
            current: 2,
            requests: &[2000, 2000],
            usage: &[Some(3800), None],
            never_ready: &[],
            target: 100,
            tolerances: T,
            want_replicas: 2,
            want_utilization: 190.0,
        },
        Utilization {
            name: "missing sample below the target rebalances inside the tolerance (…NoChangeLt)",
            current: 2,
            requests: &[2000, 2000],
            usage: &[Some(1200), None],
            never_ready: &[],
            target: 100,
            tolerances: T,
            want_replicas: 2,
            want_utilization: 60.0,
        },
        Utilization {
            name: "unready and missing: the rebalance flips direction (…UnreadyChange)",
            current: 3,
            requests: &[2000, 2000, 2000],
            usage: &[Some(200), Some(900), None],
            never_ready: &[0],
            target: 50,
            tolerances: T,
            want_replicas: 3,
            want_utilization: 45.0,
        },
        Utilization {
            name: "unready and missing count idle on a scale-up (…UnreadyScaleUp)",
            current: 3,
            requests: &[2000, 2000, 2000],
            usage: &[Some(200), Some(4000), None],
            never_ready: &[0],
            target: 50,
            tolerances: T,
            want_replicas: 4,
            want_utilization: 200.0,
        },
        Utilization {
            name: "unready left out of a scale-down, missing counted full (…UnreadyScaleDown)",
            current: 4,
            requests: &[2000, 2000, 2000, 2000],
            usage: &[Some(200), Some(200), Some(200), None],
            never_ready: &[0],
            target: 50,
            tolerances: T,
            want_replicas: 3,
            want_utilization: 10.0,
        },
        Utilization {
            name: "a missing pod counts at a target above 100 % (…ScaleDownTargetOver100)",
            current: 4,
            requests: &[2000, 2000, 4000, 4000],
            usage: &[Some(400), Some(200), Some(200), None],
            never_ready: &[0],
            target: 300,
            tolerances: T,
            want_replicas: 2,
            want_utilization: 6.0,
        },
        Utilization {
            name: "a surge pod without a sample never raises a scale-down (…WithMaxSurge)",
            current: 2,
            requests: &[2000, 2000, 2000],
            usage: &[Some(200), Some(200), None],
            never_ready: &[],
            target: 50,
            tolerances: T,
            want_replicas: 2,
            want_utilization: 10.0,
        },
    ];
    for c in cases {
        let pods: Vec<PodView> = c
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = pod(&format!("p{i}"), *r);
                if c.never_ready.contains(&i) {
                    never_ready(p)
                } else {
                    p
                }
            })
            .collect();
        let p = resource_utilization(
            c.current,
            c.target,
            Resource::Cpu,
            None,
            &pods,
            &sparse(c.usage),
            c.tolerances,
            &timing(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(
            (p.replicas, p.value),
            (c.want_replicas, c.want_utilization),
            "{}",
            c.name
        );
    }
}

#[test]
fn superfluous_samples_of_unknown_pods_are_left_out_of_utilization() {
    // TestReplicaCalcSuperfluousMetrics: 4 pods, samples for 6.
    let p = resource_utilization(
        4,
        100,
        Resource::Cpu,
        None,
        &pods(4, 2000),
        &samples(&[8000, 19000, 6000, 14000, 6400, 4000]),
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!((p.replicas, p.value), (24, 587.0));
}

struct Average {
    name: &'static str,
    current: i32,
    usage: &'static [Option<i64>],
    target: i64,
    tolerances: Tolerances,
    want_replicas: i32,
    want_value_milli: i64,
}

#[test]
fn average_value_vectors() {
    let cases = [
        Average {
            name: "scale up (TestReplicaCalcScaleUpCM)",
            current: 3,
            usage: &[Some(20000), Some(10000), Some(30000)],
            target: 15000,
            tolerances: T,
            want_replicas: 4,
            want_value_milli: 20000,
        },
        Average {
            name: "scale down (TestReplicaCalcScaleDownCM)",
            current: 5,
            usage: &[Some(12000); 5],
            target: 20000,
            tolerances: T,
            want_replicas: 3,
            want_value_milli: 12000,
        },
        Average {
            name: "inside the tolerance (TestReplicaCalcToleranceCM)",
            current: 3,
            usage: &[Some(20000), Some(21000), Some(21000)],
            target: 20000,
            tolerances: T,
            want_replicas: 3,
            want_value_milli: 20666,
        },
        Average {
            name: "outside a 1 % scale-up tolerance",
            current: 3,
            usage: &[Some(20000), Some(21000), Some(21000)],
            target: 20000,
            tolerances: Tolerances {
                up: 0.01,
                down: 0.1,
            },
            want_replicas: 4,
            want_value_milli: 20666,
        },
        Average {
            name: "exactly on target with pods missing: no change (…MissingMetricsNoChangeEq)",
            current: 5,
            usage: &[Some(20000), Some(19000), Some(21000), None, None],
            target: 20000,
            tolerances: T,
            want_replicas: 5,
            want_value_milli: 20000,
        },
        Average {
            name: "a surge pod without a sample never raises a scale-down (…WithMaxSurgeCM)",
            current: 2,
            usage: &[Some(10000), Some(10000), None],
            target: 17000,
            tolerances: T,
            want_replicas: 2,
            want_value_milli: 10000,
        },
    ];
    for c in cases {
        let p = resource_average_value(
            c.current,
            c.target,
            Resource::Memory,
            &pods(c.usage.len(), 1000),
            &sparse(c.usage),
            c.tolerances,
            &timing(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(
            (p.replicas, p.value),
            (c.want_replicas, c.want_value_milli as f64 / 1000.0),
            "{}",
            c.name
        );
    }
}

#[test]
fn total_value_vectors() {
    // TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods: only the one ready
    // pod is the base, ceil(8600 / 4400 × 1) = 2.
    let mut ps = pods(3, 1000);
    ps[0].ready = Some((Readiness::False, t0()));
    ps[2].ready = Some((Readiness::False, t0()));
    let p = external_value(3, 8600, 4400, &ps, TOLERANCE).expect("proposal");
    assert_eq!(p.replicas, 2);
    // TestReplicaCalcScaleDownCMExternal and …ToleranceCMExternal.
    let five = pods(5, 1000);
    assert_eq!(
        external_value(5, 8600, 14334, &five, TOLERANCE)
            .expect("proposal")
            .replicas,
        3
    );
    assert_eq!(
        external_value(3, 8600, 8888, &pods(3, 1000), TOLERANCE)
            .expect("proposal")
            .replicas,
        3
    );
}

#[test]
fn per_pod_total_value_vectors() {
    // (status replicas, total, per-pod target) → (replicas, per-pod value).
    for (status, total, target, want, per_pod) in [
        (3, 8600, 2150, 4, 2.867),
        (5, 8600, 2867, 3, 1.72),
        (3, 8600, 2900, 3, 2.867),
        (3, 8600, 2800, 4, 2.867),
    ] {
        let tolerances = if target == 2800 {
            Tolerances {
                up: 0.01,
                down: 0.1,
            }
        } else {
            TOLERANCE
        };
        let p = external_average_value(status, total, target, tolerances).expect("proposal");
        assert_eq!((p.replicas, p.value), (want, per_pod), "{total}/{target}");
    }
}
