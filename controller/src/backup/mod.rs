//! The backup reconciler: `plan` is the pure decision (desired CronJob,
//! status, events, when to look again); `reconciler` applies it.

pub mod children;
pub mod cron_job;
pub mod names;
pub mod reconciler;
pub mod run_now;
pub mod status;

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::CronJob;
use vertice_crds::VerticeBackup;

use crate::schedule::ParsedSchedule;
pub use cron_job::JobDefaults;
pub use status::{Event, Observed};

/// Even with nothing scheduled soon, look again this often: watches can miss
/// a Job that came and went, and overdue is judged by the clock.
pub const MAX_REQUEUE: Duration = Duration::from_secs(300);
const MIN_REQUEUE: Duration = Duration::from_secs(5);

/// Everything one reconcile should make true.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `None` when the spec is invalid: the existing CronJob is left as it
    /// was rather than deleted, so a typo does not stop backups.
    pub cron_job: Option<CronJob>,
    pub cron_job_name: String,
    pub status: vertice_crds::VerticeBackupStatus,
    pub events: Vec<Event>,
    pub overdue_since: Option<DateTime<Utc>>,
    pub requeue_after: Duration,
    /// An on-demand Job to start (the `vertice.io/run-now` annotation).
    pub run_now: Option<k8s_openapi::api::batch::v1::Job>,
}

pub fn plan(
    backup: &VerticeBackup,
    observed: &Observed,
    defaults: &JobDefaults,
    now: DateTime<Utc>,
) -> Plan {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let cron_job_name = names::cron_job(&name);
    let schedule = ParsedSchedule::parse(&backup.spec.schedule).map_err(|e| e.to_string());
    let desired = schedule
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| cron_job::desired(backup, defaults).map_err(|e| e.to_string()));
    let (cron_job, schedule_for_status) = match (&desired, &schedule) {
        (Ok(cj), Ok(s)) => (Some(cj.clone()), Ok(s)),
        (Err(e), _) => (None, Err(e.as_str())),
        (Ok(_), Err(e)) => (None, Err(e.as_str())),
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
    let requeue_after = match &schedule {
        Ok(s) => {
            let next = [s.next_after(now), s.next_deadline(now)]
                .into_iter()
                .flatten()
                .min()
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or(MAX_REQUEUE);
            next.clamp(MIN_REQUEUE, MAX_REQUEUE)
        }
        Err(_) => MAX_REQUEUE,
    };
    Plan {
        cron_job,
        cron_job_name,
        status: update.status,
        events: update.events,
        overdue_since: update.overdue_since,
        requeue_after,
        run_now,
    }
}
