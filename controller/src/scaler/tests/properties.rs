//! Properties over random inputs: bounds always hold, a broken metric never
//! scales down under `HoldScaleDown`, more load never means fewer replicas,
//! and stabilization never moves against its windows.

use chrono::Duration;
use proptest::prelude::*;
use vertice_crds::scaler::{TimedRecommendation, VerticeScalerStatus};

use super::support::*;
use crate::scaler::behavior::{stabilize, Behavior};
use crate::scaler::decide::{plan, Observed, PromResult};

fn history(recs: &[(i64, i32)]) -> VerticeScalerStatus {
    VerticeScalerStatus {
        recommendations: recs
            .iter()
            .map(|(ago, r)| TimedRecommendation {
                time: t0() - Duration::seconds(*ago),
                replicas: *r,
            })
            .collect(),
        ..Default::default()
    }
}

fn observed(current: i32, queue: PromResult) -> Observed {
    Observed {
        spec_replicas: current,
        status_replicas: current,
        pods: pods(current.max(0) as usize, 1000),
        pod_metrics: None,
        prometheus: [("queue".to_string(), queue)].into(),
        ..Default::default()
    }
}

proptest! {
    #[test]
    fn the_result_is_always_inside_the_bounds(
        min in 1..10i32, extra in 0..30i32, current in 1..60i32, value in 0.0..10_000.0f64,
        recs in proptest::collection::vec((0..400i64, 0..80i32), 0..8),
    ) {
        let max = min + extra;
        let s = spec(min, max, vec![prom_metric("queue", 100.0)]);
        let p = plan(&s, None, &observed(current, PromResult::Value { value, time: t0() }), &history(&recs), t0());
        prop_assert!(p.desired >= min && p.desired <= max, "{} not in [{min}, {max}]", p.desired);
    }

    #[test]
    fn a_broken_metric_never_scales_down_under_hold(
        current in 1..40i32, cpu_value in 0..2000i64, broken in 0..3u8,
        recs in proptest::collection::vec((0..400i64, 0..80i32), 0..8),
    ) {
        let s = spec(1, 50, vec![prom_metric("queue", 100.0), prom_metric("other", 10.0)]);
        let queue = match broken {
            0 => PromResult::Empty,
            1 => PromResult::Error("down".into()),
            _ => PromResult::Value { value: 1.0, time: t0() - Duration::hours(1) },
        };
        let mut o = observed(current, queue);
        o.prometheus.insert("other".into(), PromResult::Value { value: cpu_value as f64 / 100.0, time: t0() });
        let p = plan(&s, None, &o, &history(&recs), t0());
        prop_assert!(p.desired >= current, "{current} → {}", p.desired);
    }

    #[test]
    fn more_load_never_means_fewer_replicas(
        current in 1..30i32, low in 0.0..5_000.0f64, more in 0.0..5_000.0f64,
        recs in proptest::collection::vec((0..400i64, 0..80i32), 0..8),
    ) {
        let s = spec(1, 100, vec![prom_metric("queue", 100.0)]);
        let h = history(&recs);
        let at = |v: f64| plan(&s, None, &observed(current, PromResult::Value { value: v, time: t0() }), &h, t0()).desired;
        prop_assert!(at(low) <= at(low + more));
    }

    #[test]
    fn stabilization_never_moves_against_its_window(
        current in 0..50i32, recommendation in 0..80i32,
        recs in proptest::collection::vec((0..400i64, 0..80i32), 0..8),
    ) {
        let b = Behavior::from_spec(None);
        let h = history(&recs).recommendations;
        let s = stabilize(&b, &h, current, recommendation, t0());
        // Between the current count and the recommendation…
        prop_assert!(s.replicas >= current.min(recommendation) && s.replicas <= current.max(recommendation));
        // …and on a scale-down, never below a recommendation still inside
        // the scale-down window (nor below the current count when none is).
        if s.replicas < current {
            for r in h.iter().filter(|r| r.time > t0() - Duration::seconds(300)) {
                prop_assert!(s.replicas >= r.replicas.min(current));
            }
        }
    }
}
