//! `scripts/bench-failover`: on the real API server with Istio's
//! VirtualService CRD,
//! 1. detection-to-patch time over N injected failures (default 20) of a
//!    real HTTP replica, against interval × threshold (1 s × 3);
//! 2. the probe runner's RSS and CPU with F failovers × 3 replicas (default
//!    200) at a 5 s interval, against the same runner idle (the baseline of
//!    the same run).

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use vertice_crds::VerticeFailover;
use vertice_tests::health_target::HealthTarget;
use vertice_tests::kube::{istio, TestCluster};
use vertice_tests::procfs::measure;

const NS: &str = "bench";
const PERIOD: u64 = 1;
const THRESHOLD: u64 = 3;
const STEADY_WINDOW: Duration = Duration::from_secs(60);

async fn apply_failover(client: &Client, name: &str, spec: serde_json::Value) {
    let f = json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
        "metadata": {"name": name, "namespace": NS}, "spec": spec});
    Api::<VerticeFailover>::namespaced(client.clone(), NS)
        .patch(
            name,
            &PatchParams::apply("vertice-bench").force(),
            &Patch::Apply(&f),
        )
        .await
        .expect("failover");
}

async fn until(client: &Client, want: &[u64], timeout: Duration) -> Duration {
    let started = Instant::now();
    while istio::route_weights(client, NS, "pg", 0).await != want {
        assert!(started.elapsed() < timeout, "weights never became {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn stats(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[samples.len() / 2];
    (samples[0], median, samples[samples.len() - 1])
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let failures: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let count: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let cluster = TestCluster::start().await;
    istio::install_virtual_service_crd(&cluster);
    cluster.plane.create_namespace(NS).await;
    let client = cluster.admin().await;
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {"hosts": ["pg"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "pg-a"}, "weight": 100},
            {"destination": {"host": "pg-b"}, "weight": 0}]}]}});
    istio::virtual_services(&client, NS)
        .patch(
            "pg",
            &PatchParams::apply("vertice-bench"),
            &Patch::Apply(&vs),
        )
        .await
        .expect("vs");
    let mut a = HealthTarget::start().await;
    let b = HealthTarget::start().await;
    apply_failover(
        &client,
        "pg",
        json!({
        "virtualService": {"name": "pg"},
        "replicas": [{"name": "a", "host": "pg-a", "probeAddress": a.address(), "priority": 10},
                     {"name": "b", "host": "pg-b", "probeAddress": b.address(), "priority": 5}],
        "check": {"http": {"path": "/healthz"}, "periodSeconds": PERIOD, "timeoutSeconds": 1,
                  "failureThreshold": THRESHOLD, "successThreshold": 1},
        "policy": {"minSwitchIntervalSeconds": 0, "failbackAfterSeconds": 1, "maxSwitches": 100}}),
    )
    .await;
    let _controller = cluster.start_controller("bench-failover", &[]).await;
    let runner = cluster.start_probe_runner("bench").await;
    until(&client, &[100, 0], Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. Detection to patch.
    let mut detection = Vec::new();
    for i in 0..failures {
        // Failures land at any point of the probe period.
        tokio::time::sleep(Duration::from_millis(137 * (i as u64 % 7))).await;
        a.stop();
        detection.push(
            until(&client, &[0, 100], Duration::from_secs(60))
                .await
                .as_secs_f64(),
        );
        a.resume().await;
        until(&client, &[100, 0], Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let budget = (PERIOD * THRESHOLD) as f64;
    let (min, median, max) = stats(&mut detection);

    // 2. The runner with many failovers: idle baseline first.
    let pid = runner.pid();
    Api::<VerticeFailover>::namespaced(client.clone(), NS)
        .delete("pg", &Default::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_cpu, idle_rss) = measure(pid, Duration::from_secs(20)).await;
    let targets = [
        HealthTarget::start().await,
        HealthTarget::start().await,
        HealthTarget::start().await,
    ];
    let created = Instant::now();
    for i in 0..count {
        let replicas: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(r, t)| json!({"name": format!("r{r}"), "host": format!("pg-{r}"), "probeAddress": t.address(), "priority": r}))
            .collect();
        apply_failover(
            &client,
            &format!("f-{i}"),
            json!({
            "virtualService": {"name": format!("vs-{i}")}, "replicas": replicas,
            "check": {"http": {"path": "/healthz"}, "periodSeconds": 5}}),
        )
        .await;
    }
    eprintln!(
        "created {count} failovers in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    let requests_before = targets.iter().map(HealthTarget::requests).sum::<usize>();
    let (steady_cpu, steady_rss) = measure(pid, STEADY_WINDOW).await;
    let probes = targets.iter().map(HealthTarget::requests).sum::<usize>() - requests_before;
    let expected = count * 3 * STEADY_WINDOW.as_secs() as usize / 5;

    println!("failover benchmark on kube-apiserver with Istio's VirtualService CRD");
    println!("  detection to patch over {failures} injected failures (connection refused), period {PERIOD} s x threshold {THRESHOLD} = {budget:.0} s:");
    println!(
        "    min {min:.2} s ({:.2}x), median {median:.2} s ({:.2}x), max {max:.2} s ({:.2}x) of interval x threshold",
        min / budget,
        median / budget,
        max / budget
    );
    println!("  probe runner, {count} failovers x 3 replicas (HTTP) at a 5 s period:");
    println!("    baseline: the same runner with no failovers for 20 s: {idle_cpu:.2} % of a core, {idle_rss:.1} MiB RSS");
    println!(
        "    steady state ({} s): CPU {steady_cpu:.2} % of a core ({:.1}x idle), RSS {steady_rss:.1} MiB ({:.2}x idle)",
        STEADY_WINDOW.as_secs(),
        steady_cpu / idle_cpu.max(0.01),
        steady_rss / idle_rss.max(0.01)
    );
    println!(
        "    probes answered in the window: {probes} of {expected} due ({:.2})",
        probes as f64 / expected as f64
    );
}
