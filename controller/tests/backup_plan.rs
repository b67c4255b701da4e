//! The pure plan over time: history, Jobs that were garbage-collected,
//! requeue timing, overdue by the clock, and suspend/resume events.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use support::{finished_job, ts};
use vertice_controller::backup::{self, Admission, JobDefaults, Observed, Plan, MAX_REQUEUE};
use vertice_controller::config::TenancyArgs;
use vertice_controller::secret_labels::SecretsSeen;
use vertice_crds::backup_status::{BackupPhase, HISTORY_LIMIT};
use vertice_crds::VerticeBackup;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0)
        .single()
        .expect("time")
}

fn backup(
    cron: &str,
    created: DateTime<Utc>,
    suspend: bool,
    status: Option<Value>,
) -> VerticeBackup {
    let mut object = json!({
        "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "u-1", "generation": 1, "creationTimestamp": ts(created)},
        "spec": {"target": {"redis": {"host": "cache"}}, "schedule": {"cron": cron, "overdueAfter": "30m"},
                 "store": {"s3": {"bucket": "b"}}, "suspend": suspend},
    });
    if let Some(s) = status {
        object["status"] = s;
    }
    serde_json::from_value(object).expect("backup")
}

/// The plan under the default tenancy rules; these backups name no Secret.
fn plan(b: &VerticeBackup, o: &Observed, d: &JobDefaults, now: DateTime<Utc>) -> Plan {
    let tenancy = TenancyArgs::default();
    let secrets = SecretsSeen::default();
    let admission = Admission {
        tenancy: &tenancy,
        secrets: &secrets,
    };
    backup::plan(b, o, d, &admission, now)
}

fn defaults() -> JobDefaults {
    JobDefaults {
        agent_image: "agent:1".into(),
        pushgateway_url: None,
    }
}

fn observed(jobs: Vec<(Value, Value)>) -> Observed {
    let (jobs, pods): (Vec<Value>, Vec<Value>) = jobs.into_iter().unzip();
    Observed {
        jobs: jobs
            .into_iter()
            .map(|j| serde_json::from_value(j).expect("job"))
            .collect(),
        pods: pods
            .into_iter()
            .map(|p| serde_json::from_value(p).expect("pod"))
            .collect(),
    }
}

fn ok_summary(id: &str, finished: DateTime<Utc>) -> Value {
    json!({"command": "backup", "outcome": "succeeded", "backup_id": id, "finished_at": ts(finished), "duration_seconds": 10.0, "stored_bytes": 100, "exit_code": 0})
}

#[test]
fn history_is_bounded_and_survives_job_garbage_collection() {
    let created = at(0, 0);
    let mut status: Option<Value> = None;
    // Twelve hourly runs, each seen once while its Job exists.
    for h in 0..12u32 {
        let finished = at(h, 5);
        let job = finished_job(
            "orders",
            &format!("vertice-orders-{h}"),
            true,
            finished,
            ok_summary(&format!("id-{h}"), finished),
        );
        let p = plan(
            &backup("0 * * * *", created, false, status.clone()),
            &observed(vec![job]),
            &defaults(),
            finished + Duration::minutes(1),
        );
        status = Some(serde_json::to_value(&p.status).expect("status"));
    }
    let status: vertice_crds::VerticeBackupStatus =
        serde_json::from_value(status.expect("status")).expect("status");
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    assert_eq!(
        status.history[0].backup_id.as_deref(),
        Some("id-11"),
        "newest first"
    );
    assert_eq!(
        status
            .last_successful_backup
            .as_ref()
            .and_then(|b| b.backup_id.as_deref()),
        Some("id-11")
    );

    // All Jobs gone (history limits): the record of the last success stays.
    let later = plan(
        &backup(
            "0 * * * *",
            created,
            false,
            Some(serde_json::to_value(&status).expect("json")),
        ),
        &Observed::default(),
        &defaults(),
        at(11, 20),
    );
    assert_eq!(
        later.status.last_successful_backup,
        status.last_successful_backup
    );
    assert_eq!(later.status.phase, Some(BackupPhase::Healthy));
    assert!(
        later.events.is_empty(),
        "nothing new happened: {:?}",
        later.events
    );
}

#[test]
fn overdue_comes_from_the_clock_and_clears_with_a_success() {
    let created = at(0, 0);
    // Daily at 03:00 with 30m grace: at 03:20 nothing is due, at 03:40 it is.
    let early = plan(
        &backup("0 3 * * *", created, false, None),
        &Observed::default(),
        &defaults(),
        at(3, 20),
    );
    assert_ne!(early.status.phase, Some(BackupPhase::Overdue));
    assert_eq!(
        early.status.next_backup,
        Some(at(3, 20) + Duration::hours(23) + Duration::minutes(40))
    );
    // It looks again when the 03:00 run becomes due, not in 23 hours.
    assert_eq!(
        early.requeue_after,
        std::time::Duration::from_secs(10 * 60).min(MAX_REQUEUE)
    );

    let late = plan(
        &backup("0 3 * * *", created, false, None),
        &Observed::default(),
        &defaults(),
        at(3, 40),
    );
    assert_eq!(late.status.phase, Some(BackupPhase::Overdue));
    assert_eq!(late.overdue_since, Some(at(3, 0)));
    assert!(late
        .events
        .iter()
        .any(|e| e.reason == "BackupOverdue" && e.warning));

    let status = Some(serde_json::to_value(&late.status).expect("json"));
    let job = finished_job(
        "orders",
        "vertice-orders-1",
        true,
        at(3, 50),
        ok_summary("id-1", at(3, 50)),
    );
    let recovered = plan(
        &backup("0 3 * * *", created, false, status),
        &observed(vec![job]),
        &defaults(),
        at(3, 55),
    );
    assert_eq!(recovered.status.phase, Some(BackupPhase::Healthy));
    assert!(recovered
        .events
        .iter()
        .any(|e| e.reason == "BackupOnSchedule" && !e.warning));
    assert_eq!(recovered.overdue_since, None);
}

#[test]
fn a_late_success_does_not_cover_an_earlier_missed_run() {
    // Hourly with 30m grace; the last success was at 01:05, now it is 03:45:
    // the 03:00 run is due and nothing succeeded after it.
    let job = finished_job(
        "orders",
        "vertice-orders-1",
        true,
        at(1, 5),
        ok_summary("id-1", at(1, 5)),
    );
    let p = plan(
        &backup("0 * * * *", at(0, 0), false, None),
        &observed(vec![job]),
        &defaults(),
        at(3, 45),
    );
    assert_eq!(p.overdue_since, Some(at(3, 0)));
    assert_eq!(p.status.phase, Some(BackupPhase::Overdue));
}

#[test]
fn suspend_and_resume_are_events() {
    let created = at(0, 0);
    let running = plan(
        &backup("0 3 * * *", created, false, None),
        &Observed::default(),
        &defaults(),
        at(1, 0),
    );
    let status = Some(serde_json::to_value(&running.status).expect("json"));
    let suspended = plan(
        &backup("0 3 * * *", created, true, status),
        &Observed::default(),
        &defaults(),
        at(5, 0),
    );
    assert_eq!(suspended.status.phase, Some(BackupPhase::Suspended));
    assert!(suspended.events.iter().any(|e| e.reason == "Suspended"));
    assert_eq!(
        suspended.cron_job.as_ref().and_then(|c| c.spec.suspend),
        Some(true)
    );
    let status = Some(serde_json::to_value(&suspended.status).expect("json"));
    let resumed = plan(
        &backup("0 3 * * *", created, false, status),
        &Observed::default(),
        &defaults(),
        at(5, 1),
    );
    assert!(resumed.events.iter().any(|e| e.reason == "Resumed"));
    // The 03:00 run fell in the suspension: not overdue after resuming.
    assert_ne!(resumed.status.phase, Some(BackupPhase::Overdue));
    assert_eq!(resumed.status.resumed_at, Some(at(5, 1)));
    // The first run after resuming is due as usual.
    let status = Some(serde_json::to_value(&resumed.status).expect("json"));
    let next_day = at(3, 40) + Duration::days(1);
    let late = plan(
        &backup("0 3 * * *", created, false, status),
        &Observed::default(),
        &defaults(),
        next_day,
    );
    assert_eq!(late.status.phase, Some(BackupPhase::Overdue));
}

#[test]
fn a_running_job_shows_as_running() {
    let mut job = finished_job("orders", "vertice-orders-2", true, at(3, 1), json!({})).0;
    job["status"] = json!({"active": 1, "startTime": ts(at(3, 0))});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    let p = plan(
        &backup("0 3 * * *", at(0, 0), false, None),
        &observed(vec![(job, pod)]),
        &defaults(),
        at(3, 2),
    );
    assert_eq!(p.status.phase, Some(BackupPhase::Running));
    assert!(p.status.history.is_empty());
}

#[test]
fn a_refused_backup_plans_no_cron_job_drill_or_run_and_looks_again_soon() {
    let mut object =
        serde_json::to_value(backup("0 * * * *", at(0, 0), false, None)).expect("json");
    object["metadata"]["annotations"] =
        json!({"vertice.io/run-now": "t1", "vertice.io/drill-now": "t2"});
    object["spec"]["target"] =
        json!({"redis": {"host": "cache", "passwordSecretRef": {"name": "cache", "key": "pw"}}});
    object["spec"]["drill"] = json!({"schedule": {"cron": "@weekly"}});
    let refused: VerticeBackup = serde_json::from_value(object.clone()).expect("backup");
    // Nobody opted the Secret in (the default tenancy, nothing read).
    let p = plan(&refused, &observed(vec![]), &defaults(), at(0, 1));
    assert_eq!(
        (&p.cron_job, &p.drill_cron_job, &p.run_now, &p.drill_now),
        (&None, &None, &None, &None)
    );
    assert_eq!(p.status.phase, Some(BackupPhase::Invalid));
    assert_eq!(
        p.refused.as_ref().map(|r| r.reason()),
        Some("SecretNotAllowed")
    );
    assert!(p.requeue_after <= std::time::Duration::from_secs(60));
    let reasons: Vec<&str> = p.events.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["SecretNotAllowed"]);

    // An image of the tenant's choosing: refused too, for its own reason.
    object["spec"]["target"] = json!({"redis": {"host": "cache"}});
    object["spec"]["pod"] = json!({"image": "attacker/agent:latest"});
    let refused: VerticeBackup = serde_json::from_value(object).expect("backup");
    let p = plan(&refused, &observed(vec![]), &defaults(), at(0, 1));
    assert_eq!((&p.cron_job, &p.run_now), (&None, &None));
    assert_eq!(
        p.refused.as_ref().map(|r| r.reason()),
        Some("NotAllowedByAdmin")
    );
}
