//! A hostile tenant on a real control plane. `alice` is a ServiceAccount of
//! namespace team-a bound only to the chart's `vertice-edit` ClusterRole
//! there: she may create VerticeBackups, VerticeScalers and VerticeFailovers
//! in team-a, and nothing else. Every attack of the threat model
//! (docs/ARCHITECTURE.md "Threat model") is tried as alice against the
//! controller and the probe runner running with exactly their RBAC, and must
//! fail with its documented reason, while the same uses inside her rights
//! work. A second test has one tenant send huge and slow answers and
//! measures that other tenants stay on schedule and the controller's memory
//! stays under its limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vertice_crds::{VerticeBackup, VerticeFailover, VerticeScaler};
use vertice_tests::health_target::HealthTarget;
use vertice_tests::kube::{istio, Controller, TestCluster};
use vertice_tests::prometheus::{Exporter, Prometheus};
use vertice_tests::wait::wait_for;

const A: &str = "team-a";
const B: &str = "team-b";
/// In a Secret alice cannot read and its owner never opted in.
const DB_PASSWORD: &str = "db-password-5e1f0c9a";
/// In a Secret its owner opted in for probes.
const PROBE_TOKEN: &str = "probe-token-77ab41d2";
/// Credentials alice writes into a Prometheus URL herself.
const URL_PASSWORD: &str = "hunter2-url-pass";
/// A value only the probed page holds.
const PAGE_SECRET: &str = "sk-live-4242-page";
const LABEL: &str = "vertice.io/allow-reference";

async fn secret(client: &Client, ns: &str, name: &str, data: Value, opted_in: bool) {
    vertice_tests::kube::cluster::create_secret(client, ns, name, data, opted_in).await;
}

/// alice: a ServiceAccount of team-a with exactly `vertice-edit` there.
async fn tenant(cluster: &TestCluster) -> Client {
    let admin = cluster.admin().await;
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "alice", "namespace": A}}))
            .expect("account");
    Api::<ServiceAccount>::namespaced(admin.clone(), A)
        .create(&PostParams::default(), &account)
        .await
        .expect("create alice");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "alice-vertice-edit", "namespace": A},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "vertice-edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": A}]}))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin, A)
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind alice");
    let alice = cluster.plane.service_account_client(A, "alice").await;
    // The API server agrees she is who the threat model says.
    let forbidden =
        |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(e)) if e.code == 403);
    assert!(
        forbidden(
            Api::<Secret>::namespaced(alice.clone(), A)
                .get("db")
                .await
                .map(|_| ())
        ),
        "alice must not read Secrets"
    );
    assert!(
        forbidden(
            Api::<VerticeBackup>::namespaced(alice.clone(), B)
                .list(&ListParams::default())
                .await
                .map(|_| ())
        ),
        "alice must not see team-b"
    );
    alice
}

async fn create<K>(client: &Client, ns: &str, object: Value)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).expect("object");
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .expect("create as the tenant");
}

async fn status_of<K>(client: &Client, ns: &str, name: &str) -> String
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()
        .and_then(|o| serde_json::to_value(o).ok())
        .map(|v| v["status"].to_string())
        .unwrap_or_default()
}

async fn wait_status<K>(client: &Client, ns: &str, name: &str, wanted: &[&str]) -> String
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let what = format!("{name}'s status to say {wanted:?}");
    let mut last = String::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            last = status_of::<K>(client, ns, name).await;
            if wanted.iter().all(|w| last.contains(w)) {
                return last.clone();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last status: {last}"))
}

/// A refusal as the tenant sees it: the status names `reason` and every one
/// of `words`, holds nothing of a secret, and an Event of `reason` is recorded.
async fn expect_refusal<K>(alice: &Client, admin: &Client, name: &str, reason: &str, words: &[&str])
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let wanted: Vec<&str> = std::iter::once(reason)
        .chain(words.iter().copied())
        .collect();
    let status = wait_status::<K>(alice, A, name, &wanted).await;
    assert_absent(&status, &format!("the status of {name}"));
    wait_event(admin, A, name, reason).await;
}

async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    vertice_tests::kube::cluster::event_reasons(client, ns, name).await
}

async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str) {
    wait_for(
        &format!("Event {reason} on {ns}/{name}"),
        Duration::from_secs(30),
        || async {
            event_reasons(client, ns, name)
                .await
                .iter()
                .any(|r| r == reason)
                .then_some(())
        },
    )
    .await;
}

async fn virtual_service(client: &Client, ns: &str) {
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "pg", "namespace": ns},
        "spec": {"hosts": ["pg"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "pg-a"}, "weight": 100},
            {"destination": {"host": "pg-b"}, "weight": 0}]}]}}))
    .expect("vs");
    istio::virtual_services(client, ns)
        .create(&PostParams::default(), &vs)
        .await
        .expect("create vs");
}

fn failover(name: &str, vs: Value, check: Value, a: &str, b: &str) -> Value {
    json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
        "metadata": {"name": name},
        "spec": {"virtualService": vs,
                 "replicas": [{"name": "a", "host": "pg-a", "probeAddress": a, "priority": 10},
                              {"name": "b", "host": "pg-b", "probeAddress": b, "priority": 5}],
                 "check": check,
                 "policy": {"vantages": ["test"], "minSwitchIntervalSeconds": 0}}})
}

fn backup(name: &str, password_secret: &str, pod: Value) -> Value {
    backup_with(name, password_secret, pod, json!({}))
}

/// A backup with `extra` merged into its spec.
fn backup_with(name: &str, password_secret: &str, pod: Value, extra: Value) -> Value {
    let mut backup = json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": name},
        "spec": {
            "target": {"postgres": {"host": "db.team-a.svc", "database": "shop", "user": "backup",
                                    "passwordSecretRef": {"name": password_secret, "key": "password"}}},
            "schedule": {"cron": "0 3 * * *", "timeZone": "UTC"},
            "store": {"s3": {"bucket": "backups", "region": "us-east-1",
                             "credentials": {"secretName": "s3"}}},
            "pod": pod}});
    if let (Some(spec), Some(extra)) = (backup["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    backup
}

async fn deployment(client: &Client, ns: &str, name: &str) {
    create::<Deployment>(
        client,
        ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "shop/web:1.4"}]}}}}),
    )
    .await;
}

fn scaler(name: &str, target: &str, prometheus: Value) -> Value {
    json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
        "metadata": {"name": name},
        "spec": {"targetRef": {"kind": "Deployment", "name": target},
                 "minReplicas": 1, "maxReplicas": 4,
                 "prometheus": prometheus,
                 "metrics": [{"name": "queue", "prometheus": {"query": "sum(queue_depth)", "targetValue": 10}}]}})
}

async fn cron_job_names(client: &Client, ns: &str) -> Vec<String> {
    Api::<CronJob>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list CronJobs")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

/// What Vertice wrote where a viewer of team-a can read it, as one text:
/// the status of our resources and the namespace's Events. (Specs are what
/// the tenant wrote herself: the credentials she puts in a URL are hers.)
async fn readable_by_viewers(client: &Client) -> String {
    let mut text = String::new();
    let list = |v: Result<Value, serde_json::Error>| {
        v.map(|v| match v {
            Value::Array(items) if items.iter().any(|i| i.get("spec").is_some()) => items
                .iter()
                .map(|i| i["status"].to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        })
        .unwrap_or_default()
    };
    if let Ok(l) = Api::<VerticeBackup>::namespaced(client.clone(), A)
        .list(&ListParams::default())
        .await
    {
        text.push_str(&list(serde_json::to_value(l.items)));
    }
    if let Ok(l) = Api::<VerticeScaler>::namespaced(client.clone(), A)
        .list(&ListParams::default())
        .await
    {
        text.push_str(&list(serde_json::to_value(l.items)));
    }
    if let Ok(l) = Api::<VerticeFailover>::namespaced(client.clone(), A)
        .list(&ListParams::default())
        .await
    {
        text.push_str(&list(serde_json::to_value(l.items)));
    }
    if let Ok(l) = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), A)
        .list(&ListParams::default())
        .await
    {
        text.push_str(&list(serde_json::to_value(l.items)));
    }
    text
}

fn assert_absent(haystack: &str, where_: &str) {
    for secret in [DB_PASSWORD, PROBE_TOKEN, URL_PASSWORD, PAGE_SECRET] {
        assert!(
            !haystack.contains(secret),
            "{secret} must not appear in {where_}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_vertice_edit_gains_nothing_beyond_their_rights() {
    let cluster = TestCluster::start().await;
    istio::install_virtual_service_crd(&cluster);
    for ns in [A, B] {
        cluster.plane.create_namespace(ns).await;
    }
    let admin = cluster.admin().await;
    let alice = tenant(&cluster).await;
    secret(&admin, A, "db", json!({"password": DB_PASSWORD}), false).await;
    secret(
        &admin,
        A,
        "backup-db",
        json!({"password": "backup-role-pass"}),
        true,
    )
    .await;
    secret(
        &admin,
        A,
        "s3",
        json!({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}),
        true,
    )
    .await;
    secret(
        &admin,
        A,
        "probe-token",
        json!({"token": format!("Bearer {PROBE_TOKEN}")}),
        true,
    )
    .await;
    virtual_service(&admin, A).await;
    virtual_service(&admin, B).await;
    // The Prometheus the administrator allows (alice's own server plays it,
    // so that the Secret rule is what stops her there).
    let prom_thief = HealthTarget::start().await;
    let allowed_prometheus = format!(
        "--allowed-prometheus-urls=http://127.0.0.1:{}",
        prom_thief.port
    );
    let controller = cluster
        .start_controller(
            "a",
            &[
                "--scaler-poll-interval=1s",
                "--allowed-service-accounts=vault-auth",
                "--allow-cross-namespace=team-a:team-c",
                &allowed_prometheus,
            ],
        )
        .await;
    let runner = cluster.start_probe_runner("test").await;

    // 1. Another team's traffic: refused before anything of team-b is read.
    let bystander = HealthTarget::start().await;
    let tcp = json!({"tcp": {}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1});
    create::<VerticeFailover>(
        &alice,
        A,
        failover(
            "steal",
            json!({"name": "pg", "namespace": B, "route": "primary"}),
            tcp.clone(),
            "127.0.0.1:1",
            &bystander.address(),
        ),
    )
    .await;
    let status =
        wait_status::<VerticeFailover>(&alice, A, "steal", &["CrossNamespaceRefused"]).await;
    assert!(status.contains("--allow-cross-namespace"), "{status}");
    wait_event(&admin, A, "steal", "CrossNamespaceRefused").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        istio::route_weights(&admin, B, "pg", 0).await,
        vec![100, 0],
        "team-b's route is untouched"
    );

    // A pair the administrator allowed (team-a → team-c) works — replica a
    // is down, traffic moves to b — and team-c hears of it on its own
    // VirtualService.
    let c_route = "team-c";
    cluster.plane.create_namespace(c_route).await;
    let shared_vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "pg", "namespace": c_route},
        "spec": {"hosts": ["pg"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "pg-a"}, "weight": 100},
            {"destination": {"host": "pg-b"}, "weight": 0}]}]}}))
    .expect("vs");
    istio::virtual_services(&admin, c_route)
        .create(&PostParams::default(), &shared_vs)
        .await
        .expect("create vs");
    let healthy = HealthTarget::start().await;
    create::<VerticeFailover>(
        &alice,
        A,
        failover(
            "allowed",
            json!({"name": "pg", "namespace": c_route, "route": "primary"}),
            tcp.clone(),
            "127.0.0.1:1",
            &healthy.address(),
        ),
    )
    .await;
    wait_for(
        "team-c's route steered",
        Duration::from_secs(30),
        || async {
            (istio::route_weights(&admin, c_route, "pg", 0).await == vec![0, 100]).then_some(())
        },
    )
    .await;
    wait_event(&admin, c_route, "pg", "WeightsSetByFailover").await;

    // 2a. A Secret alice cannot read, sent to her own server by a probe.
    let thief = HealthTarget::start().await;
    let header_from = |secret: &str, key: &str| {
        json!({"http": {"path": "/healthz", "headers": [
                  {"name": "Authorization", "valueFrom": {"name": secret, "key": key}}]},
               "periodSeconds": 1, "timeoutSeconds": 1})
    };
    create::<VerticeFailover>(
        &alice,
        A,
        failover(
            "leak",
            json!({"name": "pg"}),
            header_from("db", "password"),
            &thief.address(),
            &thief.address(),
        ),
    )
    .await;
    expect_refusal::<VerticeFailover>(
        &alice,
        &admin,
        "leak",
        "SecretNotAllowed",
        &["team-a/db", LABEL],
    )
    .await;
    // The runner says why in its own observation, and never probed.
    wait_status::<VerticeFailover>(
        &alice,
        A,
        "leak",
        &["\"vantage\":\"test\"", "vertice.io/allow-reference"],
    )
    .await;
    assert_eq!(thief.requests(), 0, "nothing reached alice's server");
    assert_eq!(
        istio::route_weights(&admin, A, "pg", 0).await,
        vec![100, 0],
        "a refused failover steers nothing"
    );

    // 2b. The same through a scaler's Prometheus bearer token, with
    // credentials in the URL that must not be echoed either.
    deployment(&admin, A, "web").await;
    prom_thief.set(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    );
    let url = format!("http://alice:{URL_PASSWORD}@127.0.0.1:{}", prom_thief.port);
    create::<VerticeScaler>(
        &alice,
        A,
        scaler(
            "exfil",
            "web",
            json!({"url": url, "bearerTokenSecretRef": {"name": "db", "key": "password"}}),
        ),
    )
    .await;
    expect_refusal::<VerticeScaler>(
        &alice,
        &admin,
        "exfil",
        "SecretNotAllowed",
        &["team-a/db", LABEL],
    )
    .await;
    assert_eq!(
        prom_thief.requests(),
        0,
        "no query is sent with a refused token"
    );

    // A server the administrator did not list gets no request at all.
    let elsewhere = HealthTarget::start().await;
    create::<VerticeScaler>(
        &alice,
        A,
        scaler("elsewhere", "web", json!({"url": elsewhere.url("")})),
    )
    .await;
    wait_status::<VerticeScaler>(
        &alice,
        A,
        "elsewhere",
        &["NotAllowedByAdmin", "--allowed-prometheus-urls"],
    )
    .await;
    assert_eq!(elsewhere.requests(), 0, "no request to an unlisted server");

    // 3. Probes reveal health, not content: a jsonField mismatch on a page
    // that holds a value alice wants.
    let page = HealthTarget::start().await;
    page.set(
        200,
        &format!(r#"{{"status":"ok","internal":{{"apiKey":"{PAGE_SECRET}"}}}}"#),
    );
    let mut json_check = header_from("probe-token", "token");
    json_check["http"]["jsonField"] = json!({"path": "internal.apiKey", "equals": "guess"});
    create::<VerticeFailover>(
        &alice,
        A,
        failover(
            "peek",
            json!({"name": "pg"}),
            json_check,
            &page.address(),
            &page.address(),
        ),
    )
    .await;
    let status = wait_status::<VerticeFailover>(
        &alice,
        A,
        "peek",
        &["\"vantage\":\"test\"", "internal.apiKey"],
    )
    .await;
    assert_absent(&status, "an observation of a page");
    // The same opted-in token is sent to the replicas the failover names:
    // the legitimate use still works.
    assert!(
        page.last_request().is_some_and(|r| r.contains(PROBE_TOKEN)),
        "the opted-in header is sent"
    );

    // 4. Workloads alice may not run: images, identities, priorities and
    // Secrets the administrator did not allow.
    let refused = [
        (
            "evil-annotation",
            "backup-db",
            json!({"annotations": {"iam.amazonaws.com/role": "admin"}}),
            "NotAllowedByAdmin",
            "spec.pod.annotations",
        ),
        (
            "evil-image",
            "backup-db",
            json!({"image": "evil.example/miner:1"}),
            "NotAllowedByAdmin",
            "spec.pod.image",
        ),
        (
            "evil-account",
            "backup-db",
            json!({"serviceAccountName": "builder"}),
            "NotAllowedByAdmin",
            "spec.pod.serviceAccountName",
        ),
        (
            "evil-priority",
            "backup-db",
            json!({"priorityClassName": "system-cluster-critical"}),
            "NotAllowedByAdmin",
            "spec.pod.priorityClassName",
        ),
        (
            "evil-secret",
            "db",
            json!({}),
            "SecretNotAllowed",
            "team-a/db",
        ),
    ];
    for (name, password, pod, _, _) in &refused {
        create::<VerticeBackup>(&alice, A, backup(name, password, pod.clone())).await;
    }
    // Neighbours: a notification webhook and a drill target, each from a
    // Secret nobody opted in.
    create::<VerticeBackup>(
        &alice,
        A,
        backup_with(
            "evil-webhook",
            "backup-db",
            json!({}),
            json!({"notifications": {"slack": {"webhookUrlSecretRef": {"name": "db", "key": "password"}}}}),
        ),
    )
    .await;
    create::<VerticeBackup>(
        &alice,
        A,
        backup_with(
            "evil-drill",
            "backup-db",
            json!({}),
            json!({"drill": {"schedule": {"cron": "0 0 1 1 *"},
                             "target": {"postgres": {"host": "127.0.0.1", "user": "postgres",
                                                     "passwordSecretRef": {"name": "db", "key": "password"}}}}}),
        ),
    )
    .await;
    create::<VerticeBackup>(
        &alice,
        A,
        backup_with(
            "evil-hook",
            "backup-db",
            json!({}),
            json!({"hooks": {"pre": [{"name": "notify", "http": {"urlSecretRef": {"name": "db", "key": "password"}}}]}}),
        ),
    )
    .await;
    let refused: Vec<_> = refused
        .into_iter()
        .map(|(name, _, _, reason, field)| (name, reason, field))
        .chain([
            ("evil-webhook", "SecretNotAllowed", "team-a/db"),
            ("evil-hook", "SecretNotAllowed", "team-a/db"),
            ("evil-drill", "SecretNotAllowed", "team-a/db"),
        ])
        .collect();
    for (name, reason, field) in &refused {
        expect_refusal::<VerticeBackup>(&alice, &admin, name, reason, &[field]).await;
    }
    // What the administrator allowed still works, with no API token unless
    // the allowed identity is asked for.
    create::<VerticeBackup>(&alice, A, backup("orders", "backup-db", json!({}))).await;
    create::<VerticeBackup>(
        &alice,
        A,
        backup(
            "vault-orders",
            "backup-db",
            json!({"serviceAccountName": "vault-auth"}),
        ),
    )
    .await;
    let cron_jobs: Api<CronJob> = Api::namespaced(admin.clone(), A);
    let orders = wait_for("the orders CronJob", Duration::from_secs(30), || async {
        cron_jobs.get("vertice-orders").await.ok()
    })
    .await;
    let pod = orders
        .spec
        .job_template
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod template");
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name, None);
    let vault = wait_for(
        "the vault-orders CronJob",
        Duration::from_secs(30),
        || async { cron_jobs.get("vertice-vault-orders").await.ok() },
    )
    .await;
    assert_eq!(
        vault
            .spec
            .job_template
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.service_account_name)
            .as_deref(),
        Some("vault-auth")
    );
    let names = cron_job_names(&admin, A).await;
    for (name, ..) in &refused {
        assert!(
            !names.iter().any(|n| n.ends_with(name)),
            "no CronJob for the refused {name}: {names:?}"
        );
    }

    // A right taken back: the Secret's owner removes the label. The
    // CronJobs that mount it go at the backups' next reconcile — also the
    // one whose spec alice breaks on purpose to keep its last CronJob.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), A);
    secrets
        .patch(
            "backup-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {LABEL: null}}})),
        )
        .await
        .expect("remove the label");
    Api::<VerticeBackup>::namespaced(alice.clone(), A)
        .patch(
            "vault-orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedule": {"timeZone": "Mars/Olympus_Mons"}}})),
        )
        .await
        .expect("break the spec");
    let backups: Api<VerticeBackup> = Api::namespaced(admin.clone(), A);
    let mut touch = 0;
    wait_for("the CronJobs that mount it revoked", Duration::from_secs(90), || {
        touch += 1;
        let (backups, cron_jobs) = (backups.clone(), cron_jobs.clone());
        async move {
            // Any change of a backup reconciles it (past the 30 s label cache).
            for name in ["orders", "vault-orders"] {
                let _ = backups
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"test/touch": touch.to_string()}}})),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let left = [
                cron_jobs.get_opt("vertice-orders").await.ok()?,
                cron_jobs.get_opt("vertice-vault-orders").await.ok()?,
            ];
            left.iter().all(Option::is_none).then_some(())
        }
    })
    .await;
    wait_status::<VerticeBackup>(
        &alice,
        A,
        "orders",
        &["SecretNotAllowed", "team-a/backup-db"],
    )
    .await;

    // Nothing of a Secret (or of the probed page) anywhere a tenant or a
    // viewer can read, nor in the logs.
    assert_absent(
        &readable_by_viewers(&admin).await,
        "team-a's resources and Events",
    );
    assert_absent(&controller.log_text(), "the controller's log");
    assert_absent(&runner.log_text(), "the probe runner's log");
    assert_absent(&runner.metrics().await, "the probe runner's metrics");
    assert_absent(&controller.metrics().await, "the controller's metrics");
}

/// A fake Prometheus that answers every query with an endless vector,
/// counting the bytes it managed to send.
async fn endless_prometheus() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = tcp.read(&mut head).await;
                let start = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
                             {\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[";
                if tcp.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let series = format!(
                    "{{\"metric\":{{\"pod\":\"{}\"}},\"value\":[1700000000,\"1\"]}},",
                    "x".repeat(200)
                );
                let chunk = series.repeat(256);
                // 700 MiB unless the reader hangs up first.
                let mut total = 0u64;
                while total < 700 * 1024 * 1024 {
                    if tcp.write_all(chunk.as_bytes()).await.is_err() {
                        break;
                    }
                    total += chunk.len() as u64;
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (port, sent)
}

/// Peak resident set of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The sum of a counter over the series whose labels contain `selector`.
fn counter_sum(metrics: &str, name: &str, selector: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(selector))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Counts decisions of team-b's scaler over `window` and returns them.
async fn decisions_over(controller: &Controller, window: Duration) -> f64 {
    let selector = format!("namespace=\"{B}\"");
    let before = counter_sum(
        &controller.metrics().await,
        "vertice_scaler_decisions_total",
        &selector,
    );
    tokio::time::sleep(window).await;
    counter_sum(
        &controller.metrics().await,
        "vertice_scaler_decisions_total",
        &selector,
    ) - before
}

/// The newest observation time team-b's failover got from vantage `test`.
async fn observed_at(client: &Client) -> Option<String> {
    let f = Api::<VerticeFailover>::namespaced(client.clone(), B)
        .get("victim")
        .await
        .ok()?;
    let status = serde_json::to_value(f.status?).ok()?;
    status["observations"]
        .as_array()?
        .iter()
        .find(|o| o["vantage"] == "test")
        .and_then(|o| o["observedAt"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_huge_or_slow_answers_cost_only_that_tenant() {
    let cluster = TestCluster::start().await;
    istio::install_virtual_service_crd(&cluster);
    for ns in [A, B] {
        cluster.plane.create_namespace(ns).await;
    }
    let admin = cluster.admin().await;
    let alice = tenant(&cluster).await;
    let exporter = Exporter::start();
    exporter.set("queue_depth", 5.0);
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", exporter.port)]);
    let controller = cluster
        .start_controller("a", &["--scaler-poll-interval=1s"])
        .await;

    // team-b's scaler on the shared Prometheus: the victim.
    deployment(&admin, B, "web").await;
    create::<VerticeScaler>(
        &admin,
        B,
        scaler("victim", "web", json!({"url": prometheus.url()})),
    )
    .await;
    wait_status::<VerticeScaler>(&admin, B, "victim", &["\"state\":\"Ok\""]).await;
    let calm = decisions_over(&controller, Duration::from_secs(10)).await;

    // alice: one scaler whose Prometheus answers 700 MiB, three whose
    // Prometheus takes a minute to answer.
    deployment(&admin, A, "web").await;
    let (huge_port, sent) = endless_prometheus().await;
    create::<VerticeScaler>(
        &alice,
        A,
        scaler(
            "huge",
            "web",
            json!({"url": format!("http://127.0.0.1:{huge_port}")}),
        ),
    )
    .await;
    let slow = HealthTarget::start().await;
    slow.set(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    );
    slow.set_delay(Duration::from_secs(60));
    for name in ["slow-1", "slow-2", "slow-3"] {
        create::<VerticeScaler>(&alice, A, scaler(name, "web", json!({"url": slow.url("")}))).await;
    }
    let status = wait_status::<VerticeScaler>(&alice, A, "huge", &["exceeds"]).await;
    assert!(status.contains("--max-metric-response-bytes"), "{status}");
    let busy = decisions_over(&controller, Duration::from_secs(20)).await;
    let peak = peak_rss_kib(controller.pid());
    println!(
        "team-b decisions per second: {:.2} calm, {:.2} while team-a's answers were huge and slow; \
         controller peak RSS {:.1} MiB; the huge server sent {:.1} MiB before the controller hung up",
        calm / 10.0,
        busy / 20.0,
        peak as f64 / 1024.0,
        sent.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    );
    assert!(
        busy / 20.0 >= 0.5 * calm / 10.0,
        "team-b's scaler kept its schedule: {busy} decisions in 20 s against {calm} in 10 s"
    );
    assert!(
        peak < 256 * 1024,
        "the controller stays under its 256 MiB limit (peak {peak} KiB)"
    );

    // The runner: alice's five failovers with slow targets and the longest
    // timeouts the schema allows; team-b's failover stays on schedule.
    let runner = cluster.start_probe_runner("test").await;
    let healthy = HealthTarget::start().await;
    virtual_service(&admin, B).await;
    virtual_service(&admin, A).await;
    let http = |timeout: u32| json!({"http": {"path": "/healthz"}, "periodSeconds": 1, "timeoutSeconds": timeout});
    create::<VerticeFailover>(
        &admin,
        B,
        failover(
            "victim",
            json!({"name": "pg"}),
            http(1),
            &healthy.address(),
            &healthy.address(),
        ),
    )
    .await;
    let tarpit = HealthTarget::start().await;
    tarpit.set_delay(Duration::from_secs(600));
    // 5 × 16 replicas: 80 probes that hang. Without a per-namespace share
    // they would hold all of the runner's 64 permits; with it, at most 16.
    for i in 0..5 {
        let mut tarpit_failover = failover(
            &format!("tarpit-{i}"),
            json!({"name": "pg"}),
            http(600),
            &tarpit.address(),
            &tarpit.address(),
        );
        tarpit_failover["spec"]["replicas"] = (0..16)
            .map(|r| json!({"name": format!("r{r}"), "host": format!("pg-{r}"), "probeAddress": tarpit.address()}))
            .collect();
        create::<VerticeFailover>(&alice, A, tarpit_failover).await;
    }
    let first = wait_for(
        "team-b's first observation",
        Duration::from_secs(30),
        || observed_at(&admin),
    )
    .await;
    // Fresh observations keep coming: at least every 2 periods by contract.
    let started = Instant::now();
    let mut last = first;
    let mut longest = Duration::ZERO;
    let mut since = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(at) = observed_at(&admin).await {
            if at != last {
                longest = longest.max(since.elapsed());
                since = Instant::now();
                last = at;
            }
        }
    }
    longest = longest.max(since.elapsed());
    println!("team-b's longest gap between observations while team-a's probes hung: {longest:?}");
    assert!(
        longest < Duration::from_secs(5),
        "team-b's failover stayed on schedule (longest gap {longest:?})"
    );
    // A tenant's own hanging probes wait for her namespace's share only:
    // they neither starve others nor make the runner unready.
    assert_eq!(
        runner.get("/readyz").await.map(|(code, _)| code),
        Some(200),
        "the runner stays ready"
    );
}
