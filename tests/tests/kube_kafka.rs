//! A Kafka backup end to end on a real control plane: a `VerticeBackup`
//! with `spec.target.kafka` (SASL SCRAM-SHA-512, the password from a
//! Secret) → the controller's CronJob → Job → Pod → the local kubelet runs
//! the real agent against a real Apache Kafka broker and SeaweedFS S3 →
//! status, the store's manifest, Events; then a drill on demand restores it
//! into scratch topics on the same broker, passes and leaves none behind.
//! The password is in no manifest, status, log or stored object.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use vertice_crds::VerticeBackup;
use vertice_tests::kafka::{Kafka, TestRecord, SASL_PASSWORD, SASL_USER};
use vertice_tests::kube::backup_run::{env_var, secret_ref, Events};
use vertice_tests::kube::{BackupUnderTest, TestCluster};
use vertice_tests::{Agent, SeaweedFs};

const BUCKET: &str = "vertice-kube-kafka";
const NS: &str = "streaming";
const NAME: &str = "events";

fn record(partition: i32, key: &str, value: &str) -> TestRecord {
    TestRecord {
        partition,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        ..TestRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_backup_runs_and_drills_on_a_real_control_plane() {
    let started = Instant::now();
    let keys = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = vertice_tests::fixtures::age_keypair(keys.path(), "identity.txt");

    // The broker: two topics taken (one by name, one by regex), one left
    // out; a group taken, a group left out.
    let kafka = Kafka::start();
    kafka.create_topic("orders", 3, &[("retention.ms", "604800000")]);
    kafka.create_topic("payments", 1, &[]);
    kafka.create_topic("ignored", 1, &[]);
    let orders: Vec<TestRecord> = (0..4)
        .map(|i| record(0, &format!("o{i}"), &format!("order-{i}")))
        .chain((0..6).map(|i| record(1, &format!("p{i}"), &format!("order-p1-{i}"))))
        .collect();
    kafka.produce("orders", &orders);
    kafka.produce(
        "payments",
        &(0..3)
            .map(|i| record(0, "pay", &format!("payment-{i}")))
            .collect::<Vec<_>>(),
    );
    kafka.produce("ignored", &[record(0, "x", "not taken")]);
    kafka.commit_offsets("billing", &[("orders", 0, 2), ("payments", 0, 3)]);
    kafka.commit_offsets("audit", &[("orders", 1, 1)]);
    let orders_before = kafka.read_all("orders");
    assert_eq!(orders_before.len(), 10);
    // The SASL listener takes the password the Secret will hold.
    kafka
        .sasl_check("SCRAM-SHA-512", SASL_USER, SASL_PASSWORD)
        .expect("SCRAM-SHA-512 login");

    let s3 = SeaweedFs::start();
    s3.create_bucket(BUCKET);
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller("controller-0", &[]).await;
    let controller_log = || controller.log_text();
    let client = cluster.admin().await;
    cluster.plane.create_namespace(NS).await;
    let under_test = BackupUnderTest::new(client.clone(), NS, NAME);
    under_test
        .create_secret("kafka", json!({"password": SASL_PASSWORD}))
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

    let backup: VerticeBackup = serde_json::from_value(json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "target": {"kafka": {
                "bootstrapServers": [kafka.sasl_bootstrap],
                "topics": ["orders"],
                "topicRegex": "pay.*",
                "groups": "billing",
                "sasl": {"mechanism": "SCRAM-SHA-512", "username": SASL_USER,
                         "passwordSecretRef": {"name": "kafka", "key": "password"}},
            }},
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

    // The CronJob: the address names the user and no password; the
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
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    let cron_job_name = status["cronJob"].as_str().expect("cronJob").to_string();
    let cron_job = serde_json::to_value(cron_jobs.get(&cron_job_name).await.expect("the CronJob"))
        .expect("json");
    assert_eq!(
        env_var(&cron_job, vertice_crds::agent_env::SOURCE)["value"],
        format!("kafka://{SASL_USER}@{}", kafka.sasl_bootstrap),
        "{cron_job:#}"
    );
    assert_eq!(
        secret_ref(&env_var(&cron_job, vertice_crds::agent_env::KAFKA_PASSWORD)),
        ("kafka", "password"),
        "{cron_job:#}"
    );
    assert_eq!(
        env_var(&cron_job, vertice_crds::agent_env::KAFKA_TOPICS)["value"],
        "orders"
    );
    assert_eq!(
        env_var(&cron_job, vertice_crds::agent_env::KAFKA_TOPIC_REGEX)["value"],
        "pay.*"
    );
    assert_eq!(
        env_var(&cron_job, vertice_crds::agent_env::KAFKA_GROUPS)["value"],
        "billing"
    );
    let drill_name = status["drillCronJob"].as_str().expect("drillCronJob");
    let drill_cron_job =
        serde_json::to_value(cron_jobs.get(drill_name).await.expect("the drill CronJob"))
            .expect("json");
    assert_eq!(
        env_var(&drill_cron_job, vertice_crds::agent_env::DRILL_RESTORE_TO)["value"],
        format!("kafka://{SASL_USER}@{}", kafka.sasl_bootstrap),
        "{drill_cron_job:#}"
    );
    assert_eq!(
        secret_ref(&env_var(
            &drill_cron_job,
            vertice_crds::agent_env::KAFKA_PASSWORD
        )),
        ("kafka", "password"),
        "{drill_cron_job:#}"
    );

    // A run now: the Job, run by the local kubelet, backs the broker up.
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

    // In the store: listed as a Kafka backup, encrypted.
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
    assert_eq!(row["source_kind"], "kafka", "{row}");
    assert_eq!(row["status"], "ok", "{row}");
    assert_eq!(
        row["source"],
        format!("kafka://{SASL_USER}@{}", kafka.sasl_bootstrap),
        "{row}"
    );
    assert!(
        row["encrypted_to"].as_array().is_some_and(|r| r.len() == 1),
        "{row}"
    );

    // The manifest: exactly the chosen topics and group, every record.
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
    assert!(!manifest_text.contains(SASL_PASSWORD), "{manifest_text}");
    let manifest: Value = serde_json::from_str(&manifest_text).expect("manifest json");
    assert_eq!(manifest["source"]["kind"], "kafka", "{manifest:#}");
    let facts = &manifest["source"]["kafka"];
    let topics: Vec<&str> = facts["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(topics, ["orders", "payments"], "{manifest:#}");
    let counts = |topic: usize| -> Vec<(i64, u64)> {
        facts["topics"][topic]["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| {
                (
                    p["partition"].as_i64().expect("partition"),
                    p["records"].as_u64().expect("records"),
                )
            })
            .collect()
    };
    assert_eq!(counts(0), [(0, 4), (1, 6), (2, 0)], "{manifest:#}");
    assert_eq!(counts(1), [(0, 3)], "{manifest:#}");
    assert_eq!(
        facts["topics"][0]["configs"],
        json!({"retention.ms": "604800000"}),
        "{manifest:#}"
    );
    let groups: Vec<&str> = facts["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["group"].as_str().expect("group"))
        .collect();
    assert_eq!(groups, ["billing"], "{manifest:#}");
    for key in stored.iter().filter(|k| k.contains(&id)) {
        let file = scratch.path().join("object");
        s3.get_object(BUCKET, key, &file);
        let bytes = std::fs::read(&file).expect("object");
        assert!(
            !bytes
                .windows(SASL_PASSWORD.len())
                .any(|w| w == SASL_PASSWORD.as_bytes()),
            "the SASL password is in {key}"
        );
    }

    // A drill on demand: restored into scratch topics on the same broker,
    // compared with the manifest, the scratch topics deleted.
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
    // The records of each topic and the group offsets, at least.
    assert!(
        verified["checksPassed"].as_u64().is_some_and(|n| n >= 3),
        "{status:#}"
    );
    assert_eq!(verified["checksFailed"], 0, "{status:#}");
    assert_eq!(status["phase"], "Healthy", "{status:#}");
    let verified_condition = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "BackupVerified"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(verified_condition["status"], "True", "{status:#}");
    under_test.expect_event("DrillSucceeded", "Normal").await;
    let left: Vec<String> = kafka
        .topics()
        .into_iter()
        .filter(|t| t.starts_with("vertice-drill-"))
        .collect();
    assert!(left.is_empty(), "scratch topics left: {left:?}");
    // The source topics are as they were.
    assert_eq!(kafka.read_all("orders"), orders_before);

    under_test
        .assert_secret_nowhere(
            &cluster,
            SASL_PASSWORD,
            "the SASL password",
            Events::NotSearched,
        )
        .await;
    let jobs = Api::<Job>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items;
    assert_eq!(jobs.len(), 2, "one backup Job, one drill Job");
    eprintln!(
        "kube_kafka: backup run {backup_seconds:.1}s, drill run {drill_seconds:.1}s \
         ({} checks passed), whole test {:.1}s",
        checks_passed,
        started.elapsed().as_secs_f64()
    );
    drop(controller);
}
