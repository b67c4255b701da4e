//! What the algorithm needs from the target's Pods and their PodMetrics
//! (`metrics.k8s.io`), taken from the Kubernetes objects themselves so the
//! controller and `scaler simulate` read the same input.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde::Deserialize;

use super::quantity;
use crate::shared::t_to_chrono;

/// CPU or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub fn key(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// The status of a pod's `Ready` condition. Upstream tells all three apart:
/// a pod counts as ready only when `True`, but a CPU sample is set aside as
/// unready only when `False`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    True,
    False,
    Unknown,
}

/// A pod as the HPA's replica calculator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    pub deleted: bool,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    /// The `Ready` condition: status and last transition.
    pub ready: Option<(Readiness, DateTime<Utc>)>,
    pub start_time: Option<DateTime<Utc>>,
    /// Container name → resource → request in milli-units; regular
    /// containers and restartable (sidecar) init containers, as upstream.
    pub requests: BTreeMap<String, BTreeMap<&'static str, i64>>,
    pub containers: Vec<String>,
    /// Set when the pod has pod-level requests (`spec.resources.requests`,
    /// PodLevelResources, on by default since Kubernetes 1.34): the pod's
    /// request per resource as upstream's `PodRequests` computes it, which
    /// is what the HPA divides pod (not container) usage by.
    pub pod_requests: Option<BTreeMap<&'static str, i64>>,
}

/// The resources a pod may request at pod level (upstream
/// `IsSupportedPodLevelResource`).
fn is_pod_level_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory") || name.starts_with("hugepages-")
}

fn request_of(c: &Container, key: &str) -> Option<i64> {
    let q = c.resources.as_ref()?.requests.as_ref()?.get(key)?;
    quantity::milli(&q.0).ok()
}

/// Upstream's `AggregateContainerRequests` for one resource: regular and
/// sidecar containers add up; an init container that runs to completion
/// needs its own request plus the sidecars started before it, and the pod
/// needs the larger of the two. `None` when no container requests it.
fn aggregate_container_request(spec: &PodSpec, key: &str) -> Option<i64> {
    let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    let mut sum = None;
    for c in &spec.containers {
        sum = add(sum, request_of(c, key));
    }
    let (mut sidecars, mut init_max) = (None, None);
    for c in spec.init_containers.iter().flatten() {
        let own = request_of(c, key);
        let needs = if c.restart_policy.as_deref() == Some("Always") {
            sum = add(sum, own);
            sidecars = add(sidecars, own);
            sidecars
        } else {
            add(own, sidecars)
        };
        init_max = init_max.max(needs);
    }
    match (sum, init_max) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    }
}

/// Upstream's `PodRequests` (no options) for CPU and memory, when the pod
/// sets pod-level requests: the pod-level request, or for a resource it
/// does not set there the containers' aggregate; plus the runtime class's
/// `overhead`.
fn pod_level_requests(spec: &PodSpec) -> Option<BTreeMap<&'static str, i64>> {
    let asked = spec.resources.as_ref()?.requests.as_ref()?;
    if !asked.keys().any(|k| is_pod_level_resource(k)) {
        return None;
    }
    let mut out = BTreeMap::new();
    for key in ["cpu", "memory"] {
        let base = match asked.get(key) {
            Some(q) => quantity::milli(&q.0).ok(),
            None => aggregate_container_request(spec, key),
        };
        let overhead = spec
            .overhead
            .as_ref()
            .and_then(|o| o.get(key))
            .and_then(|q| quantity::milli(&q.0).ok());
        if base.is_some() || overhead.is_some() {
            out.insert(key, base.unwrap_or(0) + overhead.unwrap_or(0));
        }
    }
    Some(out)
}

impl PodView {
    pub fn from_pod(pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| {
                let readiness = match c.status.as_str() {
                    "True" => Readiness::True,
                    "False" => Readiness::False,
                    _ => Readiness::Unknown,
                };
                (
                    readiness,
                    c.last_transition_time
                        .map(|t| t_to_chrono(&t.0))
                        .unwrap_or_default(),
                )
            });
        let pod_requests = pod_level_requests(&spec);
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut requests = BTreeMap::new();
        let mut containers = Vec::new();
        for c in spec.containers.iter().chain(sidecars) {
            let mut per = BTreeMap::new();
            for key in ["cpu", "memory"] {
                if let Some(m) = request_of(c, key) {
                    per.insert(key, m);
                }
            }
            containers.push(c.name.clone());
            requests.insert(c.name.clone(), per);
        }
        PodView {
            name: pod.metadata.name.clone().unwrap_or_default(),
            deleted: pod.metadata.deletion_timestamp.is_some(),
            phase: status.phase.unwrap_or_else(|| "Pending".into()),
            ready,
            start_time: status.start_time.map(|t| t_to_chrono(&t.0)),
            requests,
            containers,
            pod_requests,
        }
    }

    /// Running with `Ready=True`: what the HPA counts as a ready pod for a
    /// total (`targetValue`) target. As upstream's `getReadyPodsCount`, a
    /// pod being deleted still counts while it runs and is ready: it still
    /// serves, and so still carries its share of the load the ratio
    /// describes.
    pub fn is_running_and_ready(&self) -> bool {
        self.phase == "Running" && self.ready.is_some_and(|(r, _)| r == Readiness::True)
    }

    /// The pod's request of `resource` (or one container's) in milli-units,
    /// as upstream's `calculateRequests`: a pod-level request when the pod
    /// sets one and the metric is not a container's, else the sum over its
    /// containers. An error names what is missing, as upstream does.
    pub fn request(&self, resource: Resource, container: Option<&str>) -> Result<i64, String> {
        if let (None, Some(pod)) = (container, &self.pod_requests) {
            return pod.get(resource.key()).copied().ok_or_else(|| {
                format!(
                    "missing pod-level request for {} in Pod {}",
                    resource.key(),
                    self.name
                )
            });
        }
        if let Some(want) = container {
            if !self.containers.iter().any(|c| c == want) {
                // A request of 0 here would read as an idle pod and propose
                // a scale-down: the metric names a container these pods lack.
                return Err(format!(
                    "container {want} not found in Pod {}: the metric's container must name a container of the target's pods",
                    self.name
                ));
            }
        }
        let mut sum = 0;
        for name in &self.containers {
            if container.is_some_and(|c| c != name) {
                continue;
            }
            match self.requests.get(name).and_then(|r| r.get(resource.key())) {
                Some(v) => sum += v,
                None => {
                    return Err(format!(
                        "missing request for {} in container {name} of Pod {}",
                        resource.key(),
                        self.name
                    ))
                }
            }
        }
        Ok(sum)
    }
}

/// `metrics.k8s.io/v1beta1` PodMetrics, as the API returns it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PodMetrics {
    pub metadata: kube::api::ObjectMeta,
    pub timestamp: DateTime<Utc>,
    /// Go duration, e.g. `30s`, `1m0s`, `15.023s`.
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ContainerMetrics {
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PodMetricsList {
    #[serde(default)]
    pub items: Vec<PodMetrics>,
}

/// One pod's sample of one resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodSample {
    /// Milli-units.
    pub value: i64,
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
}

/// The samples of `resource` per pod name, as upstream's metrics client
/// reads PodMetrics. For the whole pod: the sum over its containers; a pod
/// with no containers in its PodMetrics, or one without that usage, has no
/// sample (it counts as a pod without metrics). For one `container`: that
/// container's usage; a pod whose PodMetrics lack the container makes the
/// metric an error (upstream's "container … not present in metrics").
pub fn samples(
    metrics: &[PodMetrics],
    resource: Resource,
    container: Option<&str>,
) -> Result<BTreeMap<String, PodSample>, String> {
    let mut out = BTreeMap::new();
    // By pod name, not metrics-server's order (which varies between lists):
    // an error names the same pod on every poll, so its text is stable.
    let mut sorted: Vec<&PodMetrics> = metrics.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for m in sorted {
        let pod = m.metadata.name.as_deref().unwrap_or_default();
        let value = match container {
            Some(want) => {
                let Some(c) = m.containers.iter().find(|c| c.name == want) else {
                    return Err(format!(
                        "container {want} not present in metrics for pod {}/{pod}: the metric's container must name a container of the target's pods",
                        m.metadata.namespace.as_deref().unwrap_or_default()
                    ));
                };
                match c.usage.get(resource.key()) {
                    Some(usage) => Some(quantity::milli(usage)?),
                    None => None,
                }
            }
            None => {
                let mut sum = Some(0);
                for c in &m.containers {
                    match (c.usage.get(resource.key()), sum) {
                        (Some(usage), Some(total)) => sum = Some(total + quantity::milli(usage)?),
                        _ => sum = None,
                    }
                }
                sum.filter(|_| !m.containers.is_empty())
            }
        };
        if let Some(value) = value {
            out.insert(
                pod.to_string(),
                PodSample {
                    value,
                    timestamp: m.timestamp,
                    window: go_duration(&m.window).unwrap_or_else(|| Duration::seconds(30)),
                },
            );
        }
    }
    Ok(out)
}

/// A Go `time.Duration` string (`1m30s`, `15.5s`, `500ms`).
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut total_ns: f64 = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::zero());
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_ns += number * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::nanoseconds(total_ns as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration("30s"), Some(Duration::seconds(30)));
        assert_eq!(go_duration("1m0s"), Some(Duration::seconds(60)));
        assert_eq!(go_duration("1m30.5s"), Some(Duration::milliseconds(90_500)));
        assert_eq!(go_duration("500ms"), Some(Duration::milliseconds(500)));
        assert_eq!(go_duration("x"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn requests_sum_containers_and_sidecars() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "app", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}},
                    {"name": "side", "resources": {"requests": {"cpu": "100m"}}}
                ],
                "initContainers": [
                    {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m", "memory": "1Mi"}}},
                    {"name": "setup", "resources": {"requests": {"cpu": "4"}}}
                ]
            },
            "status": {"phase": "Running"}
        }))
        .expect("pod");
        let view = PodView::from_pod(&pod);
        assert_eq!(view.request(Resource::Cpu, None), Ok(350));
        assert_eq!(view.request(Resource::Cpu, Some("app")), Ok(200));
        let err = view
            .request(Resource::Memory, None)
            .expect_err("side has none");
        assert!(err.contains("container side of Pod p"), "{err}");
        assert_eq!(view.pod_requests, None);
        let err = view
            .request(Resource::Cpu, Some("gone"))
            .expect_err("no such container");
        assert!(
            err.starts_with("container gone not found in Pod p"),
            "{err}"
        );
    }

    #[test]
    fn pod_level_requests_follow_upstreams_pod_requests() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "4"}},
                "overhead": {"cpu": "100m", "memory": "10Mi"},
                "containers": [{"name": "app", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}],
                "initContainers": [
                    {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"memory": "16Mi"}}},
                    {"name": "migrate", "resources": {"requests": {"memory": "256Mi"}}}
                ]
            },
            "status": {"phase": "Running"}
        }))
        .expect("pod");
        let view = PodView::from_pod(&pod);
        let mi = 1_048_576_000_i64;
        // CPU: the pod-level 2 plus the overhead. Memory is not set at pod
        // level: the containers' aggregate, max(64 + 16, 256 + 16) Mi, plus
        // the overhead.
        assert_eq!(
            view.pod_requests,
            Some(BTreeMap::from([("cpu", 2100), ("memory", (272 + 10) * mi)]))
        );
        assert_eq!(view.request(Resource::Cpu, None), Ok(2100));
        // A container metric divides by the container's own request.
        assert_eq!(view.request(Resource::Cpu, Some("app")), Ok(200));
        // Pod-level limits alone are not pod-level requests.
        let mut limits_only = pod.clone();
        if let Some(spec) = limits_only.spec.as_mut() {
            spec.resources = serde_json::from_value(serde_json::json!({"limits": {"cpu": "4"}}))
                .expect("resources");
        }
        assert_eq!(PodView::from_pod(&limits_only).pod_requests, None);
    }

    fn pod_metrics(json: serde_json::Value) -> Vec<PodMetrics> {
        serde_json::from_value(json).expect("pod metrics")
    }

    #[test]
    fn samples_read_pod_metrics_as_upstreams_metrics_client() {
        let list = pod_metrics(serde_json::json!([
            {"metadata": {"name": "a", "namespace": "shop"}, "timestamp": "2026-12-02T10:00:00Z", "window": "30s",
             "containers": [{"name": "app", "usage": {"cpu": "100m"}}, {"name": "side", "usage": {"cpu": "50m"}}]},
            {"metadata": {"name": "b", "namespace": "shop"}, "timestamp": "2026-12-02T10:00:00Z", "window": "30s",
             "containers": [{"name": "app", "usage": {"cpu": "100m"}}, {"name": "side", "usage": {}}]},
            {"metadata": {"name": "c", "namespace": "shop"}, "timestamp": "2026-12-02T10:00:00Z", "window": "30s",
             "containers": []}
        ]));
        // The whole pod: a container without the usage, or no containers,
        // leaves the pod without a sample (a missing pod), not an error.
        let pods = samples(&list, Resource::Cpu, None).expect("samples");
        assert_eq!(pods.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(pods["a"].value, 150);
        // One container: its usage; without that usage, no sample.
        let two = &list[..2];
        let side = samples(two, Resource::Cpu, Some("side")).expect("samples");
        assert_eq!(side.keys().collect::<Vec<_>>(), ["a"]);
        // A pod whose metrics lack the container: an error naming both.
        let err = samples(&list, Resource::Cpu, Some("app")).expect_err("c has no app");
        assert!(
            err.starts_with("container app not present in metrics for pod shop/c"),
            "{err}"
        );
    }
}
