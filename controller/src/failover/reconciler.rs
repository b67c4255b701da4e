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
use super::freshness::{Sighting, Tracker};
use super::plan::{self, Inputs};
use super::state::OwnedStatus;
use super::virtual_service::{self, RouteView};
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
    /// When each vantage's entry last changed, by our clock (memory only).
    heard: std::sync::Mutex<Tracker>,
}

impl Context {
    pub fn new(shared: Shared) -> Self {
        Self {
            shared,
            virtual_services: Mutex::new(None),
            secrets: SecretLabelCache::default(),
            heard: std::sync::Mutex::new(Tracker::default()),
        }
    }

    /// Records the failover's observations as seen now and returns when
    /// each expected vantage was heard. Called on every reconcile, leading
    /// or not, so that a controller taking over knows who is alive.
    pub fn hear(&self, failover: &VerticeFailover, now: Instant) -> Sighting {
        let observations = failover
            .status
            .as_ref()
            .map(|s| s.observations.as_slice())
            .unwrap_or_default();
        let expected = super::votes::expected(&failover.spec, observations);
        let uid = failover.metadata.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                failover.namespace().unwrap_or_default(),
                failover.name_any()
            )
        });
        // A panic elsewhere while holding the lock leaves a usable map.
        let mut tracker = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        tracker.observe(&uid, &expected, observations, now)
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
    let sighting = ctx.hear(failover, Instant::now());
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
    let refused = admit(ctx, &namespace, spec).await?;
    let (vs_api, route) = if refused.is_some() {
        (None, Err("not read: refused".to_string()))
    } else {
        read_virtual_service(ctx, &vs_namespace, failover).await?
    };
    let empty = Default::default();
    let status = failover.status.as_ref().unwrap_or(&empty);
    let previous = OwnedStatus::from_status(status);
    let plan = decide(failover, &previous, &route, &sighting, refused.as_ref());
    let reference = failover.object_ref(&());
    for event in &plan.before_patch {
        shared.publish(&reference, event).await;
    }
    if let (Some(weights), Some(api), Ok(route)) = (&plan.patch, &vs_api, &route) {
        let steer = Steer {
            failover,
            namespace: &namespace,
            name: &name,
            vs_namespace: &vs_namespace,
            reference: &reference,
        };
        if let Some(again) = steer
            .patch(shared, api, route, weights, plan.switch)
            .await?
        {
            return Ok(again);
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
    record_metrics(shared, &namespace, &name, &plan.status, status, &sighting);
    Ok(Action::requeue(plan.requeue_after))
}

/// The plan on what was read: the route's weights per replica, the
/// switchover asked for, both clocks read now.
fn decide(
    failover: &VerticeFailover,
    previous: &OwnedStatus,
    route: &Result<Route, String>,
    sighting: &Sighting,
    refused: Option<&admission::Refusal>,
) -> plan::Plan {
    let spec = &failover.spec;
    let empty = Default::default();
    let status = failover.status.as_ref().unwrap_or(&empty);
    let switchover_to = failover
        .annotations()
        .get(SWITCHOVER_ANNOTATION)
        .map(String::as_str);
    plan::plan(Inputs {
        spec,
        generation: failover.metadata.generation,
        observations: &status.observations,
        sighting,
        previous,
        route: route
            .as_ref()
            .map(|r| virtual_service::weights(&r.view, &spec.replicas, &r.indexes))
            .map_err(Clone::clone),
        switchover_to,
        refused,
        now: Utc::now(),
        instant: Instant::now(),
    })
}

/// The VirtualService's API (once Istio's CRD is served) and the route as
/// read, or why it cannot be steered.
async fn read_virtual_service(
    ctx: &Context,
    vs_namespace: &str,
    failover: &VerticeFailover,
) -> Result<(Option<Api<DynamicObject>>, Result<Route, String>), Error> {
    match ctx.virtual_service_resource().await {
        Ok(resource) => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.shared.client.clone(), vs_namespace, &resource);
            let route = read_route(&api, vs_namespace, failover).await?;
            Ok((Some(api), route))
        }
        Err(why) => Ok((None, Err(why))),
    }
}

/// The tenancy rules first: a VirtualService of another namespace is not
/// even read without the administrator's allowance (its existence is none
/// of this namespace's business), and a check whose Secrets are not opted
/// in steers nothing. `Some` refusal when either applies.
async fn admit(
    ctx: &Context,
    namespace: &str,
    spec: &vertice_crds::failover::VerticeFailoverSpec,
) -> Result<Option<admission::Refusal>, Error> {
    let shared = &ctx.shared;
    let tenancy = &shared.tenancy;
    if let Err(refusal) =
        admission::check_namespace(namespace, spec, &tenancy.allow_cross_namespace)
    {
        return Ok(Some(refusal));
    }
    let uses = admission::secret_uses(spec);
    let seen = ctx
        .secrets
        .read(
            &shared.client,
            tenancy.secret_reference_policy,
            namespace,
            &uses,
        )
        .await?;
    Ok(admission::check_secrets(namespace, spec, tenancy.secret_reference_policy, &seen).err())
}

/// Sending the plan's weights to the VirtualService of one failover.
struct Steer<'a> {
    failover: &'a VerticeFailover,
    namespace: &'a str,
    name: &'a str,
    vs_namespace: &'a str,
    reference: &'a ObjectReference,
}

impl Steer<'_> {
    /// Sends the guarded patch. `Some` action when the route changed since
    /// it was read: nothing more is written, and it is read again soon.
    async fn patch(
        &self,
        shared: &Shared,
        api: &Api<DynamicObject>,
        route: &Route,
        weights: &[ReplicaWeight],
        switch: Option<&'static str>,
    ) -> Result<Option<Action>, Error> {
        let (namespace, name, vs_namespace) = (self.namespace, self.name, self.vs_namespace);
        let vs_name = &self.failover.spec.virtual_service.name;
        let ops = virtual_service::patch(&route.view, &route.indexes, weights);
        let ops: json_patch::Patch = serde_json::from_value(ops).map_err(|e| Error {
            category: crate::error::Category::Other,
            action: format!("build the patch of VirtualService {vs_namespace}/{vs_name}"),
            source: kube::Error::SerdeError(e),
        })?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = Patch::<()>::Json(ops);
        match shared
            .leading
            .write(api.patch(vs_name, &params, &patch))
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
                        namespace: Some(vs_namespace.to_string()),
                        name: Some(vs_name.clone()),
                        uid: patched.metadata.uid.clone(),
                        ..Default::default()
                    };
                    let event = cross_namespace_event(namespace, name, weights);
                    shared.publish(&regarding, &event).await;
                }
                if let Some(reason) = switch {
                    shared
                        .metrics
                        .failover_switches
                        .with_label_values(&[namespace, name, reason])
                        .inc();
                }
                Ok(None)
            }
            Err(kube::Error::Api(status)) if is_guard_refusal(&status) => {
                // The route changed between our read and our patch: our
                // test operations refused it. Decide again on a fresh read.
                shared
                    .metrics
                    .failover_patch_conflicts
                    .with_label_values(&[namespace, name])
                    .inc();
                let note = format!(
                    "VirtualService {vs_namespace}/{vs_name} changed since it was read; not overwriting it, reading again"
                );
                tracing::info!(%namespace, failover = %name, "{note}");
                shared
                    .publish(self.reference, &Event::warning("PatchConflict", note))
                    .await;
                Ok(Some(Action::requeue(Duration::from_secs(1))))
            }
            Err(e) => Err(kube_err(format!(
                "patch VirtualService {vs_namespace}/{vs_name}"
            ))(e)),
        }
    }
}

/// The Event a VirtualService's own namespace gets when a VerticeFailover
/// of another namespace sets its weights.
fn cross_namespace_event(namespace: &str, failover: &str, weights: &[ReplicaWeight]) -> Event {
    let weights = weights
        .iter()
        .map(|w| format!("{}={}", w.replica, w.weight))
        .collect::<Vec<_>>()
        .join(", ");
    Event::normal(
        "WeightsSetByFailover",
        format!(
            "VerticeFailover {namespace}/{failover} set the route's weights to {weights} \
             (a cross-namespace reference the administrator allowed)"
        ),
    )
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
    sighting: &Sighting,
) {
    let m = &shared.metrics;
    // Counters exist at 0 from the first reconcile, so the first switch
    // or conflict is an increase that rate() and increase() can see.
    for reason in [
        plan::REASON_FAILOVER,
        plan::REASON_FAILBACK,
        plan::REASON_SWITCHOVER,
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
    // Age by our own clock: since we last saw the vantage's entry change
    // (or, not seen to change yet, since we first looked). The runner's
    // observedAt is its own clock and may be skewed.
    let now = Instant::now();
    for (vantage, heard) in &sighting.vantages {
        let since = heard.changed_at.unwrap_or(heard.first_seen);
        m.failover_observation_age
            .with_label_values(&[namespace, name, vantage])
            .set(now.saturating_duration_since(since).as_secs_f64());
    }
    for o in &status.observations {
        if !sighting.vantages.contains_key(&o.vantage) {
            // A vantage no longer expected has no age worth alerting on.
            let _ = m
                .failover_observation_age
                .remove_label_values(&[namespace, name, &o.vantage]);
        }
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

/// A failed reconcile is counted, told in a Warning Event and retried in
/// 5 s: traffic may be on a dead replica meanwhile.
pub fn error_policy(failover: Arc<VerticeFailover>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.shared
        .failed_reconcile(CONTROLLER, failover.as_ref(), error, Duration::from_secs(5))
}
