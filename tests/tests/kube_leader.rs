//! Two controller replicas on a real control plane: one leads and writes,
//! the other only watches; killing the leader hands over within the lease
//! duration with no conflicting writes; and a restarted controller converges
//! on what exists without writing anything or recording any event. SIGTERM
//! hands the lease over at once; an API-server outage longer than the lease
//! makes the leader step down before the lease could pass, turns /readyz
//! unready, and everything recovers within seconds of the API server's
//! return.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::DynamicObject;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use vertice_crds::{VerticeBackup, VerticeFailover, VerticeScaler};
use vertice_tests::kube::cluster::{TestCluster, CONTROLLER_NAMESPACE};
use vertice_tests::kube::istio;
use vertice_tests::wait::wait_for;

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
    // The Event follows the apply within the same pass; a leader killed in
    // between loses it (Events are best effort), and its successor finds the
    // CronJob converged and announces nothing. Let the pass end first.
    wait_created_events(&client, 1, Duration::from_secs(15)).await;
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
    // A killed leader frees nothing: the follower may take the lease once
    // it has seen the record unchanged for the whole lease by its own clock,
    // then at its next attempt (a retry period, 0.8 s here), then reconcile.
    assert!(
        handover <= Duration::from_secs(LEASE_SECONDS + 4),
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
    // The event is recorded after the CronJob is applied, so the second one
    // may trail the CronJob we waited for: wait for both, then make sure no
    // third (a conflicting write by the killed leader's successor) follows.
    wait_created_events(&client, 2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let created = cron_job_created_events(&client).await;
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

/// How many CronJobCreated events the namespace holds, counting repeats
/// the API server folded into one Event.
/// Waits until at least `count` CronJobCreated events are recorded, or the
/// timeout passes (the caller asserts the exact number).
async fn wait_created_events(client: &Client, count: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while cron_job_created_events(client).await < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn cron_job_created_events(client: &Client) -> i32 {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    events
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
        .sum::<i32>()
}

/// The leader gauge of a controller: Some(true) while it leads, None when
/// its metrics cannot be read.
async fn leads(controller: &vertice_tests::kube::Controller) -> Option<bool> {
    let metrics = controller.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("vertice_controller_leader "))
        .map(|v| v.trim() == "1")
}

async fn readyz(controller: &vertice_tests::kube::Controller) -> Option<u16> {
    controller.get("/readyz").await.map(|(code, _)| code)
}

/// Waits until exactly one of `replicas` leads; returns its index.
async fn sole_leader(replicas: &[&vertice_tests::kube::Controller], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let mut leading = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            if leads(r).await == Some(true) {
                leading.push(i);
            }
        }
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(
            Instant::now() < deadline,
            "not exactly one leader within {timeout:?}: {leading:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM frees the lease: the other replica leads within its retry period
/// (2 s with a 15 s lease, plus up to a fifth of jitter), not after the 15 s
/// the lease would last. 5 s leaves room for a loaded machine while staying
/// far below the lease.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_the_lease_over_at_once() {
    let cluster = TestCluster::start().await;
    cluster.plane.create_namespace(NS).await;
    let client = cluster.admin().await;
    let mut a = cluster.start_controller("replica-a", &[]).await;
    let mut b = cluster.start_controller("replica-b", &[]).await;
    let first = sole_leader(&[&a, &b], Duration::from_secs(30)).await;
    let (leader, follower, follower_name) = if first == 0 {
        (&mut a, &b, "replica-b")
    } else {
        (&mut b, &a, "replica-a")
    };

    let stopped = Instant::now();
    leader.stop();
    let stop_took = stopped.elapsed();
    while leads(follower).await != Some(true) {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "the follower did not lead within 5 s of the leader's SIGTERM (the lease lasts 15 s); log:\n{}",
            leader.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handover = stopped.elapsed();
    eprintln!("SIGTERM → new leader in {handover:?} (the old one exited in {stop_took:?})");
    // It stops writing at once, drains reconciles for at most 3 s and
    // waits at most 3 s for the release: never the whole grace period.
    assert!(
        stop_took < Duration::from_secs(8),
        "the leader took {stop_took:?} to exit after SIGTERM"
    );
    assert_eq!(holder(&client).await.as_deref(), Some(follower_name));
    assert!(
        leader.log_text().contains("released the leader lease"),
        "{}",
        leader.log_text()
    );

    // The new leader writes.
    Api::<VerticeBackup>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &backup("after-handover"))
        .await
        .expect("create");
    wait_cron_job(&client, "vertice-after-handover", Duration::from_secs(20)).await;
}

/// A scaler of Deployment `target` in NS (min = max = 1, on CPU).
async fn create_scaler(client: &Client, name: &str, target: &str) {
    let scaler: VerticeScaler = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"targetRef": {"kind": "Deployment", "name": target},
                 "minReplicas": 1, "maxReplicas": 1,
                 "metrics": [{"cpu": {"targetAverageUtilization": 50}}]}}))
    .expect("scaler");
    Api::<VerticeScaler>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &scaler)
        .await
        .expect("create scaler");
}

/// The reason of a scaler's AbleToScale condition ("" before the first
/// status).
async fn able_to_scale(client: &Client, name: &str) -> String {
    let status = Api::<VerticeScaler>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .ok()
        .and_then(|s| serde_json::to_value(s.status?).ok())
        .unwrap_or(Value::Null);
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "AbleToScale"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn create_deployment(client: &Client, name: &str) {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "shop/web:1.4"}]}}}}))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
}

/// A VirtualService and a VerticeFailover on it whose probe runners never
/// report (none runs here): the controller can only say it is waiting.
async fn create_failover(client: &Client, name: &str) {
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"hosts": ["pg.db.svc.cluster.local"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "pg-a.db.svc.cluster.local"}, "weight": 100},
            {"destination": {"host": "pg-b.db.svc.cluster.local"}, "weight": 0}]}]}}))
    .expect("vs");
    istio::virtual_services(client, NS)
        .create(&PostParams::default(), &vs)
        .await
        .expect("create vs");
    let failover: VerticeFailover = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"virtualService": {"name": name, "route": "primary"},
                 "replicas": [
                     {"name": "a", "host": "pg-a.db.svc.cluster.local", "probeAddress": "127.0.0.1:9", "priority": 10},
                     {"name": "b", "host": "pg-b.db.svc.cluster.local", "probeAddress": "127.0.0.1:9", "priority": 5}],
                 "check": {"http": {"path": "/healthz"}, "periodSeconds": 1}}}))
    .expect("failover");
    Api::<VerticeFailover>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &failover)
        .await
        .expect("create failover");
}

async fn failover_phase(client: &Client, name: &str) -> String {
    Api::<VerticeFailover>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .ok()
        .and_then(|f| serde_json::to_value(f.status?).ok())
        .and_then(|s| s["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A Warning Event about `name` in `namespace`, waiting for it.
async fn warning_note(client: &Client, namespace: &str, name: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            });
        if let Some(e) = found {
            return e.note.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "no Warning Event about {namespace}/{name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API server stopped for longer than the lease (etcd keeps running):
/// - the leader stops leading (gauge 0) before the lease could expire for
///   anyone else, and /readyz of both replicas fails while the watches do;
/// - once the API server is back exactly one replica leads, /readyz is ok
///   again, and a new VerticeBackup gets its CronJob within seconds (kube's
///   default watch back-off let it wait minutes); the scaler and failover
///   controllers see new and changed objects as fast.
///
/// Also: an Event about a reconcile the API server refused reads as a
/// sentence, not a `Status { … }` dump.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_outage_steps_the_leader_down_and_recovery_takes_seconds() {
    const OUTAGE: Duration = Duration::from_secs(20);
    let mut cluster = TestCluster::start().await;
    cluster.plane.create_namespace(NS).await;
    cluster.plane.create_namespace("quota").await;
    istio::install_virtual_service_crd(&cluster);
    let client = cluster.admin().await;
    let lease = format!("--lease-seconds={LEASE_SECONDS}");
    let flags = [lease.as_str(), "--scaler-poll-interval=1s"];
    let a = cluster.start_controller("replica-a", &flags).await;
    let b = cluster.start_controller("replica-b", &flags).await;
    let first = sole_leader(&[&a, &b], Duration::from_secs(30)).await;
    let leader = if first == 0 { &a } else { &b };
    // A scaler waiting for its target: after the outage, the target's
    // creation must reach it through the scaler's own watch of Deployments.
    create_scaler(&client, "waiting", "late").await;
    wait_for(
        "the scaler's target missing",
        Duration::from_secs(30),
        || async { (able_to_scale(&client, "waiting").await == "TargetNotFound").then_some(()) },
    )
    .await;

    // A reconcile the API server refuses: no CronJobs allowed in "quota".
    cluster.kubectl(&[
        "create",
        "quota",
        "no-cron-jobs",
        "--namespace=quota",
        "--hard=count/cronjobs.batch=0",
    ]);
    // No quota controller runs here: its usage is written by hand, which
    // is what the API server's quota admission reads.
    cluster.kubectl(&[
        "patch",
        "resourcequota",
        "no-cron-jobs",
        "--namespace=quota",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"hard":{"count/cronjobs.batch":"0"},"used":{"count/cronjobs.batch":"0"}}}"#,
    ]);
    let mut refused = backup("refused");
    refused.metadata.namespace = Some("quota".into());
    Api::<VerticeBackup>::namespaced(client.clone(), "quota")
        .create(&PostParams::default(), &refused)
        .await
        .expect("create");
    let note = warning_note(&client, "quota", "refused").await;
    eprintln!("refused reconcile's event: {note}");
    for dump in ["Status {", "ErrorResponse {", "Api(", "reason: \""] {
        assert!(!note.contains(dump), "a debug dump in the Event: {note}");
    }
    assert!(note.contains("quota"), "the event names the cause: {note}");

    Api::<VerticeBackup>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &backup("before"))
        .await
        .expect("create");
    wait_cron_job(&client, "vertice-before", Duration::from_secs(30)).await;

    let stopped = Instant::now();
    cluster.plane.stop_apiserver().await;
    let mut stepped_down = None;
    let mut unready = (None, None);
    while stopped.elapsed() < OUTAGE {
        if stepped_down.is_none() && leads(leader).await == Some(false) {
            stepped_down = Some(stopped.elapsed());
        }
        if unready.0.is_none() && readyz(&a).await == Some(503) {
            unready.0 = Some(stopped.elapsed());
        }
        if unready.1.is_none() && readyz(&b).await == Some(503) {
            unready.1 = Some(stopped.elapsed());
        }
        // Never two leaders, and none while the API server is away once
        // the leader stepped down.
        if stepped_down.is_some() {
            assert_ne!(
                leads(&a).await,
                Some(true),
                "replica-a leads during the outage"
            );
            assert_ne!(
                leads(&b).await,
                Some(true),
                "replica-b leads during the outage"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "outage: leader stepped down after {stepped_down:?}, /readyz failed after {unready:?}"
    );
    let stepped_down = stepped_down.expect("the leader kept leading through the outage");
    // Its last renewal was at most a retry period before the stop, so the
    // lease lasts at least LEASE_SECONDS minus that from the stop.
    assert!(
        stepped_down < Duration::from_secs(LEASE_SECONDS) - Duration::from_millis(800),
        "stepped down only after {stepped_down:?}; the lease lasts {LEASE_SECONDS} s"
    );
    for (name, at) in [("replica-a", unready.0), ("replica-b", unready.1)] {
        let at = at.unwrap_or_else(|| panic!("{name}'s /readyz stayed ok through the outage"));
        assert!(
            at < Duration::from_secs(10),
            "{name}'s /readyz failed only after {at:?}"
        );
    }

    cluster.plane.start_apiserver().await;
    let back = Instant::now();
    Api::<VerticeBackup>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &backup("after"))
        .await
        .expect("create");
    let took = wait_cron_job(&client, "vertice-after", Duration::from_secs(60)).await;
    let cron_job_after = back.elapsed();
    // The scaler and the failover controllers recover as fast: a Deployment
    // created now reaches the waiting scaler, a new scaler and a new
    // failover get their first status.
    create_deployment(&client, "late").await;
    create_scaler(&client, "after", "nowhere").await;
    create_failover(&client, "after").await;
    wait_for(
        "the scaler's target found",
        Duration::from_secs(60),
        || async {
            let reason = able_to_scale(&client, "waiting").await;
            (reason != "TargetNotFound").then_some(())
        },
    )
    .await;
    let scaler_found_target = back.elapsed();
    wait_for("a new scaler's status", Duration::from_secs(60), || async {
        (able_to_scale(&client, "after").await == "TargetNotFound").then_some(())
    })
    .await;
    let scaler_after = back.elapsed();
    let phase = wait_for(
        "a new failover's phase",
        Duration::from_secs(60),
        || async {
            let phase = failover_phase(&client, "after").await;
            (!phase.is_empty()).then_some(phase)
        },
    )
    .await;
    let failover_after = back.elapsed();
    eprintln!(
        "after the API server's return: scaler saw its target after {scaler_found_target:?}, \
         a new scaler's status after {scaler_after:?}, a new failover's phase {phase} after \
         {failover_after:?}"
    );
    for (what, took) in [
        ("the waiting scaler saw its new target", scaler_found_target),
        ("a new scaler got its status", scaler_after),
        ("a new failover got its phase", failover_after),
    ] {
        assert!(
            took < Duration::from_secs(15),
            "{what} only {took:?} after the API server returned"
        );
    }
    sole_leader(&[&a, &b], Duration::from_secs(10)).await;
    let mut ready_after = None;
    while ready_after.is_none() {
        if readyz(&a).await == Some(200) && readyz(&b).await == Some(200) {
            ready_after = Some(back.elapsed());
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "/readyz did not recover within 30 s of the API server's return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "after the API server's return: CronJob of a new backup after {cron_job_after:?} \
         ({took:?} after its creation), both /readyz ok after {ready_after:?}"
    );
    assert!(
        cron_job_after < Duration::from_secs(15),
        "a new backup waited {cron_job_after:?} for its CronJob after the API server returned"
    );
    // Still exactly one leader a while later (no flapping).
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS)).await;
    sole_leader(&[&a, &b], Duration::from_secs(1)).await;
}
