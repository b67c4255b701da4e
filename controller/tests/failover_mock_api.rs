//! The failover reconciler's exact request sequence against a fake API
//! server (the real-server proof is `tests/tests/kube_failover.rs`): a
//! guarded patch the server refuses is not retried blindly, writes no
//! status and asks for a fresh read; an accepted one is followed by a status
//! apply that carries only the controller's fields.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use vertice_controller::config::TenancyArgs;
use vertice_controller::context::Shared;
use vertice_controller::events::EventRecorder;
use vertice_controller::failover::reconciler::{reconcile, Context};
use vertice_controller::metrics::Metrics;
use vertice_controller::permissions;
use vertice_crds::VerticeFailover;

#[derive(Default)]
struct World {
    /// Answer the VirtualService patch with a bare 422 (a failed `test`).
    refuse_patch: bool,
    /// Secrets by name and labels: only their metadata is ever served.
    secrets: Vec<(String, Value)>,
    requests: Vec<(String, String, Value)>,
}

fn client(world: Arc<Mutex<World>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let method = parts.method.to_string();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            // Discovery needs no rule; everything else must be granted.
            if permissions::classify(&method, &path).is_some() {
                assert!(
                    permissions::is_required(&method, &path),
                    "{method} {path} is not granted"
                );
            }
            if path.contains("/secrets") {
                let accept = parts
                    .headers
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                assert!(
                    accept.contains("as=PartialObjectMetadata"),
                    "{path} would read a Secret's data; only metadata is read"
                );
            }
            let resource = path.split('?').next().unwrap_or_default().to_string();
            let (status, answer) = {
                let mut w = world.lock().expect("world");
                w.requests
                    .push((method.clone(), resource.clone(), body.clone()));
                answer(&w, &method, &resource, &body)
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                    .expect("response"),
            );
        }
    });
    Client::new(service, "default")
}

fn virtual_service() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "pg", "namespace": "db", "resourceVersion": "7"},
        "spec": {"http": [{"name": "primary", "route": [
            {"destination": {"host": "pg-a"}, "weight": 100},
            {"destination": {"host": "pg-b"}, "weight": 0}]}]}})
}

fn answer(w: &World, method: &str, resource: &str, body: &Value) -> (StatusCode, Value) {
    match (method, resource) {
        ("GET", "/apis/networking.istio.io/v1") => (
            StatusCode::OK,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "networking.istio.io/v1",
                   "resources": [{"name": "virtualservices", "singularName": "virtualservice", "namespaced": true,
                                  "kind": "VirtualService", "verbs": ["get", "patch"]}]}),
        ),
        ("GET", "/apis/networking.istio.io/v1/namespaces/db/virtualservices/pg") => {
            (StatusCode::OK, virtual_service())
        }
        ("PATCH", "/apis/networking.istio.io/v1/namespaces/db/virtualservices/pg")
            if w.refuse_patch =>
        {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
                   "message": "the server rejected our request due to an error in our request", "details": {}}),
            )
        }
        ("PATCH", "/apis/networking.istio.io/v1/namespaces/db/virtualservices/pg") => {
            (StatusCode::OK, virtual_service())
        }
        ("PATCH", r) if r.ends_with("/status") => {
            let mut f = failover_json();
            f["status"] = body["status"].clone();
            (StatusCode::OK, f)
        }
        ("POST", r) if r.ends_with("/events") => (StatusCode::CREATED, body.clone()),
        ("GET", r) if r.starts_with("/api/v1/namespaces/db/secrets/") => {
            let name = r.rsplit('/').next().unwrap_or_default();
            match w.secrets.iter().find(|(n, _)| n == name) {
                Some((_, labels)) => (
                    StatusCode::OK,
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                           "metadata": {"name": name, "namespace": "db", "labels": labels}}),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
        ),
    }
}

/// a down at its only vantage (3 failures), b up; both were healthy.
fn failover_json() -> Value {
    let now = Utc::now().to_rfc3339();
    let earlier = (Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
        "metadata": {"name": "pg", "namespace": "db", "generation": 1, "uid": "u-1"},
        "spec": {"virtualService": {"name": "pg"},
                 "replicas": [{"name": "a", "host": "pg-a", "priority": 10}, {"name": "b", "host": "pg-b"}],
                 "check": {"tcp": {}, "port": 5432}},
        "status": {
            "observations": [{"vantage": "eu", "observedAt": now, "replicas": [
                {"name": "a", "ok": false, "consecutiveFailures": 3, "consecutiveSuccesses": 0},
                {"name": "b", "ok": true, "consecutiveFailures": 0, "consecutiveSuccesses": 3}]}],
            "phase": "Healthy",
            "health": [{"name": "a", "health": "Healthy", "since": earlier},
                       {"name": "b", "health": "Healthy", "since": earlier}]}})
}

/// Reconciles as a running controller would: it watched the failover
/// before the runner wrote its entry, so it saw the entry appear (an entry
/// present at the controller's first sight is not trusted until it changes).
async fn reconcile_watched(
    failover: VerticeFailover,
    ctx: Arc<Context>,
) -> Result<Action, vertice_controller::error::Error> {
    let mut before = failover.clone();
    if let Some(status) = before.status.as_mut() {
        status.observations.clear();
    }
    ctx.hear(&before, std::time::Instant::now());
    reconcile(Arc::new(failover), ctx).await
}

fn context(world: &Arc<Mutex<World>>) -> (Arc<Context>, Metrics) {
    context_under(world, TenancyArgs::default())
}

fn context_under(world: &Arc<Mutex<World>>, tenancy: TenancyArgs) -> (Arc<Context>, Metrics) {
    let client = client(world.clone());
    let metrics = Metrics::new().expect("metrics");
    let leading = vertice_controller::leader::always();
    let shared = Shared {
        client: client.clone(),
        recorder: EventRecorder::new(client, "vertice-controller", "test"),
        leading: leading.leading(),
        metrics: metrics.clone(),
        tenancy: Arc::new(tenancy),
    };
    (Arc::new(Context::new(shared)), metrics)
}

#[tokio::test]
async fn a_refused_guarded_patch_writes_no_status_and_reads_again() {
    let world = Arc::new(Mutex::new(World {
        refuse_patch: true,
        ..Default::default()
    }));
    let (ctx, metrics) = context(&world);
    let failover: VerticeFailover = serde_json::from_value(failover_json()).expect("failover");
    let action = reconcile_watched(failover, ctx)
        .await
        .expect("a refusal is not an error");
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    let w = world.lock().expect("world");
    let patches: Vec<&(String, String, Value)> =
        w.requests.iter().filter(|(m, _, _)| m == "PATCH").collect();
    assert_eq!(
        patches.len(),
        1,
        "one guarded patch, no status write: {:?}",
        w.requests
    );
    let ops = &patches[0].2;
    assert_eq!(
        ops[0],
        json!({"op": "test", "path": "/spec/http/0/name", "value": "primary"})
    );
    assert!(ops
        .as_array()
        .expect("ops")
        .iter()
        .any(|op| op["op"] == "add"
            && op["path"] == "/spec/http/0/route/1/weight"
            && op["value"] == 100));
    let reasons: Vec<&Value> = w
        .requests
        .iter()
        .filter(|(m, _, _)| m == "POST")
        .map(|(_, _, b)| &b["reason"])
        .collect();
    assert!(reasons.contains(&&json!("PatchConflict")), "{reasons:?}");
    assert!(metrics
        .render()
        .contains("vertice_failover_patch_conflicts_total{failover=\"pg\",namespace=\"db\"} 1"));
}

#[tokio::test]
async fn an_accepted_patch_is_followed_by_the_controllers_own_status_fields() {
    let world = Arc::new(Mutex::new(World::default()));
    let (ctx, metrics) = context(&world);
    let failover: VerticeFailover = serde_json::from_value(failover_json()).expect("failover");
    reconcile_watched(failover, ctx).await.expect("reconcile");
    let w = world.lock().expect("world");
    let status = w
        .requests
        .iter()
        .find(|(m, r, _)| m == "PATCH" && r.ends_with("/verticefailovers/pg/status"))
        .map(|(_, _, b)| b["status"].clone())
        .expect("status applied");
    assert_eq!(status["phase"], "FailedOver", "{status}");
    assert!(
        status.get("observations").is_none(),
        "the runners' field is never sent: {status}"
    );
    assert_eq!(
        status["weights"],
        json!([{"replica": "a", "weight": 0}, {"replica": "b", "weight": 100}])
    );
    assert!(metrics.render().contains(
        "vertice_failover_switches_total{failover=\"pg\",namespace=\"db\",reason=\"Failover\"} 1"
    ));
    let order: Vec<String> = w
        .requests
        .iter()
        .filter(|(m, _, _)| m == "PATCH")
        .map(|(_, r, _)| r.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        order,
        vec!["pg", "status"],
        "the route first, then the status"
    );
}

/// Deposed between the check at the top of the reconcile and its writes:
/// neither the route nor the status nor an Event is written, and the
/// reconcile ends with an error the error policy takes quietly.
#[tokio::test]
async fn a_leader_deposed_mid_reconcile_writes_nothing() {
    let world = Arc::new(Mutex::new(World::default()));
    let client = client(world.clone());
    let lapsed = vertice_controller::leader::lapsed();
    let shared = Shared {
        client: client.clone(),
        recorder: EventRecorder::new(client, "vertice-controller", "test"),
        leading: lapsed.leading(),
        metrics: Metrics::new().expect("metrics"),
        tenancy: Arc::new(TenancyArgs::default()),
    };
    assert!(shared.is_leading() && !shared.may_write());
    let ctx = Arc::new(Context::new(shared));
    let failover: VerticeFailover = serde_json::from_value(failover_json()).expect("failover");
    let error = reconcile_watched(failover, ctx)
        .await
        .expect_err("the write was refused");
    assert!(
        vertice_controller::leader::refused(&error.source),
        "{error}"
    );
    let w = world.lock().expect("world");
    let writes: Vec<_> = w.requests.iter().filter(|(m, _, _)| m != "GET").collect();
    assert!(writes.is_empty(), "a deposed leader wrote: {writes:?}");
    assert!(
        w.requests
            .iter()
            .any(|(m, r, _)| m == "GET" && r.contains("virtualservices")),
        "it read the route before the refused write: {:?}",
        w.requests
    );
}

fn event(w: &World, reason: &str) -> Option<Value> {
    w.requests
        .iter()
        .find(|(m, r, b)| m == "POST" && r.ends_with("/events") && b["reason"] == reason)
        .map(|(_, _, b)| b.clone())
}

fn applied_status(w: &World) -> Value {
    w.requests
        .iter()
        .find(|(m, r, _)| m == "PATCH" && r.ends_with("/verticefailovers/pg/status"))
        .map(|(_, _, b)| b["status"].clone())
        .expect("status applied")
}

#[tokio::test]
async fn another_namespaces_virtual_service_is_not_even_read() {
    let world = Arc::new(Mutex::new(World::default()));
    let (ctx, _) = context(&world);
    let mut object = failover_json();
    object["spec"]["virtualService"]["namespace"] = json!("team-b");
    let failover: VerticeFailover = serde_json::from_value(object).expect("failover");
    reconcile_watched(failover, ctx)
        .await
        .expect("a refusal is not an error");
    let w = world.lock().expect("world");
    assert!(
        !w.requests
            .iter()
            .any(|(_, r, _)| r.contains("networking.istio.io")),
        "nothing of team-b is read or written: {:?}",
        w.requests
    );
    let status = applied_status(&w);
    assert_eq!(status["phase"], "CrossNamespaceRefused");
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .expect("Ready");
    assert_eq!(ready["reason"], "CrossNamespaceRefused");
    assert_eq!(
        ready["message"],
        "spec.virtualService.namespace team-b: a VerticeFailover may steer only VirtualServices \
         of its own namespace (db) unless the administrator allows db:team-b (--allow-cross-namespace)"
    );
    let e = event(&w, "CrossNamespaceRefused").expect("event");
    assert_eq!(e["type"], "Warning");
}

#[tokio::test]
async fn the_administrators_allowance_lets_it_steer_another_namespace() {
    let world = Arc::new(Mutex::new(World::default()));
    let allowed = TenancyArgs {
        allow_cross_namespace: vertice_crds::tenancy::CrossNamespaceAllowance::parse("team-a:db")
            .expect("pair"),
        ..TenancyArgs::default()
    };
    let (ctx, _) = context_under(&world, allowed);
    let mut object = failover_json();
    object["metadata"]["namespace"] = json!("team-a");
    object["spec"]["virtualService"]["namespace"] = json!("db");
    let failover: VerticeFailover = serde_json::from_value(object).expect("failover");
    reconcile_watched(failover, ctx).await.expect("reconcile");
    let w = world.lock().expect("world");
    assert!(w.requests.iter().any(|(m, r, _)| m == "PATCH"
        && r == "/apis/networking.istio.io/v1/namespaces/db/virtualservices/pg"));
}

#[tokio::test]
async fn a_check_secret_not_opted_in_holds_the_routing() {
    let world = Arc::new(Mutex::new(World {
        secrets: vec![("pg-check".into(), json!({}))],
        ..Default::default()
    }));
    let (ctx, _) = context(&world);
    let mut object = failover_json();
    object["spec"]["check"] =
        json!({"postgres": {"passwordSecretRef": {"name": "pg-check", "key": "password"}}});
    let failover: VerticeFailover = serde_json::from_value(object).expect("failover");
    reconcile_watched(failover, ctx).await.expect("reconcile");
    let w = world.lock().expect("world");
    assert!(
        !w.requests
            .iter()
            .any(|(_, r, _)| r.contains("virtualservices")),
        "{:?}",
        w.requests
    );
    let status = applied_status(&w);
    assert_eq!(status["phase"], "SecretNotAllowed", "{status}");
    let e = event(&w, "SecretNotAllowed").expect("event");
    assert_eq!(e["type"], "Warning");
    assert!(
        e["note"].as_str().expect("note").starts_with(
            "spec.check.postgres.passwordSecretRef: Secret db/pg-check is not labelled"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_controller_that_just_started_does_not_act_on_entries_it_has_not_seen_change() {
    // The runner's entry says a is down, but this controller process has
    // never seen it change: it may be a dead runner's frozen word. Hold,
    // quietly, until the runner writes again (or its grace runs out).
    let world = Arc::new(Mutex::new(World::default()));
    let (ctx, _metrics) = context(&world);
    let failover: VerticeFailover = serde_json::from_value(failover_json()).expect("failover");
    reconcile(Arc::new(failover.clone()), ctx.clone())
        .await
        .expect("reconcile");
    {
        let w = world.lock().expect("world");
        assert!(
            !w.requests
                .iter()
                .any(|(m, r, _)| m == "PATCH" && r.ends_with("/virtualservices/pg")),
            "{:?}",
            w.requests
        );
        let status = applied_status(&w);
        assert_eq!(status["phase"], "Healthy", "{status}");
        assert!(event(&w, "ObserversStale").is_none());
    }
    // The runner writes again: now it is heard.
    let mut later = failover;
    if let Some(status) = later.status.as_mut() {
        status.observations[0].observed_at += chrono::Duration::seconds(2);
    }
    reconcile(Arc::new(later), ctx).await.expect("reconcile");
    let w = world.lock().expect("world");
    assert!(w
        .requests
        .iter()
        .any(|(m, r, _)| m == "PATCH" && r.ends_with("/virtualservices/pg")));
}
