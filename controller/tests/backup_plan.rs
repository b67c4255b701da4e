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
    let on_schedule = condition(&recovered, "BackupOverdue");
    assert!(
        on_schedule.message.contains("succeeded at 2026")
            && on_schedule.message.contains("no scheduled run is overdue"),
        "{}",
        on_schedule.message
    );
    // Before any success and before any run is due, it claims no success.
    let fresh = condition(&early, "BackupOverdue");
    assert_eq!(
        fresh.message,
        "no backup has succeeded yet; no scheduled run is overdue yet"
    );
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
        suspended
            .backup
            .cron_job
            .as_ref()
            .and_then(|c| c.spec.suspend),
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
        (
            &p.backup.cron_job,
            &p.drill.cron_job,
            &p.backup.run_now,
            &p.drill.run_now
        ),
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
    assert_eq!((&p.backup.cron_job, &p.backup.run_now), (&None, &None));
    assert_eq!(
        p.refused.as_ref().map(|r| r.reason()),
        Some("NotAllowedByAdmin")
    );
}

/// An unfinished Job of the backup and its pod with `pod_status`.
fn active_job(job: &str, pod_status: Value) -> (Value, Value) {
    let (mut job_object, mut pod) = finished_job("orders", job, true, at(3, 1), json!({}));
    job_object["status"] = json!({"active": 1, "startTime": ts(at(3, 0))});
    pod["status"] = pod_status;
    (job_object, pod)
}

fn condition<'a>(p: &'a Plan, type_: &str) -> &'a vertice_crds::common::Condition {
    p.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition")
}

#[test]
fn a_schedule_that_never_fires_is_invalid_and_judges_nothing_overdue() {
    let p = plan(
        &backup("0 0 31 2 *", at(0, 0), false, None),
        &observed(vec![]),
        &defaults(),
        at(3, 0),
    );
    assert_eq!(p.backup.cron_job, None);
    assert_eq!(p.status.phase, Some(BackupPhase::Invalid));
    let ready = condition(&p, "Ready");
    assert!(
        ready.message.contains("spec.schedule.cron") && ready.message.contains("never fires"),
        "{}",
        ready.message
    );
    let overdue = condition(&p, "BackupOverdue");
    assert_eq!(
        overdue.status,
        vertice_crds::common::ConditionStatus::Unknown
    );
    assert_eq!(p.status.next_backup, None);
    let reasons: Vec<&str> = p.events.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["InvalidSpec"]);
    assert_eq!(p.requeue_after, MAX_REQUEUE);
    // Said once: the next reconcile of the same spec adds no Event.
    let again = backup(
        "0 0 31 2 *",
        at(0, 0),
        false,
        Some(serde_json::to_value(&p.status).expect("status")),
    );
    let p = plan(&again, &observed(vec![]), &defaults(), at(3, 5));
    assert!(p.events.is_empty(), "{:?}", p.events);
}

#[test]
fn a_pod_that_cannot_start_blocks_the_run_and_names_the_secret() {
    let waiting = json!({"phase": "Pending", "containerStatuses": [{
        "name": "agent", "ready": false, "restartCount": 0, "image": "agent", "imageID": "",
        "state": {"waiting": {"reason": "CreateContainerConfigError",
                              "message": "secret \"db\" not found"}}}]});
    let p = plan(
        &backup("0 3 * * *", at(0, 0), false, None),
        &observed(vec![active_job("vertice-orders-1", waiting)]),
        &defaults(),
        at(3, 2),
    );
    assert_eq!(p.status.phase, Some(BackupPhase::Blocked));
    let blocked = condition(&p, "RunBlocked");
    assert!(blocked.is_true());
    assert_eq!(blocked.reason, "CreateContainerConfigError");
    assert!(
        blocked.message.contains("secret \"db\" not found"),
        "{}",
        blocked.message
    );
    assert!(p
        .events
        .iter()
        .any(|e| e.reason == "RunBlocked" && e.warning));
    // Looked at again within a minute: nothing watches pods.
    assert!(p.requeue_after <= std::time::Duration::from_secs(30));
    // Said once per Job, though the kubelet's reason flips.
    let pulling = json!({"phase": "Pending", "containerStatuses": [{
        "name": "agent", "ready": false, "restartCount": 0, "image": "agent", "imageID": "",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]});
    let again = backup(
        "0 3 * * *",
        at(0, 0),
        false,
        Some(serde_json::to_value(&p.status).expect("status")),
    );
    let p = plan(
        &again,
        &observed(vec![active_job("vertice-orders-1", pulling)]),
        &defaults(),
        at(3, 3),
    );
    assert_eq!(condition(&p, "RunBlocked").reason, "ImagePullBackOff");
    assert!(
        p.events.iter().all(|e| e.reason != "RunBlocked"),
        "{:?}",
        p.events
    );

    // Running pods do not block.
    let p = plan(
        &backup("0 3 * * *", at(0, 0), false, None),
        &observed(vec![active_job(
            "vertice-orders-1",
            json!({"phase": "Running"}),
        )]),
        &defaults(),
        at(3, 2),
    );
    assert_eq!(p.status.phase, Some(BackupPhase::Running));
    assert!(!condition(&p, "RunBlocked").is_true());
}

#[test]
fn an_evicted_run_is_interrupted() {
    let (mut job, mut pod) = finished_job("orders", "vertice-orders-1", false, at(3, 1), json!({}));
    job["status"]["conditions"][0]["reason"] = json!("PodFailurePolicy");
    job["status"]["conditions"][0]["message"] =
        json!("Pod shop/vertice-orders-1-abcde has condition DisruptionTarget matching FailJob rule at index 0");
    // Killed before it could write a summary.
    pod["status"] = json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]});
    let p = plan(
        &backup("0 3 * * *", at(0, 0), false, None),
        &observed(vec![(job, pod)]),
        &defaults(),
        at(3, 2),
    );
    let last = p.status.last_backup.expect("a record");
    assert_eq!(last.error_category.as_deref(), Some("interrupted"));
    let message = last.message.unwrap_or_default();
    assert!(message.contains("EvictionByEvictionAPI"), "{message}");
}

#[test]
fn run_now_waits_while_a_run_is_active_and_starts_when_it_ends() {
    let with_token = |token: &str, status: Option<Value>| {
        let mut object =
            serde_json::to_value(backup("0 3 * * *", at(0, 0), false, status)).expect("json");
        object["metadata"]["annotations"] = json!({"vertice.io/run-now": token});
        serde_json::from_value::<VerticeBackup>(object).expect("backup")
    };
    let running = observed(vec![active_job(
        "vertice-orders-1",
        json!({"phase": "Running"}),
    )]);
    let p = plan(&with_token("t1", None), &running, &defaults(), at(3, 2));
    assert_eq!(
        p.backup.run_now, None,
        "no second run beside the active one"
    );
    let queued = p.status.run_now_queued.clone().expect("queued");
    assert_eq!(
        (queued.token.as_str(), queued.waiting_for.as_str()),
        ("t1", "vertice-orders-1")
    );
    let reasons: Vec<&str> = p.events.iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"RunNowQueued"), "{reasons:?}");
    let status = serde_json::to_value(&p.status).expect("status");

    // A newer request replaces the waiting one; the same one is not announced again.
    let p = plan(
        &with_token("t1", Some(status.clone())),
        &running,
        &defaults(),
        at(3, 3),
    );
    assert!(p.events.iter().all(|e| e.reason != "RunNowQueued"));
    let p2 = plan(
        &with_token("t2", Some(status.clone())),
        &running,
        &defaults(),
        at(3, 3),
    );
    assert_eq!(p2.status.run_now_queued.map(|q| q.token), Some("t2".into()));

    // The active run ended: the waiting request starts, alone.
    let ended = observed(vec![finished_job(
        "orders",
        "vertice-orders-1",
        true,
        at(3, 4),
        ok_summary("b1", at(3, 4)),
    )]);
    let p = plan(
        &with_token("t1", Some(status)),
        &ended,
        &defaults(),
        at(3, 5),
    );
    let job = p.backup.run_now.clone().expect("the queued run starts");
    assert_eq!(p.status.run_now_queued, None);
    assert_eq!(p.status.run_now.clone().map(|r| r.job), job.metadata.name);
    // The CronJob holds its scheduled runs while the on-demand one runs...
    let suspended = |p: &Plan| p.backup.cron_job.as_ref().and_then(|c| c.spec.suspend);
    assert_eq!(suspended(&p), Some(true));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let mut on_demand = serde_json::to_value(&job).expect("job");
    on_demand["status"] = json!({"active": 1});
    let status = serde_json::to_value(&p.status).expect("status");
    let p = plan(
        &with_token("t1", Some(status.clone())),
        &observed(vec![(on_demand.clone(), pod.clone())]),
        &defaults(),
        at(3, 6),
    );
    assert_eq!((suspended(&p), &p.backup.run_now), (Some(true), &None));
    // ...and resumes them when it ends.
    on_demand["status"] = json!({"conditions": [{"type": "Complete", "status": "True",
                                                  "lastTransitionTime": ts(at(3, 7))}]});
    let p = plan(
        &with_token("t1", Some(status)),
        &observed(vec![(on_demand, pod)]),
        &defaults(),
        at(3, 8),
    );
    assert_eq!(suspended(&p), Some(false));
}

/// A request queued behind a run does not start when that run ends if the
/// backup was suspended meanwhile: it waits, saying so, for the resume.
#[test]
fn a_queued_run_now_waits_for_the_resume_when_suspended_meanwhile() {
    let with = |token: &str, suspend: bool, status: Option<Value>| {
        let mut object =
            serde_json::to_value(backup("0 3 * * *", at(0, 0), suspend, status)).expect("json");
        object["metadata"]["annotations"] = json!({"vertice.io/run-now": token});
        serde_json::from_value::<VerticeBackup>(object).expect("backup")
    };
    let running = observed(vec![active_job(
        "vertice-orders-1",
        json!({"phase": "Running"}),
    )]);
    let p = plan(&with("t1", false, None), &running, &defaults(), at(3, 2));
    assert!(p.status.run_now_queued.is_some());
    let status = serde_json::to_value(&p.status).expect("status");

    // Suspended while t1 waits; then the active run ends.
    let ended = observed(vec![finished_job(
        "orders",
        "vertice-orders-1",
        true,
        at(3, 4),
        ok_summary("b1", at(3, 4)),
    )]);
    let p = plan(
        &with("t1", true, Some(status)),
        &ended,
        &defaults(),
        at(3, 5),
    );
    assert_eq!(p.backup.run_now, None, "no run starts while suspended");
    let queued = p.status.run_now_queued.clone().expect("still queued");
    assert_eq!(queued.token, "t1");
    assert!(queued.waiting_for.contains("resumed"), "{queued:?}");
    assert_eq!(queued.queued_at, at(3, 2), "its first time is kept");
    let said: Vec<&str> = p
        .events
        .iter()
        .filter(|e| e.reason == "RunNowQueued")
        .map(|e| e.note.as_str())
        .collect();
    assert!(said.len() == 1 && said[0].contains("resumed"), "{said:?}");
    let status = serde_json::to_value(&p.status).expect("status");
    // Said once, and still held on the next pass.
    let p = plan(
        &with("t1", true, Some(status.clone())),
        &ended,
        &defaults(),
        at(3, 6),
    );
    assert_eq!(p.backup.run_now, None);
    assert!(p.events.iter().all(|e| e.reason != "RunNowQueued"));
    assert_eq!(serde_json::to_value(&p.status).expect("status"), status);

    // Resumed: it starts.
    let p = plan(
        &with("t1", false, Some(status.clone())),
        &ended,
        &defaults(),
        at(3, 7),
    );
    assert!(
        p.backup.run_now.is_some(),
        "the queued run starts once resumed"
    );
    assert_eq!(p.status.run_now_queued, None);
    // A new request starts even while suspended, as any request does.
    let p = plan(
        &with("t2", true, Some(status)),
        &ended,
        &defaults(),
        at(3, 7),
    );
    assert!(p.backup.run_now.is_some());
    assert_eq!(p.status.run_now_queued, None);
}
