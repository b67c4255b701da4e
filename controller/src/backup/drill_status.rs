//! The drill part of a `VerticeBackup`'s status: drill history from the
//! drill Jobs and their run summaries, the last verified backup, the worst
//! recent RTO, and whether the newest verified backup is too old. Pure, like
//! `status::compute`, whose result it completes.

use chrono::{DateTime, Duration, Utc};
use vertice_crds::backup_status::{
    condition, BackupResult, DrillRecord, VerticeBackupStatus, DRILL_HISTORY_LIMIT,
};
use vertice_crds::common::{find_condition, remove_condition, Condition};
use vertice_crds::drill_spec::{DrillSpec, DEFAULT_MAX_UNVERIFIED_AGE};
use vertice_crds::VerticeBackup;

use super::scheduled_run::RunKind;
use super::status::{finished, latest_summary, Event, Observed};
use crate::schedule::ParsedSchedule;
use crate::shared::set_observed;

pub mod reason {
    pub const DRILL_SUCCEEDED: &str = "DrillSucceeded";
    pub const DRILL_FAILED: &str = "DrillFailed";
    pub const BACKUP_UNVERIFIED: &str = "BackupUnverified";
    pub const BACKUP_VERIFIED: &str = "BackupVerified";
}

/// Failed check names kept per record.
const MAX_FAILED_CHECKS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct DrillUpdate {
    pub events: Vec<Event>,
    /// The newest verified backup is older than `maxUnverifiedAge`.
    pub unverified: bool,
    /// When it will become so, if nothing passes before: look again then.
    pub unverified_at: Option<DateTime<Utc>>,
}

/// Completes `status` (already computed for the backups) with the drills.
/// `schedule` is the drill's, when `spec.drill` is set and valid.
pub fn update(
    backup: &VerticeBackup,
    status: &mut VerticeBackupStatus,
    schedule: Option<&ParsedSchedule>,
    drill_cron_job: &str,
    observed: &Observed,
    now: DateTime<Utc>,
) -> DrillUpdate {
    let previous = backup.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    let Some(drill) = &backup.spec.drill else {
        // Past drills stay on record; nothing is claimed about the future.
        status.drill_cron_job = None;
        status.next_drill = None;
        remove_condition(&mut status.conditions, condition::BACKUP_VERIFIED);
        return DrillUpdate {
            events,
            unverified: false,
            unverified_at: None,
        };
    };
    status.drill_cron_job = Some(drill_cron_job.to_string());
    events.extend(record_drills(&previous, status, observed));
    let suspended = backup.spec.suspend || drill.suspend;
    status.next_drill = schedule
        .filter(|_| !suspended)
        .and_then(|s| s.next_after(now));

    let (unverified, unverified_at) =
        verification(backup, drill, &previous, status, &mut events, now);
    DrillUpdate {
        events,
        unverified,
        unverified_at: (!unverified).then_some(unverified_at),
    }
}

/// Finished drill Jobs become drill history, each with its Event; the last
/// drill, the last verified backup and the worst recent RTO follow.
fn record_drills(
    previous: &VerticeBackupStatus,
    status: &mut VerticeBackupStatus,
    observed: &Observed,
) -> Vec<Event> {
    let drilled = |r: &DrillRecord| r.drilled_at;
    let found = observed
        .jobs
        .iter()
        .filter(|j| RunKind::of(j) == RunKind::Drill)
        .filter_map(|j| record_of(j, observed));
    let fresh = super::history::unseen(&previous.drill_history, found, |r| &r.job, drilled);
    let events: Vec<Event> = fresh.iter().map(drill_event).collect();
    let history =
        super::history::merge(&previous.drill_history, fresh, drilled, DRILL_HISTORY_LIMIT);
    super::history::keep_newest(&mut status.last_drill, history.first(), drilled);
    super::history::keep_newest(
        &mut status.last_verified_backup,
        history.iter().find(|r| r.result == BackupResult::Succeeded),
        drilled,
    );
    status.worst_recent_rto = history
        .iter()
        .filter(|r| r.result == BackupResult::Succeeded)
        .filter_map(|r| r.restore_seconds)
        .reduce(f64::max)
        .map(format_seconds);
    status.drill_history = history;
    events
}

/// BackupVerified: whether the newest verified backup is recent enough
/// (`maxUnverifiedAge`); a Warning when it turns unverified. Whether it is
/// unverified now, and when it is (or will be).
fn verification(
    backup: &VerticeBackup,
    drill: &DrillSpec,
    previous: &VerticeBackupStatus,
    status: &mut VerticeBackupStatus,
    events: &mut Vec<Event>,
    now: DateTime<Utc>,
) -> (bool, DateTime<Utc>) {
    // Unverified: the newest verified backup was taken too long ago (or,
    // with none verified, the resource has existed that long).
    let max_age = max_unverified_age(drill);
    let verified = status.last_verified_backup.as_ref();
    let reference = verified_since(backup, verified, now);
    let unverified_at = reference + max_age;
    let unverified = now >= unverified_at;
    // Only an earlier BackupUnverified counts: before its first drill a
    // backup's condition is False too, with reason BackupVerified, and its
    // turning unverified must still raise the event.
    let was_unverified = find_condition(&previous.conditions, condition::BACKUP_VERIFIED)
        .is_some_and(|c| !c.is_true() && c.reason == reason::BACKUP_UNVERIFIED);
    let last_failed = last_failed(status);
    let condition = if unverified {
        let message = unverified_message(verified, reference, &last_failed);
        if !was_unverified {
            events.push(Event::warning(reason::BACKUP_UNVERIFIED, message.as_str()));
        }
        Condition::new(
            condition::BACKUP_VERIFIED,
            false,
            reason::BACKUP_UNVERIFIED,
            message,
            now,
        )
    } else {
        let message = verified_message(verified, reference, unverified_at, &last_failed);
        Condition::new(
            condition::BACKUP_VERIFIED,
            verified.is_some(),
            reason::BACKUP_VERIFIED,
            message,
            now,
        )
    };
    set_observed(
        &mut status.conditions,
        backup.metadata.generation,
        condition,
    );
    (unverified, unverified_at)
}

/// What the age is measured from: when the newest verified backup was
/// taken or, with none verified, when the resource was created.
fn verified_since(
    backup: &VerticeBackup,
    verified: Option<&DrillRecord>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    verified
        .map(|v| v.backup_finished_at.unwrap_or(v.drilled_at))
        .or_else(|| {
            backup
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| crate::shared::t_to_chrono(&t.0))
        })
        .unwrap_or(now)
}

/// The BackupVerified message once the backup is unverified.
fn unverified_message(
    verified: Option<&DrillRecord>,
    reference: DateTime<Utc>,
    last_failed: &str,
) -> String {
    match verified {
        Some(v) => format!(
            "the newest verified backup ({}) was taken at {}, longer ago than maxUnverifiedAge{last_failed}",
            v.backup_id.as_deref().unwrap_or("?"),
            reference.to_rfc3339()
        ),
        None => format!("no backup has been verified by a drill within maxUnverifiedAge{last_failed}"),
    }
}

/// The BackupVerified message while the backup is recent enough.
fn verified_message(
    verified: Option<&DrillRecord>,
    reference: DateTime<Utc>,
    unverified_at: DateTime<Utc>,
    last_failed: &str,
) -> String {
    match verified {
        Some(v) => format!(
            "backup {} (taken {}) restored in {} at {}{last_failed}",
            v.backup_id.as_deref().unwrap_or("?"),
            reference.to_rfc3339(),
            v.restore_seconds
                .map(format_seconds)
                .unwrap_or_else(|| "?".into()),
            v.drilled_at.to_rfc3339()
        ),
        None => format!(
            "no drill has passed yet; unverified from {}",
            unverified_at.to_rfc3339()
        ),
    }
}

/// `; the last drill (job) failed: why` when it did, else empty: added to
/// the BackupVerified message either way.
fn last_failed(status: &VerticeBackupStatus) -> String {
    status
        .last_drill
        .as_ref()
        .filter(|d| d.result == BackupResult::Failed)
        .map(|d| {
            format!(
                "; the last drill ({}) failed: {}",
                d.job,
                d.message.as_deref().unwrap_or("see its pod")
            )
        })
        .unwrap_or_default()
}

/// `spec.drill.maxUnverifiedAge`, else the default.
fn max_unverified_age(drill: &DrillSpec) -> Duration {
    drill
        .max_unverified_age
        .as_ref()
        .and_then(|a| a.get().ok())
        .or_else(|| vertice_crds::duration::parse(DEFAULT_MAX_UNVERIFIED_AGE).ok())
        .unwrap_or_else(|| Duration::days(8))
}

fn drill_event(r: &DrillRecord) -> Event {
    match r.result {
        BackupResult::Succeeded => Event::normal(
            reason::DRILL_SUCCEEDED,
            format!(
                "backup {} restored in {} and passed {} checks",
                r.backup_id.as_deref().unwrap_or("?"),
                r.restore_seconds
                    .map(format_seconds)
                    .unwrap_or_else(|| "?".into()),
                r.checks_passed
            ),
        ),
        BackupResult::Failed => Event::warning(
            reason::DRILL_FAILED,
            format!(
                "drill job {} of backup {}: {}",
                r.job,
                r.backup_id.as_deref().unwrap_or("?"),
                r.message.as_deref().unwrap_or("failed")
            ),
        ),
    }
}

fn record_of(job: &k8s_openapi::api::batch::v1::Job, observed: &Observed) -> Option<DrillRecord> {
    let (succeeded, finished_at, job_message) = finished(job)?;
    let name = job.metadata.name.clone()?;
    let summary = latest_summary(&name, &observed.pods);
    let report = summary.as_ref().and_then(|s| s.drill.as_ref());
    let drilled_at = finished_at.or_else(|| summary.as_ref().and_then(|s| s.finished_at))?;
    // An evicted drill is interrupted, not a restore that failed.
    let stopped = if succeeded {
        None
    } else {
        super::status::stopped_from_outside(job, &observed.pods)
    };
    let (error_category, message) = if succeeded {
        (None, None)
    } else {
        super::status::failure(summary.as_ref(), stopped, job_message)
    };
    Some(DrillRecord {
        job: name,
        result: if succeeded {
            BackupResult::Succeeded
        } else {
            BackupResult::Failed
        },
        backup_id: summary.as_ref().and_then(|s| s.backup_id.clone()),
        backup_finished_at: report.and_then(|r| r.backup_finished_at),
        drilled_at,
        restore_seconds: report.and_then(|r| r.restore_seconds),
        checks_passed: report.map_or(0, |r| r.checks_passed),
        checks_failed: report.map_or(0, |r| r.checks_failed),
        failed_checks: report
            .map(|r| {
                r.failed_names()
                    .into_iter()
                    .take(MAX_FAILED_CHECKS)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        message,
        error_category,
    })
}

/// `42.3s`, `1m32s`, `2h05m`: short, for a printer column.
pub fn format_seconds(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let whole = s.round() as u64;
    if whole < 3600 {
        return format!("{}m{:02}s", whole / 60, whole % 60);
    }
    format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn backup(max_age: &str, created: &str) -> VerticeBackup {
        serde_json::from_value(json!({
            "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
            "metadata": {"name": "orders", "namespace": "shop", "generation": 1, "creationTimestamp": created},
            "spec": {"target": {"redis": {"host": "r"}}, "schedule": {"cron": "@daily"},
                     "store": {"s3": {"bucket": "b"}},
                     "drill": {"schedule": {"cron": "0 3 * * 0"}, "maxUnverifiedAge": max_age}},
        }))
        .expect("backup")
    }

    fn drill_job(name: &str, ok: bool, at: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"vertice.io/run": "drill"}},
            "status": {"conditions": [{"type": if ok {"Complete"} else {"Failed"}, "status": "True",
                                        "lastTransitionTime": at}]},
        }))
        .expect("job")
    }

    fn pod(job: &str, summary: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{job}-x"), "labels": {"batch.kubernetes.io/job-name": job}},
            "status": {"containerStatuses": [{"name": "agent", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-30T03:02:00Z", "message": summary.to_string()}}}]},
        }))
        .expect("pod")
    }

    fn summary(id: &str, backup_at: &str, restore: f64, failed: &[&str]) -> serde_json::Value {
        let mut checks: Vec<serde_json::Value> = failed
            .iter()
            .map(|n| json!({"name": n, "ok": false}))
            .collect();
        checks.push(json!({"name": "restore", "ok": true}));
        json!({"command": "drill", "outcome": if failed.is_empty() {"succeeded"} else {"failed"},
               "backup_id": id, "error": (!failed.is_empty()).then_some("2 checks failed"),
               "error_category": (!failed.is_empty()).then_some("check"),
               "drill": {"backup_finished_at": backup_at, "restore_seconds": restore,
                         "checks_passed": 1, "checks_failed": failed.len(), "checks": checks, "cleaned_up": true}})
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn run(
        b: &VerticeBackup,
        observed: &Observed,
        now: &str,
    ) -> (VerticeBackupStatus, DrillUpdate) {
        let mut status = b.status.clone().unwrap_or_default();
        let schedule = ParsedSchedule::parse(&vertice_crds::backup::Schedule {
            cron: "0 3 * * 0".into(),
            time_zone: None,
            overdue_after: None,
        })
        .expect("schedule");
        let update = update(
            b,
            &mut status,
            Some(&schedule),
            "vertice-drill-orders",
            observed,
            at(now),
        );
        (status, update)
    }

    #[test]
    fn a_drill_past_its_deadline_is_deadline_though_the_agent_says_interrupted() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "d1", "labels": {"vertice.io/run": "drill"}},
            "spec": {"activeDeadlineSeconds": 7200, "template": {"spec": {"containers": []}}},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                        "message": "Job was active longer than specified deadline",
                                        "lastTransitionTime": "2026-11-30T03:02:00Z"}]},
        }))
        .expect("job");
        let observed = Observed {
            jobs: vec![job.clone()],
            pods: vec![pod(
                "d1",
                json!({"command": "drill", "outcome": "interrupted", "error_category": "interrupted",
                       "error": "interrupted by SIGTERM: restoring"}),
            )],
        };
        let record = record_of(&job, &observed).expect("record");
        assert_eq!(record.error_category.as_deref(), Some("deadline"));
        let message = record.message.unwrap_or_default();
        assert!(message.contains("(7200 s)"), "{message}");
    }

    #[test]
    fn a_passed_drill_verifies_the_backup_and_records_its_rto() {
        let b = backup("2d", "2026-11-01T00:00:00Z");
        let observed = Observed {
            jobs: vec![
                drill_job("d1", true, "2026-11-29T03:02:00Z"),
                drill_job("d2", true, "2026-11-30T03:02:00Z"),
            ],
            pods: vec![
                pod("d1", summary("b1", "2026-11-29T01:00:00Z", 95.0, &[])),
                pod("d2", summary("b2", "2026-11-30T01:00:00Z", 12.5, &[])),
            ],
        };
        let (status, update) = run(&b, &observed, "2026-11-30T04:00:00Z");
        assert!(!update.unverified);
        assert_eq!(
            update.unverified_at,
            Some(at("2026-12-02T01:00:00Z")),
            "from when b2 was taken"
        );
        let verified = status.last_verified_backup.as_ref().expect("verified");
        assert_eq!(verified.backup_id.as_deref(), Some("b2"));
        assert_eq!(verified.restore_seconds, Some(12.5));
        assert_eq!(status.worst_recent_rto.as_deref(), Some("1m35s"));
        assert_eq!(status.drill_history.len(), 2);
        let c = find_condition(&status.conditions, condition::BACKUP_VERIFIED).expect("condition");
        assert!(c.is_true(), "{c:?}");
        assert_eq!(
            update.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
            vec![reason::DRILL_SUCCEEDED, reason::DRILL_SUCCEEDED]
        );
        assert_eq!(status.next_drill, Some(at("2026-12-06T03:00:00Z")));
    }

    #[test]
    fn a_failed_drill_is_named_and_an_old_verification_raises_the_alarm_once() {
        let b = backup("1d", "2026-11-01T00:00:00Z");
        let observed = Observed {
            jobs: vec![drill_job("d1", false, "2026-11-30T03:02:00Z")],
            pods: vec![pod(
                "d1",
                summary(
                    "b3",
                    "2026-11-30T01:00:00Z",
                    3.0,
                    &["sql: orders", "tables"],
                ),
            )],
        };
        let (status, update) = run(&b, &observed, "2026-11-30T04:00:00Z");
        assert!(
            update.unverified,
            "nothing verified within a day of creation"
        );
        let last = status.last_drill.as_ref().expect("last drill");
        assert_eq!(last.failed_checks, vec!["sql: orders", "tables"]);
        assert_eq!(last.error_category.as_deref(), Some("check"));
        assert!(status.last_verified_backup.is_none());
        assert_eq!(
            status.worst_recent_rto, None,
            "failed drills measure no RTO"
        );
        let reasons: Vec<_> = update.events.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            vec![reason::DRILL_FAILED, reason::BACKUP_UNVERIFIED]
        );
        let c = find_condition(&status.conditions, condition::BACKUP_VERIFIED).expect("condition");
        assert!(!c.is_true() && c.message.contains("failed"), "{c:?}");

        // The next reconcile repeats no event.
        let mut again = b.clone();
        again.status = Some(status);
        let (_, update) = run(&again, &observed, "2026-11-30T04:05:00Z");
        assert!(update.events.is_empty(), "{:?}", update.events);
    }

    #[test]
    fn a_new_backup_turning_unverified_raises_the_event() {
        // Found by the end-to-end test: before its first drill a backup's
        // condition is already False (not yet verified), and crossing
        // maxUnverifiedAge must still raise BackupUnverified, once.
        let b = backup("1h", "2026-11-30T04:00:00Z");
        let (status, update) = run(&b, &Observed::default(), "2026-11-30T04:00:01Z");
        assert!(!update.unverified);
        assert!(update.events.is_empty(), "{:?}", update.events);
        let c = find_condition(&status.conditions, condition::BACKUP_VERIFIED).expect("condition");
        assert!(!c.is_true() && c.reason == reason::BACKUP_VERIFIED, "{c:?}");

        let mut later = b.clone();
        later.status = Some(status);
        let (status, update) = run(&later, &Observed::default(), "2026-11-30T05:00:01Z");
        assert!(update.unverified);
        let reasons: Vec<_> = update.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, vec![reason::BACKUP_UNVERIFIED]);

        let mut again = later.clone();
        again.status = Some(status);
        let (_, update) = run(&again, &Observed::default(), "2026-11-30T05:01:00Z");
        assert!(update.events.is_empty(), "once: {:?}", update.events);
    }

    #[test]
    fn without_a_drill_spec_nothing_is_claimed() {
        let mut b = backup("1d", "2026-11-01T00:00:00Z");
        b.spec.drill = None;
        let (status, update) = run(&b, &Observed::default(), "2026-11-30T04:00:00Z");
        assert!(!update.unverified);
        assert!(find_condition(&status.conditions, condition::BACKUP_VERIFIED).is_none());
        assert_eq!(status.drill_cron_job, None);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(format_seconds(4.26), "4.3s");
        assert_eq!(format_seconds(92.0), "1m32s");
        assert_eq!(format_seconds(7500.0), "2h05m");
    }
}
