//! Watch caches of the pods and the Deployments and StatefulSets the
//! scaler reads every poll, as the HPA reads pods from an informer: a poll
//! then costs no API request but the metrics it fetches. Objects are
//! stripped to the fields the scaler uses, so the caches stay small in a
//! cluster with many pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use crate::runtime::scoped;

use super::observe::{selector_string, RolloutView, TargetState};
use super::selector::Selector;

pub struct Caches {
    pub pods: Store<Pod>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
}

fn strip_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

fn strip_container(c: &mut Container) {
    let requests = c.resources.take().and_then(|r| r.requests);
    let restart_policy = c.restart_policy.take();
    *c = Container {
        name: std::mem::take(&mut c.name),
        restart_policy,
        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests,
            ..Default::default()
        }),
        ..Default::default()
    };
}

/// Keeps what the loop reads of a VerticeScaler: its managed fields (a few
/// KiB each once the status is applied) and annotations other than the
/// pause (a client-side `kubectl apply` copies the whole object into one)
/// are dropped.
pub fn strip_scaler(scaler: &mut vertice_crds::VerticeScaler) {
    scaler.metadata.managed_fields = None;
    if let Some(annotations) = scaler.metadata.annotations.as_mut() {
        annotations.retain(|k, _| k == vertice_crds::scaler::PAUSED_ANNOTATION);
    }
}

/// Keeps what `PodView::from_pod` reads.
pub fn strip_pod(pod: &mut Pod) {
    strip_meta(&mut pod.metadata);
    if let Some(spec) = pod.spec.as_mut() {
        let mut containers = std::mem::take(&mut spec.containers);
        containers.iter_mut().for_each(strip_container);
        let mut init = spec.init_containers.take().unwrap_or_default();
        init.iter_mut().for_each(strip_container);
        // Pod-level requests and the runtime class's overhead are what the
        // HPA divides usage by when a pod sets them (PodLevelResources).
        let resources = spec
            .resources
            .take()
            .and_then(|r| r.requests)
            .map(
                |requests| k8s_openapi::api::core::v1::ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                },
            );
        *spec = k8s_openapi::api::core::v1::PodSpec {
            containers,
            init_containers: Some(init).filter(|i| !i.is_empty()),
            resources,
            overhead: spec.overhead.take(),
            ..Default::default()
        };
    }
    if let Some(status) = pod.status.as_mut() {
        let ready: Vec<PodCondition> = status
            .conditions
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ == "Ready")
            .collect();
        *status = k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase.take(),
            start_time: status.start_time.take(),
            conditions: Some(ready),
            ..Default::default()
        };
    }
}

/// Starts the three watches; the returned future drives them until dropped.
pub fn start(
    client: &Client,
    namespace: &Option<String>,
) -> (Caches, impl std::future::Future<Output = ()> + Send) {
    let (pods, pods_writer) = reflector::store();
    let (deployments, deployments_writer) = reflector::store();
    let (statefulsets, statefulsets_writer) = reflector::store();
    let pod_watch = watcher(scoped::<Pod>(client, namespace), watcher::Config::default())
        .modify(strip_pod)
        .reflect(pods_writer)
        .default_backoff()
        .for_each(|_| async {});
    let deployment_watch = watcher(
        scoped::<Deployment>(client, namespace),
        watcher::Config::default(),
    )
    .modify(|d: &mut Deployment| {
        strip_meta(&mut d.metadata);
        d.spec.template = Default::default();
    })
    .reflect(deployments_writer)
    .default_backoff()
    .for_each(|_| async {});
    let statefulset_watch = watcher(
        scoped::<StatefulSet>(client, namespace),
        watcher::Config::default(),
    )
    .modify(|s: &mut StatefulSet| {
        strip_meta(&mut s.metadata);
        s.spec.template = Default::default();
        s.spec.volume_claim_templates = None;
    })
    .reflect(statefulsets_writer)
    .default_backoff()
    .for_each(|_| async {});
    let drive = async move {
        futures::join!(pod_watch, deployment_watch, statefulset_watch);
    };
    (
        Caches {
            pods,
            deployments,
            statefulsets,
        },
        drive,
    )
}

impl Caches {
    pub async fn synced(&self) -> bool {
        crate::runtime::synced(&self.pods).await
            && crate::runtime::synced(&self.deployments).await
            && crate::runtime::synced(&self.statefulsets).await
    }

    /// A Deployment's or StatefulSet's state from the cache; `None` for
    /// other kinds (read through `/scale`), `Some(None)` when it is not there.
    pub fn target(&self, namespace: &str, kind: &str, name: &str) -> Option<Option<TargetState>> {
        match kind {
            "Deployment" => Some(
                self.deployments
                    .get(&ObjectRef::new(name).within(namespace))
                    .map(|d| deployment_state(&d)),
            ),
            "StatefulSet" => Some(
                self.statefulsets
                    .get(&ObjectRef::new(name).within(namespace))
                    .map(|s| statefulset_state(&s)),
            ),
            _ => None,
        }
    }

    /// The pods of `namespace` that `selector` matches.
    pub fn pods(&self, namespace: &str, selector: &Selector) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                let empty = BTreeMap::new();
                selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty))
            })
            .collect()
    }
}

fn label_selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Option<String> {
    serde_json::to_value(selector)
        .ok()
        .as_ref()
        .and_then(selector_string)
}

fn deployment_state(d: &Deployment) -> TargetState {
    let status = d.status.as_ref();
    let spec_replicas = d.spec.replicas.unwrap_or(1);
    TargetState {
        spec_replicas,
        status_replicas: status.and_then(|s| s.replicas).unwrap_or(0),
        selector: label_selector_string(&d.spec.selector),
        rollout_in_progress: RolloutView {
            generation: d.metadata.generation,
            observed_generation: status.and_then(|s| s.observed_generation),
            desired: i64::from(spec_replicas),
            replicas: status.and_then(|s| s.replicas).map(i64::from),
            updated: status.and_then(|s| s.updated_replicas).map(i64::from),
            revisions: None,
        }
        .rolling_out(),
    }
}

fn statefulset_state(s: &StatefulSet) -> TargetState {
    let status = s.status.as_ref();
    let spec_replicas = s.spec.replicas.unwrap_or(1);
    TargetState {
        spec_replicas,
        status_replicas: status.map(|s| s.replicas).unwrap_or(0),
        selector: label_selector_string(&s.spec.selector),
        rollout_in_progress: RolloutView {
            generation: s.metadata.generation,
            observed_generation: status.and_then(|s| s.observed_generation),
            desired: i64::from(spec_replicas),
            replicas: status.map(|s| i64::from(s.replicas)),
            updated: status.and_then(|s| s.updated_replicas).map(i64::from),
            revisions: status
                .and_then(|s| Some((s.current_revision.clone()?, s.update_revision.clone()?))),
        }
        .rolling_out(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripped_pods_keep_what_the_scaler_reads() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"big": "x".repeat(4096)},
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "app", "image": "web:1", "env": [{"name": "A", "value": "1"}],
                                     "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}}],
                     "initContainers": [{"name": "proxy", "image": "p:1", "restartPolicy": "Always",
                                         "resources": {"requests": {"cpu": "50m"}}},
                                        {"name": "migrate", "image": "m:1",
                                         "resources": {"requests": {"memory": "2Gi"}}}],
                     "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "4"}},
                     "overhead": {"cpu": "250m"}},
            "status": {"phase": "Running", "startTime": "2026-12-02T08:00:00Z", "podIP": "10.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T08:00:10Z"},
                                      {"type": "PodScheduled", "status": "True"}]}
        }))
        .expect("pod");
        let before = super::super::pods::PodView::from_pod(&pod);
        // The pod-level request (plus overhead) survives stripping, and the
        // init container's memory still feeds the pod's aggregate.
        let pod_level = before.pod_requests.clone().expect("pod-level requests");
        assert_eq!(pod_level.get("cpu"), Some(&2250));
        assert_eq!(pod_level.get("memory"), Some(&((2_i64 << 30) * 1000)));
        strip_pod(&mut pod);
        assert_eq!(super::super::pods::PodView::from_pod(&pod), before);
        let text = serde_json::to_string(&pod).expect("json");
        assert!(
            !text.contains("managedFields")
                && !text.contains("big")
                && !text.contains("podIP")
                && !text.contains("limits"),
            "{text}"
        );
    }
}
