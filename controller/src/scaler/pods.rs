//! What the algorithm needs from the target's Pods and their PodMetrics
//! (`metrics.k8s.io`), taken from the Kubernetes objects themselves so the
//! controller and `scaler simulate` read the same input.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use super::quantity;
use crate::backup::status::t_to_chrono;

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

/// A pod as the HPA's replica calculator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    pub deleted: bool,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    /// The `Ready` condition: status and last transition.
    pub ready: Option<(bool, DateTime<Utc>)>,
    pub start_time: Option<DateTime<Utc>>,
    /// Container name → resource → request in milli-units; regular
    /// containers and restartable (sidecar) init containers, as upstream.
    pub requests: BTreeMap<String, BTreeMap<&'static str, i64>>,
    pub containers: Vec<String>,
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
                (
                    c.status == "True",
                    c.last_transition_time
                        .map(|t| t_to_chrono(&t.0))
                        .unwrap_or_default(),
                )
            });
        let sidecars = spec
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut requests = BTreeMap::new();
        let mut containers = Vec::new();
        for c in spec.containers.into_iter().chain(sidecars) {
            let mut per = BTreeMap::new();
            let asked = c.resources.and_then(|r| r.requests).unwrap_or_default();
            for key in ["cpu", "memory"] {
                if let Some(q) = asked.get(key) {
                    if let Ok(m) = quantity::milli(&q.0) {
                        per.insert(key, m);
                    }
                }
            }
            containers.push(c.name.clone());
            requests.insert(c.name, per);
        }
        PodView {
            name: pod.metadata.name.clone().unwrap_or_default(),
            deleted: pod.metadata.deletion_timestamp.is_some(),
            phase: status.phase.unwrap_or_else(|| "Pending".into()),
            ready,
            start_time: status.start_time.map(|t| t_to_chrono(&t.0)),
            requests,
            containers,
        }
    }

    /// Running with `Ready=True`: what the HPA counts as a ready pod.
    pub fn is_running_and_ready(&self) -> bool {
        !self.deleted && self.phase == "Running" && self.ready.is_some_and(|(ready, _)| ready)
    }

    /// The pod's request of `resource` (or one container's) in milli-units;
    /// an error names the container without a request, as upstream does.
    pub fn request(&self, resource: Resource, container: Option<&str>) -> Result<i64, String> {
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

/// The samples of `resource` per pod name (one container's when `container`
/// is set; a pod without that container has no sample, as upstream).
pub fn samples(
    metrics: &[PodMetrics],
    resource: Resource,
    container: Option<&str>,
) -> Result<BTreeMap<String, PodSample>, String> {
    let mut out = BTreeMap::new();
    for m in metrics {
        let mut value = 0;
        let mut found = false;
        for c in &m.containers {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let usage = c.usage.get(resource.key()).ok_or_else(|| {
                format!(
                    "PodMetrics of {} has no {} usage for container {}",
                    m.metadata.name.as_deref().unwrap_or("?"),
                    resource.key(),
                    c.name
                )
            })?;
            value += quantity::milli(usage)?;
            found = true;
        }
        if found {
            out.insert(
                m.metadata.name.clone().unwrap_or_default(),
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
    }
}
