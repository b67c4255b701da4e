//! The backup reconciler: `plan` is the pure decision (desired CronJob,
//! status, events, when to look again); `reconciler` applies it.

pub mod admission;
pub mod children;
pub mod cron_job;
pub mod drill_job;
pub mod drill_status;
pub mod history;
pub mod names;
pub mod reconciler;
pub mod run_now;
pub mod status;

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::CronJob;
use vertice_crds::VerticeBackup;

use crate::schedule::ParsedSchedule;
pub use admission::{Admission, Refusal};
pub use cron_job::JobDefaults;
pub use status::{Event, Observed};

/// Even with nothing scheduled soon, look again this often: watches can miss
/// a Job that came and went, and overdue is judged by the clock.
pub const MAX_REQUEUE: Duration = Duration::from_secs(300);
const MIN_REQUEUE: Duration = Duration::from_secs(5);
/// A backup refused for a Secret looks again this soon: the Secret's owner
/// may add the label at any time, and no watch tells us (the label cache
/// keeps `secret_labels::TTL`).
const SECRET_REFUSED_REQUEUE: Duration = Duration::from_secs(60);

/// Everything one reconcile should make true.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `None` when the spec is invalid or refused. An invalid spec leaves
    /// the existing CronJob as it was, so a typo does not stop backups (it
    /// was written from a spec that passed every check then) — unless it now
    /// runs what is no longer allowed (`admission::check_existing`); a
    /// refusal deletes the CronJobs the backup owns (`children::revoked`).
    pub cron_job: Option<CronJob>,
    pub cron_job_name: String,
    pub status: vertice_crds::VerticeBackupStatus,
    pub events: Vec<Event>,
    pub overdue_since: Option<DateTime<Utc>>,
    pub requeue_after: Duration,
    /// An on-demand Job to start (the `vertice.io/run-now` annotation).
    pub run_now: Option<k8s_openapi::api::batch::v1::Job>,
    /// The drill CronJob when `spec.drill` is set (and the spec is valid).
    pub drill_cron_job: Option<CronJob>,
    pub drill_cron_job_name: String,
    /// An on-demand drill Job to start (`vertice.io/drill-now`).
    pub drill_now: Option<k8s_openapi::api::batch::v1::Job>,
    /// The newest verified backup is older than `drill.maxUnverifiedAge`.
    pub unverified: bool,
    /// Why no child is written although the spec is valid: a Secret not
    /// opted in, or a pod setting the administrator did not allow.
    pub refused: Option<Refusal>,
}

/// Keeps what a reconcile reads of a VerticeBackup in the watch cache: its
/// managed fields (a tree of every field path, several KiB once the status
/// is applied) and annotations other than the run-now and drill-now tokens
/// (a client-side `kubectl apply` copies the whole object into one) are
/// dropped, so a thousand backups cost a thousand specs and statuses.
pub fn strip_backup(backup: &mut VerticeBackup) {
    use vertice_crds::backup_status::{DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION};
    backup.metadata.managed_fields = None;
    if let Some(annotations) = backup.metadata.annotations.as_mut() {
        annotations.retain(|k, _| k == RUN_NOW_ANNOTATION || k == DRILL_NOW_ANNOTATION);
    }
}

/// `admission` carries the administrator's limits and the labels of the
/// Secrets the backup names (`admission::secret_uses`), read beforehand.
pub fn plan(
    backup: &VerticeBackup,
    observed: &Observed,
    defaults: &JobDefaults,
    admission: &Admission<'_>,
    now: DateTime<Utc>,
) -> Plan {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let cron_job_name = names::cron_job(&name);
    let drill_cron_job_name = names::drill_cron_job(&name);
    let schedule = ParsedSchedule::parse(&backup.spec.schedule).map_err(|e| e.to_string());
    let drill_schedule = drill_schedule(backup).transpose();
    // Both CronJobs or neither: a broken drill makes the spec Invalid, and
    // the CronJobs that exist are left as they were.
    let desired = schedule
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| drill_schedule.as_ref().map(|_| ()).map_err(Clone::clone))
        .and_then(|()| cron_job::desired(backup, defaults).map_err(|e| e.to_string()))
        .and_then(|cj| {
            cron_job::desired_drill(backup, defaults)
                .map(|drill| (cj, drill))
                .map_err(|e| e.to_string())
        });
    // A valid spec is still refused when it would run what the tenant may
    // not: checked on the very pods that would be written, before any is.
    let refused = desired.as_ref().ok().and_then(|(cj, drill)| {
        admission::check(
            backup,
            defaults,
            admission,
            [Some(cj), drill.as_ref()].into_iter().flatten(),
        )
        .err()
    });
    let refusal_text = refused.as_ref().map(ToString::to_string);
    let (cron_job, drill_cron_job) = match (&desired, &refused) {
        (Ok((cj, drill)), None) => (Some(cj.clone()), drill.clone()),
        _ => (None, None),
    };
    let invalid = |message| status::NotReady {
        reason: status::reason::INVALID_SPEC,
        message,
    };
    let schedule_for_status = match (&desired, &schedule, &refused, &refusal_text) {
        (Err(e), _, _, _) => Err(invalid(e.as_str())),
        (Ok(_), Err(e), _, _) => Err(invalid(e.as_str())),
        (Ok(_), Ok(_), Some(r), Some(text)) => Err(status::NotReady {
            reason: r.reason(),
            message: text.as_str(),
        }),
        (Ok(_), Ok(s), _, _) => Ok(s),
    };
    let mut update = status::compute(backup, schedule_for_status, &cron_job_name, observed, now);
    // A run asked for while the spec is invalid waits until it is fixed.
    let run_now = match (&cron_job, run_now::pending_token(backup)) {
        (Some(cj), Some(token)) => {
            let (job, record) = run_now::job_for(cj, &token, now);
            update.events.push(Event {
                warning: false,
                reason: "RunNowStarted",
                note: format!("started Job {} on request ({token})", record.job),
            });
            update.status.run_now = Some(record);
            Some(job)
        }
        _ => None,
    };
    let drill_update = drill_status::update(
        backup,
        &mut update.status,
        drill_schedule.as_ref().ok().and_then(Option::as_ref),
        &drill_cron_job_name,
        observed,
        now,
    );
    update.events.extend(drill_update.events);
    let drill_now = match (&drill_cron_job, run_now::pending_drill_token(backup)) {
        (Some(cj), Some(token)) => {
            let (job, record) = run_now::job_for(cj, &token, now);
            update.events.push(Event {
                warning: false,
                reason: "DrillNowStarted",
                note: format!("started drill Job {} on request ({token})", record.job),
            });
            update.status.drill_now = Some(record);
            Some(job)
        }
        _ => None,
    };
    // The drill's next run and the moment the backup turns unverified are
    // also times to look again.
    let drill_times = [update.status.next_drill, drill_update.unverified_at];
    let requeue_after = match &schedule {
        Ok(s) => {
            let next = [s.next_after(now), s.next_deadline(now)]
                .into_iter()
                .chain(drill_times)
                .flatten()
                .min()
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or(MAX_REQUEUE);
            next.clamp(MIN_REQUEUE, MAX_REQUEUE)
        }
        Err(_) => MAX_REQUEUE,
    };
    let requeue_after = match &refused {
        Some(Refusal::Secret { .. }) => requeue_after.min(SECRET_REFUSED_REQUEUE),
        _ => requeue_after,
    };
    Plan {
        cron_job,
        cron_job_name,
        status: update.status,
        events: update.events,
        overdue_since: update.overdue_since,
        requeue_after,
        run_now,
        drill_cron_job,
        drill_cron_job_name,
        drill_now,
        unverified: drill_update.unverified,
        refused,
    }
}

/// The drill's schedule, when `spec.drill` is set.
fn drill_schedule(backup: &VerticeBackup) -> Option<Result<ParsedSchedule, String>> {
    let drill = backup.spec.drill.as_ref()?;
    let schedule = vertice_crds::backup::Schedule {
        cron: drill.schedule.cron.clone(),
        time_zone: drill.schedule.time_zone.clone(),
        overdue_after: None,
    };
    Some(ParsedSchedule::parse(&schedule).map_err(|e| format!("spec.drill.schedule: {e}")))
}

#[cfg(test)]
mod tests {
    use super::strip_backup;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;
    use vertice_crds::backup_status::{DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION};
    use vertice_crds::VerticeBackup;

    #[test]
    fn the_cache_keeps_the_tokens_and_drops_managed_fields_and_last_applied() {
        let mut backup: VerticeBackup = serde_json::from_value(serde_json::json!({
            "apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
            "metadata": {"name": "db", "namespace": "app"},
            "spec": {"target": {"postgres": {"host": "db", "database": "shop", "user": "backup",
                                              "passwordSecretRef": {"name": "db", "key": "password"}}},
                     "schedule": {"cron": "@daily"}, "store": {"s3": {"bucket": "backups"}}},
        }))
        .expect("test value");
        backup.metadata = ObjectMeta {
            name: Some("db".into()),
            annotations: Some(BTreeMap::from([
                (RUN_NOW_ANNOTATION.to_string(), "t1".to_string()),
                (DRILL_NOW_ANNOTATION.to_string(), "t2".to_string()),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{\"spec\":{}}".to_string(),
                ),
            ])),
            managed_fields: Some(vec![Default::default()]),
            labels: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
            ..Default::default()
        };
        let spec = serde_json::to_value(&backup.spec).expect("test value");
        strip_backup(&mut backup);
        assert_eq!(backup.metadata.managed_fields, None);
        let kept: Vec<&String> = backup
            .metadata
            .annotations
            .as_ref()
            .expect("test value")
            .keys()
            .collect();
        assert_eq!(kept, [DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION]);
        assert_eq!(
            backup.metadata.labels.as_ref().expect("test value")["team"],
            "a"
        );
        assert_eq!(
            serde_json::to_value(&backup.spec).expect("test value"),
            spec
        );
    }
}
