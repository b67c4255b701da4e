//! The backup controller: `plan` is the pure decision (the backup's two
//! scheduled runs, backup and drill, each a `ScheduledRun` with its CronJob
//! and on-demand Job; the status, events, when to look again);
//! `reconciler` applies it; `run` is the controller's loop. The CronJobs
//! are built by `cron_job` (the backup's settings) and `drill_job` (the
//! drill's) on the wiring both share (`job_wiring`).

pub mod admission;
pub mod children;
pub mod cron_job;
pub mod drill_job;
pub mod drill_status;
pub mod history;
pub mod job_wiring;
pub mod names;
pub mod pod_trouble;
pub mod reconciler;
pub mod run;
pub mod run_now;
pub mod scheduled_run;
pub mod status;

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::CronJob;
use vertice_crds::VerticeBackup;

use crate::schedule::ParsedSchedule;
pub use admission::{Admission, Refusal};
pub use cron_job::JobDefaults;
pub use run::{start, strip_backup};
pub use scheduled_run::{RunKind, ScheduledRun};
pub use status::{Event, Observed};

/// Even with nothing scheduled soon, look again this often: watches can miss
/// a Job that came and went, and overdue is judged by the clock.
pub const MAX_REQUEUE: Duration = Duration::from_secs(300);
const MIN_REQUEUE: Duration = Duration::from_secs(5);
/// A backup refused for a Secret looks again this soon: the Secret's owner
/// may add the label at any time, and no watch tells us (the label cache
/// keeps `secret_labels::TTL`).
const SECRET_REFUSED_REQUEUE: Duration = Duration::from_secs(60);
/// While a run is active, look at its pods this often: nothing watches
/// pods, and a pod that cannot start (a missing Secret) must show within a
/// minute, not at `activeDeadlineSeconds`.
const ACTIVE_RUN_REQUEUE: Duration = Duration::from_secs(30);

/// Everything one reconcile should make true.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The backup CronJob and an on-demand backup to start.
    pub backup: ScheduledRun,
    /// The drill CronJob when `spec.drill` is set (and the spec is valid),
    /// and an on-demand drill to start. Both CronJobs or neither.
    pub drill: ScheduledRun,
    pub status: vertice_crds::VerticeBackupStatus,
    pub events: Vec<Event>,
    pub overdue_since: Option<DateTime<Utc>>,
    pub requeue_after: Duration,
    /// The newest verified backup is older than `drill.maxUnverifiedAge`.
    pub unverified: bool,
    /// Why no child is written although the spec is valid: a Secret not
    /// opted in, or a pod setting the administrator did not allow.
    pub refused: Option<Refusal>,
}

impl Plan {
    /// The backup's scheduled runs, the backup's first.
    pub fn runs(&self) -> [&ScheduledRun; 2] {
        [&self.backup, &self.drill]
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
    let schedule = ParsedSchedule::parse(&backup.spec.schedule).map_err(|e| e.to_string());
    let drill_schedule = drill_schedule(backup).transpose();
    let desired = desired_cron_jobs(backup, defaults, &schedule, &drill_schedule);
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
    let for_status = schedule_for_status(
        &desired,
        &schedule,
        refused.as_ref().zip(refusal_text.as_deref()),
    );
    let backup_cron_job = RunKind::Backup.cron_job_name(&name);
    let mut update = status::compute(backup, for_status, &backup_cron_job, observed, now);
    let backup_run = run_now::schedule(
        RunKind::Backup,
        backup,
        cron_job,
        observed,
        &mut update.status,
        &mut update.events,
        now,
    );
    let drill_update = drill_status::update(
        backup,
        &mut update.status,
        drill_schedule.as_ref().ok().and_then(Option::as_ref),
        &RunKind::Drill.cron_job_name(&name),
        observed,
        now,
    );
    update.events.extend(drill_update.events);
    let drill_run = run_now::schedule(
        RunKind::Drill,
        backup,
        drill_cron_job,
        observed,
        &mut update.status,
        &mut update.events,
        now,
    );
    // The drill's next run and the moment the backup turns unverified are
    // also times to look again.
    let drill_times = [update.status.next_drill, drill_update.unverified_at];
    let requeue_after = requeue_after(&schedule, drill_times, refused.as_ref(), observed, now);
    Plan {
        backup: backup_run,
        drill: drill_run,
        status: update.status,
        events: update.events,
        overdue_since: update.overdue_since,
        requeue_after,
        unverified: drill_update.unverified,
        refused,
    }
}

/// Both CronJobs or neither: a broken drill makes the spec Invalid, and
/// the CronJobs that exist are left as they were.
fn desired_cron_jobs(
    backup: &VerticeBackup,
    defaults: &JobDefaults,
    schedule: &Result<ParsedSchedule, String>,
    drill_schedule: &Result<Option<ParsedSchedule>, String>,
) -> Result<(CronJob, Option<CronJob>), String> {
    schedule.as_ref().map_err(Clone::clone)?;
    drill_schedule.as_ref().map_err(Clone::clone)?;
    let cron_job = cron_job::desired(backup, defaults).map_err(|e| e.to_string())?;
    let drill = cron_job::desired_drill(backup, defaults).map_err(|e| e.to_string())?;
    Ok((cron_job, drill))
}

/// The schedule the status judges runs by, or why the backup is not Ready:
/// an invalid spec first, then a refusal.
fn schedule_for_status<'a>(
    desired: &'a Result<(CronJob, Option<CronJob>), String>,
    schedule: &'a Result<ParsedSchedule, String>,
    refused: Option<(&Refusal, &'a str)>,
) -> Result<&'a ParsedSchedule, status::NotReady<'a>> {
    let invalid = |message| status::NotReady {
        reason: status::reason::INVALID_SPEC,
        message,
    };
    match (desired, schedule, refused) {
        (Err(e), _, _) => Err(invalid(e.as_str())),
        (Ok(_), Err(e), _) => Err(invalid(e.as_str())),
        (Ok(_), Ok(_), Some((r, text))) => Err(status::NotReady {
            reason: r.reason(),
            message: text,
        }),
        (Ok(_), Ok(s), None) => Ok(s),
    }
}

/// When to look again: the next scheduled time or overdue deadline (and
/// the drill's `drill_times`), within bounds; sooner while a Secret refuses
/// the backup or a run is active.
fn requeue_after(
    schedule: &Result<ParsedSchedule, String>,
    drill_times: [Option<DateTime<Utc>>; 2],
    refused: Option<&Refusal>,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Duration {
    let requeue_after = match schedule {
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
    let requeue_after = match refused {
        Some(Refusal::Secret { .. }) => requeue_after.min(SECRET_REFUSED_REQUEUE),
        _ => requeue_after,
    };
    let run_active = observed.jobs.iter().any(|j| status::finished(j).is_none());
    if run_active {
        requeue_after.min(ACTIVE_RUN_REQUEUE)
    } else {
        requeue_after
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
    Some(ParsedSchedule::parse_at(&schedule, "spec.drill.schedule").map_err(|e| e.to_string()))
}
