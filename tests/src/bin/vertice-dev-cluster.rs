//! `scripts/dev-cluster`: the whole product on this machine, no cluster and
//! no Docker needed. Starts a real control plane (etcd, kube-apiserver,
//! kube-controller-manager), the local kubelet that runs the agent,
//! PostgreSQL with a demo database, SeaweedFS S3 and the controller (as its
//! ServiceAccount with `deploy/base`'s RBAC), applies `deploy/base` and a
//! demo VerticeBackup, writes a kubeconfig and waits for Ctrl-C, then stops
//! everything.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use vertice_crds::VerticeBackup;
use vertice_tests::kube::TestCluster;
use vertice_tests::{Postgres, SeaweedFs};

const NS: &str = "demo";
const BUCKET: &str = "vertice-demo";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let kubeconfig_out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("vertice-dev.kubeconfig"));
    eprintln!("starting PostgreSQL and SeaweedFS on 127.0.0.1…");
    let pg = Postgres::start();
    pg.create_database("shop");
    pg.script(
        "shop",
        "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, placed timestamptz DEFAULT now());
         INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 1000) g;",
    );
    let s3 = SeaweedFs::start();
    s3.create_bucket(BUCKET);
    eprintln!("starting the control plane and the local kubelet…");
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller("dev-controller", &[]).await;
    cluster.plane.create_namespace(NS).await;

    let client = cluster.admin().await;
    let apply = PatchParams::apply("vertice-dev-cluster").force();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for (name, data) in [
        ("shop-db", json!({"password": pg.password})),
        (
            "demo-s3",
            json!({"AWS_ACCESS_KEY_ID": vertice_tests::seaweedfs::ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": vertice_tests::seaweedfs::SECRET_KEY}),
        ),
    ] {
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": name, "namespace": NS,
                                         "labels": {"vertice.io/allow-reference": "true"}},
                            "stringData": data});
        secrets
            .patch(name, &apply, &Patch::Apply(&secret))
            .await
            .expect("demo secret");
    }
    let backup = json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": "shop", "namespace": NS,
                     "annotations": {"vertice.io/run-now": "first"}},
        "spec": {
            "target": {"postgres": {"host": "127.0.0.1", "port": pg.port, "database": "shop",
                                    "user": "postgres",
                                    "passwordSecretRef": {"name": "shop-db", "key": "password"}}},
            "schedule": {"cron": "*/15 * * * *", "timeZone": "UTC", "overdueAfter": "30m"},
            "store": {"s3": {"bucket": BUCKET, "prefix": "dev", "endpoint": s3.endpoint(),
                             "forcePathStyle": true, "credentials": {"secretName": "demo-s3"}}},
            "retention": {"keepLast": 5},
        },
    });
    Api::<VerticeBackup>::namespaced(client, NS)
        .patch("shop", &apply, &Patch::Apply(&backup))
        .await
        .expect("demo backup");

    std::fs::copy(cluster.plane.admin_kubeconfig(), &kubeconfig_out).expect("write kubeconfig");
    let kubectl = vertice_tests::kube::control_plane::kubectl_binary();
    let k = format!(
        "{} --kubeconfig {}",
        kubectl.display(),
        kubeconfig_out.display()
    );
    println!(
        "\nVertice dev cluster is up (API server https://127.0.0.1:{}).\n\
         A demo VerticeBackup `demo/shop` backs up PostgreSQL 127.0.0.1:{} to SeaweedFS S3 {} every 15 minutes;\n\
         its first run has started.\n\n\
         Try:\n  {k} get vbk -A\n  {k} get cronjobs,jobs,pods -n {NS}\n  \
         {k} get vbk -n {NS} shop -o jsonpath='{{.status.lastSuccessfulBackup}}'\n  \
         {k} annotate vbk -n {NS} shop vertice.io/run-now=$(date +%s) --overwrite\n  \
         {k} get events -n {NS}\n\n\
         Controller metrics: http://127.0.0.1:{}/metrics — press Ctrl-C to stop everything.",
        cluster.plane.api_port,
        pg.port,
        s3.endpoint(),
        controller.port,
    );
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping…");
    drop(controller);
    drop(cluster);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = std::fs::remove_file(&kubeconfig_out);
    eprintln!("stopped");
}
