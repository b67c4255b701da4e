//! Two controller replicas on a real control plane: one leads and writes,
//! the other only watches; killing the leader hands over within the lease
//! duration with no conflicting writes; and a restarted controller converges
//! on what exists without writing anything or recording any event.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use vertice_crds::VerticeBackup;
use vertice_tests::kube::cluster::{TestCluster, CONTROLLER_NAMESPACE};

const LEASE_SECONDS: u64 = 6;
const NS: &str = "leader";

fn backup(name: &str) -> VerticeBackup {
    serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"target": {"redis": {"host": "127.0.0.1"}},
                 "schedule": {"cron": "0 0 1 1 *", "timeZone": "UTC"},
                 "store": {"s3": {"bucket": "backups", "endpoint": "http://127.0.0.1:9"}}},
    }))
    .expect("backup")
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), CONTROLLER_NAMESPACE);
    leases
        .get_opt("vertice-controller")
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn wait_cron_job(client: &Client, name: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    let api: Api<CronJob> = Api::namespaced(client.clone(), NS);
    while api.get_opt(name).await.ok().flatten().is_none() {
        assert!(
            started.elapsed() < timeout,
            "no CronJob {name} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// resourceVersions of everything the controller writes in the namespace.
async fn versions(client: &Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let backups: Api<VerticeBackup> = Api::namespaced(client.clone(), NS);
    for b in backups
        .list(&ListParams::default())
        .await
        .expect("backups")
        .items
    {
        out.push((
            format!("vbk/{}", b.name_any()),
            b.resource_version().unwrap_or_default(),
        ));
    }
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    for c in cron_jobs
        .list(&ListParams::default())
        .await
        .expect("cron jobs")
        .items
    {
        out.push((
            format!("cronjob/{}", c.name_any()),
            c.resource_version().unwrap_or_default(),
        ));
    }
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    for e in events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
    {
        out.push((
            format!("event/{}", e.name_any()),
            e.resource_version().unwrap_or_default(),
        ));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn one_leader_hands_over_and_a_restart_writes_nothing() {
    let cluster = TestCluster::start().await;
    cluster.plane.create_namespace(NS).await;
    let client = cluster.admin().await;
    let lease = format!("--lease-seconds={LEASE_SECONDS}");
    let mut a = cluster.start_controller("replica-a", &[&lease]).await;
    let mut b = cluster.start_controller("replica-b", &[&lease]).await;

    let backups: Api<VerticeBackup> = Api::namespaced(client.clone(), NS);
    backups
        .create(&PostParams::default(), &backup("first"))
        .await
        .expect("create");
    wait_cron_job(&client, "vertice-first", Duration::from_secs(30)).await;
    let leader = holder(&client).await.expect("a lease holder");
    assert!(leader == "replica-a" || leader == "replica-b", "{leader}");
    let leader_gauge = |m: &str| m.lines().any(|l| l == "vertice_controller_leader 1");
    let (ma, mb) = (a.metrics().await, b.metrics().await);
    assert!(
        leader_gauge(&ma) != leader_gauge(&mb),
        "exactly one replica leads:\n{ma}\n---\n{mb}"
    );

    // Kill the leader outright (no lease release): the other takes over
    // within the lease duration and reconciles a backup created meanwhile.
    let (survivor_name, survivor) = if leader == "replica-a" {
        a.kill();
        ("replica-b", &mut b)
    } else {
        b.kill();
        ("replica-a", &mut a)
    };
    let killed = Instant::now();
    backups
        .create(&PostParams::default(), &backup("second"))
        .await
        .expect("create");
    let took = wait_cron_job(&client, "vertice-second", Duration::from_secs(60)).await;
    let handover = killed.elapsed();
    assert_eq!(holder(&client).await.as_deref(), Some(survivor_name));
    assert!(
        handover <= Duration::from_secs(LEASE_SECONDS + 3),
        "the new leader took {handover:?} (CronJob after {took:?}); the lease lasts {LEASE_SECONDS} s"
    );
    eprintln!("handover: CronJob of a new backup {handover:?} after the leader was killed");

    // No conflicting writes: one field manager for everything we apply, and
    // one CronJobCreated per CronJob.
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    for name in ["vertice-first", "vertice-second"] {
        let cj = cron_jobs.get(name).await.expect("cron job");
        let managers: Vec<String> = cj
            .managed_fields()
            .iter()
            .filter_map(|m| m.manager.clone())
            .filter(|m| m != "kube-controller-manager")
            .collect();
        assert_eq!(managers, vec!["vertice-controller".to_string()], "{name}");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let created = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("CronJobCreated"))
        .map(|e| {
            e.deprecated_count
                .unwrap_or(1)
                .max(e.series.as_ref().map_or(1, |s| s.count))
        })
        .sum::<i32>();
    assert_eq!(created, 2, "one CronJobCreated per CronJob");

    // Restart: stop the survivor, start a fresh controller, and let it
    // settle; nothing it owns is written again and no event is recorded.
    tokio::time::sleep(Duration::from_secs(2)).await;
    survivor.stop();
    let before = versions(&client).await;
    let restarted = cluster.start_controller("replica-c", &[&lease]).await;
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 6)).await;
    assert_eq!(holder(&client).await.as_deref(), Some("replica-c"));
    assert!(restarted
        .metrics()
        .await
        .contains("vertice_controller_reconcile_total{controller=\"backup\"}"));
    let after = versions(&client).await;
    assert_eq!(
        before, after,
        "a restarted controller wrote to objects it had already converged"
    );

    // A hand edit of a CronJob is put back.
    cron_jobs
        .patch(
            "vertice-first",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"schedule": "* * * * *"}})),
        )
        .await
        .expect("edit by hand");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cj = cron_jobs.get("vertice-first").await.expect("cron job");
        if cj.spec.schedule == "0 0 1 1 *" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hand edit was not put back: {}",
            cj.spec.schedule
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(restarted);
}
