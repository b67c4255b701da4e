//! Backups end to end on a real control plane: VerticeBackup → the
//! controller's CronJob → Job → Pod → the local kubelet runs the real agent
//! against real PostgreSQL and SeaweedFS S3 → status, printer columns,
//! Events and metrics. The controller runs as its ServiceAccount with
//! exactly `deploy/base`'s RBAC, so a missing verb fails here.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use vertice_crds::VerticeBackup;
use vertice_tests::kube::TestCluster;
use vertice_tests::wait::wait_for;
use vertice_tests::{Agent, Postgres, SeaweedFs};

const BUCKET: &str = "vertice-kube";

struct World {
    cluster: TestCluster,
    pg: Postgres,
    s3: SeaweedFs,
    recipient: String,
    identity: std::path::PathBuf,
    _keys: tempfile::TempDir,
}

impl World {
    async fn secrets(&self, ns: &str, password: &str) {
        let client = self.cluster.admin().await;
        let secrets: Api<Secret> = Api::namespaced(client, ns);
        for (name, data) in [
            ("db", json!({"password": password})),
            (
                "s3",
                json!({"AWS_ACCESS_KEY_ID": vertice_tests::seaweedfs::ACCESS_KEY,
                       "AWS_SECRET_ACCESS_KEY": vertice_tests::seaweedfs::SECRET_KEY}),
            ),
        ] {
            let secret: Secret = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": ns, "labels": {"vertice.io/allow-reference": "true"}},
                "stringData": data,
            }))
            .expect("secret");
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .expect("create secret");
        }
    }

    fn backup(&self, ns: &str, name: &str, extra: Value) -> VerticeBackup {
        let mut spec = json!({
            "target": {"postgres": {"host": "127.0.0.1", "port": self.pg.port, "database": "shop",
                                    "user": "postgres",
                                    "passwordSecretRef": {"name": "db", "key": "password"}}},
            // A schedule that does not come round during the test.
            "schedule": {"cron": "0 0 1 1 *", "timeZone": "UTC"},
            "store": {"s3": {"bucket": BUCKET, "prefix": "k8s", "region": "us-east-1",
                             "endpoint": self.s3.endpoint(), "forcePathStyle": true,
                             "credentials": {"secretName": "s3"}}},
            "encryption": {"recipients": [self.recipient]},
            "retention": {"keepLast": 3},
            "job": {"backoffLimit": 0},
        });
        merge(&mut spec, extra);
        serde_json::from_value(json!({
            "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
            "metadata": {"name": name, "namespace": ns}, "spec": spec,
        }))
        .expect("backup")
    }

    fn agent_env(&self) -> Vec<(&'static str, String)> {
        self.s3.env()
    }

    /// A namespace with the Secrets, the backup `orders` in it (with
    /// `extra` merged into its spec) and its CronJob written: the start of
    /// every on-demand case. The admin client for that namespace.
    async fn namespace_with_backup(&self, ns: &str, extra: Value) -> Client {
        self.cluster.plane.create_namespace(ns).await;
        self.secrets(ns, &self.pg.password).await;
        let client = self.cluster.admin().await;
        let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
        api.create(&PostParams::default(), &self.backup(ns, "orders", extra))
            .await
            .expect("create backup");
        cron_job_name(&client, ns).await;
        client
    }
}

/// A pre-hook that makes every run last at least `seconds`.
fn slow_runs(seconds: u32) -> Value {
    json!({"hooks": {"pre": [{"name": "slow", "sql": {"statement": format!("SELECT pg_sleep({seconds})")}}]}})
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

async fn status_of(client: &Client, ns: &str, name: &str) -> Value {
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    let backup = api.get(name).await.expect("get backup");
    serde_json::to_value(backup.status).unwrap_or(Value::Null)
}

async fn events_of(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
}

fn has_event(events: &[Event], reason: &str, kind: &str) -> bool {
    events
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some(kind))
}

/// Waits for an event: the controller applies the status first and records
/// its events after, so a test that saw the status may not see them yet.
async fn expect_event(client: &Client, ns: &str, reason: &str, kind: &str) {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if has_event(&events_of(client, ns).await, reason, kind) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if found.is_err() {
        panic!(
            "no {kind} event {reason} in {ns}: {:#?}",
            events_of(client, ns).await
        );
    }
}

async fn cron_job_name(client: &Client, ns: &str) -> String {
    let api: Api<CronJob> = Api::namespaced(client.clone(), ns);
    wait_for("the CronJob", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .next()
                .and_then(|c| c.metadata.name)
        }
    })
    .await
}

/// Starts a run now, outside the schedule, as a user would.
async fn run_now(client: &Client, ns: &str, name: &str, token: &str) {
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"vertice.io/run-now": token}}})),
    )
    .await
    .expect("annotate run-now");
}

async fn annotate(client: &Client, ns: &str, name: &str, key: &str, token: &str) {
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {key: token}}})),
    )
    .await
    .expect("annotate");
}

/// A drill on demand: its own CronJob, a Job the local kubelet runs with
/// the real agent into a scratch database on the real server, and the
/// measured RTO in status. A drill that never ran within maxUnverifiedAge
/// raises BackupVerified=False and the gauge.
async fn drilled_backup(world: &World) {
    let ns = "drilled";
    let cluster = &world.cluster;
    cluster.plane.create_namespace(ns).await;
    world.secrets(ns, &world.pg.password).await;
    let client = cluster.admin().await;
    let identity = std::fs::read_to_string(&world.identity).expect("identity");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "age", "namespace": ns, "labels": {"vertice.io/allow-reference": "true"}},
        "stringData": {"identity": identity},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let drill = |max_age: &str| {
        json!({"drill": {
            "schedule": {"cron": "0 0 1 1 *"},
            "maxUnverifiedAge": max_age,
            "target": {"postgres": {"host": "127.0.0.1", "port": world.pg.port, "user": "postgres",
                                    "passwordSecretRef": {"name": "db", "key": "password"}}},
            "identitySecretRef": {"name": "age", "key": "identity"},
            "checks": {"postgres": {"assertions": [
                {"name": "customers", "sql": "SELECT count(*) >= 1 FROM sales.customers"}]}},
        }})
    };
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &world.backup(ns, "orders", drill("30d")),
    )
    .await
    .expect("create backup");
    api.create(
        &PostParams::default(),
        &world.backup(ns, "stale", drill("1s")),
    )
    .await
    .expect("create backup");
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    wait_for("the drill CronJob", Duration::from_secs(60), || {
        let cron_jobs = cron_jobs.clone();
        async move {
            cron_jobs
                .get_opt("vertice-drill-orders")
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    annotate(&client, ns, "orders", "vertice.io/run-now", "b1").await;
    wait_for("a backup to drill", Duration::from_secs(120), || {
        let client = client.clone();
        async move {
            let s = status_of(&client, ns, "orders").await;
            s.get("lastSuccessfulBackup")
                .filter(|b| !b.is_null())
                .cloned()
        }
    })
    .await;
    annotate(&client, ns, "orders", "vertice.io/drill-now", "d1").await;
    let status = wait_for("a verified backup", Duration::from_secs(120), || {
        let client = client.clone();
        async move {
            let s = status_of(&client, ns, "orders").await;
            s.get("lastDrill").filter(|b| !b.is_null())?;
            Some(s)
        }
    })
    .await;
    let verified = &status["lastVerifiedBackup"];
    assert_eq!(
        verified["backupId"], status["lastSuccessfulBackup"]["backupId"],
        "{status}"
    );
    assert!(
        verified["restoreSeconds"].as_f64().is_some_and(|s| s > 0.0),
        "{status}"
    );
    assert!(
        verified["checksPassed"].as_u64().is_some_and(|n| n >= 5),
        "{status}"
    );
    assert_eq!(verified["checksFailed"], 0, "{status}");
    assert!(status["worstRecentRto"].as_str().is_some(), "{status}");
    assert_eq!(
        status["phase"], "Healthy",
        "drills are not backups: {status}"
    );
    let verified_condition = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "BackupVerified"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(verified_condition["status"], "True", "{status}");
    expect_event(&client, ns, "DrillSucceeded", "Normal").await;
    // No drill database is left on the server.
    let left = world.pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE starts_with(datname, 'vertice_drill_')",
    );
    assert_eq!(left, "0");

    let stale = wait_for(
        "the stale backup unverified",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let s = status_of(&client, ns, "stale").await;
                let c = s["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "BackupVerified")?
                    .clone();
                (c["status"] == "False").then_some(c)
            }
        },
    )
    .await;
    assert_eq!(stale["reason"], "BackupUnverified", "{stale}");
    expect_event(&client, ns, "BackupUnverified", "Warning").await;
}

async fn successful_backup(world: &World) {
    let ns = "happy";
    let cluster = &world.cluster;
    let client = world.namespace_with_backup(ns, json!({})).await;
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    run_now(&client, ns, "orders", "first").await;
    let status = wait_for(
        "a successful backup in status",
        Duration::from_secs(120),
        || {
            let client = client.clone();
            async move {
                let s = status_of(&client, ns, "orders").await;
                s.get("lastSuccessfulBackup").filter(|b| !b.is_null())?;
                Some(s)
            }
        },
    )
    .await;
    let last = &status["lastSuccessfulBackup"];
    let id = last["backupId"].as_str().expect("backup id").to_string();
    assert!(last["storedBytes"].as_u64().unwrap_or(0) > 0, "{status}");
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["runNow"]["token"], "first", "{status}");

    // The backup is in the store, and restores.
    let agent = Agent::default();
    let url = format!("s3://{BUCKET}/k8s");
    let scope = ["--namespace", ns, "--name", "orders"];
    let listed = agent.run(
        &[&["list", "--from", &url, "--output", "json"][..], &scope].concat(),
        &world.agent_env(),
    );
    listed.assert_ok();
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    world.pg.create_database("shop_from_k8s");
    let identity = world.identity.display().to_string();
    agent
        .run(
            &[
                &[
                    "restore",
                    "--from",
                    &url,
                    "--backup",
                    &id,
                    "--identity",
                    &identity,
                ][..],
                &scope,
                &["--to", &world.pg.url("shop_from_k8s")],
            ]
            .concat(),
            &[
                &world.agent_env()[..],
                &[("PGPASSWORD", world.pg.password.clone())],
            ]
            .concat(),
        )
        .assert_ok();
    assert_eq!(
        world.pg.schema_and_data("shop"),
        world.pg.schema_and_data("shop_from_k8s"),
        "restored database differs"
    );

    // What `kubectl get vbk` shows.
    let table = cluster.kubectl(&["get", "vbk", "-n", ns]);
    let header = table.lines().next().unwrap_or_default().to_string();
    for column in ["NAME", "PHASE", "LAST SUCCESS"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("Healthy"), "{table}");
    // A future time in a date column would read <invalid>.
    assert!(!table.contains("<invalid>"), "{table}");

    expect_event(&client, ns, "CronJobCreated", "Normal").await;
    expect_event(&client, ns, "BackupSucceeded", "Normal").await;

    // Suspend: the CronJob is suspended and the phase says so.
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend");
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let name = cron_job_name(&client, ns).await;
    wait_for(
        "a suspended CronJob and phase",
        Duration::from_secs(30),
        || {
            let (cron_jobs, client, name) = (cron_jobs.clone(), client.clone(), name.clone());
            async move {
                let cj = cron_jobs.get(&name).await.ok()?;
                let suspended = cj.spec.suspend == Some(true);
                let phase = status_of(&client, ns, "orders").await["phase"].clone();
                (suspended && phase == "Suspended").then_some(())
            }
        },
    )
    .await;

    // Delete: the garbage collector removes the CronJob.
    api.delete("orders", &DeleteParams::foreground())
        .await
        .expect("delete");
    wait_for(
        "the CronJob to be garbage-collected",
        Duration::from_secs(60),
        || {
            let cron_jobs = cron_jobs.clone();
            async move {
                cron_jobs
                    .list(&ListParams::default())
                    .await
                    .ok()
                    .filter(|l| l.items.is_empty())
                    .map(|_| ())
            }
        },
    )
    .await;
}

async fn wrong_password(world: &World) {
    let ns = "wrong-password";
    let cluster = &world.cluster;
    cluster.plane.create_namespace(ns).await;
    world.secrets(ns, "not-the-password").await;
    let client = cluster.admin().await;
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &world.backup(ns, "orders", json!({})),
    )
    .await
    .expect("create backup");
    cron_job_name(&client, ns).await;
    run_now(&client, ns, "orders", "try-1").await;
    let status = wait_for("a failed run in status", Duration::from_secs(120), || {
        let client = client.clone();
        async move {
            let s = status_of(&client, ns, "orders").await;
            (s["phase"] == "Failed").then_some(s)
        }
    })
    .await;
    let text = status.to_string();
    let pods = cluster.describe_pods(ns).await;
    assert_eq!(
        status["lastBackup"]["errorCategory"], "config",
        "the agent's error category (a credential is configuration): {text}\n{pods}"
    );
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "no secret in status: {text}"
    );
    expect_event(&client, ns, "BackupFailed", "Warning").await;
}

async fn overdue_without_a_run(world: &World) {
    let ns = "overdue";
    let cluster = &world.cluster;
    cluster.plane.create_namespace(ns).await;
    world.secrets(ns, &world.pg.password).await;
    let client = cluster.admin().await;
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    // Every minute, overdue one minute later; no run can succeed: the
    // database is on a port where nothing listens.
    let backup = world.backup(
        ns,
        "orders",
        json!({"target": {"postgres": {"port": vertice_tests::ports::free_port()}},
               "schedule": {"cron": "* * * * *", "overdueAfter": "1m"}}),
    );
    api.create(&PostParams::default(), &backup)
        .await
        .expect("create backup");
    let status = wait_for("BackupOverdue", Duration::from_secs(200), || {
        let client = client.clone();
        async move {
            let s = status_of(&client, ns, "orders").await;
            let overdue = s["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "BackupOverdue" && c["status"] == "True");
            overdue.then_some(s)
        }
    })
    .await;
    assert_eq!(status["phase"], "Overdue", "{status}");
    expect_event(&client, ns, "BackupOverdue", "Warning").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_run_end_to_end_on_a_real_control_plane() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = vertice_tests::fixtures::age_keypair(keys.path(), "identity.txt");
    let pg = Postgres::start();
    pg.create_database("shop");
    pg.script("shop", vertice_tests::fixtures::RICH_POSTGRES_SCHEMA);
    let s3 = SeaweedFs::start();
    s3.create_bucket(BUCKET);
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller("controller-0", &[]).await;
    let world = World {
        cluster,
        pg,
        s3,
        recipient,
        identity,
        _keys: keys,
    };

    tokio::join!(
        successful_backup(&world),
        wrong_password(&world),
        overdue_without_a_run(&world),
        drilled_backup(&world),
    );

    // The deleted backup's metric series go; the others stay.
    let metrics = wait_for(
        "the deleted backup's series to go",
        Duration::from_secs(90),
        || {
            let controller = &controller;
            async move {
                let m = controller.metrics().await;
                (!m.contains("namespace=\"happy\"")).then_some(m)
            }
        },
    )
    .await;
    assert!(
        metrics.contains("vertice_backup_overdue{backup=\"orders\",namespace=\"overdue\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vertice_backup_unverified{backup=\"stale\",namespace=\"drilled\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vertice_backup_unverified{backup=\"orders\",namespace=\"drilled\"} 0"),
        "{metrics}"
    );
    drop(controller);
}

/// Schedules Kubernetes refuses are refused when the VerticeBackup is
/// written, naming the field; one that passes but never fires is Invalid,
/// with one Warning and no CronJob, and nothing claims it is on schedule.
async fn refused_schedules(world: &World) {
    let ns = "schedules";
    let cluster = &world.cluster;
    cluster.plane.create_namespace(ns).await;
    world.secrets(ns, &world.pg.password).await;
    let client = cluster.admin().await;
    let api: Api<VerticeBackup> = Api::namespaced(client.clone(), ns);
    for (cron, field, why) in [
        ("0 3 * * 7", "spec.schedule.cron", "Sunday is 0"),
        (
            "0 3 L * *",
            "spec.schedule.cron",
            "L, W and # are not supported",
        ),
        (
            "0 3 * * 5#3",
            "spec.schedule.cron",
            "L, W and # are not supported",
        ),
        ("0 0 3 * * *", "spec.schedule.cron", "five fields"),
        ("TZ=UTC 0 3 * * *", "spec.schedule.cron", "timeZone"),
        ("@every 1h", "spec.schedule.cron", "@every is not supported"),
    ] {
        let backup = world.backup(ns, "refused", json!({"schedule": {"cron": cron}}));
        let err = api
            .create(&PostParams::default(), &backup)
            .await
            .expect_err(cron);
        let text = err.to_string();
        assert!(text.contains(field) && text.contains(why), "{cron}: {text}");
    }
    let drill = world.backup(
        ns,
        "refused",
        json!({"drill": {"schedule": {"cron": "0 4 * * 5L"}, "target": {"ephemeral": {}},
                         "identitySecretRef": {"name": "db", "key": "password"}}}),
    );
    let err = api
        .create(&PostParams::default(), &drill)
        .await
        .expect_err("drill schedule");
    assert!(
        err.to_string().contains("spec.drill.schedule.cron"),
        "{err}"
    );

    // Accepted by the API server (as a CronJob would be), but 31 February
    // never comes.
    let never = world.backup(ns, "never", json!({"schedule": {"cron": "0 0 31 2 *"}}));
    api.create(&PostParams::default(), &never)
        .await
        .expect("create backup");
    let status = wait_for("phase Invalid", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let s = status_of(&client, ns, "never").await;
            (s["phase"] == "Invalid").then_some(s)
        }
    })
    .await;
    let condition = |t: &str| {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    };
    let ready = condition("Ready");
    assert_eq!(ready["status"], "False", "{status}");
    assert_eq!(ready["reason"], "InvalidSpec", "{status}");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.schedule.cron") && message.contains("never fires"),
        "{message}"
    );
    assert_eq!(condition("BackupOverdue")["status"], "Unknown", "{status}");
    assert!(status.get("nextBackup").is_none(), "{status}");
    expect_event(&client, ns, "InvalidSpec", "Warning").await;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    assert!(cron_jobs
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .is_empty());
    // No retry storm: no reconcile error Events, one InvalidSpec Event.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let events = events_of(&client, ns).await;
    let invalid: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("InvalidSpec"))
        .collect();
    assert_eq!(invalid.len(), 1, "{events:#?}");
    assert!(
        invalid[0].series.is_none(),
        "said once, not repeated: {:#?}",
        invalid[0]
    );
    assert!(
        events
            .iter()
            .all(|e| e.type_.as_deref() != Some("Warning")
                || e.reason.as_deref() == Some("InvalidSpec")),
        "{events:#?}"
    );
}

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// Run-now requests 1.5 s apart while a run is active start no second Job:
/// the newest waits, visibly, and starts when the active run ends.
async fn run_now_waits_for_the_active_run(world: &World) {
    let ns = "run-now-queue";
    let client = world.namespace_with_backup(ns, slow_runs(10)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let most_active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watching = {
        let (jobs, most_active) = (jobs.clone(), most_active.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = jobs.list(&ListParams::default()).await {
                    let active = list.items.iter().filter(|j| !finished(j)).count();
                    most_active.fetch_max(active, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for token in ["q1", "q2", "q3", "q4"] {
        run_now(&client, ns, "orders", token).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let status = status_of(&client, ns, "orders").await;
    assert_eq!(status["runNowQueued"]["token"], "q4", "{status}");
    expect_event(&client, ns, "RunNowQueued", "Normal").await;
    // Scheduled runs are held too: the CronJob is suspended meanwhile.
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let suspended = |c: CronJob| c.spec.suspend;
    let cron_job = cron_jobs
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    assert_eq!(
        cron_job.into_iter().next().and_then(suspended),
        Some(true),
        "suspended while an on-demand run is active"
    );
    // The waiting request starts when the first run ends, and runs alone.
    let status = wait_for("the queued run to finish", Duration::from_secs(150), || {
        let client = client.clone();
        async move {
            let s = status_of(&client, ns, "orders").await;
            let done = s["runNow"]["token"] == "q4"
                && s["history"].as_array().is_some_and(|h| h.len() == 2);
            done.then_some(s)
        }
    })
    .await;
    watching.abort();
    assert!(status.get("runNowQueued").is_none(), "{status}");
    let all = jobs.list(&ListParams::default()).await.expect("jobs").items;
    assert_eq!(all.len(), 2, "one Job for q1, one for q4");
    assert_eq!(
        most_active.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "never two runs at once"
    );
    wait_for("the CronJob resumed", Duration::from_secs(60), || {
        let cron_jobs = cron_jobs.clone();
        async move {
            let items = cron_jobs.list(&ListParams::default()).await.ok()?.items;
            (items.into_iter().next().and_then(suspended) == Some(false)).then_some(())
        }
    })
    .await;
}

/// A run whose pod cannot start (the Secret lacks the key it names) says
/// so within a minute, naming the Secret, not Running for six hours.
async fn missing_secret_blocks_the_run(world: &World) {
    let ns = "missing-secret";
    let client = world
        .namespace_with_backup(
            ns,
            json!({"target": {"postgres": {"passwordSecretRef": {"name": "db", "key": "pass-word"}}}}),
        )
        .await;
    let asked = std::time::Instant::now();
    run_now(&client, ns, "orders", "blocked-1").await;
    let status = wait_for("phase Blocked", Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            let s = status_of(&client, ns, "orders").await;
            (s["phase"] == "Blocked").then_some(s)
        }
    })
    .await;
    assert!(asked.elapsed() < Duration::from_secs(60));
    let blocked = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "RunBlocked").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(blocked["status"], "True", "{status}");
    assert_eq!(blocked["reason"], "CreateContainerConfigError", "{status}");
    let message = blocked["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("pass-word") && message.contains("db") && message.contains("Secret"),
        "{message}"
    );
    assert!(!status.to_string().contains(&world.pg.password), "{status}");
    expect_event(&client, ns, "RunBlocked", "Warning").await;
}

/// A run whose pod is evicted (the eviction API, as a node drain does) is
/// reported as interrupted, not as a backoff limit with no category.
async fn evicted_run_is_interrupted(world: &World) {
    use k8s_openapi::api::core::v1::Pod;
    let ns = "evicted";
    let client = world.namespace_with_backup(ns, slow_runs(20)).await;
    run_now(&client, ns, "orders", "evict-1").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = wait_for("the backup pod running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .and_then(|p| p.metadata.name)
        }
    })
    .await;
    pods.evict(&pod, &kube::api::EvictParams::default())
        .await
        .expect("evict");
    // A real kubelet moves a stopped pod with restartPolicy Never to phase
    // Failed before it goes; the local one deletes it at once, so do that
    // part here (the Job controller waits for a terminal phase before it
    // applies the pod failure policy).
    let evicted = pods.get(&pod).await.expect("the evicted pod");
    let disrupted = evicted
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "DisruptionTarget"));
    assert!(
        disrupted,
        "the API server marks an evicted pod: {evicted:?}"
    );
    let _ = pods
        .patch_status(
            &pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await;
    let status = wait_for(
        "an interrupted run in status",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            async move {
                let s = status_of(&client, ns, "orders").await;
                s["lastBackup"]["result"].as_str().is_some().then_some(s)
            }
        },
    )
    .await;
    let pods_text = world.cluster.describe_pods(ns).await;
    assert_eq!(
        status["lastBackup"]["errorCategory"], "interrupted",
        "{status}\n{pods_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedules_and_on_demand_runs_say_what_happens_on_a_real_control_plane() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = vertice_tests::fixtures::age_keypair(keys.path(), "identity.txt");
    let pg = Postgres::start();
    pg.create_database("shop");
    let s3 = SeaweedFs::start();
    s3.create_bucket(BUCKET);
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller("controller-0", &[]).await;
    let world = World {
        cluster,
        pg,
        s3,
        recipient,
        identity,
        _keys: keys,
    };
    tokio::join!(
        refused_schedules(&world),
        run_now_waits_for_the_active_run(&world),
        missing_secret_blocks_the_run(&world),
        evicted_run_is_interrupted(&world),
    );
    // A backup that cannot run is an alert, not only a phase.
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("vertice_backup_invalid{backup=\"never\",namespace=\"schedules\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vertice_backup_invalid{backup=\"orders\",namespace=\"run-now-queue\"} 0"),
        "{metrics}"
    );
    drop(controller);
}
