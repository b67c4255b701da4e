//! The Helm chart installed into a real control plane: `helm install`
//! creates what the chart renders (the API server accepts every object);
//! the controller, running as the chart's ServiceAccount with exactly the
//! chart's RBAC, turns a VerticeBackup into a CronJob; the probe runner,
//! as its ServiceAccount, observes a VerticeFailover; `helm uninstall`
//! removes the release and keeps the CRDs (and so every user's resources).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;
use vertice_crds::{VerticeBackup, VerticeFailover};
use vertice_tests::health_target::HealthTarget;
use vertice_tests::kube::cluster::helm_binary;
use vertice_tests::kube::{istio, TestCluster};
use vertice_tests::wait::wait_for;

const NS: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_controller_and_probe_runner_with_the_charts_rbac() {
    let cluster = TestCluster::start_with_helm(&["--set", "probeRunner.vantage=test"]).await;
    let client = cluster.admin().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "vertice-system");
    let names: Vec<String> = deployments
        .list(&ListParams::default())
        .await
        .expect("deployments")
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    assert!(
        names.contains(&"vertice-controller".to_string())
            && names.contains(&"vertice-probe".to_string()),
        "{names:?}"
    );

    cluster.plane.create_namespace(NS).await;
    istio::install_virtual_service_crd(&cluster);
    let _controller = cluster.start_controller("helm", &[]).await;
    // The Secrets the backup names, opted in by their owner.
    for (name, data) in [
        ("db", json!({"password": "p"})),
        (
            "s3",
            json!({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}),
        ),
    ] {
        vertice_tests::kube::cluster::create_secret(&client, NS, name, data, true).await;
    }
    let backups: Api<VerticeBackup> = Api::namespaced(client.clone(), NS);
    let backup: VerticeBackup = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {
            "target": {"postgres": {"host": "db.shop.svc", "database": "shop", "user": "backup",
                                    "passwordSecretRef": {"name": "db", "key": "password"}}},
            "schedule": {"cron": "0 3 * * *", "timeZone": "UTC"},
            "store": {"s3": {"bucket": "backups", "region": "us-east-1",
                             "credentials": {"secretName": "s3"}}}}}))
    .expect("backup");
    backups
        .create(&PostParams::default(), &backup)
        .await
        .expect("create backup");
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    let schedule = wait_for("the CronJob", Duration::from_secs(30), || async {
        cron_jobs
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
            .map(|c| c.spec.schedule)
    })
    .await;
    assert_eq!(schedule, "0 3 * * *");

    // The probe runner with the chart's ClusterRole: its observation lands.
    let target = HealthTarget::start().await;
    let failover: VerticeFailover = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {"virtualService": {"name": "pg"},
                 "replicas": [{"name": "a", "host": "pg-a", "probeAddress": target.address()},
                              {"name": "b", "host": "pg-b", "probeAddress": target.address()}],
                 "check": {"tcp": {}, "periodSeconds": 1}}}))
    .expect("failover");
    let failovers: Api<VerticeFailover> = Api::namespaced(client.clone(), NS);
    failovers
        .create(&PostParams::default(), &failover)
        .await
        .expect("create failover");
    let _runner = cluster.start_probe_runner("test").await;
    wait_for(
        "an observation from vantage test",
        Duration::from_secs(30),
        || async {
            let f = failovers.get("pg").await.ok()?;
            f.status?
                .observations
                .iter()
                .any(|o| o.vantage == "test")
                .then_some(())
        },
    )
    .await;

    // Uninstall: the release's objects go, the CRDs (and backups) stay.
    let out = std::process::Command::new(helm_binary())
        .args([
            "uninstall",
            "vertice",
            "--namespace",
            "vertice-system",
            "--kubeconfig",
        ])
        .arg(cluster.plane.admin_kubeconfig())
        .output()
        .expect("helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the controller Deployment gone",
        Duration::from_secs(30),
        || async {
            deployments
                .get_opt("vertice-controller")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(crds
        .get_opt("verticebackups.vertice.io")
        .await
        .expect("crd")
        .is_some());
    assert!(backups.get_opt("orders").await.expect("backup").is_some());
}
