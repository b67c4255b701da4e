//! The backup reconcile loop against a mock API server: what it reads, what
//! it applies, the status it writes and the events it records.

mod support;

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use support::{finished_job, ts, Recorded, Shared, World};
use vertice_controller::backup::{reconciler, JobDefaults};
use vertice_controller::config::TenancyArgs;
use vertice_controller::events::EventRecorder;
use vertice_controller::leader;
use vertice_controller::metrics::Metrics;
use vertice_crds::VerticeBackup;

const UID: &str = "6f1c2a1e-0000-4000-8000-000000000001";

fn backup(spec_patch: Value, created_ago: Duration, status: Option<Value>) -> VerticeBackup {
    let mut spec = json!({
        "target": {"postgres": {"host": "db", "database": "orders", "user": "backup",
                                "passwordSecretRef": {"name": "db", "key": "password"}}},
        "schedule": {"cron": "0 * * * *"},
        "store": {"s3": {"bucket": "backups"}},
    });
    if let (Some(spec), Some(patch)) = (spec.as_object_mut(), spec_patch.as_object()) {
        for (k, v) in patch {
            spec.insert(k.clone(), v.clone());
        }
    }
    let mut object = json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": "orders", "namespace": "shop", "uid": UID, "generation": 3,
                     "creationTimestamp": ts(Utc::now() - created_ago)},
        "spec": spec,
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    serde_json::from_value(object).expect("valid VerticeBackup")
}

async fn reconcile(world: &Shared, backup: VerticeBackup) -> (Vec<Recorded>, Metrics) {
    // Boxed: a test reconciling several times keeps within a test thread's stack.
    Box::pin(reconcile_as(world, backup, true)).await
}

async fn reconcile_as(
    world: &Shared,
    backup: VerticeBackup,
    leader: bool,
) -> (Vec<Recorded>, Metrics) {
    reconcile_under(world, backup, leader, TenancyArgs::default()).await
}

async fn reconcile_under(
    world: &Shared,
    backup: VerticeBackup,
    leader: bool,
    tenancy: TenancyArgs,
) -> (Vec<Recorded>, Metrics) {
    world.lock().expect("world").backup = serde_json::to_value(&backup).expect("json");
    let client = support::client(world.clone());
    let metrics = Metrics::new().expect("metrics");
    let ctx = Arc::new(reconciler::Context {
        shared: vertice_controller::context::Shared {
            client: client.clone(),
            metrics: metrics.clone(),
            recorder: EventRecorder::new(client, "vertice-controller", "test"),
            leading: if leader {
                leader::always().leading()
            } else {
                leader::never().leading()
            },
            tenancy: Arc::new(tenancy),
        },
        defaults: JobDefaults {
            agent_image: "ghcr.io/vertice/agent:test".into(),
            pushgateway_url: None,
        },
        secrets: Default::default(),
    });
    reconciler::reconcile(Arc::new(backup), ctx)
        .await
        .expect("reconcile succeeds");
    let requests = std::mem::take(&mut world.lock().expect("world").requests);
    (requests, metrics)
}

/// A world where the Secret the test backups name is opted in.
fn world() -> Shared {
    Arc::new(Mutex::new(World {
        secrets: vec![("db".into(), json!({"vertice.io/allow-reference": "true"}))],
        ..World::default()
    }))
}

fn find<'a>(requests: &'a [Recorded], method: &str, path_part: &str) -> Vec<&'a Recorded> {
    requests
        .iter()
        .filter(|r| r.method == method && r.path.contains(path_part))
        .collect()
}

fn event_reasons(requests: &[Recorded]) -> Vec<String> {
    find(requests, "POST", "/events")
        .iter()
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn status_of(requests: &[Recorded]) -> Value {
    let patches = find(requests, "PATCH", "/verticebackups/orders/status");
    assert_eq!(patches.len(), 1, "one status patch expected: {requests:#?}");
    patches[0].body["status"].clone()
}

#[tokio::test]
async fn a_new_backup_gets_its_cron_job_and_a_status() {
    let world = world();
    let (requests, _) = reconcile(&world, backup(json!({}), Duration::minutes(5), None)).await;
    let applied = find(
        &requests,
        "PATCH",
        "/apis/batch/v1/namespaces/shop/cronjobs/vertice-orders",
    );
    assert_eq!(applied.len(), 1);
    assert!(
        applied[0].path.contains("fieldManager=vertice-controller")
            && applied[0].path.contains("force=true"),
        "server-side apply: {}",
        applied[0].path
    );
    let cron_job = &applied[0].body;
    assert_eq!(cron_job["metadata"]["ownerReferences"][0]["uid"], UID);
    assert_eq!(
        cron_job["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    assert_eq!(cron_job["spec"]["schedule"], "0 * * * *");
    assert_eq!(cron_job["spec"]["concurrencyPolicy"], "Forbid");
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Scheduled");
    assert_eq!(status["observedGeneration"], 3);
    assert!(status["nextBackup"].is_string());
    assert_eq!(event_reasons(&requests), ["CronJobCreated"]);
    // Lists are scoped to the backup's own children; one GET by name
    // checks that the CronJob's name is free, one reads the labels of the
    // Secret the backup names.
    let gets = find(&requests, "GET", "/namespaces/shop/");
    let by_name = [
        "/cronjobs/vertice-orders",
        "/api/v1/namespaces/shop/secrets/db",
    ];
    for path in by_name {
        assert_eq!(
            gets.iter().filter(|r| r.path.ends_with(path)).count(),
            1,
            "{path}"
        );
    }
    for list in gets
        .into_iter()
        .filter(|r| !by_name.iter().any(|p| r.path.ends_with(p)))
    {
        assert!(
            list.path
                .contains("labelSelector=vertice.io%2Fbackup%3Dorders"),
            "{}",
            list.path
        );
    }
}

#[tokio::test]
async fn an_unchanged_spec_is_reapplied_quietly_and_a_changed_one_is_announced() {
    let world = world();
    let (first, _) = reconcile(&world, backup(json!({}), Duration::minutes(5), None)).await;
    let applied = find(&first, "PATCH", "/cronjobs/vertice-orders")[0]
        .body
        .clone();
    let status = status_of(&first);
    world.lock().expect("world").cron_jobs.push(applied);

    let (second, _) = reconcile(
        &world,
        backup(json!({}), Duration::minutes(5), Some(status.clone())),
    )
    .await;
    // Re-applied unchanged, which puts back any hand edit of the CronJob;
    // nothing to announce.
    let reapplied = find(&second, "PATCH", "/cronjobs/vertice-orders");
    assert_eq!(reapplied.len(), 1);
    let first_spec = world.lock().expect("world").cron_jobs[0]["spec"].clone();
    assert_eq!(reapplied[0].body["spec"], first_spec);
    assert!(
        find(&second, "PATCH", "/status").is_empty(),
        "unchanged status re-written"
    );
    assert!(event_reasons(&second).is_empty());

    let changed = backup(
        json!({"schedule": {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}}),
        Duration::minutes(5),
        Some(status),
    );
    let (third, _) = reconcile(&world, changed).await;
    let applied = find(&third, "PATCH", "/cronjobs/vertice-orders");
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].body["spec"]["schedule"], "30 2 * * *");
    assert_eq!(applied[0].body["spec"]["timeZone"], "Europe/Berlin");
    assert_eq!(event_reasons(&third), ["CronJobUpdated"]);
}

#[tokio::test]
async fn suspend_suspends_the_cron_job_and_shows_it() {
    let world = world();
    let (requests, _) = reconcile(
        &world,
        backup(json!({"suspend": true}), Duration::days(3), None),
    )
    .await;
    assert_eq!(
        find(&requests, "PATCH", "/cronjobs/vertice-orders")[0].body["spec"]["suspend"],
        true
    );
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Suspended");
    assert!(
        status.get("nextBackup").is_none(),
        "a suspended backup has no next run: {status}"
    );
    // Suspended is deliberate: never overdue, however long.
    let overdue = condition(&status, "BackupOverdue");
    assert_eq!(overdue["status"], "False");
}

#[tokio::test]
async fn a_finished_job_fills_the_status_from_the_agent_summary() {
    let world = world();
    let finished = Utc::now() - Duration::minutes(10);
    let (job, pod) = finished_job(
        "orders",
        "vertice-orders-29000000",
        true,
        finished,
        json!({
            "command": "backup", "outcome": "succeeded", "backup_id": "20261127T100000Z-ab12",
            "started_at": ts(finished - Duration::seconds(95)), "finished_at": ts(finished),
            "duration_seconds": 95.2, "stored_bytes": 1234567, "raw_bytes": 7654321, "exit_code": 0
        }),
    );
    {
        let mut w = world.lock().expect("world");
        w.jobs.push(job);
        w.pods.push(pod);
    }
    let (requests, _) = reconcile(&world, backup(json!({}), Duration::days(1), None)).await;
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Healthy");
    let last = &status["lastSuccessfulBackup"];
    assert_eq!(last["backupId"], "20261127T100000Z-ab12");
    assert_eq!(last["storedBytes"], 1234567);
    assert_eq!(last["rawBytes"], 7654321);
    assert_eq!(last["durationSeconds"], 95.2);
    assert_eq!(status["lastBackup"], *last);
    assert_eq!(status["history"].as_array().map(Vec::len), Some(1));
    assert!(event_reasons(&requests).contains(&"BackupSucceeded".to_string()));
}

#[tokio::test]
async fn a_failed_job_reports_the_agent_error() {
    let world = world();
    let finished = Utc::now() - Duration::minutes(10);
    let (job, pod) = finished_job(
        "orders",
        "vertice-orders-29000001",
        false,
        finished,
        json!({
            "command": "backup", "outcome": "failed", "exit_code": 1, "error_category": "source",
            "error": "pg_dump: connection to server at \"db\" failed: FATAL: password authentication failed"
        }),
    );
    {
        let mut w = world.lock().expect("world");
        w.jobs.push(job);
        w.pods.push(pod);
    }
    let (requests, _) = reconcile(&world, backup(json!({}), Duration::minutes(30), None)).await;
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Failed");
    let last = condition(&status, "LastBackupSucceeded");
    assert_eq!(last["status"], "False");
    assert!(
        last["message"]
            .as_str()
            .expect("message")
            .contains("password authentication failed"),
        "{last}"
    );
    let events = find(&requests, "POST", "/events");
    let failed = events
        .iter()
        .find(|e| e.body["reason"] == "BackupFailed")
        .expect("BackupFailed event");
    assert_eq!(failed.body["type"], "Warning");
}

#[tokio::test]
async fn a_backup_that_never_ran_is_overdue() {
    let world = world();
    // Hourly schedule, created three hours ago, no Job ever ran.
    let (requests, metrics) = reconcile(&world, backup(json!({}), Duration::hours(3), None)).await;
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Overdue");
    let overdue = condition(&status, "BackupOverdue");
    assert_eq!(overdue["status"], "True");
    assert!(overdue["message"]
        .as_str()
        .expect("message")
        .contains("no successful backup yet"));
    let events = find(&requests, "POST", "/events");
    let event = events
        .iter()
        .find(|e| e.body["reason"] == "BackupOverdue")
        .expect("BackupOverdue event");
    assert_eq!(event.body["type"], "Warning");
    let rendered = metrics.render();
    assert!(
        rendered.contains(r#"vertice_backup_overdue{backup="orders",namespace="shop"} 1"#),
        "{rendered}"
    );
    assert!(
        rendered.contains(r#"vertice_backup_overdue_total{backup="orders",namespace="shop"} 1"#),
        "{rendered}"
    );

    // Once overdue, the next reconcile does not repeat the event.
    let (again, _) = reconcile(&world, backup(json!({}), Duration::hours(3), Some(status))).await;
    assert!(!event_reasons(&again).contains(&"BackupOverdue".to_string()));
}

#[tokio::test]
async fn cron_jobs_no_longer_desired_are_deleted() {
    let world = world();
    world.lock().expect("world").cron_jobs.push(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "orders-backup-old", "namespace": "shop",
                     "labels": {"vertice.io/backup": "orders"},
                     "ownerReferences": [{"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup", "name": "orders", "uid": UID, "controller": true}]},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}
    }));
    let (requests, _) = reconcile(&world, backup(json!({}), Duration::minutes(5), None)).await;
    let deleted = find(&requests, "DELETE", "/cronjobs/");
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].path.contains("/cronjobs/orders-backup-old"));
}

#[tokio::test]
async fn an_invalid_schedule_keeps_the_existing_cron_job_and_says_why() {
    let world = world();
    let (requests, _) = reconcile(
        &world,
        backup(
            json!({"schedule": {"cron": "0 0 3 * * *"}}),
            Duration::minutes(5),
            None,
        ),
    )
    .await;
    assert!(find(&requests, "PATCH", "/cronjobs/").is_empty());
    assert!(find(&requests, "DELETE", "/cronjobs/").is_empty());
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Invalid");
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert!(ready["message"]
        .as_str()
        .expect("message")
        .contains("spec.schedule.cron"));
    assert_eq!(event_reasons(&requests), ["InvalidSpec"]);
}

#[tokio::test]
async fn a_follower_reads_nothing_and_writes_nothing() {
    let world = world();
    let (requests, _) =
        reconcile_as(&world, backup(json!({}), Duration::hours(3), None), false).await;
    assert!(
        requests.is_empty(),
        "only the leader talks to the API server: {requests:#?}"
    );
}

/// Deposed after the reconcile began (it still reads as leading, but the
/// lease's validity has ended): it reads, then writes nothing at all, and
/// the error policy takes the refusal quietly.
#[tokio::test]
async fn a_leader_deposed_mid_reconcile_writes_nothing() {
    let world = world();
    let backup = backup(json!({}), Duration::minutes(5), None);
    world.lock().expect("world").backup = serde_json::to_value(&backup).expect("json");
    let client = support::client(world.clone());
    let metrics = Metrics::new().expect("metrics");
    let lapsed = leader::lapsed();
    let ctx = Arc::new(reconciler::Context {
        shared: vertice_controller::context::Shared {
            client: client.clone(),
            metrics: metrics.clone(),
            recorder: EventRecorder::new(client, "vertice-controller", "test"),
            leading: lapsed.leading(),
            tenancy: Arc::new(TenancyArgs::default()),
        },
        defaults: JobDefaults {
            agent_image: "ghcr.io/vertice/agent:test".into(),
            pushgateway_url: None,
        },
        secrets: Default::default(),
    });
    let backup = Arc::new(backup);
    let error = reconciler::reconcile(backup.clone(), ctx.clone())
        .await
        .expect_err("the write was refused");
    assert!(leader::refused(&error.source), "{error}");
    let requests = std::mem::take(&mut world.lock().expect("world").requests);
    assert!(
        requests.iter().any(|r| r.method == "GET"),
        "it read first: {requests:#?}"
    );
    let writes: Vec<&Recorded> = requests.iter().filter(|r| r.method != "GET").collect();
    assert!(writes.is_empty(), "a deposed leader wrote: {writes:#?}");
    reconciler::error_policy(backup, &error, ctx);
    tokio::task::yield_now().await;
    assert!(
        !metrics.render().contains("reconcile_errors_total{"),
        "a refusal is not a reconcile error: {}",
        metrics.render()
    );
    assert!(world.lock().expect("world").requests.is_empty());
}

#[tokio::test]
async fn a_foreign_cron_job_of_the_same_name_is_not_taken_over() {
    let world = world();
    world.lock().expect("world").unlabelled_cron_jobs.push(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "vertice-orders", "namespace": "shop"},
        "spec": {"schedule": "5 5 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}
    }));
    let (requests, _) = reconcile(&world, backup(json!({}), Duration::minutes(5), None)).await;
    assert!(
        find(&requests, "PATCH", "/cronjobs/").is_empty(),
        "a foreign CronJob was overwritten: {requests:#?}"
    );
    assert!(find(&requests, "DELETE", "/cronjobs/").is_empty());
    let status = status_of(&requests);
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("CronJobConflict"))
    );
    assert_eq!(event_reasons(&requests), ["CronJobConflict"]);
}

#[tokio::test]
async fn a_secret_its_owner_did_not_opt_in_gets_no_cron_job_or_job() {
    let world = world();
    world.lock().expect("world").secrets = vec![("db".into(), json!({"app": "orders"}))];
    // A run asked for is not started either.
    let mut refused = backup(json!({}), Duration::minutes(5), None);
    refused.metadata.annotations = Some(
        [("vertice.io/run-now".to_string(), "t1".to_string())]
            .into_iter()
            .collect(),
    );
    let (requests, _) = reconcile(&world, refused.clone()).await;
    assert!(
        find(&requests, "PATCH", "/cronjobs/").is_empty(),
        "a CronJob was written with a refused Secret: {requests:#?}"
    );
    assert!(find(&requests, "POST", "/jobs").is_empty());
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Invalid");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("SecretNotAllowed"))
    );
    assert_eq!(
        ready["message"],
        "spec.target.postgres.passwordSecretRef: Secret shop/db is not labelled \
         vertice.io/allow-reference=true (or does not exist): Vertice uses only Secrets their \
         owners opted in (someone who may edit the Secret runs `kubectl label secret db -n shop \
         vertice.io/allow-reference=true`)"
    );
    let events = find(&requests, "POST", "/events");
    assert_eq!(event_reasons(&requests), ["SecretNotAllowed"]);
    assert_eq!(events[0].body["type"], "Warning");

    // The same refusal again: no second Event.
    let (again, _) = reconcile(
        &world,
        backup(json!({}), Duration::minutes(5), Some(status)),
    )
    .await;
    assert!(
        event_reasons(&again).is_empty(),
        "{:?}",
        event_reasons(&again)
    );

    // The owner labels it: the CronJob is written.
    let world = self::world();
    let (requests, _) = reconcile(&world, backup(json!({}), Duration::minutes(5), None)).await;
    assert_eq!(
        find(&requests, "PATCH", "/cronjobs/vertice-orders").len(),
        1
    );
}

#[tokio::test]
async fn pod_settings_the_administrator_did_not_allow_get_no_cron_job() {
    let world = world();
    let hostile = backup(
        json!({"pod": {"serviceAccountName": "vault-auth"}}),
        Duration::minutes(5),
        None,
    );
    let (requests, _) = reconcile(&world, hostile.clone()).await;
    assert!(find(&requests, "PATCH", "/cronjobs/").is_empty());
    let status = status_of(&requests);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "NotAllowedByAdmin");
    assert_eq!(
        ready["message"],
        "spec.pod.serviceAccountName vault-auth is not allowed by the administrator \
         (--allowed-service-accounts / chart tenancy.allowedServiceAccounts)"
    );
    assert_eq!(event_reasons(&requests), ["NotAllowedByAdmin"]);

    let allowed = TenancyArgs {
        allowed_service_accounts: vec!["vault-auth".into()],
        ..TenancyArgs::default()
    };
    let (requests, _) = reconcile_under(&world, hostile, true, allowed).await;
    let applied = find(&requests, "PATCH", "/cronjobs/vertice-orders");
    assert_eq!(applied.len(), 1);
    let pod = &applied[0].body["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "vault-auth");
    assert_eq!(pod["automountServiceAccountToken"], false);
}

/// A CronJob the API server still refuses (a time zone its tz database does
/// not know, say) is Invalid with the server's reason, said once, and looked
/// at again in minutes: not a Warning every 30 seconds with an empty phase.
#[tokio::test]
async fn a_cron_job_the_api_server_refuses_makes_the_backup_invalid_once() {
    let world = world();
    world.lock().expect("world").refuse_cron_jobs = Some(
        "CronJob.batch \"orders-backup\" is invalid: spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus".into(),
    );
    let (requests, metrics) =
        reconcile(&world, backup(json!({}), Duration::minutes(5), None)).await;
    let status = status_of(&requests);
    assert_eq!(status["phase"], "Invalid");
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "CronJobRefused");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.timeZone") && message.contains("spec.schedule"),
        "{message}"
    );
    assert_eq!(event_reasons(&requests), ["CronJobRefused"]);
    assert!(metrics
        .render()
        .contains("vertice_backup_invalid{backup=\"orders\",namespace=\"shop\"} 1"));
    // The next reconcile, with that status, says nothing new.
    let (requests, _) = reconcile(
        &world,
        backup(json!({}), Duration::minutes(5), Some(status)),
    )
    .await;
    assert!(event_reasons(&requests).is_empty(), "{requests:#?}");
}

/// While the API server keeps refusing the CronJob, the status written once
/// stays as it is: Ready stays False with its first transition time, so no
/// reconcile writes it again (the watch would bring it back each second).
/// What the plan found meanwhile (a finished run) is still said.
#[tokio::test]
async fn a_refused_cron_job_writes_the_status_once_and_still_reports_runs() {
    let world = world();
    world.lock().expect("world").refuse_cron_jobs = Some(
        "CronJob.batch \"orders-backup\" is invalid: spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus".into(),
    );
    let (requests, _) = reconcile(&world, backup(json!({}), Duration::minutes(5), None)).await;
    let first = status_of(&requests);
    let (requests, _) = reconcile(
        &world,
        backup(json!({}), Duration::minutes(5), Some(first.clone())),
    )
    .await;
    assert!(
        find(&requests, "PATCH", "/verticebackups/orders/status").is_empty(),
        "an unchanged refusal writes no status: {requests:#?}"
    );
    assert!(event_reasons(&requests).is_empty(), "{requests:#?}");

    // A run finishes while the refusal lasts: recorded and said, once.
    let (job, pod) = finished_job(
        "orders",
        "orders-manual-1",
        true,
        Utc::now() - Duration::minutes(1),
        json!({"command": "backup", "outcome": "succeeded", "backup_id": "b-1", "duration_seconds": 12.0}),
    );
    {
        let mut w = world.lock().expect("world");
        w.jobs.push(job);
        w.pods.push(pod);
    }
    let (requests, _) = reconcile(
        &world,
        backup(json!({}), Duration::minutes(5), Some(first.clone())),
    )
    .await;
    let second = status_of(&requests);
    assert_eq!(second["history"][0]["job"], "orders-manual-1");
    assert_eq!(second["history"][0]["backupId"], "b-1");
    assert_eq!(
        condition(&second, "Ready")["lastTransitionTime"],
        condition(&first, "Ready")["lastTransitionTime"]
    );
    assert_eq!(event_reasons(&requests), ["BackupSucceeded"]);
    // A run asked for meanwhile waits, unannounced: no Job starts.
    let mut asked = backup(json!({}), Duration::minutes(5), Some(second));
    asked.metadata.annotations = Some([("vertice.io/run-now".into(), "t9".into())].into());
    let (requests, _) = reconcile(&world, asked).await;
    assert!(
        find(&requests, "PATCH", "/verticebackups/orders/status").is_empty(),
        "{requests:#?}"
    );
    assert!(find(&requests, "POST", "/jobs").is_empty(), "{requests:#?}");
    assert!(event_reasons(&requests).is_empty(), "{requests:#?}");
}
