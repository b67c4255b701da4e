//! The I/O shell of the failover controller: read the VirtualService, run
//! the plan, send its guarded patch, apply the status fields we own, record
//! Events and metrics. A patch refused because the route changed since we
//! read it is not an error: we read again within a second and decide again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::Mutex;
use vertice_crds::failover::{FailoverPhase, Health, ReplicaWeight, SWITCHOVER_ANNOTATION};
use vertice_crds::VerticeFailover;

use super::admission;
use super::state::OwnedStatus;
use super::virtual_service::{self, RouteView};
use super::{plan, Inputs};
use crate::context::{Event, Shared, FIELD_MANAGER};
use crate::error::{kube_err, Error};
use crate::secret_labels::SecretLabelCache;

pub const CONTROLLER: &str = "failover";
const API_VERSION: &str = "vertice.io/v1alpha1";
const KIND: &str = "VerticeFailover";
const ISTIO_GROUP: &str = "networking.istio.io";
/// Versions of VirtualService we can steer, most preferred first.
const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

pub struct Context {
    pub shared: Shared,
    /// The served VirtualService version, found once Istio's CRD is there.
    virtual_services: Mutex<Option<ApiResource>>,
    /// Labels of the Secrets checks name, read as metadata, kept briefly.
    secrets: SecretLabelCache,
}

impl Context {
    pub fn new(shared: Shared) -> Self {
        Self {
            shared,
            virtual_services: Mutex::new(None),
            secrets: SecretLabelCache::default(),
        }
    }

    /// `networking.istio.io/v1` when served, else `v1beta1`.
    async fn virtual_service_resource(&self) -> Result<ApiResource, String> {
        let mut known = self.virtual_services.lock().await;
        if let Some(resource) = known.as_ref() {
            return Ok(resource.clone());
        }
        // One small request per version (`/apis/<group>/<version>`), not a
        // list of every group the cluster serves.
        let mut why = String::from("not served");
        for version in VERSIONS {
            let gv = kube::core::GroupVersion::gv(ISTIO_GROUP, version);
            match kube::discovery::pinned_group(&self.shared.client, &gv).await {
                Ok(group) => {
                    if let Some((resource, _)) = group
                        .versioned_resources(version)
                        .into_iter()
                        .find(|(r, _)| r.kind == "VirtualService")
                    {
                        *known = Some(resource.clone());
                        return Ok(resource);
                    }
                }
                Err(e) => why = crate::error::short(&e),
            }
        }
        Err(format!(
            "{ISTIO_GROUP} serves VirtualService in none of {} ({why}); is Istio's VirtualService CRD installed?",
            VERSIONS.join(", ")
        ))
    }
}

pub async fn reconcile(failover: Arc<VerticeFailover>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let metrics = &ctx.shared.metrics;
    metrics.reconciles.with_label_values(&[CONTROLLER]).inc();
    let result = reconcile_inner(&failover, &ctx).await;
    metrics
        .reconcile_duration
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The route as read: its view, which destination each replica is, and
/// the weights per replica; or why it does not match.
struct Route {
    view: RouteView,
    indexes: Vec<usize>,
}

async fn reconcile_inner(failover: &VerticeFailover, ctx: &Context) -> Result<Action, Error> {
    let shared = &ctx.shared;
    if !shared.is_leading() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let (Some(namespace), name) = (failover.namespace(), failover.name_any()) else {
        return Ok(Action::await_change());
    };
    if failover.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = &failover.spec;
    let vs_namespace = admission::virtual_service_namespace(&namespace, spec).to_string();
    // The tenancy rules first: a VirtualService of another namespace is not
    // even read without the administrator's allowance (its existence is
    // none of this namespace's business), and a check whose Secrets are
    // not opted in steers nothing.
    let tenancy = &shared.tenancy;
    let refused = match admission::check_namespace(&namespace, spec, &tenancy.allow_cross_namespace)
    {
        Err(refusal) => Some(refusal),
        Ok(()) => {
            let uses = admission::secret_uses(spec);
            let seen = ctx
                .secrets
                .read(
                    &shared.client,
                    tenancy.secret_reference_policy,
                    &namespace,
                    &uses,
                )
                .await?;
            admission::check_secrets(&namespace, spec, tenancy.secret_reference_policy, &seen).err()
        }
    };
    let (vs_api, route) = if refused.is_some() {
        (None, Err("not read: refused".to_string()))
    } else {
        match ctx.virtual_service_resource().await {
            Ok(resource) => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(shared.client.clone(), &vs_namespace, &resource);
                let route = read_route(&api, &vs_namespace, failover).await?;
                (Some(api), route)
            }
            Err(why) => (None, Err(why)),
        }
    };
    let empty = Default::default();
    let status = failover.status.as_ref().unwrap_or(&empty);
    let previous = OwnedStatus::from_status(status);
    let switchover_to = failover
        .annotations()
        .get(SWITCHOVER_ANNOTATION)
        .map(String::as_str);
    let now = Utc::now();
    let plan = plan(Inputs {
        spec,
        generation: failover.metadata.generation,
        observations: &status.observations,
        previous: &previous,
        route: route
            .as_ref()
            .map(|r| virtual_service::weights(&r.view, &spec.replicas, &r.indexes))
            .map_err(Clone::clone),
        switchover_to,
        refused: refused.as_ref(),
        now,
    });
    let reference = failover.object_ref(&());
    for event in &plan.before_patch {
        shared.publish(&reference, event).await;
    }
    if let (Some(weights), Some(api), Ok(route)) = (&plan.patch, &vs_api, &route) {
        let ops = virtual_service::patch(&route.view, &route.indexes, weights);
        let ops: json_patch::Patch = serde_json::from_value(ops).map_err(|e| Error {
            category: crate::error::Category::Other,
            action: format!(
                "build the patch of VirtualService {vs_namespace}/{}",
                spec.virtual_service.name
            ),
            source: kube::Error::SerdeError(e),
        })?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api
            .patch(&spec.virtual_service.name, &params, &Patch::<()>::Json(ops))
            .await
        {
            Ok(patched) => {
                // Steering another namespace's route (a pair the
                // administrator allowed): its owners are told there, on
                // their VirtualService, not only in ours.
                if vs_namespace != namespace {
                    let regarding = ObjectReference {
                        api_version: patched.types.as_ref().map(|t| t.api_version.clone()),
                        kind: Some("VirtualService".into()),
                        namespace: Some(vs_namespace.clone()),
                        name: Some(spec.virtual_service.name.clone()),
                        uid: patched.metadata.uid.clone(),
                        ..Default::default()
                    };
                    let event = cross_namespace_event(&namespace, &name, weights);
                    shared.publish(&regarding, &event).await;
                }
                if let Some(reason) = plan.switch {
                    shared
                        .metrics
                        .failover_switches
                        .with_label_values(&[&namespace, &name, reason])
                        .inc();
                }
            }
            Err(kube::Error::Api(status)) if is_guard_refusal(&status) => {
                // The route changed between our read and our patch: our
                // test operations refused it. Decide again on a fresh read.
                shared
                    .metrics
                    .failover_patch_conflicts
                    .with_label_values(&[&namespace, &name])
                    .inc();
                let note = format!(
                    "VirtualService {vs_namespace}/{} changed since it was read; not overwriting it, reading again",
                    spec.virtual_service.name
                );
                tracing::info!(%namespace, failover = %name, "{note}");
                shared
                    .publish(
                        &reference,
                        &Event {
                            warning: true,
                            reason: "PatchConflict",
                            note,
                        },
                    )
                    .await;
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(e) => {
                return Err(kube_err(format!(
                    "patch VirtualService {vs_namespace}/{}",
                    spec.virtual_service.name
                ))(e))
            }
        }
    }
    if plan.status != previous {
        shared
            .apply_status(
                &Api::<VerticeFailover>::namespaced(shared.client.clone(), &namespace),
                &name,
                API_VERSION,
                KIND,
                &plan.status,
            )
            .await?;
    }
    for event in &plan.events {
        shared.publish(&reference, event).await;
    }
    record_metrics(shared, &namespace, &name, &plan.status, status);
    Ok(Action::requeue(plan.requeue_after))
}

/// The Event a VirtualService's own namespace gets when a VerticeFailover
/// of another namespace sets its weights.
fn cross_namespace_event(namespace: &str, failover: &str, weights: &[ReplicaWeight]) -> Event {
    let weights = weights
        .iter()
        .map(|w| format!("{}={}", w.replica, w.weight))
        .collect::<Vec<_>>()
        .join(", ");
    Event {
        warning: false,
        reason: "WeightsSetByFailover",
        note: format!(
            "VerticeFailover {namespace}/{failover} set the route's weights to {weights} \
             (a cross-namespace reference the administrator allowed)"
        ),
    }
}

async fn read_route(
    api: &Api<DynamicObject>,
    vs_namespace: &str,
    failover: &VerticeFailover,
) -> Result<Result<Route, String>, Error> {
    let spec = &failover.spec;
    let vs = match api
        .get_opt(&spec.virtual_service.name)
        .await
        .map_err(kube_err("get VirtualService"))?
    {
        Some(vs) => vs,
        None => {
            return Ok(Err(format!(
                "VirtualService {} not found in namespace {vs_namespace}",
                spec.virtual_service.name,
            )))
        }
    };
    let json = serde_json::to_value(&vs).unwrap_or_default();
    Ok(
        virtual_service::route_view(&json, spec.virtual_service.route.as_deref()).and_then(
            |view| {
                let indexes = virtual_service::match_replicas(&view, &spec.replicas)?;
                Ok(Route { view, indexes })
            },
        ),
    )
}

fn record_metrics(
    shared: &Shared,
    namespace: &str,
    name: &str,
    owned: &OwnedStatus,
    status: &vertice_crds::failover::VerticeFailoverStatus,
) {
    let m = &shared.metrics;
    // Counters exist at 0 from the first reconcile, so the first switch
    // or conflict is an increase that rate() and increase() can see.
    for reason in [
        super::plan::REASON_FAILOVER,
        super::plan::REASON_FAILBACK,
        super::plan::REASON_SWITCHOVER,
    ] {
        m.failover_switches
            .with_label_values(&[namespace, name, reason]);
    }
    m.failover_patch_conflicts
        .with_label_values(&[namespace, name]);
    for phase in FailoverPhase::ALL {
        m.failover_phase
            .with_label_values(&[namespace, name, phase.as_str()])
            .set(i64::from(owned.phase == Some(phase)));
    }
    for h in &owned.health {
        let value = match h.health {
            Health::Healthy => 1,
            Health::Unhealthy => 0,
            Health::Unknown => -1,
        };
        m.failover_replica_healthy
            .with_label_values(&[namespace, name, &h.name])
            .set(value);
    }
    for w in &owned.weights {
        m.failover_route_weight
            .with_label_values(&[namespace, name, &w.replica])
            .set(i64::from(w.weight));
    }
    let now = chrono::Utc::now();
    for o in &status.observations {
        m.failover_observation_age
            .with_label_values(&[namespace, name, &o.vantage])
            .set((now - o.observed_at).num_milliseconds().max(0) as f64 / 1000.0);
        for r in &o.replicas {
            m.failover_success_ratio
                .with_label_values(&[namespace, name, &r.name, &o.vantage])
                .set(r.success_ratio);
        }
    }
}

/// Our `test` operations failed, or the object changed under us (409).
/// The API server answers a failed JSON Patch operation with a bare 422
/// ("the server rejected our request…") without field causes; a schema
/// refusal of the patched object would list its causes.
fn is_guard_refusal(status: &kube::core::Status) -> bool {
    status.code == 409
        || (status.code == 422 && status.details.as_ref().is_none_or(|d| d.causes.is_empty()))
}

pub fn error_policy(failover: Arc<VerticeFailover>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.shared
        .metrics
        .reconcile_errors
        .with_label_values(&[CONTROLLER, error.category.as_str()])
        .inc();
    tracing::warn!(namespace = ?failover.namespace(), failover = %failover.name_any(), category = error.category.as_str(), error = %error, "reconcile failed");
    let event = Event {
        warning: true,
        reason: error.category.event_reason(),
        note: error.to_string(),
    };
    let reference = failover.object_ref(&());
    tokio::spawn(async move { ctx.shared.publish(&reference, &event).await });
    Action::requeue(Duration::from_secs(5))
}
