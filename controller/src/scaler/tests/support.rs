//! Builders for pods, samples and specs.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use vertice_crds::scaler::{
    PrometheusMetric, PrometheusServer, ResourceMetric, ScaleTargetRef, ScalerMetric,
};
use vertice_crds::VerticeScalerSpec;

use crate::scaler::algorithm::{Timing, Tolerances};
use crate::scaler::pods::{ContainerMetrics, PodMetrics, PodSample, PodView, Readiness};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0)
        .single()
        .expect("valid time")
}

pub const TOLERANCE: Tolerances = Tolerances { up: 0.1, down: 0.1 };

pub fn timing() -> Timing {
    Timing {
        now: t0(),
        cpu_initialization_period: Duration::minutes(5),
        initial_readiness_delay: Duration::seconds(30),
        readiness_for_all_resources: false,
    }
}

/// A Running pod started long ago, Ready since long ago, with one container
/// requesting `cpu_milli` CPU and a fixed 1 000 000 of memory.
pub fn pod(name: &str, cpu_milli: i64) -> PodView {
    let mut requests = BTreeMap::new();
    requests.insert(
        "app".to_string(),
        BTreeMap::from([("cpu", cpu_milli), ("memory", 1_000_000)]),
    );
    PodView {
        name: name.into(),
        deleted: false,
        phase: "Running".into(),
        ready: Some((Readiness::True, t0() - Duration::hours(1))),
        start_time: Some(t0() - Duration::hours(1)),
        requests,
        containers: vec!["app".into()],
        pod_requests: None,
    }
}

pub fn pods(n: usize, cpu_milli: i64) -> Vec<PodView> {
    (0..n).map(|i| pod(&format!("p{i}"), cpu_milli)).collect()
}

/// Samples for the first `values.len()` pods, fresh, 30 s window.
pub fn samples(values: &[i64]) -> BTreeMap<String, PodSample> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("p{i}"),
                PodSample {
                    value: *v,
                    timestamp: t0() - Duration::seconds(5),
                    window: Duration::seconds(30),
                },
            )
        })
        .collect()
}

pub fn cpu_metric(target: i32) -> ScalerMetric {
    ScalerMetric {
        name: None,
        cpu: Some(ResourceMetric {
            target_average_utilization: Some(target),
            target_average_value: None,
            container: None,
        }),
        memory: None,
        prometheus: None,
        max_staleness: None,
        on_failure: None,
    }
}

pub fn prom_metric(name: &str, target_value: f64) -> ScalerMetric {
    ScalerMetric {
        name: Some(name.into()),
        cpu: None,
        memory: None,
        prometheus: Some(PrometheusMetric {
            query: "sum(queue)".into(),
            target_value: Some(target_value),
            target_average_value: None,
        }),
        max_staleness: None,
        on_failure: None,
    }
}

pub fn spec(min: i32, max: i32, metrics: Vec<ScalerMetric>) -> VerticeScalerSpec {
    VerticeScalerSpec {
        target_ref: ScaleTargetRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        },
        min_replicas: min,
        max_replicas: max,
        metrics,
        schedules: Vec::new(),
        behavior: None,
        prometheus: Some(PrometheusServer {
            url: "http://prometheus:9090".into(),
            bearer_token_secret_ref: None,
        }),
        cpu_initialization_period: None,
        initial_readiness_delay: None,
        dry_run: false,
    }
}

/// PodMetrics of pods `p0`, `p1`… with these CPU usages, sampled 10 s before [`t0`].
pub fn pod_metrics(values: &[&str]) -> Vec<PodMetrics> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| PodMetrics {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("p{i}")),
                ..Default::default()
            },
            timestamp: t0() - Duration::seconds(10),
            window: "30s".into(),
            containers: vec![ContainerMetrics {
                name: "app".into(),
                usage: [
                    ("cpu".to_string(), (*v).to_string()),
                    ("memory".to_string(), "1Mi".to_string()),
                ]
                .into(),
            }],
        })
        .collect()
}
