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
