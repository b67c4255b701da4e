//! Watch caches of the pods and the Deployments and StatefulSets the
//! scaler reads every poll, as the HPA reads pods from an informer: a poll
//! then costs no API request but the metrics it fetches. Objects are
//! stripped to the fields the scaler uses, so the caches stay small in a
//! cluster with many pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use crate::shared::{scoped, synced};

use super::observe::{selector_string, RolloutView, TargetState};
use super::selector::Selector;

pub struct Caches {
    pub pods: Store<Pod>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    /// Upstream HPAs, stripped to their scale target: a target one of them
    /// scales is not ours to scale (`overlap.rs`).
    pub hpas: Store<HorizontalPodAutoscaler>,
}

/// Whether a watch error is the first since the watch last worked: so a
/// watch that keeps failing is reported once, not once per retry.
#[derive(Debug, Default)]
pub struct FailingSpell {
    failing: bool,
}

impl FailingSpell {
    /// An error: `true` only for the first one of a spell.
    pub fn first_error(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    /// The watch yielded something: a later error starts a new spell.
    pub fn ok(&mut self) {
        self.failing = false;
    }
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

/// Keeps an HPA's name, namespace, creation time and scale target.
pub fn strip_hpa(hpa: &mut HorizontalPodAutoscaler) {
    strip_meta(&mut hpa.metadata);
    hpa.metadata.labels = None;
    hpa.spec = HorizontalPodAutoscalerSpec {
        scale_target_ref: std::mem::take(&mut hpa.spec.scale_target_ref),
        max_replicas: hpa.spec.max_replicas,
        ..Default::default()
    };
    hpa.status = None;
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
    let (hpas, hpas_writer) = reflector::store();
    // Bounded back-off and /readyz health: `crate::watches`.
    let pod_watch = crate::watches::recovering(
        "pods",
        watcher(scoped::<Pod>(client, namespace), watcher::Config::default()),
    )
    .modify(strip_pod)
    .reflect(pods_writer)
    .for_each(|_| async {});
    let deployment_watch = crate::watches::recovering(
        "deployments",
        watcher(
            scoped::<Deployment>(client, namespace),
            watcher::Config::default(),
        ),
    )
    .modify(strip_deployment)
    .reflect(deployments_writer)
    .for_each(|_| async {});
    let statefulset_watch = crate::watches::recovering(
        "statefulsets",
        watcher(
            scoped::<StatefulSet>(client, namespace),
            watcher::Config::default(),
        ),
    )
    .modify(strip_statefulset)
    .reflect(statefulsets_writer)
    .for_each(|_| async {});
    let hpa_watch = hpa_watch(client, namespace, hpas_writer);
    let drive = async move {
        futures::join!(pod_watch, deployment_watch, statefulset_watch, hpa_watch);
    };
    (
        Caches {
            pods,
            deployments,
            statefulsets,
            hpas,
        },
        drive,
    )
}

/// Only what a scaler reads of a Deployment: replicas, selector, rollout.
fn strip_deployment(d: &mut Deployment) {
    strip_meta(&mut d.metadata);
    d.spec.template = Default::default();
}

/// Only what a scaler reads of a StatefulSet: replicas, selector, rollout.
fn strip_statefulset(s: &mut StatefulSet) {
    strip_meta(&mut s.metadata);
    s.spec.template = Default::default();
    s.spec.volume_claim_templates = None;
}

/// The HorizontalPodAutoscaler watch, which warns while it fails.
fn hpa_watch(
    client: &Client,
    namespace: &Option<String>,
    hpas_writer: reflector::store::Writer<HorizontalPodAutoscaler>,
) -> impl std::future::Future<Output = ()> + Send {
    crate::watches::recovering(
        "horizontalpodautoscalers",
        watcher(
            scoped::<HorizontalPodAutoscaler>(client, namespace),
            watcher::Config::default(),
        ),
    )
    .modify(strip_hpa)
    .reflect(hpas_writer)
    .for_each({
        // Watch errors are debug lines (they retry within seconds), but one
        // that keeps this watch from working — forbidden by an RBAC overlay
        // that dropped horizontalpodautoscalers — silently disables the
        // HPA check (and, before the first list, every scaler's poll): say
        // so once per failing spell, not on every retry.
        let mut spell = FailingSpell::default();
        move |result| {
            if let Err(e) = &result {
                if spell.first_error() {
                    let error = crate::error::watch_error(e);
                    tracing::warn!(%error, "the HorizontalPodAutoscaler watch fails: scalers cannot see an HPA on their target, and none polls until the first list succeeds; grant get, list and watch on horizontalpodautoscalers.autoscaling");
                }
            } else {
                spell.ok();
            }
            async {}
        }
    })
}

impl Caches {
    pub async fn synced(&self) -> bool {
        synced(&self.pods).await
            && synced(&self.deployments).await
            && synced(&self.statefulsets).await
            && synced(&self.hpas).await
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
