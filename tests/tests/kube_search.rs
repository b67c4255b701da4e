//! An OpenSearch backup end to end on a real control plane: a
//! `VerticeBackup` with `spec.target.elasticsearch` (basic auth, the
//! password from a Secret; `indices: ["shop-*"]`) → the controller's
//! CronJob → Job → Pod → the local kubelet runs the real agent against a
//! real OpenSearch 2.19 and SeaweedFS S3 → status, the store's manifest,
//! Events; then a drill on demand restores it into throwaway indices
//! `vertice-drill-<id>-<index>` on the same cluster, passes and leaves none
//! behind. The jar-built server has no security plugin, so it takes any
//! credentials: the password is still wired, and it is in no manifest,
//! status, Event, log or stored object.
//!
//! Then the same in snapshot mode on OpenSearch 3.8 with `repository-s3`:
//! the agent registers its own repository in the same S3 store, the
//! cluster writes its snapshot there, the manifest lists its blobs, and
//! the drill checks them and restores through the cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use vertice_crds::VerticeBackup;
use vertice_tests::kube::backup_run::{env_var, secret_ref, Events};
use vertice_tests::kube::{BackupUnderTest, TestCluster};
use vertice_tests::search::{one_at_a_time, Flavour, S3Client, SearchServer};
use vertice_tests::{Agent, SeaweedFs};

const BUCKET: &str = "vertice-kube-search";
const NS: &str = "search";
const NAME: &str = "shop";
const USER: &str = "vertice-backup";
/// Distinctive enough that finding it anywhere is a leak.
const PASSWORD: &str = "Es-Pw-7q3Zx9-kube-search-leakcheck";

/// Every index on the server, hidden ones included.
fn index_names(server: &SearchServer) -> Vec<String> {
    let (status, rows) = server.request(
        "GET",
        "/_cat/indices?format=json&expand_wildcards=all",
        None,
    );
    assert_eq!(status, 200, "_cat/indices: {rows}");
    let mut names: Vec<String> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["index"].as_str().expect("index").to_string())
        .collect();
    names.sort();
    names
}

/// Two selected indices (`shop-a`: 3 shards; `shop-b`: one document with
/// a routing) and one left out; returns the documents of each shop index.
fn fill(server: &SearchServer) -> BTreeMap<&'static str, usize> {
    let counts = BTreeMap::from([("shop-a", 240), ("shop-b", 130)]);
    server.put_index(
        "shop-a",
        &json!({"settings": {"number_of_shards": 3, "number_of_replicas": 0},
                "mappings": {"properties": {"sku": {"type": "keyword"}, "price": {"type": "double"}}}}),
    );
    server.put_index(
        "shop-b",
        &json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}}),
    );
    server.put_index(
        "other",
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}),
    );
    let mut bulk = String::new();
    for (index, n) in &counts {
        for i in 0..*n {
            let mut action = json!({"index": {"_index": index, "_id": format!("{index}-{i}")}});
            if *index == "shop-b" && i == 7 {
                action["index"]["routing"] = json!("eu");
            }
            let doc = json!({"sku": format!("s-{i}"), "price": i as f64 * 0.5,
                             "name": format!("Ware {i} — Zoë 東京")});
            bulk.push_str(&format!("{action}\n{doc}\n"));
        }
    }
    for i in 0..5 {
        let action = json!({"index": {"_index": "other", "_id": format!("x-{i}")}});
        bulk.push_str(&format!("{action}\n{}\n", json!({"not": "taken"})));
    }
    server.bulk(&bulk);
    for index in ["shop-a", "shop-b", "other"] {
        server.refresh(index);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_opensearch_backup_runs_and_drills_on_a_real_control_plane() {
    run(Mode::Export).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_opensearch_snapshot_backup_runs_and_drills_on_a_real_control_plane() {
    run(Mode::Snapshot).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// OpenSearch 2.19, documents exported.
    Export,
    /// OpenSearch 3.8 snapshotting into the agent's own repository in S3.
    Snapshot,
}

// The guard only keeps a second JVM server out; the test body is not
// spawned, so holding it across awaits blocks nothing else.
#[allow(clippy::await_holding_lock)]
async fn run(mode: Mode) {
    let started = Instant::now();
    let _one = one_at_a_time();
    let keys = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = vertice_tests::fixtures::age_keypair(keys.path(), "identity.txt");

    let s3 = SeaweedFs::start();
    s3.create_bucket(BUCKET);
    let server = match mode {
        Mode::Export => SearchServer::start(Flavour::OpenSearch),
        Mode::Snapshot => SearchServer::start_with_s3(
            Flavour::OpenSearch3,
            &S3Client {
                endpoint: format!("127.0.0.1:{}", s3.s3_port),
                access_key: vertice_tests::seaweedfs::ACCESS_KEY.to_string(),
                secret_key: vertice_tests::seaweedfs::SECRET_KEY.to_string(),
            },
        ),
    };
    let counts = fill(&server);
    let shop_b_before = server.all_docs("shop-b");
    assert_eq!(shop_b_before.len(), counts["shop-b"]);
    assert_eq!(
        shop_b_before["shop-b-7"].0.as_deref(),
        Some("eu"),
        "the routed document"
    );
    let indices_before = index_names(&server);

    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller("controller-0", &[]).await;
    let controller_log = || controller.log_text();
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    let under_test = BackupUnderTest::new(client.clone(), NS, NAME);
    under_test
        .create_secret("opensearch", json!({"password": PASSWORD}))
        .await;
    under_test
        .create_secret(
            "s3",
            json!({"AWS_ACCESS_KEY_ID": vertice_tests::seaweedfs::ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": vertice_tests::seaweedfs::SECRET_KEY}),
        )
        .await;
    let identity_text = std::fs::read_to_string(&identity).expect("identity");
    under_test
        .create_secret("age", json!({"identity": identity_text}))
        .await;

    let target = match mode {
        Mode::Export => json!({
            "url": server.url(),
            "username": USER,
            "passwordSecretRef": {"name": "opensearch", "key": "password"},
            "indices": ["shop-*"],
            "mode": "export",
        }),
        Mode::Snapshot => json!({
            "url": server.url(),
            "username": USER,
            "passwordSecretRef": {"name": "opensearch", "key": "password"},
            "indices": ["shop-*"],
            "mode": "snapshot",
            // This SeaweedFS has no SSE-S3 keys; OpenSearch 3 asks for
            // AES256 by default.
            "repositorySettings": {"server_side_encryption_type": "bucket_default"},
        }),
    };
    let backup: VerticeBackup = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "target": {"elasticsearch": target},
            // Schedules that do not come round during the test.
            "schedule": {"cron": "0 0 1 1 *", "timeZone": "UTC"},
            "store": {"s3": {"bucket": BUCKET, "prefix": "k8s", "region": "us-east-1",
                             "endpoint": s3.endpoint(), "forcePathStyle": true,
                             "credentials": {"secretName": "s3"}}},
            "encryption": {"recipients": [recipient]},
            "retention": {"keepLast": 3},
            "job": {"backoffLimit": 0},
            "drill": {
                "schedule": {"cron": "0 0 1 1 *"},
                "maxUnverifiedAge": "30d",
                "identitySecretRef": {"name": "age", "key": "identity"},
            },
        },
    }))
    .expect("backup");
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &backup)
        .await
        .expect("create backup");

    // The CronJobs: the address names the user and no password; the
    // password comes from the Secret.
    let status = under_test
        .wait_status(
            &cluster,
            &controller_log,
            "both CronJobs in status",
            Duration::from_secs(60),
            |s| s["cronJob"].is_string() && s["drillCronJob"].is_string(),
        )
        .await;
    let address = format!("http://{USER}@127.0.0.1:{}", server.port());
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    let cron_job_name = status["cronJob"].as_str().expect("cronJob").to_string();
    let cron_job = serde_json::to_value(cron_jobs.get(&cron_job_name).await.expect("the CronJob"))
        .expect("json");
    for (var, value) in [
        (vertice_crds::agent_env::SOURCE, address.as_str()),
        (vertice_crds::agent_env::SOURCE_KIND, "elasticsearch"),
        (vertice_crds::agent_env::SEARCH_INDICES, "shop-*"),
    ] {
        assert_eq!(
            env_var(&cron_job, var)["value"],
            value,
            "{var}: {cron_job:#}"
        );
    }
    assert_eq!(
        secret_ref(&env_var(
            &cron_job,
            vertice_crds::agent_env::ELASTICSEARCH_PASSWORD
        )),
        ("opensearch", "password"),
        "{cron_job:#}"
    );
    let drill_name = status["drillCronJob"].as_str().expect("drillCronJob");
    let drill_cron_job =
        serde_json::to_value(cron_jobs.get(drill_name).await.expect("the drill CronJob"))
            .expect("json");
    assert_eq!(
        env_var(&drill_cron_job, vertice_crds::agent_env::DRILL_RESTORE_TO)["value"],
        address.as_str(),
        "{drill_cron_job:#}"
    );
    assert_eq!(
        secret_ref(&env_var(
            &drill_cron_job,
            vertice_crds::agent_env::ELASTICSEARCH_PASSWORD
        )),
        ("opensearch", "password"),
        "{drill_cron_job:#}"
    );

    // A run now: the Job, run by the local kubelet, exports the indices.
    let backup_started = Instant::now();
    under_test.annotate("vertice.io/run-now", "k1").await;
    let status = under_test
        .wait_status(
            &cluster,
            &controller_log,
            "a finished backup in status",
            Duration::from_secs(180),
            |s| s["lastBackup"]["result"].is_string(),
        )
        .await;
    let backup_seconds = backup_started.elapsed().as_secs_f64();
    assert_eq!(
        status["lastBackup"]["result"],
        "Succeeded",
        "{status:#}\n{}",
        cluster.describe_pods(NS).await
    );
    let last = &status["lastSuccessfulBackup"];
    let id = last["backupId"].as_str().expect("backup id").to_string();
    assert_eq!(status["lastBackup"]["backupId"], id.as_str(), "{status:#}");
    assert!(last["storedBytes"].as_u64().unwrap_or(0) > 0, "{status:#}");
    assert!(last["rawBytes"].as_u64().unwrap_or(0) > 0, "{status:#}");
    assert_eq!(status["phase"], "Healthy", "{status:#}");
    assert_eq!(status["runNow"]["token"], "k1", "{status:#}");
    under_test.expect_event("BackupSucceeded", "Normal").await;

    // In the store: listed as an Elasticsearch backup, encrypted.
    let agent = Agent::default();
    let url = format!("s3://{BUCKET}/k8s");
    let listed = agent.run(
        &[
            "list",
            "--from",
            &url,
            "--output",
            "json",
            "--namespace",
            NS,
            "--name",
            NAME,
        ],
        &s3.env(),
    );
    listed.assert_ok();
    let rows: Value = serde_json::from_str(&listed.stdout).expect("list json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["id"], id.as_str(), "{row}");
    assert_eq!(row["source_kind"], "elasticsearch", "{row}");
    assert_eq!(row["status"], "ok", "{row}");
    assert_eq!(row["source"], address.as_str(), "{row}");
    assert!(
        row["encrypted_to"].as_array().is_some_and(|r| r.len() == 1),
        "{row}"
    );

    // The manifest: exactly the shop indices, every document.
    let stored = s3.list_keys(BUCKET);
    let manifest_key = stored
        .iter()
        .find(|k| *k == &format!("k8s/{NS}/{NAME}/{id}/manifest.json"))
        .unwrap_or_else(|| panic!("no manifest for {id} in {stored:?}"))
        .clone();
    let scratch = tempfile::tempdir().expect("tempdir");
    let local = scratch.path().join("manifest.json");
    s3.get_object(BUCKET, &manifest_key, &local);
    let manifest_text = std::fs::read_to_string(&local).expect("manifest");
    assert!(!manifest_text.contains(PASSWORD), "{manifest_text}");
    let manifest: Value = serde_json::from_str(&manifest_text).expect("manifest json");
    let facts = &manifest["source"]["search"];
    assert_eq!(facts["flavour"], "opensearch", "{manifest:#}");
    match mode {
        Mode::Export => assert_eq!(facts["mode"], "export", "{manifest:#}"),
        Mode::Snapshot => {
            assert_eq!(facts["mode"], "snapshot", "{manifest:#}");
            let snapshot = &facts["snapshot"];
            assert_eq!(
                snapshot["managed"]["settings"]["base_path"],
                format!("k8s/{NS}/{NAME}/repository"),
                "{manifest:#}"
            );
            let blobs = snapshot["blobs"].as_array().map_or(0, Vec::len);
            assert!(blobs >= 7, "a blob list: {manifest:#}");
            assert!(
                stored
                    .iter()
                    .any(|k| k.starts_with(&format!("k8s/{NS}/{NAME}/repository/indices/"))),
                "the cluster wrote into the store: {stored:?}"
            );
        }
    }
    let in_manifest: BTreeMap<&str, usize> = facts["indices"]
        .as_array()
        .expect("indices")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().expect("name"),
                i["documents"].as_u64().expect("documents") as usize,
            )
        })
        .collect();
    assert_eq!(in_manifest, counts, "{manifest:#}");
    for key in stored.iter().filter(|k| k.contains(&id)) {
        let file = scratch.path().join("object");
        s3.get_object(BUCKET, key, &file);
        let bytes = std::fs::read(&file).expect("object");
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "the password is in {key}"
        );
    }

    // A drill on demand: restored into throwaway indices on the same
    // cluster, compared with the manifest, the throwaway indices deleted.
    let drill_started = Instant::now();
    under_test.annotate("vertice.io/drill-now", "d1").await;
    let status = under_test
        .wait_status(
            &cluster,
            &controller_log,
            "a finished drill in status",
            Duration::from_secs(180),
            |s| s["lastDrill"]["result"].is_string(),
        )
        .await;
    let drill_seconds = drill_started.elapsed().as_secs_f64();
    let drill = &status["lastDrill"];
    assert_eq!(
        drill["result"],
        "Succeeded",
        "{status:#}\n{}",
        cluster.describe_pods(NS).await
    );
    assert_eq!(drill["backupId"], id.as_str(), "{status:#}");
    assert_eq!(status["drillNow"]["token"], "d1", "{status:#}");
    let verified = &status["lastVerifiedBackup"];
    let checks_passed = verified["checksPassed"].as_u64().unwrap_or(0);
    assert_eq!(verified["backupId"], id.as_str(), "{status:#}");
    assert!(
        verified["restoreSeconds"].as_f64().is_some_and(|s| s > 0.0),
        "{status:#}"
    );
    // The documents and the mappings of each index, at least.
    assert!(checks_passed >= 2, "{status:#}");
    assert_eq!(verified["checksFailed"], 0, "{status:#}");
    assert_eq!(status["phase"], "Healthy", "{status:#}");
    let verified_condition = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "BackupVerified"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(verified_condition["status"], "True", "{status:#}");
    under_test.expect_event("DrillSucceeded", "Normal").await;
    let after = index_names(&server);
    let left: Vec<&String> = after
        .iter()
        .filter(|i| i.starts_with("vertice-drill-"))
        .collect();
    assert!(left.is_empty(), "throwaway indices left: {left:?}");
    // The cluster is as it was: the same indices, the same documents.
    assert_eq!(after, indices_before);
    assert_eq!(server.all_docs("shop-b"), shop_b_before);

    under_test
        .assert_secret_nowhere(&cluster, PASSWORD, "the password", Events::Searched)
        .await;
    let jobs = Api::<Job>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items;
    assert_eq!(jobs.len(), 2, "one backup Job, one drill Job");
    eprintln!(
        "kube_search: backup run {backup_seconds:.1}s, drill run {drill_seconds:.1}s \
         ({checks_passed} checks passed), whole test {:.1}s",
        started.elapsed().as_secs_f64()
    );
    drop(controller);
}
