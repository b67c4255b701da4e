//! VerticeScalers end to end on a real control plane: a Deployment whose
//! pods the local kubelet marks Ready, `metrics.k8s.io` served by a test
//! server behind an APIService (the real aggregation path), a real
//! Prometheus scraping an exporter the test controls, and the controller
//! running as its ServiceAccount with exactly `deploy/base`'s RBAC.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use vertice_crds::VerticeScaler;
use vertice_tests::kube::{MetricsApi, TestCluster};
use vertice_tests::prometheus::{Exporter, Prometheus};
use vertice_tests::wait::wait_for;

const NS: &str = "shop";
/// Sent to Prometheus; must never show in status, Events or logs.
const TOKEN: &str = "prom-token-7f3a9c1e";

async fn deployment(client: &Client, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "shop/web:1.4",
                                                       "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}]}}}
    }))
    .expect("deployment");
    api.create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
}

async fn replicas(client: &Client, name: &str) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.get(name)
        .await
        .ok()
        .and_then(|d| d.spec.replicas)
        .unwrap_or(-1)
}

async fn decision(client: &Client, name: &str) -> Value {
    let api: Api<VerticeScaler> = Api::namespaced(client.clone(), NS);
    api.get(name)
        .await
        .ok()
        .and_then(|s| serde_json::to_value(s.status?.last_decision?).ok())
        .unwrap_or(Value::Null)
}

async fn create_scaler(client: &Client, scaler: Value) {
    let api: Api<VerticeScaler> = Api::namespaced(client.clone(), NS);
    let scaler: VerticeScaler = serde_json::from_value(scaler).expect("scaler");
    api.create(&PostParams::default(), &scaler)
        .await
        .expect("create scaler");
}

async fn event_reasons(client: &Client, scaler: &str) -> Vec<String> {
    vertice_tests::kube::cluster::event_reasons(client, NS, scaler).await
}

/// Waits until the Deployment has `want` replicas, printing the decision
/// when it does not.
async fn expect_replicas(client: &Client, name: &str, want: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if replicas(client, name).await == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach {want} replicas (has {}); last decision:\n{:#}",
            replicas(client, name).await,
            decision(client, name).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_on_cpu_and_prometheus_and_holds_when_prometheus_stops() {
    let cluster = TestCluster::start().await;
    let metrics = MetricsApi::start(&cluster.plane).await;
    let exporter = Exporter::start();
    exporter.set("queue_depth", 0.0);
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", exporter.port)]);
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    deployment(&client, "web", 1).await;
    metrics.set_cpu(NS, "100m");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "prometheus-token", "namespace": NS, "labels": {"vertice.io/allow-reference": "true"}},
                "stringData": {"token": TOKEN}}))
            .expect("secret"),
        )
        .await
        .expect("create secret");
    let controller = cluster
        .start_controller("a", &["--scaler-poll-interval=1s"])
        .await;
    create_scaler(
        &client,
        json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
               "metadata": {"name": "web", "namespace": NS},
               "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 6,
                        "prometheus": {"url": prometheus.url(),
                                       "bearerTokenSecretRef": {"name": "prometheus-token", "key": "token"}},
                        "metrics": [{"cpu": {"targetAverageUtilization": 50}},
                                    {"name": "queue", "prometheus": {"query": "sum(queue_depth)", "targetValue": 10}}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}),
    )
    .await;
    // Steady at 20 % CPU and an empty queue: one replica, explained.
    let first = wait_for("a first decision", Duration::from_secs(30), || async {
        let d = decision(&client, "web").await;
        (d["metrics"][0]["state"] == "Ok" && d["metrics"][1]["state"] == "Ok").then_some(d)
    })
    .await;
    assert_eq!(first["metrics"][0]["value"], 20.0, "{first:#}");
    assert_eq!(replicas(&client, "web").await, 1);

    // 90 % CPU: up, pod by pod as new pods report, to the maximum.
    metrics.set_cpu(NS, "450m");
    expect_replicas(&client, "web", 6, Duration::from_secs(90)).await;
    let d = wait_for(
        "the maximum as the limit",
        Duration::from_secs(30),
        || async {
            let d = decision(&client, "web").await;
            (d["reason"] == "TooManyReplicas").then_some(d)
        },
    )
    .await;
    assert_eq!(d["winner"], "cpu");

    // 10 % CPU: down to the minimum (no scale-down window in this spec).
    metrics.set_cpu(NS, "50m");
    expect_replicas(&client, "web", 1, Duration::from_secs(90)).await;

    // The queue fills: 35 against 10 → ceil(3.5 × 1) = 4.
    exporter.set("queue_depth", 35.0);
    expect_replicas(&client, "web", 4, Duration::from_secs(60)).await;
    assert_eq!(decision(&client, "web").await["winner"], "queue");

    // Prometheus goes away while CPU is low: CPU alone would scale down,
    // the broken queue metric holds.
    drop(prometheus);
    let held = wait_for(
        "a hold on the broken metric",
        Duration::from_secs(30),
        || async {
            let d = decision(&client, "web").await;
            (d["reason"] == "MetricBroken").then_some(d)
        },
    )
    .await;
    assert_eq!(held["metrics"][1]["state"], "Error", "{held:#}");
    assert!(
        held["metrics"][0]["proposal"].as_i64().unwrap_or(99) < 4,
        "{held:#}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        replicas(&client, "web").await,
        4,
        "scaled down on a broken metric"
    );

    let reasons = event_reasons(&client, "web").await;
    for reason in ["ScaledUp", "ScaledDown", "ScaleHeld"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} event in {reasons:?}"
        );
    }
    let api: Api<VerticeScaler> = Api::namespaced(client.clone(), NS);
    let status = api
        .get("web")
        .await
        .expect("scaler")
        .status
        .expect("status");
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .cloned()
            .expect("condition")
    };
    assert_eq!(condition("ScalingActive").reason, "SomeMetricsBroken");
    assert!(!status.scale_events.is_empty());
    let exposition = controller.metrics().await;
    assert!(
        exposition.contains("vertice_scaler_desired_replicas{namespace=\"shop\",scaler=\"web\"} 4"),
        "{exposition}"
    );
    assert!(exposition.contains(
        "vertice_scaler_metric_errors_total{metric=\"queue\",namespace=\"shop\",scaler=\"web\"}"
    ));

    // The bearer token went to Prometheus and nowhere else.
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let all_events = serde_json::to_string(
        &events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items,
    )
    .expect("json");
    let scaler_json = serde_json::to_string(&api.get("web").await.expect("scaler")).expect("json");
    for (place, text) in [
        ("status", scaler_json),
        ("events", all_events),
        ("controller log", controller.log_text()),
        ("metrics", exposition),
    ] {
        assert!(
            !text.contains(TOKEN),
            "the Prometheus token leaked into the {place}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_window_raises_the_floor_a_metrics_outage_holds_and_dry_run_only_explains() {
    let cluster = TestCluster::start().await;
    let metrics = MetricsApi::start(&cluster.plane).await;
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    deployment(&client, "web", 1).await;
    deployment(&client, "batch", 2).await;
    metrics.set_cpu(NS, "50m");
    let _controller = cluster
        .start_controller("a", &["--scaler-poll-interval=1s"])
        .await;
    // Open for the first 25 s of every minute: the test sees it open and close.
    create_scaler(
        &client,
        json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
               "metadata": {"name": "web", "namespace": NS},
               "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 5,
                        "metrics": [{"cpu": {"targetAverageUtilization": 50}}],
                        "schedules": [{"name": "peak", "cron": "* * * * *", "timeZone": "Europe/Berlin",
                                       "duration": "25s", "minReplicas": 3}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}),
    )
    .await;
    expect_replicas(&client, "web", 3, Duration::from_secs(90)).await;
    let d = decision(&client, "web").await;
    assert!(
        d["openWindows"][0] == "peak" || d["reason"] == "ScheduleFloor",
        "{d:#}"
    );
    // metrics.k8s.io fails while the window closes: CPU cannot be read, so
    // the scaler holds 3 instead of dropping to the floor.
    metrics.set_failing(true);
    let deadline = Instant::now() + Duration::from_secs(90);
    let held = loop {
        let d = decision(&client, "web").await;
        if d["openWindows"].as_array().is_none_or(|w| w.is_empty()) && d["reason"] == "MetricBroken"
        {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no hold after the window closed; last decision:\n{d:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(held["metrics"][0]["state"], "Error", "{held:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replicas(&client, "web").await,
        3,
        "scaled down without metrics"
    );
    // Metrics back, CPU at 10 %: down to the floor.
    metrics.set_failing(false);
    expect_replicas(&client, "web", 1, Duration::from_secs(60)).await;

    // Dry run: 10 % CPU on two replicas says one, and nothing moves.
    create_scaler(
        &client,
        json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
               "metadata": {"name": "batch", "namespace": NS},
               "spec": {"targetRef": {"kind": "Deployment", "name": "batch"},
                        "minReplicas": 1, "maxReplicas": 5, "dryRun": true,
                        "metrics": [{"cpu": {"targetAverageUtilization": 50}}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}),
    )
    .await;
    let d = wait_for("a dry-run decision", Duration::from_secs(30), || async {
        let d = decision(&client, "batch").await;
        (d["desiredReplicas"] == 1).then_some(d)
    })
    .await;
    assert_eq!(d["notActed"], true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas(&client, "batch").await, 2);

    // Pausing a live scaler: it keeps explaining, and stops acting.
    let api: Api<VerticeScaler> = Api::namespaced(client.clone(), NS);
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"vertice.io/paused": "true"}}})),
    )
    .await
    .expect("pause");
    metrics.set_cpu(NS, "500m");
    wait_for("a paused decision", Duration::from_secs(30), || async {
        let d = decision(&client, "web").await;
        (d["notActed"] == true && d["desiredReplicas"].as_i64().unwrap_or(0) > 1).then_some(())
    })
    .await;
    assert_eq!(replicas(&client, "web").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_level_requests_are_what_cpu_utilization_is_measured_against() {
    let cluster = TestCluster::start().await;
    let metrics = MetricsApi::start(&cluster.plane).await;
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    // PodLevelResources (on by default since 1.34): the pod asks 1 CPU, its
    // one container 100m. The HPA measures pod usage against the pod's
    // request; the containers' would read 400m as 400 %.
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "pooled", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "pooled"}},
                 "template": {"metadata": {"labels": {"app": "pooled"}},
                              "spec": {"resources": {"requests": {"cpu": "1", "memory": "128Mi"}},
                                       "containers": [{"name": "app", "image": "shop/web:1.4",
                                                       "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
    }))
    .expect("deployment");
    api.create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    metrics.set_cpu(NS, "400m");
    let _controller = cluster
        .start_controller("a", &["--scaler-poll-interval=1s"])
        .await;
    create_scaler(
        &client,
        json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
               "metadata": {"name": "pooled", "namespace": NS},
               "spec": {"targetRef": {"kind": "Deployment", "name": "pooled"},
                        "minReplicas": 1, "maxReplicas": 10,
                        "metrics": [{"cpu": {"targetAverageUtilization": 50}}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}),
    )
    .await;
    // Both pods measured: 400m of 1 CPU is 40 % against 50 %, ceil(0.8 × 2) = 2.
    let d = wait_for(
        "a decision on both pods",
        Duration::from_secs(60),
        || async {
            let d = decision(&client, "pooled").await;
            (d["metrics"][0]["state"] == "Ok" && d["metrics"][0]["value"] == 40.0).then_some(d)
        },
    )
    .await;
    assert_eq!(d["metrics"][0]["proposal"], 2, "{d:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replicas(&client, "pooled").await,
        2,
        "scaled on container requests; last decision:\n{:#}",
        decision(&client, "pooled").await
    );
}

/// The status of a scaler as JSON (`Null` while it has none).
async fn status(client: &Client, name: &str) -> Value {
    let api: Api<VerticeScaler> = Api::namespaced(client.clone(), NS);
    api.get(name)
        .await
        .ok()
        .and_then(|s| serde_json::to_value(s.status?).ok())
        .unwrap_or(Value::Null)
}

/// The condition of `type_` in a status as JSON.
fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// The notes of the Events about `name` with `reason`.
async fn event_notes(client: &Client, name: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// A scaler that holds its target at exactly `replicas` (min = max), on a
/// CPU metric that never asks for more.
fn fixed_scaler(name: &str, target: &str, replicas: i32) -> Value {
    json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"targetRef": {"kind": "Deployment", "name": target},
                    "minReplicas": replicas, "maxReplicas": replicas,
                    "metrics": [{"cpu": {"targetAverageUtilization": 50}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scalers_on_one_target_do_not_fight_and_an_hpa_keeps_both_off() {
    let cluster = TestCluster::start().await;
    let metrics = MetricsApi::start(&cluster.plane).await;
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    deployment(&client, "web", 1).await;
    metrics.set_cpu(NS, "100m");
    let _controller = cluster
        .start_controller("a", &["--scaler-poll-interval=1s"])
        .await;
    // "first" holds web at 3, "second" (younger) would hold it at 5.
    create_scaler(&client, fixed_scaler("first", "web", 3)).await;
    expect_replicas(&client, "web", 3, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create_scaler(&client, fixed_scaler("second", "web", 5)).await;
    let refused = wait_for(
        "the younger scaler refused",
        Duration::from_secs(30),
        || async {
            let s = status(&client, "second").await;
            (condition(&s, "AbleToScale")["reason"] == "AmbiguousTarget").then_some(s)
        },
    )
    .await;
    let message = condition(&refused, "AbleToScale")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("Deployment shop/web") && message.contains("VerticeScaler first"),
        "{message}"
    );
    assert_eq!(condition(&refused, "AbleToScale")["status"], "False");
    assert_eq!(refused["lastDecision"]["reason"], "AmbiguousTarget");
    assert_eq!(refused["lastDecision"]["notActed"], true);
    // Only the owner's decisions land: web stays at 3 for many polls.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(replicas(&client, "web").await, 3, "the scalers fight");
    }
    let notes = wait_for(
        "an AmbiguousTarget Event",
        Duration::from_secs(10),
        || async {
            let notes = event_notes(&client, "second", "AmbiguousTarget").await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await;
    assert!(notes[0].contains("VerticeScaler first"), "{notes:?}");
    // The owner is told too: one Normal Event naming the scaler it refuses.
    let owner_events = wait_for(
        "the owner's Normal AmbiguousTarget Event",
        Duration::from_secs(10),
        || async {
            let events: Api<Event> = Api::namespaced(client.clone(), NS);
            let found: Vec<Event> = events
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("first"))
                .filter(|e| e.reason.as_deref() == Some("AmbiguousTarget"))
                .collect();
            (!found.is_empty()).then_some(found)
        },
    )
    .await;
    assert_eq!(
        owner_events.len(),
        1,
        "once, not every poll: {owner_events:?}"
    );
    assert_eq!(owner_events[0].type_.as_deref(), Some("Normal"));
    let note = owner_events[0].note.clone().unwrap_or_default();
    assert!(note.contains("VerticeScaler second"), "{note}");
    assert_ne!(
        condition(&status(&client, "first").await, "AbleToScale")["reason"],
        "AmbiguousTarget"
    );

    // The owner deleted: the other takes over.
    let api: Api<VerticeScaler> = Api::namespaced(client.clone(), NS);
    api.delete("first", &Default::default())
        .await
        .expect("delete first");
    expect_replicas(&client, "web", 5, Duration::from_secs(30)).await;
    let s = status(&client, "second").await;
    assert_ne!(
        condition(&s, "AbleToScale")["reason"],
        "AmbiguousTarget",
        "{s:#}"
    );

    // An upstream HPA on the same target: ours stops acting, says so.
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), NS);
    hpas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web-hpa", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 2,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                  "target": {"type": "Utilization", "averageUtilization": 50}}}]}}))
        .expect("hpa"),
    )
    .await
    .expect("create hpa");
    let s = wait_for("TargetOwnedByHPA", Duration::from_secs(30), || async {
        let s = status(&client, "second").await;
        (condition(&s, "AbleToScale")["reason"] == "TargetOwnedByHPA").then_some(s)
    })
    .await;
    assert!(
        condition(&s, "AbleToScale")["message"]
            .as_str()
            .is_some_and(|m| m.contains("HorizontalPodAutoscaler web-hpa")),
        "{s:#}"
    );
    // A hand edit while the HPA owns the target is not undone by us.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scale by hand");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(replicas(&client, "web").await, 4, "acted next to an HPA");
    wait_for(
        "a TargetOwnedByHPA Event",
        Duration::from_secs(10),
        || async {
            (!event_notes(&client, "second", "TargetOwnedByHPA")
                .await
                .is_empty())
            .then_some(())
        },
    )
    .await;
    // The HPA deleted: ours acts again.
    hpas.delete("web-hpa", &Default::default())
        .await
        .expect("delete hpa");
    expect_replicas(&client, "web", 5, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_target_is_reported_as_missing_and_found_again() {
    let cluster = TestCluster::start().await;
    let metrics = MetricsApi::start(&cluster.plane).await;
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    deployment(&client, "workers", 2).await;
    metrics.set_cpu(NS, "250m");
    let _controller = cluster
        .start_controller("a", &["--scaler-poll-interval=1s"])
        .await;
    create_scaler(&client, fixed_scaler("workers", "workers", 2)).await;
    wait_for("a first decision", Duration::from_secs(30), || async {
        let s = status(&client, "workers").await;
        (s["currentReplicas"] == 2 && s["lastDecision"]["reason"] == "DesiredWithinRange")
            .then_some(())
    })
    .await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deployments
        .delete("workers", &Default::default())
        .await
        .expect("delete the target");
    let expected = "Deployment shop/workers not found: create it or fix spec.targetRef";
    let s = wait_for(
        "the target reported missing",
        Duration::from_secs(30),
        || async {
            let s = status(&client, "workers").await;
            (s["lastDecision"]["reason"] == "TargetNotFound").then_some(s)
        },
    )
    .await;
    assert!(s.get("currentReplicas").is_none(), "{s:#}");
    assert!(s.get("desiredReplicas").is_none(), "{s:#}");
    for type_ in ["AbleToScale", "ScalingActive"] {
        let c = condition(&s, type_);
        assert_eq!(c["reason"], "TargetNotFound", "{s:#}");
        assert_eq!(c["message"], expected, "{s:#}");
    }
    assert!(condition(&s, "ScalingLimited").is_null(), "{s:#}");
    let table = cluster.kubectl(&["get", "vsc", "-n", NS, "workers"]);
    assert!(table.contains("TargetNotFound"), "{table}");
    assert!(!table.contains("DesiredWithinRange"), "{table}");
    let notes = wait_for(
        "a TargetNotFound Event",
        Duration::from_secs(10),
        || async {
            let notes = event_notes(&client, "workers", "TargetNotFound").await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await;
    assert_eq!(notes, [expected]);

    // Created again: the scaler finds it and scales it.
    deployment(&client, "workers", 1).await;
    expect_replicas(&client, "workers", 2, Duration::from_secs(30)).await;
    wait_for(
        "the target found again",
        Duration::from_secs(30),
        || async {
            let s = status(&client, "workers").await;
            (s["currentReplicas"].is_number()
                && condition(&s, "AbleToScale")["reason"] != "TargetNotFound")
                .then_some(())
        },
    )
    .await;

    // A kind without /scale and a kind nobody serves: named, not a 404.
    let mut no_scale = fixed_scaler("settings", "settings", 1);
    no_scale["spec"]["targetRef"] =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "settings"});
    create_scaler(&client, no_scale).await;
    let mut unknown = fixed_scaler("widgets", "w", 1);
    unknown["spec"]["targetRef"] =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "w"});
    create_scaler(&client, unknown).await;
    for (name, text) in [
        ("settings", "ConfigMap (v1) has no /scale subresource"),
        (
            "widgets",
            "the API server does not serve Widget in example.com/v1",
        ),
    ] {
        let s = wait_for(
            "an invalid target named",
            Duration::from_secs(30),
            || async {
                let s = status(&client, name).await;
                (condition(&s, "AbleToScale")["reason"] == "InvalidTarget").then_some(s)
            },
        )
        .await;
        let message = condition(&s, "AbleToScale")["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.starts_with(text), "{message}");
        assert!(
            !message.contains("Status {") && !message.contains("Error"),
            "{message}"
        );
    }

    // A target at or below zero is refused at admission, as an HPA's.
    let api: Api<VerticeScaler> = Api::namespaced(client.clone(), NS);
    for target in [0, -5] {
        let mut negative = fixed_scaler("negative", "workers", 1);
        negative["spec"]["prometheus"] = json!({"url": "http://prometheus.monitoring:9090"});
        negative["spec"]["metrics"] =
            json!([{"name": "lag", "prometheus": {"query": "sum(lag)", "targetValue": target}}]);
        let refused = api
            .create(
                &PostParams::default(),
                &serde_json::from_value(negative).expect("scaler"),
            )
            .await
            .expect_err("a target of zero or less");
        assert!(refused.to_string().contains("must be above 0"), "{refused}");
    }
}
