//! The status a `VerticeBackup` should show, and the events its change is
//! worth: pure, from the resource, the Jobs and pods observed, and `now`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use vertice_crds::backup_status::{
    condition, BackupPhase, BackupRecord, BackupResult, VerticeBackupStatus, HISTORY_LIMIT,
};
use vertice_crds::common::{find_condition, set_condition, Condition};
use vertice_crds::run_summary::RunSummary;
use vertice_crds::VerticeBackup;

use crate::schedule::ParsedSchedule;

/// What the reconciler saw of the backup's children.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    pub jobs: Vec<Job>,
    pub pods: Vec<Pod>,
}

pub use crate::context::Event;

/// Event reasons, one per kind of news.
pub mod reason {
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    pub const BACKUP_FAILED: &str = "BackupFailed";
    pub const BACKUP_OVERDUE: &str = "BackupOverdue";
    pub const BACKUP_ON_SCHEDULE: &str = "BackupOnSchedule";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SUSPENDED: &str = "Suspended";
    pub const RESUMED: &str = "Resumed";
    pub const CRON_JOB_READY: &str = "CronJobReady";
    pub const NO_BACKUP_YET: &str = "NoBackupYet";
}

/// The new status and the events that describe the change.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub status: VerticeBackupStatus,
    pub events: Vec<Event>,
    /// The scheduled run that is overdue, if any.
    pub overdue_since: Option<DateTime<Utc>>,
}

/// Why the spec does not become CronJobs: the Ready condition's reason
/// (also the Event's) and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReady<'a> {
    /// `InvalidSpec`, or a tenancy refusal (`SecretNotAllowed`,
    /// `NotAllowedByAdmin`).
    pub reason: &'static str,
    pub message: &'a str,
}

/// `schedule` is `Err` when the spec could not become a CronJob.
pub fn compute(
    backup: &VerticeBackup,
    schedule: Result<&ParsedSchedule, NotReady<'_>>,
    cron_job_name: &str,
    observed: &Observed,
    now: DateTime<Utc>,
) -> StatusUpdate {
    let previous = backup.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let mut events = Vec::new();
    status.observed_generation = backup.metadata.generation;
    status.cron_job = Some(cron_job_name.to_string());

    // Finished Jobs become history; the newest records lead.
    let known: Vec<String> = previous.history.iter().map(|r| r.job.clone()).collect();
    let mut fresh: Vec<BackupRecord> = observed
        .jobs
        .iter()
        .filter(|job| !is_drill(job))
        .filter_map(|job| record_of(job, &observed.pods))
        .filter(|r| !known.contains(&r.job))
        .collect();
    fresh.sort_by_key(|r| r.finished_at);
    for record in &fresh {
        events.push(match record.result {
            BackupResult::Succeeded => Event {
                warning: false,
                reason: reason::BACKUP_SUCCEEDED,
                note: format!(
                    "backup {} finished in {}",
                    record.backup_id.as_deref().unwrap_or("(no id)"),
                    record
                        .duration_seconds
                        .map(|s| format!("{s:.0}s"))
                        .unwrap_or_else(|| "?".into())
                ),
            },
            BackupResult::Failed => Event {
                warning: true,
                reason: reason::BACKUP_FAILED,
                note: format!(
                    "job {}: {}",
                    record.job,
                    record.message.as_deref().unwrap_or("failed")
                ),
            },
        });
    }
    let finished_at = |r: &BackupRecord| r.finished_at;
    let history = super::history::merge(&previous.history, fresh, finished_at, HISTORY_LIMIT);
    super::history::keep_newest(&mut status.last_backup, history.first(), finished_at);
    super::history::keep_newest(
        &mut status.last_successful_backup,
        history.iter().find(|r| r.result == BackupResult::Succeeded),
        finished_at,
    );
    status.history = history;

    let generation = backup.metadata.generation;
    let mut conditions = previous.conditions.clone();
    let mut set = |c: Condition| {
        set_condition(
            &mut conditions,
            Condition {
                observed_generation: generation,
                ..c
            },
        )
    };

    // Ready: the CronJob matches the spec.
    let was_ready = find_condition(&previous.conditions, condition::READY);
    match schedule {
        Ok(_) => set(Condition::new(
            condition::READY,
            true,
            reason::CRON_JOB_READY,
            format!("CronJob {cron_job_name} is up to date"),
            now,
        )),
        Err(NotReady { reason, message }) => {
            set(Condition::new(
                condition::READY,
                false,
                reason,
                message,
                now,
            ));
            // Once per transition: into not-ready, or from one reason to
            // another (an invalid spec fixed into a refused one).
            if was_ready.is_none_or(|c| c.is_true() || c.reason != reason) {
                events.push(Event {
                    warning: true,
                    reason,
                    note: message.to_string(),
                });
            }
        }
    }

    // LastBackupSucceeded.
    match &status.last_backup {
        None => set(Condition {
            status: vertice_crds::common::ConditionStatus::Unknown,
            ..Condition::new(
                condition::LAST_BACKUP_SUCCEEDED,
                false,
                reason::NO_BACKUP_YET,
                "no backup has finished yet",
                now,
            )
        }),
        Some(r) if r.result == BackupResult::Succeeded => set(Condition::new(
            condition::LAST_BACKUP_SUCCEEDED,
            true,
            reason::BACKUP_SUCCEEDED,
            format!(
                "backup {} succeeded at {}",
                r.backup_id.as_deref().unwrap_or("?"),
                r.finished_at.to_rfc3339()
            ),
            now,
        )),
        Some(r) => set(Condition::new(
            condition::LAST_BACKUP_SUCCEEDED,
            false,
            reason::BACKUP_FAILED,
            format!(
                "job {} failed at {}: {}",
                r.job,
                r.finished_at.to_rfc3339(),
                r.message.as_deref().unwrap_or("see its pod")
            ),
            now,
        )),
    }

    // BackupOverdue: judged from the schedule, so a Job that never ran is caught.
    let suspended = backup.spec.suspend;
    // Runs scheduled while the backup was suspended were never due: count
    // from the last resume (or the creation).
    if !suspended && previous.phase == Some(BackupPhase::Suspended) {
        status.resumed_at = Some(now);
    }
    let created = backup
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t_to_chrono(&t.0))
        .unwrap_or(now);
    let since = status.resumed_at.map_or(created, |r| r.max(created));
    let last_success = status
        .last_successful_backup
        .as_ref()
        .map(|r| r.finished_at);
    let overdue_since = match schedule {
        Ok(s) if !suspended => s
            .due_run(now, since)
            .filter(|due| last_success.is_none_or(|t| t < *due)),
        _ => None,
    };
    let was_overdue = find_condition(&previous.conditions, condition::BACKUP_OVERDUE)
        .is_some_and(Condition::is_true);
    match overdue_since {
        Some(due) => {
            let message = match last_success {
                Some(t) => format!(
                    "no successful backup since {}; the run scheduled for {} is overdue",
                    t.to_rfc3339(),
                    due.to_rfc3339()
                ),
                None => format!(
                    "no successful backup yet; the run scheduled for {} is overdue",
                    due.to_rfc3339()
                ),
            };
            if !was_overdue {
                events.push(Event {
                    warning: true,
                    reason: reason::BACKUP_OVERDUE,
                    note: message.clone(),
                });
            }
            set(Condition::new(
                condition::BACKUP_OVERDUE,
                true,
                reason::BACKUP_OVERDUE,
                message,
                now,
            ));
        }
        None => {
            if was_overdue {
                events.push(Event {
                    warning: false,
                    reason: reason::BACKUP_ON_SCHEDULE,
                    note: "backups are on schedule again".into(),
                });
            }
            let why = if suspended {
                "backups are suspended"
            } else {
                "the latest due backup succeeded in time"
            };
            set(Condition::new(
                condition::BACKUP_OVERDUE,
                false,
                reason::BACKUP_ON_SCHEDULE,
                why,
                now,
            ));
        }
    }
    status.conditions = conditions;

    let was_suspended = previous.phase == Some(BackupPhase::Suspended);
    if suspended && !was_suspended && previous.phase.is_some() {
        events.push(Event {
            warning: false,
            reason: reason::SUSPENDED,
            note: "backups suspended".into(),
        });
    }
    if !suspended && was_suspended {
        events.push(Event {
            warning: false,
            reason: reason::RESUMED,
            note: "backups resumed".into(),
        });
    }

    status.next_backup = match schedule {
        Ok(s) if !suspended => s.next_after(now),
        _ => None,
    };
    let running = observed.jobs.iter().filter(|j| !is_drill(j)).any(|j| {
        finished(j).is_none() && j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0
    });
    status.phase = Some(if schedule.is_err() {
        BackupPhase::Invalid
    } else if suspended {
        BackupPhase::Suspended
    } else if overdue_since.is_some() {
        BackupPhase::Overdue
    } else if running {
        BackupPhase::Running
    } else {
        match status.last_backup.as_ref().map(|r| r.result) {
            Some(BackupResult::Failed) => BackupPhase::Failed,
            Some(BackupResult::Succeeded) => BackupPhase::Healthy,
            None => BackupPhase::Scheduled,
        }
    });
    StatusUpdate {
        status,
        events,
        overdue_since,
    }
}

/// Whether the Job is one of the backup's restore drills.
pub fn is_drill(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(super::names::RUN_LABEL))
        .is_some_and(|v| v == super::names::RUN_DRILL)
}

/// `Some((succeeded, time, message))` once the Job has finished.
pub(super) fn finished(job: &Job) -> Option<(bool, Option<DateTime<Utc>>, Option<String>)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some((
                true,
                c.last_transition_time.as_ref().map(|t| t_to_chrono(&t.0)),
                None,
            )),
            "Failed" => Some((
                false,
                c.last_transition_time.as_ref().map(|t| t_to_chrono(&t.0)),
                Some(match (&c.reason, &c.message) {
                    (Some(r), Some(m)) => format!("{r}: {m}"),
                    (Some(r), None) => r.clone(),
                    (None, m) => m.clone().unwrap_or_else(|| "failed".into()),
                }),
            )),
            _ => None,
        })
}

/// The record of a finished Job, enriched by the agent's termination message
/// from its newest pod.
fn record_of(job: &Job, pods: &[Pod]) -> Option<BackupRecord> {
    let (succeeded, finished_at, job_message) = finished(job)?;
    let job_name = job.metadata.name.clone()?;
    let summary = latest_summary(&job_name, pods);
    let finished_at = finished_at
        .or_else(|| summary.as_ref().and_then(|s| s.finished_at))
        .or_else(|| {
            job.status
                .as_ref()?
                .completion_time
                .as_ref()
                .map(|t| t_to_chrono(&t.0))
        })?;
    let started_at = summary.as_ref().and_then(|s| s.started_at).or_else(|| {
        job.status
            .as_ref()?
            .start_time
            .as_ref()
            .map(|t| t_to_chrono(&t.0))
    });
    let message = if succeeded {
        None
    } else {
        summary
            .as_ref()
            .and_then(|s| s.error.clone())
            .or(job_message)
    };
    Some(BackupRecord {
        job: job_name,
        result: if succeeded {
            BackupResult::Succeeded
        } else {
            BackupResult::Failed
        },
        backup_id: summary.as_ref().and_then(|s| s.backup_id.clone()),
        started_at,
        finished_at,
        duration_seconds: summary
            .as_ref()
            .and_then(|s| s.duration_seconds)
            .or_else(|| started_at.map(|s| (finished_at - s).num_milliseconds() as f64 / 1000.0)),
        stored_bytes: summary.as_ref().and_then(|s| s.stored_bytes),
        raw_bytes: summary.as_ref().and_then(|s| s.raw_bytes),
        error_category: if succeeded {
            None
        } else {
            summary.as_ref().and_then(|s| s.error_category.clone())
        },
        message,
    })
}

pub(super) fn latest_summary(job: &str, pods: &[Pod]) -> Option<RunSummary> {
    let mut candidates: Vec<(DateTime<Utc>, RunSummary)> = pods
        .iter()
        .filter(|p| {
            p.metadata.labels.as_ref().and_then(|l| {
                l.get("batch.kubernetes.io/job-name")
                    .or_else(|| l.get("job-name"))
            }) == Some(&job.to_string())
        })
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter(|c| c.name == "agent")
        .filter_map(|c| {
            let terminated = c.state.as_ref()?.terminated.as_ref()?;
            let summary: RunSummary =
                serde_json::from_str(terminated.message.as_deref()?.trim()).ok()?;
            let at = terminated
                .finished_at
                .as_ref()
                .map(|t| t_to_chrono(&t.0))
                .or(summary.finished_at)?;
            Some((at, summary))
        })
        .collect();
    candidates.sort_by_key(|(at, _)| *at);
    candidates.pop().map(|(_, s)| s)
}

/// k8s-openapi's `Time` wraps a `jiff::Timestamp`; the CRDs use chrono.
pub fn t_to_chrono(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}
