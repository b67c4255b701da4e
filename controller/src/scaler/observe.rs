//! Gathers one poll's input: the target's `/scale` and rollout state, its
//! pods and their PodMetrics (`metrics.k8s.io`); the Prometheus queries are
//! in `prometheus.rs`.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::autoscaling::v1::Scale;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use vertice_crds::scaler::{ScaleReason, ScaleTargetRef};

use super::limit::{self};
use super::pods::{PodMetrics, PodMetricsList};
use crate::error::{kube_err, Category, Error};

/// Why the target could not be read or written, as a sentence that says
/// what to fix.
#[derive(Debug)]
pub enum TargetError {
    /// The object does not exist: `what` is "Deployment shop/web".
    NotFound { what: String },
    /// The API server does not serve this apiVersion and kind.
    NotServed {
        api_version: String,
        kind: String,
        cause: String,
    },
    /// The kind exists but has no `/scale` subresource.
    NoScale { what: String },
    /// Any other failure of the API request (RBAC, the API server).
    Api(Error),
}

impl TargetError {
    pub fn category(&self) -> Category {
        match self {
            TargetError::NotFound { .. } => Category::NotFound,
            TargetError::NotServed { .. } | TargetError::NoScale { .. } => Category::Invalid,
            TargetError::Api(e) => e.category,
        }
    }

    /// The condition and Event reason.
    pub fn reason(&self) -> ScaleReason {
        match self {
            TargetError::NotFound { .. } => ScaleReason::TargetNotFound,
            TargetError::NotServed { .. } | TargetError::NoScale { .. } => {
                ScaleReason::InvalidTarget
            }
            TargetError::Api(_) => ScaleReason::FailedGetScale,
        }
    }

    fn from_kube(
        target: &ScaleTargetRef,
        namespace: &str,
        action: String,
    ) -> impl FnOnce(kube::Error) -> TargetError {
        let what = format!("{} {namespace}/{}", target.kind, target.name);
        move |e| match &e {
            kube::Error::Api(status) if status.code == 404 => TargetError::NotFound { what },
            _ => TargetError::Api(kube_err(action)(e)),
        }
    }
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::NotFound { what } => {
                write!(f, "{what} not found: create it or fix spec.targetRef")
            }
            TargetError::NotServed {
                api_version,
                kind,
                cause,
            } => write!(
                f,
                "the API server does not serve {kind} in {api_version} ({cause}): fix spec.targetRef.apiVersion and kind"
            ),
            TargetError::NoScale { what } => write!(
                f,
                "{what} has no /scale subresource, so it cannot be scaled: point spec.targetRef at a kind that has one"
            ),
            TargetError::Api(e) if e.category == Category::Forbidden => write!(
                f,
                "{e}: the controller's ServiceAccount needs get and patch on the target's /scale subresource"
            ),
            TargetError::Api(e) => write!(f, "{e}"),
        }
    }
}

/// Resolves `apiVersion`/`kind` to the resource path once per kind.
#[derive(Default)]
pub struct Kinds {
    known: Mutex<HashMap<(String, String), ApiResource>>,
}

impl Kinds {
    pub async fn resolve(
        &self,
        client: &Client,
        target: &ScaleTargetRef,
    ) -> Result<ApiResource, TargetError> {
        let key = (target.api_version.clone(), target.kind.clone());
        if let Some(found) = self.known.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(found);
        }
        let (group, version) = match target.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), target.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
        let (resource, caps) = match kube::discovery::pinned_kind(client, &gvk).await {
            Ok(found) => found,
            // A group or version the API server does not serve answers 404;
            // a served one without the kind is a discovery error.
            Err(e @ kube::Error::Discovery(_)) => {
                return Err(TargetError::NotServed {
                    api_version: target.api_version.clone(),
                    kind: target.kind.clone(),
                    cause: crate::error::short(&e),
                })
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(TargetError::NotServed {
                    api_version: target.api_version.clone(),
                    kind: target.kind.clone(),
                    cause: format!("no API group {}", target.api_version),
                })
            }
            Err(e) => {
                return Err(TargetError::Api(kube_err(format!(
                    "discover {} {}",
                    target.api_version, target.kind
                ))(e)))
            }
        };
        // Without /scale every GET and patch of it would answer a 404
        // that reads like a missing object.
        if !caps.subresources.iter().any(|(r, _)| r.plural == "scale") {
            return Err(TargetError::NoScale {
                what: format!("{} ({})", target.kind, target.api_version),
            });
        }
        if let Ok(mut known) = self.known.lock() {
            known.insert(key, resource.clone());
        }
        Ok(resource)
    }
}

/// The target's scale and whether a rollout is under way.
pub struct TargetState {
    pub spec_replicas: i32,
    pub status_replicas: i32,
    pub selector: Option<String>,
    pub rollout_in_progress: bool,
}

fn target_api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// A kind with no watch cache, read through its `/scale` (no rollout state).
pub async fn target_by_scale(
    client: &Client,
    kinds: &Kinds,
    namespace: &str,
    target: &ScaleTargetRef,
) -> Result<TargetState, TargetError> {
    let resource = kinds.resolve(client, target).await?;
    let api = target_api(client, namespace, &resource);
    let scale: Scale = api
        .get_scale(&target.name)
        .await
        .map_err(TargetError::from_kube(
            target,
            namespace,
            format!("get the scale of {} {}", target.kind, target.name),
        ))?;
    let spec_replicas = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let status = scale.status.unwrap_or_default();
    Ok(TargetState {
        spec_replicas,
        status_replicas: status.replicas,
        selector: status.selector.filter(|s| !s.is_empty()),
        rollout_in_progress: false,
    })
}

/// A `LabelSelector` (matchLabels, matchExpressions) in the string form a
/// list's `labelSelector` takes, as `/scale` reports it.
pub fn selector_string(selector: &serde_json::Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(|m| m.as_object()) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str()?));
        }
    }
    for e in selector
        .get("matchExpressions")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        let key = e.get("key")?.as_str()?;
        let values: Vec<&str> = e
            .get("values")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        parts.push(match e.get("operator")?.as_str()? {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// What tells a Deployment's or StatefulSet's rollout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutView {
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub desired: i64,
    pub replicas: Option<i64>,
    pub updated: Option<i64>,
    /// StatefulSet: current and update revision.
    pub revisions: Option<(String, String)>,
}

impl RolloutView {
    /// Rolling out while its controller has not seen the newest spec, or not
    /// every replica runs the newest template, or old replicas are still
    /// around.
    pub fn rolling_out(&self) -> bool {
        if let (Some(g), Some(o)) = (self.generation, self.observed_generation) {
            if o < g {
                return true;
            }
        }
        if let Some((current, update)) = &self.revisions {
            if current != update {
                return true;
            }
        }
        match (self.replicas, self.updated) {
            (Some(r), Some(u)) => u < self.desired.min(r) || r > self.desired,
            _ => false,
        }
    }
}

pub async fn set_replicas(
    client: &Client,
    kinds: &Kinds,
    namespace: &str,
    target: &ScaleTargetRef,
    replicas: i32,
) -> Result<(), TargetError> {
    let resource = kinds.resolve(client, target).await?;
    let api = target_api(client, namespace, &resource);
    api.patch_scale(
        &target.name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
    )
    .await
    .map_err(TargetError::from_kube(
        target,
        namespace,
        format!("scale {} {}", target.kind, target.name),
    ))?;
    Ok(())
}

/// PodMetrics of the pods matching `selector`, through the aggregated
/// `metrics.k8s.io` API, read under `max_bytes` like a Prometheus answer (a
/// namespace with many pods must not cost the controller its memory). An
/// error is a broken metric, not a failed poll.
pub async fn pod_metrics(
    client: &Client,
    namespace: &str,
    selector: &str,
    max_bytes: usize,
) -> Result<Vec<PodMetrics>, String> {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?labelSelector={}",
        url::form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
    );
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let stream = client
        .request_stream(request)
        .await
        .map_err(|e| format!("metrics.k8s.io: {}", crate::error::short(&e)))?;
    let body = limit::read_stream(stream, "metrics.k8s.io", max_bytes)
        .await
        .map_err(|e| e.to_string())?;
    let list: PodMetricsList = serde_json::from_slice(&body)
        .map_err(|e| format!("metrics.k8s.io: not a PodMetrics list: {e}"))?;
    Ok(list.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_take_the_list_form() {
        let s = serde_json::json!({"matchLabels": {"app": "web", "tier": "front"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]},
                                 {"key": "canary", "operator": "DoesNotExist"},
                                 {"key": "zone", "operator": "Exists"}]});
        assert_eq!(
            selector_string(&s).as_deref(),
            Some("app=web,tier=front,env in (prod,staging),!canary,zone")
        );
        assert_eq!(selector_string(&serde_json::json!({})), None);
    }

    #[test]
    fn rollouts_are_seen_from_the_status() {
        let view = |generation, observed, replicas, updated| RolloutView {
            generation: Some(generation),
            observed_generation: Some(observed),
            desired: 3,
            replicas: Some(replicas),
            updated: Some(updated),
            revisions: None,
        };
        assert!(!view(3, 3, 3, 3).rolling_out());
        assert!(view(4, 4, 4, 1).rolling_out(), "a surge");
        assert!(view(5, 4, 3, 3).rolling_out(), "a spec not yet seen");
        let sts = RolloutView {
            revisions: Some(("db-1".into(), "db-2".into())),
            ..view(2, 2, 3, 3)
        };
        assert!(sts.rolling_out());
    }
}
