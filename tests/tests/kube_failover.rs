//! VerticeFailover end to end on a real control plane with Istio's
//! VirtualService CRD (from Istio's Go module): two real HTTP replicas, the
//! probe runner and the controller as processes with exactly their
//! `deploy/base` RBAC. A replica dies → weights move within interval ×
//! threshold + 1 s; it returns → failback after the hold, in steps; the
//! runner dies → ObserversStale and no switch; a hand edit between our read
//! and our patch is never clobbered. The shipped two-region example (three
//! vantages: a runner per region and a witness) survives the loss of either
//! region, and a hand revert of the weights to its dead primary is undone.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use vertice_controller::failover::virtual_service;
use vertice_crds::failover::FailoverReplica;
use vertice_crds::VerticeFailover;
use vertice_tests::health_target::HealthTarget;
use vertice_tests::kube::{istio, TestCluster};
use vertice_tests::wait::wait_for;

const NS: &str = "db";
/// Sent as a header by the probes; must never show in status, Events or logs.
const TOKEN: &str = "probe-token-91c2e7";

fn virtual_services(client: &Client) -> Api<DynamicObject> {
    istio::virtual_services(client, NS)
}

async fn install(cluster: &TestCluster) -> Client {
    istio::install_virtual_service_crd(cluster);
    cluster.kubectl(&["create", "namespace", NS]);
    let client = cluster.admin().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "probe-token", "labels": {"vertice.io/allow-reference": "true"}},
        "stringData": {"token": format!("Bearer {TOKEN}")}}))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    client
}

async fn create_virtual_service(client: &Client, name: &str) {
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"hosts": ["pg.db.svc.cluster.local"], "http": [
            {"name": "reads", "match": [{"headers": {"x-read": {"exact": "1"}}}],
             "route": [{"destination": {"host": "pg-ro.db.svc.cluster.local"}}]},
            {"name": "primary", "route": [
                {"destination": {"host": "pg-a.db.svc.cluster.local"}, "weight": 100},
                {"destination": {"host": "pg-b.db.svc.cluster.local"}, "weight": 0}]}]}}))
    .expect("vs");
    virtual_services(client)
        .create(&PostParams::default(), &vs)
        .await
        .expect("create vs");
}

async fn create_failover(
    client: &Client,
    name: &str,
    vs: &str,
    a: &HealthTarget,
    b: &HealthTarget,
) {
    let failover: VerticeFailover = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "virtualService": {"name": vs, "route": "primary"},
            "replicas": [
                {"name": "a", "host": "pg-a.db.svc.cluster.local", "probeAddress": a.address(), "priority": 10},
                {"name": "b", "host": "pg-b.db.svc.cluster.local", "probeAddress": b.address(), "priority": 5}],
            "check": {"http": {"path": "/healthz", "headers": [
                    {"name": "Authorization", "valueFrom": {"name": "probe-token", "key": "token"}}]},
                "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2},
            "policy": {"vantages": ["test"], "minSwitchIntervalSeconds": 0, "failbackAfterSeconds": 4,
                       "failbackSteps": 2, "stepIntervalSeconds": 2, "maxSwitches": 10}}}))
    .expect("failover");
    let api: Api<VerticeFailover> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &failover)
        .await
        .expect("create failover");
}

/// The weights of route "primary": (a, b).
async fn weights(client: &Client, vs: &str) -> (u64, u64) {
    let w = istio::route_weights(client, NS, vs, 1).await;
    (w[0], w[1])
}

async fn status(client: &Client, name: &str) -> Value {
    let api: Api<VerticeFailover> = Api::namespaced(client.clone(), NS);
    api.get(name)
        .await
        .ok()
        .and_then(|f| serde_json::to_value(f.status?).ok())
        .unwrap_or(Value::Null)
}

async fn phase(client: &Client, name: &str) -> String {
    status(client, name).await["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn event_reasons(client: &Client, name: &str) -> Vec<String> {
    vertice_tests::kube::cluster::event_reasons(client, NS, name).await
}

/// Polls the weights every 50 ms until `want`; how long it took.
async fn until_weights(
    client: &Client,
    vs: &str,
    want: (u64, u64),
    timeout: Duration,
    name: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        if weights(client, vs).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "weights never became {want:?}; now {:?}; status {}",
            weights(client, vs).await,
            status(client, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_within_the_threshold_fails_back_in_steps_and_holds_when_blind() {
    let cluster = TestCluster::start().await;
    let client = install(&cluster).await;
    let mut a = HealthTarget::start().await;
    let b = HealthTarget::start().await;
    create_virtual_service(&client, "pg").await;
    create_failover(&client, "pg", "pg", &a, &b).await;
    let controller = cluster.start_controller("failover-test", &[]).await;
    let mut runner = cluster.start_probe_runner("test").await;

    wait_for("phase Healthy", Duration::from_secs(30), || async {
        (phase(&client, "pg").await == "Healthy").then_some(())
    })
    .await;
    assert_eq!(weights(&client, "pg").await, (100, 0));
    // The runner started after the failover: it had a staleness period of
    // grace to be heard, and no alarm was raised meanwhile.
    let reasons = event_reasons(&client, "pg").await;
    assert!(
        !reasons.iter().any(|r| r == "ObserversStale"),
        "{reasons:?}"
    );
    let observed = status(&client, "pg").await;
    assert_eq!(observed["observations"][0]["vantage"], "test", "{observed}");
    // Each writer owns only its fields: the runner its observation entry,
    // the controller everything else in status.
    let failovers: Api<VerticeFailover> = Api::namespaced(client.clone(), NS);
    let managed = failovers
        .get("pg")
        .await
        .expect("failover")
        .metadata
        .managed_fields
        .unwrap_or_default();
    let fields_of = |manager: &str| {
        managed
            .iter()
            .filter(|m| {
                m.manager.as_deref() == Some(manager) && m.subresource.as_deref() == Some("status")
            })
            .filter_map(|m| m.fields_v1.as_ref().map(|f| f.0.clone()))
            .collect::<Vec<Value>>()
    };
    let runner_fields = fields_of("vertice-probe-test");
    assert_eq!(runner_fields.len(), 1, "{managed:?}");
    let status_fields: Vec<&String> = runner_fields[0]["f:status"]
        .as_object()
        .expect("status fields")
        .keys()
        .collect();
    assert_eq!(status_fields, vec!["f:observations"], "{runner_fields:?}");
    let controller_fields = fields_of("vertice-controller");
    assert!(!controller_fields.is_empty(), "{managed:?}");
    assert!(
        controller_fields[0]["f:status"]
            .get("f:observations")
            .is_none(),
        "{controller_fields:?}"
    );
    assert!(
        controller_fields[0]["f:status"].get("f:phase").is_some(),
        "{controller_fields:?}"
    );
    assert!(
        b.last_request().expect("probed").contains(TOKEN),
        "the header from the Secret is sent"
    );

    // a dies: period 1 s × threshold 3, + 1 s.
    a.stop();
    let took = until_weights(&client, "pg", (0, 100), Duration::from_secs(15), "pg").await;
    assert!(
        took <= Duration::from_secs(4),
        "failover took {took:?}, more than 1 s × 3 + 1 s"
    );
    eprintln!("detection to patch: {took:?}");
    // The status is applied right after the route's patch.
    wait_for("phase FailedOver", Duration::from_secs(5), || async {
        (phase(&client, "pg").await == "FailedOver").then_some(())
    })
    .await;

    // a returns: healthy after 2 successes, failback after 4 s, 2 steps 2 s apart.
    a.resume().await;
    let back = Instant::now();
    until_weights(&client, "pg", (50, 50), Duration::from_secs(20), "pg").await;
    assert!(
        back.elapsed() >= Duration::from_secs(4),
        "failback before the hold: {:?}",
        back.elapsed()
    );
    until_weights(&client, "pg", (100, 0), Duration::from_secs(10), "pg").await;
    wait_for("phase Healthy again", Duration::from_secs(10), || async {
        (phase(&client, "pg").await == "Healthy").then_some(())
    })
    .await;
    // Events are recorded after the status write: wait for them.
    for reason in [
        "FailoverStarted",
        "FailedOver",
        "FailbackStep",
        "FailedBack",
    ] {
        wait_for(
            &format!("a {reason} event"),
            Duration::from_secs(15),
            || async {
                event_reasons(&client, "pg")
                    .await
                    .iter()
                    .any(|r| r == reason)
                    .then_some(())
            },
        )
        .await;
    }
    let switches = status(&client, "pg").await["switches"].clone();
    let kinds: Vec<&str> = switches
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["reason"].as_str())
        .collect();
    assert_eq!(kinds, vec!["Failover", "Failback"], "{switches}");

    // The runner dies, then a: stale observers, never a switch.
    runner.kill();
    wait_for("phase ObserversStale", Duration::from_secs(30), || async {
        (phase(&client, "pg").await == "ObserversStale").then_some(())
    })
    .await;
    a.stop();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        weights(&client, "pg").await,
        (100, 0),
        "switched on stale observations"
    );
    assert!(event_reasons(&client, "pg")
        .await
        .iter()
        .any(|r| r == "ObserversStale"));

    // The controller's own metrics.
    let metrics = controller.metrics().await;
    for line in [
        "vertice_failover_phase{failover=\"pg\",namespace=\"db\",phase=\"ObserversStale\"} 1",
        "vertice_failover_switches_total{failover=\"pg\",namespace=\"db\",reason=\"Failover\"} 1",
        "vertice_failover_switches_total{failover=\"pg\",namespace=\"db\",reason=\"Failback\"} 1",
        "vertice_failover_replica_healthy{failover=\"pg\",namespace=\"db\",replica=\"a\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(
        metrics.contains("vertice_failover_health_check_success_ratio{"),
        "{metrics}"
    );

    // The token never leaks.
    let everything = format!(
        "{}{:?}{}{}",
        status(&client, "pg").await,
        event_reasons(&client, "pg").await,
        controller.log_text(),
        runner.log_text()
    );
    assert!(!everything.contains(TOKEN), "the probe token leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_between_read_and_patch_is_never_clobbered() {
    let cluster = TestCluster::start().await;
    let client = install(&cluster).await;
    create_virtual_service(&client, "hand").await;
    let api = virtual_services(&client);
    let read = api.get("hand").await.expect("vs");
    let replicas: Vec<FailoverReplica> = serde_json::from_value(json!([
        {"name": "a", "host": "pg-a.db.svc.cluster.local"},
        {"name": "b", "host": "pg-b.db.svc.cluster.local"}]))
    .expect("replicas");
    let view =
        virtual_service::route_view(&serde_json::to_value(&read).expect("json"), Some("primary"))
            .expect("route");
    let indexes = virtual_service::match_replicas(&view, &replicas).expect("match");
    let ops = virtual_service::patch(
        &view,
        &indexes,
        &virtual_service::weights(&view, &replicas, &indexes)
            .into_iter()
            .map(|mut w| {
                w.weight = 100 - w.weight;
                w
            })
            .collect::<Vec<_>>(),
    );
    // Someone shifts the weights by hand after our read.
    let hand = json!([{"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 70},
                      {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 30}]);
    api.patch(
        "hand",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(hand).expect("patch")),
    )
    .await
    .expect("hand edit");
    let ours: json_patch::Patch = serde_json::from_value(ops.clone()).expect("ops");
    let refused = api
        .patch("hand", &PatchParams::default(), &Patch::<()>::Json(ours))
        .await
        .expect_err("the guarded patch must be refused");
    match refused {
        kube::Error::Api(status) => {
            // A failed test operation: 422 without field causes (what the
            // controller takes for "changed since read").
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.details.as_ref().is_none_or(|d| d.causes.is_empty()),
                "{status:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        weights(&client, "hand").await,
        (70, 30),
        "the hand edit survives"
    );
    // The same patch on the VirtualService as it was read applies.
    let fresh = json!([{"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 100},
                       {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 0}]);
    api.patch(
        "hand",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(fresh).expect("patch")),
    )
    .await
    .expect("restore");
    let ours: json_patch::Patch = serde_json::from_value(ops).expect("ops");
    api.patch("hand", &PatchParams::default(), &Patch::<()>::Json(ours))
        .await
        .expect("applies when nothing changed");
    assert_eq!(weights(&client, "hand").await, (0, 100));

    // The controller: a route whose hosts no longer match is left alone.
    let a = HealthTarget::start().await;
    let b = HealthTarget::start().await;
    create_failover(&client, "hand", "hand", &a, &b).await;
    let rename = json!([{"op": "replace", "path": "/spec/http/1/route/1/destination/host", "value": "pg-c.db.svc.cluster.local"}]);
    api.patch(
        "hand",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(rename).expect("patch")),
    )
    .await
    .expect("rename");
    let _controller = cluster.start_controller("failover-guard", &[]).await;
    let _runner = cluster.start_probe_runner("test").await;
    wait_for("phase RouteMismatch", Duration::from_secs(30), || async {
        (phase(&client, "hand").await == "RouteMismatch").then_some(())
    })
    .await;
    let message = status(&client, "hand").await["conditions"].to_string();
    assert!(message.contains("replica \\\"b\\\""), "{message}");
    assert_eq!(weights(&client, "hand").await, (0, 100), "nothing patched");
}

const EXAMPLE: &str = "deploy/examples/failover-postgres-two-regions.yaml";
const ORDERS: &str = "orders";

fn orders(client: &Client) -> Api<VerticeFailover> {
    Api::namespaced(client.clone(), ORDERS)
}

async fn orders_status(client: &Client) -> Value {
    orders(client)
        .get("orders-db")
        .await
        .ok()
        .and_then(|f| serde_json::to_value(f.status?).ok())
        .unwrap_or(Value::Null)
}

/// The example's route "primary": (pg-eu, pg-us).
async fn orders_weights(client: &Client) -> (u64, u64) {
    let w = istio::route_weights(client, ORDERS, "orders-db", 0).await;
    (w[0], w[1])
}

async fn orders_health(client: &Client, replica: &str) -> String {
    orders_status(client).await["health"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["name"] == replica)
        .and_then(|h| h["health"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn until_orders_weights(client: &Client, want: (u64, u64), timeout: Duration) {
    let started = Instant::now();
    while orders_weights(client).await != want {
        assert!(
            started.elapsed() < timeout,
            "weights never became {want:?}; now {:?}; status {}",
            orders_weights(client).await,
            orders_status(client).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds while `cond` stays true for `period`, checked every 100 ms.
async fn stays(what: &str, period: Duration, cond: impl AsyncFn() -> bool) {
    let started = Instant::now();
    while started.elapsed() < period {
        assert!(cond().await, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const DOWN: (u16, &str) = (503, "down");

/// "reason: note" of every Event about the example's failover, oldest first.
async fn orders_events(client: &Client) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), ORDERS);
    let mut events: Vec<Event> = events
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("orders-db"))
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events
        .into_iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_region_example_survives_the_loss_of_either_region() {
    let cluster = TestCluster::start().await;
    istio::install_virtual_service_crd(&cluster);
    cluster.kubectl(&["create", "namespace", ORDERS]);
    // The example exactly as shipped: its Secret, VirtualService and policy.
    let example = vertice_tests::kube::cluster::workspace().join(EXAMPLE);
    cluster.kubectl(&["apply", "-f", &example.display().to_string()]);
    let client = cluster.admin().await;
    let shipped = orders(&client).get("orders-db").await.expect("example");
    let vantages = shipped.spec.policy.vantages.clone().unwrap_or_default();
    let [eu, us, witness] = vantages.as_slice() else {
        panic!("the example names three vantages: {vantages:?}");
    };
    assert_eq!(shipped.spec.policy.quorum, Some(2));
    // Only the probes change: real HTTP targets stand in for the databases,
    // probed every second.
    let pg_eu = HealthTarget::start().await;
    let pg_us = HealthTarget::start().await;
    let mut replicas = serde_json::to_value(&shipped.spec.replicas).expect("replicas");
    for replica in replicas.as_array_mut().into_iter().flatten() {
        let target = if replica["name"] == "pg-eu" {
            &pg_eu
        } else {
            &pg_us
        };
        replica["probeAddress"] = json!(target.address());
    }
    let probes = json!({"spec": {"replicas": replicas, "check": {"postgres": null,
        "http": {"path": "/healthz"},
        "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2}}});
    orders(&client)
        .patch("orders-db", &PatchParams::default(), &Patch::Merge(&probes))
        .await
        .expect("probe the stand-ins");

    let controller = cluster.start_controller("failover-regions", &[]).await;
    let mut runner_eu = cluster.start_probe_runner(eu).await;
    let mut runner_us = cluster.start_probe_runner(us).await;
    let _runner_witness = cluster.start_probe_runner(witness).await;
    wait_for("phase Healthy", Duration::from_secs(30), || async {
        (orders_status(&client).await["phase"] == "Healthy").then_some(())
    })
    .await;
    let conditions = orders_status(&client).await["conditions"].clone();
    let resilient = conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "QuorumResilient")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(resilient["status"], "True", "{conditions}");

    // The standby's region is lost, its runner with it: pg-us is marked
    // down by eu and the witness, and traffic stays on pg-eu, unmoved.
    runner_us.kill();
    pg_us.set(DOWN.0, DOWN.1);
    wait_for("pg-us unhealthy", Duration::from_secs(15), || async {
        (orders_health(&client, "pg-us").await == "Unhealthy").then_some(())
    })
    .await;
    stays("traffic on pg-eu", Duration::from_secs(12), async || {
        orders_weights(&client).await == (100, 0)
    })
    .await;
    let now = orders_status(&client).await;
    assert_eq!(now["phase"], "Healthy", "{now}");
    assert!(
        now["switches"].as_array().is_none_or(|s| s.is_empty()),
        "{now}"
    );

    // The region returns.
    runner_us = cluster.start_probe_runner(us).await;
    pg_us.set(200, r#"{"status":"ok"}"#);
    wait_for("pg-us healthy", Duration::from_secs(20), || async {
        (orders_health(&client, "pg-us").await == "Healthy").then_some(())
    })
    .await;

    // The primary's region is lost, its runner with it: us and the witness
    // are a majority and move traffic to pg-us within the failure threshold.
    runner_eu.kill();
    pg_eu.set(DOWN.0, DOWN.1);
    let lost = Instant::now();
    until_orders_weights(&client, (0, 100), Duration::from_secs(15)).await;
    eprintln!("region loss to failover: {:?}", lost.elapsed());
    assert!(
        lost.elapsed() < Duration::from_secs(8),
        "{:?}",
        lost.elapsed()
    );
    wait_for("phase FailedOver", Duration::from_secs(10), || async {
        (orders_status(&client).await["phase"] == "FailedOver").then_some(())
    })
    .await;

    // A GitOps revert puts the weights back on the dead primary, inside the
    // example's minSwitchIntervalSeconds (60): undone, not pinned there.
    let revert = json!([{"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 100},
                        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 0}]);
    istio::virtual_services(&client, ORDERS)
        .patch(
            "orders-db",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(revert).expect("patch")),
        )
        .await
        .expect("revert");
    assert_eq!(orders_weights(&client).await, (100, 0));
    until_orders_weights(&client, (0, 100), Duration::from_secs(10)).await;
    stays("traffic on pg-us", Duration::from_secs(3), async || {
        orders_weights(&client).await == (0, 100)
    })
    .await;
    let switches = orders_status(&client).await["switches"].clone();
    let kinds: Vec<&str> = switches
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["reason"].as_str())
        .collect();
    assert_eq!(kinds, vec!["Failover", "Failover"], "{switches}");

    // Then pg-us fails too: the vantages heard agree that every replica is
    // down. A total outage, not broken observers.
    pg_us.set(DOWN.0, DOWN.1);
    wait_for(
        "phase NoHealthyReplica",
        Duration::from_secs(15),
        || async { (orders_status(&client).await["phase"] == "NoHealthyReplica").then_some(()) },
    )
    .await;
    let metrics = controller.metrics().await;
    let line = "vertice_failover_phase{failover=\"orders-db\",namespace=\"orders\",phase=\"NoHealthyReplica\"} 1";
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    wait_for(
        "a NoHealthyReplica event",
        Duration::from_secs(10),
        || async {
            vertice_tests::kube::cluster::event_reasons(&client, ORDERS, "orders-db")
                .await
                .iter()
                .any(|r| r == "NoHealthyReplica")
                .then_some(())
        },
    )
    .await;

    // Losing a region is not losing the observers.
    let reasons = vertice_tests::kube::cluster::event_reasons(&client, ORDERS, "orders-db").await;
    assert!(
        reasons.iter().any(|r| r == "FailoverStarted"),
        "{reasons:?}"
    );
    assert!(
        !reasons
            .iter()
            .any(|r| r == "ObserversStale" || r == "QuorumNotResilient"),
        "{:#?}",
        orders_events(&client).await
    );
    drop(runner_us);
}
