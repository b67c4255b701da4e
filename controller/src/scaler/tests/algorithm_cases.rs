//! Cases of upstream's `replica_calculator_test.go`, recomputed by hand with
//! its integer arithmetic, and the HPA documentation's examples.

use chrono::Duration;

use super::support::*;
use crate::scaler::algorithm::*;
use crate::scaler::pods::{Readiness, Resource};

fn cpu(
    current: i32,
    target: i32,
    pods: &[crate::scaler::pods::PodView],
    values: &[i64],
) -> Result<Proposal, CalcError> {
    resource_utilization(
        current,
        target,
        Resource::Cpu,
        None,
        pods,
        &samples(values),
        TOLERANCE,
        &timing(),
    )
}

fn unready(mut p: crate::scaler::pods::PodView) -> crate::scaler::pods::PodView {
    // Started a minute ago and not yet ready: inside the initialization period.
    p.start_time = Some(t0() - Duration::minutes(1));
    p.ready = Some((Readiness::False, t0() - Duration::seconds(50)));
    p
}

#[test]
fn scale_up() {
    // 300m + 500m + 700m of 3 × 1 CPU = 50 % against 30 %: ceil(5/3 × 3) = 5.
    let p = cpu(3, 30, &pods(3, 1000), &[300, 500, 700]).expect("proposal");
    assert_eq!((p.replicas, p.value), (5, 50.0));
}

#[test]
fn scale_down() {
    // 1400m of 5 CPU = 28 % against 50 %: ceil(0.56 × 5) = 3.
    let p = cpu(5, 50, &pods(5, 1000), &[100, 300, 500, 250, 250]).expect("proposal");
    assert_eq!((p.replicas, p.value), (3, 28.0));
}

#[test]
fn utilization_is_truncated_to_a_whole_percent_before_the_ratio() {
    // 1099m of 1000m is 109.9 % → 109 %: ratio 1.09 is inside the tolerance.
    let p = cpu(1, 100, &pods(1, 1000), &[1099]).expect("proposal");
    assert_eq!((p.replicas, p.value), (1, 109.0));
    // 1110m → 111 %: outside, ceil(1.11) = 2.
    assert_eq!(
        cpu(1, 100, &pods(1, 1000), &[1110])
            .expect("proposal")
            .replicas,
        2
    );
}

#[test]
fn scale_up_with_an_unready_pod_counts_it_as_idle() {
    // Ready pods: 1200m of 2 CPU = 60 % (ratio 2). The unready pod is
    // counted at 0 on a scale-up: 1200m of 3 CPU = 40 %, ceil(1.333 × 3) = 4.
    let mut ps = pods(3, 1000);
    ps[0] = unready(ps[0].clone());
    let p = cpu(3, 30, &ps, &[300, 500, 700]).expect("proposal");
    assert_eq!((p.replicas, p.value), (4, 60.0));
}

#[test]
fn unready_pods_are_left_out_of_a_scale_down() {
    let mut ps = pods(5, 1000);
    ps[3] = unready(ps[3].clone());
    ps[4] = unready(ps[4].clone());
    // Ready: 900m of 3 CPU = 30 % against 50 %: ceil(0.6 × 3) = 2.
    let p = cpu(5, 50, &ps, &[100, 300, 500, 250, 250]).expect("proposal");
    assert_eq!((p.replicas, p.value), (2, 30.0));
}

#[test]
fn a_sample_from_before_readiness_settled_is_ignored_inside_the_initialization_period() {
    // Ready 10 s ago, 30 s window: the sample may cover unready time.
    let mut ps = pods(2, 1000);
    ps[1].start_time = Some(t0() - Duration::minutes(1));
    ps[1].ready = Some((Readiness::True, t0() - Duration::seconds(10)));
    // Only p0 counts: 800m = 80 % against 50 % → ratio 1.6; the ignored pod
    // counts as 0 on the scale-up: 40 % → within... 0.8 flips direction → keep 2.
    let p = cpu(2, 50, &ps, &[800, 900]).expect("proposal");
    assert_eq!(p.replicas, 2);
    // After the initialization period the same pod counts: 85 % → ceil(1.7 × 2) = 4.
    ps[1].start_time = Some(t0() - Duration::minutes(10));
    assert_eq!(cpu(2, 50, &ps, &[800, 900]).expect("proposal").replicas, 4);
}

#[test]
fn a_pod_that_was_never_ready_is_ignored_after_the_initialization_period() {
    let mut ps = pods(2, 1000);
    // Started 10 minutes ago, turned unready 10 s after start (within the
    // 30 s readiness delay): never ready.
    ps[1].start_time = Some(t0() - Duration::minutes(10));
    ps[1].ready = Some((
        Readiness::False,
        t0() - Duration::minutes(10) + Duration::seconds(10),
    ));
    // p0 alone: 200m = 20 % against 50 % → ceil(0.4 × 1) = 1.
    assert_eq!(cpu(2, 50, &ps, &[200, 900]).expect("proposal").replicas, 1);
    // It was ready once (turned unready 2 minutes after start): it counts.
    ps[1].ready = Some((Readiness::False, t0() - Duration::minutes(8)));
    // 1100m of 2 CPU = 55 % → ratio 1.1, inside the tolerance.
    assert_eq!(cpu(2, 50, &ps, &[200, 900]).expect("proposal").replicas, 2);
}

#[test]
fn memory_ignores_readiness() {
    let mut ps = pods(2, 1000);
    ps[1] = unready(ps[1].clone());
    let values = samples(&[900_000, 900_000]);
    // Both count: 90 % of 1 MB requests against 45 % → 4.
    let p = resource_utilization(
        2,
        45,
        Resource::Memory,
        None,
        &ps,
        &values,
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!(p.replicas, 4);
}

#[test]
fn missing_metrics_count_as_full_on_scale_down_and_idle_on_scale_up() {
    // Equal: ratio exactly 1 → missing pods left out → no change.
    assert_eq!(
        cpu(2, 100, &pods(2, 1000), &[1000])
            .expect("proposal")
            .replicas,
        2
    );
    // Up: 190 % → missing pod at 0 % → 95 %, inside the tolerance → 2.
    assert_eq!(
        cpu(2, 100, &pods(2, 1000), &[1900])
            .expect("proposal")
            .replicas,
        2
    );
    // Down: 60 % → missing pod at 100 % → 80 % → ceil(0.8 × 2) = 2.
    assert_eq!(
        cpu(2, 100, &pods(2, 1000), &[600])
            .expect("proposal")
            .replicas,
        2
    );
    // Down with a target above 100 %: the missing pod counts at the target.
    // 50 % + 150 % of 2 CPU = 100 % against 150 % → ceil(0.666 × 2) = 2.
    assert_eq!(
        cpu(2, 150, &pods(2, 1000), &[500])
            .expect("proposal")
            .replicas,
        2
    );
    // Up: 300 % + 0 % = 150 % against 100 % → ceil(1.5 × 2) = 3.
    assert_eq!(
        cpu(2, 100, &pods(2, 1000), &[3000])
            .expect("proposal")
            .replicas,
        3
    );
}

#[test]
fn a_rebalance_that_flips_direction_keeps_the_current_count() {
    // p0 unready, p1 at 45 % (ratio 0.9 inside... but p2 is missing, so
    // rebalanced: 45 % + 100 % of 2 = 72 % → 1.44 against 50 %: flips → 3.
    let mut ps = pods(3, 1000);
    ps[0] = unready(ps[0].clone());
    let mut values = samples(&[100, 450]);
    values.remove("p2");
    let p = resource_utilization(
        3,
        50,
        Resource::Cpu,
        None,
        &ps,
        &values,
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!(p.replicas, 3);
}

#[test]
fn deleted_and_failed_pods_are_ignored_and_pending_ones_are_unready() {
    let mut ps = pods(4, 1000);
    ps[2].deleted = true;
    ps[3].phase = "Failed".into();
    // Requests of ignored pods do not count: 1000m of 2 CPU = 50 % against 25 % → 4.
    assert_eq!(
        cpu(4, 25, &ps, &[500, 500, 900, 900])
            .expect("proposal")
            .replicas,
        4
    );
    let mut ps = pods(3, 1000);
    ps[2].phase = "Pending".into();
    // 100 % on two, the pending pod is unready and counts 0 on a scale-up:
    // 2000m of 3 CPU = 66 % against 50 % → ceil(1.32 × 3) = 4.
    assert_eq!(
        cpu(3, 50, &ps, &[1000, 1000]).expect("proposal").replicas,
        4
    );
}

#[test]
fn errors_say_what_is_missing() {
    assert!(cpu(1, 50, &[], &[])
        .expect_err("no pods")
        .to_string()
        .contains("no pods returned by selector"));
    let mut ps = pods(1, 1000);
    ps[0].requests.clear();
    assert!(cpu(1, 50, &ps, &[100])
        .expect_err("no request")
        .to_string()
        .contains("missing request for cpu in container app of Pod p0"));
    let mut ps = pods(1, 1000);
    ps[0] = unready(ps[0].clone());
    assert!(cpu(1, 50, &ps, &[100])
        .expect_err("all unready")
        .to_string()
        .contains("did not receive metrics"));
}

#[test]
fn tolerance_is_configurable_per_direction() {
    let wide_down = Tolerances { up: 0.1, down: 0.5 };
    // 60 % against 100 % is inside a 0.5 scale-down tolerance.
    let p = resource_utilization(
        2,
        100,
        Resource::Cpu,
        None,
        &pods(2, 1000),
        &samples(&[600, 600]),
        wide_down,
        &timing(),
    )
    .expect("proposal");
    assert_eq!(p.replicas, 2);
    let p = resource_utilization(
        2,
        100,
        Resource::Cpu,
        None,
        &pods(2, 1000),
        &samples(&[1150, 1150]),
        wide_down,
        &timing(),
    )
    .expect("proposal");
    assert_eq!(p.replicas, 3);
}

#[test]
fn average_value_targets_use_the_integer_average() {
    // 300m, 500m, 700m average 500m against 250m → ceil(2 × 3) = 6.
    let p = resource_average_value(
        3,
        250,
        Resource::Cpu,
        &pods(3, 1000),
        &samples(&[300, 500, 700]),
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!((p.replicas, p.value), (6, 0.5));
    // A missing pod on a scale-down counts as the target: (100+100+250)/3 = 150 → 0.6 → 2.
    let p = resource_average_value(
        3,
        250,
        Resource::Cpu,
        &pods(3, 1000),
        &samples(&[100, 100]),
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!(p.replicas, 2);
}

#[test]
fn external_values_follow_the_documented_formula() {
    // "if the current metric value is 200m and the desired value is 100m,
    // the number of replicas will be doubled".
    assert_eq!(
        external_value(3, 200, 100, &pods(3, 1000), TOLERANCE)
            .expect("proposal")
            .replicas,
        6
    );
    // "if the current value is instead 50m, you'll halve the number of replicas".
    assert_eq!(
        external_value(4, 50, 100, &pods(4, 1000), TOLERANCE)
            .expect("proposal")
            .replicas,
        2
    );
    // Only ready pods count for the base.
    let mut ps = pods(4, 1000);
    ps[3].ready = Some((Readiness::False, t0()));
    assert_eq!(
        external_value(4, 200, 100, &ps, TOLERANCE)
            .expect("proposal")
            .replicas,
        6
    );
    // A pod being deleted but still running and ready counts, as upstream's
    // getReadyPodsCount: 4 ready (one terminating) → ceil(2 × 4) = 8.
    let mut ps = pods(4, 1000);
    ps[3].deleted = true;
    assert_eq!(
        external_value(4, 200, 100, &ps, TOLERANCE)
            .expect("proposal")
            .replicas,
        8
    );
    // Ready=Unknown is not ready.
    let mut ps = pods(4, 1000);
    ps[3].ready = Some((Readiness::Unknown, t0()));
    assert_eq!(
        external_value(4, 200, 100, &ps, TOLERANCE)
            .expect("proposal")
            .replicas,
        6
    );
    // From zero replicas: as many as the ratio.
    assert_eq!(
        external_value(0, 2500, 1000, &[], TOLERANCE)
            .expect("proposal")
            .replicas,
        3
    );
}

#[test]
fn external_average_values_divide_the_total() {
    // 8.6 against 2 per pod on 4 replicas: ratio 1.075, inside the tolerance.
    assert_eq!(
        external_average_value(4, 8600, 2000, TOLERANCE)
            .expect("proposal")
            .replicas,
        4
    );
    // On 3 replicas: ratio 1.43 → ceil(8.6 / 2) = 5.
    let p = external_average_value(3, 8600, 2000, TOLERANCE).expect("proposal");
    assert_eq!(p.replicas, 5);
    assert_eq!(p.value, 2.867);
}

fn with_pod_level(mut p: crate::scaler::pods::PodView, cpu: i64) -> crate::scaler::pods::PodView {
    p.pod_requests = Some([("cpu", cpu)].into());
    p
}

#[test]
fn pod_level_requests_are_what_pod_usage_is_divided_by() {
    // Containers ask 250m each, the pod 1 CPU: 500m of use is 50 % of the
    // pod (the HPA's answer), not 200 % of the containers.
    let ps: Vec<_> = pods(2, 250)
        .into_iter()
        .map(|p| with_pod_level(p, 1000))
        .collect();
    let p = cpu(2, 50, &ps, &[500, 500]).expect("proposal");
    assert_eq!((p.replicas, p.value), (2, 50.0));
    // A container metric still divides by that container's request.
    let p = resource_utilization(
        2,
        50,
        Resource::Cpu,
        Some("app"),
        &ps,
        &samples(&[500, 500]),
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!((p.replicas, p.value), (8, 200.0));
    // Pod-level requests without CPU, and no container CPU request either.
    let mut ps = pods(1, 250);
    ps[0].pod_requests = Some([("memory", 1_000_000)].into());
    let err = cpu(1, 50, &ps, &[100])
        .expect_err("no cpu request")
        .to_string();
    assert_eq!(err, "missing pod-level request for cpu in Pod p0");
}

#[test]
fn a_container_metric_naming_no_container_of_the_pod_is_an_error() {
    let err = resource_utilization(
        2,
        50,
        Resource::Cpu,
        Some("sidecar"),
        &pods(2, 1000),
        &samples(&[100, 100]),
        TOLERANCE,
        &timing(),
    )
    .expect_err("no such container")
    .to_string();
    assert!(
        err.starts_with("container sidecar not found in Pod p0"),
        "{err}"
    );
}

#[test]
fn a_cpu_sample_of_a_pod_whose_readiness_is_unknown_counts() {
    // Upstream sets a CPU sample aside only on Ready=False: Unknown inside
    // the initialization period, with a full window since the transition,
    // is counted. 2 × 800m of 1 CPU = 80 % against 50 % → ceil(1.6 × 2) = 4.
    let mut ps = pods(2, 1000);
    ps[1].start_time = Some(t0() - Duration::minutes(1));
    ps[1].ready = Some((Readiness::Unknown, t0() - Duration::minutes(1)));
    assert_eq!(cpu(2, 50, &ps, &[800, 800]).expect("proposal").replicas, 4);
    // False is set aside: p0 alone at 80 %, p1 counted idle → 40 %, which
    // flips direction → keep 2.
    ps[1].ready = Some((Readiness::False, t0() - Duration::minutes(1)));
    assert_eq!(cpu(2, 50, &ps, &[800, 800]).expect("proposal").replicas, 2);
}

#[test]
fn average_value_and_utilization_treat_missing_pods_alike_on_target() {
    // Five pods, three sampled exactly on target, two without a sample:
    // both targets leave the count alone (this read 5 → 3 for
    // targetAverageValue when the missing pods were filled with 0).
    let on_target = samples(&[500, 500, 500]);
    let value = resource_average_value(
        5,
        500,
        Resource::Cpu,
        &pods(5, 1000),
        &on_target,
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    let utilization = resource_utilization(
        5,
        50,
        Resource::Cpu,
        None,
        &pods(5, 1000),
        &on_target,
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!((value.replicas, utilization.replicas), (5, 5));
}

#[test]
fn the_sample_time_is_the_newest_sample() {
    let mut values = samples(&[100, 100]);
    if let Some(s) = values.get_mut("p1") {
        s.timestamp = t0() - Duration::minutes(1);
    }
    let p = resource_utilization(
        2,
        50,
        Resource::Memory,
        None,
        &pods(2, 1000),
        &values,
        TOLERANCE,
        &timing(),
    )
    .expect("proposal");
    assert_eq!(p.sample_time, Some(t0() - Duration::seconds(5)));
}
