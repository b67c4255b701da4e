//! `scripts/bench-scaler`: N VerticeScalers (default 1,000) at a poll
//! interval (default 15 s) on the real API server, half on CPU through
//! `metrics.k8s.io`, half on a Prometheus query. Reports the controller's
//! RSS and CPU in steady state against the same controller idle (the
//! baseline of the same run), and the decision latency from a metric change
//! (as Prometheus answers it) to the `/scale` patch, against the interval.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use vertice_crds::VerticeScaler;
use vertice_tests::kube::{MetricsApi, TestCluster};
use vertice_tests::procfs::{measure, status_kib};
use vertice_tests::prometheus::{Exporter, Prometheus};

const NAMESPACES: usize = 10;
const STEADY_WINDOW: Duration = Duration::from_secs(60);
const LATENCY_SAMPLES: usize = 4;

async fn deployment(client: &Client, ns: &str, name: &str, apply: &PatchParams) {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "bench/app:1",
                                                       "resources": {"requests": {"cpu": "500m"}}}]}}}});
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(name, apply, &Patch::Apply(&d))
        .await
        .expect("deployment");
}

async fn scaler(
    client: &Client,
    ns: &str,
    name: &str,
    metric: serde_json::Value,
    prometheus: &str,
    apply: &PatchParams,
) {
    let s = json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"targetRef": {"kind": "Deployment", "name": name}, "minReplicas": 1, "maxReplicas": 10,
                 "prometheus": {"url": prometheus}, "metrics": [metric],
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}});
    Api::<VerticeScaler>::namespaced(client.clone(), ns)
        .patch(name, apply, &Patch::Apply(&s))
        .await
        .expect("scaler");
}

async fn replicas(client: &Client, ns: &str, name: &str) -> i32 {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()
        .and_then(|d| d.spec.replicas)
        .unwrap_or(-1)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let interval: u64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(15);
    let cluster = TestCluster::start().await;
    let metrics = MetricsApi::start(&cluster.plane).await;
    let exporter = Exporter::start();
    exporter.set("load{group=\"steady\"}", 100.0);
    exporter.set("load{group=\"probe\"}", 10.0);
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", exporter.port)]);
    let client = cluster.admin().await;
    let apply = PatchParams::apply("vertice-bench").force();
    for n in 0..NAMESPACES {
        let ns = format!("bench-{n}");
        cluster.plane.create_namespace(&ns).await;
        // 250m of 500m: 50 % against a 50 % target, steady.
        metrics.set_cpu(&ns, "250m");
    }
    cluster.plane.create_namespace("probe").await;

    let controller = cluster
        .start_controller("bench", &[&format!("--scaler-poll-interval={interval}s")])
        .await;
    let pid = controller.pid();
    let (idle_cpu, idle_rss) = measure(pid, Duration::from_secs(20)).await;

    let created = Instant::now();
    for i in 0..count {
        let ns = format!("bench-{}", i % NAMESPACES);
        let name = format!("w-{i}");
        deployment(&client, &ns, &name, &apply).await;
        let metric = if i % 2 == 0 {
            json!({"cpu": {"targetAverageUtilization": 50}})
        } else {
            json!({"name": "load", "prometheus": {"query": "sum(load{group=\"steady\"})", "targetAverageValue": 100}})
        };
        scaler(&client, &ns, &name, metric, &prometheus.url(), &apply).await;
    }
    deployment(&client, "probe", "probe", &apply).await;
    scaler(
        &client,
        "probe",
        "probe",
        json!({"name": "load", "prometheus": {"query": "sum(load{group=\"probe\"})", "targetAverageValue": 10}}),
        &prometheus.url(),
        &apply,
    )
    .await;
    eprintln!(
        "created {count} Deployments and VerticeScalers in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    // Converged: every scaler has decided with its metric healthy.
    let all: Api<VerticeScaler> = Api::all(client.clone());
    let converge = Instant::now();
    loop {
        let scalers = all.list(&ListParams::default()).await.expect("list").items;
        let ok = scalers
            .iter()
            .filter(|s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.last_decision.as_ref())
                    .is_some_and(|d| d.metrics.iter().all(|m| m.state == "Ok"))
            })
            .count();
        if ok == count + 1 {
            break;
        }
        assert!(
            converge.elapsed() < Duration::from_secs(900),
            "only {ok} of {} scalers healthy after 15 min",
            count + 1
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let converged = converge.elapsed();
    let (steady_cpu, steady_rss) = measure(pid, STEADY_WINDOW).await;
    let peak = status_kib(pid, "VmHWM:") as f64 / 1024.0;

    // Latency: change the probe's load, wait until Prometheus answers the new
    // value, then time until the Deployment's replicas change.
    let mut latencies = Vec::new();
    for sample in 0..LATENCY_SAMPLES {
        let (value, want) = if sample % 2 == 0 {
            (30.0, 3)
        } else {
            (10.0, 1)
        };
        exporter.set("load{group=\"probe\"}", value);
        while prometheus.value("sum(load{group=\"probe\"})") != Some(value) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = Instant::now();
        while replicas(&client, "probe", "probe").await != want {
            assert!(
                seen.elapsed() < Duration::from_secs(120),
                "the probe never reached {want} replicas"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.push(seen.elapsed().as_secs_f64());
    }
    let worst = latencies.iter().cloned().fold(0.0, f64::max);
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;

    println!("scaler benchmark: {count} VerticeScalers at a {interval} s poll interval on kube-apiserver v1.37.2");
    println!("  half CPU (metrics.k8s.io via an APIService), half Prometheus");
    println!(
        "  all decided with healthy metrics after {:.1} s",
        converged.as_secs_f64()
    );
    println!("  baseline: the same controller idle (no scalers) for 20 s: {idle_cpu:.2} % of a core, {idle_rss:.1} MiB RSS");
    println!(
        "  steady state ({} s): CPU {steady_cpu:.2} % of a core ({:.1}x idle; target < 5 %)",
        STEADY_WINDOW.as_secs(),
        steady_cpu / idle_cpu.max(0.01)
    );
    println!(
        "  RSS {steady_rss:.1} MiB ({:.2}x idle), peak {peak:.1} MiB (target <= 40 MiB)",
        steady_rss / idle_rss.max(0.1)
    );
    println!(
        "  decision latency, metric change → /scale patch: mean {mean:.1} s, worst {worst:.1} s over {LATENCY_SAMPLES} changes ({:.2}x the interval; target <= 1x)",
        worst / interval as f64
    );
    drop(controller);
}
