//! `scripts/bench-controller`: N VerticeBackups (default 1,000) on the real
//! API server. Reports the controller's peak RSS, the time from its start
//! until every backup has its CronJob and a status, and the API requests
//! per reconcile and the writes in a steady-state window. The baseline in
//! the same run is the API server's own answer time for one list of all
//! backups, so a slow machine shows as such.

use std::time::{Duration, Instant};

use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;
use vertice_crds::VerticeBackup;
use vertice_tests::kube::TestCluster;
use vertice_tests::procfs::status_kib;

const NAMESPACES: usize = 10;
const STEADY_WINDOW: Duration = Duration::from_secs(30);

fn reconciles(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("vertice_controller_reconcile_total{controller=\"backup\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let cluster = TestCluster::start().await;
    let client = cluster.admin().await;
    let apply = PatchParams::apply("vertice-bench").force();
    for n in 0..NAMESPACES {
        let ns = format!("bench-{n}");
        cluster.plane.create_namespace(&ns).await;
        // The one Secret every backup names, opted in by its owner.
        vertice_tests::kube::cluster::create_secret(
            &client,
            &ns,
            "db",
            json!({"password": "bench"}),
            true,
        )
        .await;
    }
    let created = Instant::now();
    for i in 0..count {
        let ns = format!("bench-{}", i % NAMESPACES);
        let name = format!("db-{i}");
        let backup = json!({
            "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"target": {"postgres": {"host": "db", "database": "app", "user": "backup",
                                             "passwordSecretRef": {"name": "db", "key": "password"}}},
                     "schedule": {"cron": format!("{} 3 * * *", i % 60), "timeZone": "UTC"},
                     "store": {"s3": {"bucket": "backups", "prefix": "bench"}}},
        });
        Api::<VerticeBackup>::namespaced(client.clone(), &ns)
            .patch(&name, &apply, &Patch::Apply(&backup))
            .await
            .expect("create backup");
    }
    eprintln!(
        "created {count} VerticeBackups in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    let all: Api<VerticeBackup> = Api::all(client.clone());
    let baseline_started = Instant::now();
    let listed = all
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .len();
    let baseline = baseline_started.elapsed();
    assert_eq!(listed, count);

    let started = Instant::now();
    let controller = cluster.start_controller("bench", &[]).await;
    let mut peak = 0;
    let converged = loop {
        peak = peak.max(status_kib(controller.pid(), "VmHWM:"));
        let done = all
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .filter(|b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| s.cron_job_generation.is_some())
            })
            .count();
        if done == count {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {count} reconciled after 10 min"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Steady state: let the last writes settle, then watch a window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests_before = cluster.plane.controller_requests().len();
    let reconciles_before = reconciles(&controller.metrics().await);
    let window = Instant::now();
    while window.elapsed() < STEADY_WINDOW {
        peak = peak.max(status_kib(controller.pid(), "VmHWM:"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // the audit batch
                                                      // What the resident set is made of once converged: the heap, and the
                                                      // pages of the binary and its libraries (shared, and dropped by the
                                                      // kernel first under pressure).
    let (anon, file) = (
        status_kib(controller.pid(), "RssAnon:"),
        status_kib(controller.pid(), "RssFile:"),
    );
    let requests = cluster.plane.controller_requests();
    let steady: Vec<&(String, String)> = requests[requests_before..]
        .iter()
        .filter(|(_, resource)| resource != "leases")
        .collect();
    let writes = steady.iter().filter(|(verb, _)| is_write(verb)).count();
    let reconciled = reconciles(&controller.metrics().await) - reconciles_before;
    let per_reconcile = if reconciled > 0 {
        steady.len() as f64 / reconciled as f64
    } else {
        0.0
    };
    let converge_requests = requests_before;

    println!("controller benchmark: {count} VerticeBackups on kube-apiserver v1.37.2");
    println!(
        "  baseline: one list of all {count} backups takes {:.0} ms",
        baseline.as_secs_f64() * 1000.0
    );
    println!(
        "  all reconciled after   {:.1} s  ({:.0}x the baseline list; target <= 60 s)",
        converged.as_secs_f64(),
        converged.as_secs_f64() / baseline.as_secs_f64().max(1e-6)
    );
    println!(
        "  peak RSS               {:.1} MiB (target <= 30 MiB)",
        peak as f64 / 1024.0
    );
    println!(
        "  RSS when converged     {:.1} MiB heap and stacks + {:.1} MiB binary and library pages",
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
    println!(
        "  API requests to converge {converge_requests} ({:.1} per backup)",
        converge_requests as f64 / count as f64
    );
    println!(
        "  steady state ({} s):   {} reconciles, {} requests ({per_reconcile:.1} per reconcile, leases excluded), {writes} writes (target 0)",
        STEADY_WINDOW.as_secs(),
        reconciled,
        steady.len()
    );
    drop(controller);
}
