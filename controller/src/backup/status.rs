//! The status a `VerticeBackup` should show, and the events its change is
//! worth: pure, from the resource, the Jobs and pods observed, and `now`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use vertice_crds::backup_status::{
    condition, BackupPhase, BackupRecord, BackupResult, VerticeBackupStatus, HISTORY_LIMIT,
};
use vertice_crds::common::{find_condition, Condition, ConditionStatus};
use vertice_crds::run_summary::{ErrorCategory, RunSummary};
use vertice_crds::VerticeBackup;

use super::scheduled_run::RunKind;
use crate::schedule::ParsedSchedule;
use crate::shared::{set_observed, t_to_chrono};

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
    pub const RUN_BLOCKED: &str = "RunBlocked";
    pub const NOT_SCHEDULED: &str = "NotScheduled";
    pub const RUN_NOT_BLOCKED: &str = "NoRunBlocked";
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
    let mut u = Update {
        backup,
        status: previous.clone(),
        previous,
        events: Vec::new(),
        now,
    };
    u.status.observed_generation = backup.metadata.generation;
    u.status.cron_job = Some(cron_job_name.to_string());
    u.record_finished_runs(observed);
    u.ready(schedule, cron_job_name);
    u.last_backup_succeeded();
    let overdue_since = u.overdue(schedule);
    let backup_blocked = u.run_blocked(observed);
    u.suspension_news();
    let suspended = backup.spec.suspend;
    u.status.next_backup = match schedule {
        Ok(s) if !suspended => s.next_after(now),
        _ => None,
    };
    let running = observed
        .jobs
        .iter()
        .filter(|j| RunKind::of(j) == RunKind::Backup)
        .any(|j| {
            finished(j).is_none() && j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0
        });
    u.status.phase = Some(if schedule.is_err() {
        BackupPhase::Invalid
    } else if suspended {
        BackupPhase::Suspended
    } else if backup_blocked {
        // Before Overdue: it says why the backup is late.
        BackupPhase::Blocked
    } else if overdue_since.is_some() {
        BackupPhase::Overdue
    } else if running {
        BackupPhase::Running
    } else {
        match u.status.last_backup.as_ref().map(|r| r.result) {
            Some(BackupResult::Failed) => BackupPhase::Failed,
            Some(BackupResult::Succeeded) => BackupPhase::Healthy,
            None => BackupPhase::Scheduled,
        }
    });
    StatusUpdate {
        status: u.status,
        events: u.events,
        overdue_since,
    }
}

/// The status being computed, from the status as stored, and its news.
struct Update<'a> {
    backup: &'a VerticeBackup,
    previous: VerticeBackupStatus,
    status: VerticeBackupStatus,
    events: Vec<Event>,
    now: DateTime<Utc>,
}

impl Update<'_> {
    /// Sets a condition as observed at the backup's generation.
    fn set(&mut self, condition: Condition) {
        set_observed(
            &mut self.status.conditions,
            self.backup.metadata.generation,
            condition,
        );
    }

    fn was(&self, type_: &str) -> Option<&Condition> {
        find_condition(&self.previous.conditions, type_)
    }

    /// Finished backup Jobs become history, each with its Event; the newest
    /// records lead.
    fn record_finished_runs(&mut self, observed: &Observed) {
        let finished_at = |r: &BackupRecord| r.finished_at;
        let found = observed
            .jobs
            .iter()
            .filter(|job| RunKind::of(job) == RunKind::Backup)
            .filter_map(|job| record_of(job, &observed.pods));
        let fresh = super::history::unseen(&self.previous.history, found, |r| &r.job, finished_at);
        self.events.extend(fresh.iter().map(finished_event));
        let status = &mut self.status;
        let history =
            super::history::merge(&self.previous.history, fresh, finished_at, HISTORY_LIMIT);
        super::history::keep_newest(&mut status.last_backup, history.first(), finished_at);
        super::history::keep_newest(
            &mut status.last_successful_backup,
            history.iter().find(|r| r.result == BackupResult::Succeeded),
            finished_at,
        );
        status.history = history;
    }

    /// Ready: the CronJob matches the spec; when not, a Warning once per
    /// transition: into not-ready, or from one reason to another (an
    /// invalid spec fixed into a refused one).
    fn ready(&mut self, schedule: Result<&ParsedSchedule, NotReady<'_>>, cron_job_name: &str) {
        let now = self.now;
        match schedule {
            Ok(_) => self.set(Condition::new(
                condition::READY,
                true,
                reason::CRON_JOB_READY,
                format!("CronJob {cron_job_name} is up to date"),
                now,
            )),
            Err(NotReady { reason, message }) => {
                let news = self
                    .was(condition::READY)
                    .is_none_or(|c| c.is_true() || c.reason != reason);
                self.set(Condition::new(
                    condition::READY,
                    false,
                    reason,
                    message,
                    now,
                ));
                if news {
                    self.events.push(Event::warning(reason, message));
                }
            }
        }
    }

    /// LastBackupSucceeded, from the newest record.
    fn last_backup_succeeded(&mut self) {
        let now = self.now;
        let condition = match &self.status.last_backup {
            None => Condition {
                status: ConditionStatus::Unknown,
                ..Condition::new(
                    condition::LAST_BACKUP_SUCCEEDED,
                    false,
                    reason::NO_BACKUP_YET,
                    "no backup has finished yet",
                    now,
                )
            },
            Some(r) if r.result == BackupResult::Succeeded => Condition::new(
                condition::LAST_BACKUP_SUCCEEDED,
                true,
                reason::BACKUP_SUCCEEDED,
                format!(
                    "backup {} succeeded at {}",
                    r.backup_id.as_deref().unwrap_or("?"),
                    r.finished_at.to_rfc3339()
                ),
                now,
            ),
            Some(r) => Condition::new(
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
            ),
        };
        self.set(condition);
    }

    /// BackupOverdue: judged from the schedule, so a Job that never ran is
    /// caught. The scheduled run that is overdue, if any.
    fn overdue(
        &mut self,
        schedule: Result<&ParsedSchedule, NotReady<'_>>,
    ) -> Option<DateTime<Utc>> {
        let now = self.now;
        let suspended = self.backup.spec.suspend;
        // Runs scheduled while the backup was suspended were never due:
        // count from the last resume (or the creation).
        if !suspended && self.previous.phase == Some(BackupPhase::Suspended) {
            self.status.resumed_at = Some(now);
        }
        let created = self
            .backup
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t_to_chrono(&t.0))
            .unwrap_or(now);
        let since = self.status.resumed_at.map_or(created, |r| r.max(created));
        let last_success = self
            .status
            .last_successful_backup
            .as_ref()
            .map(|r| r.finished_at);
        let overdue_since = match schedule {
            Ok(s) if !suspended => s
                .due_run(now, since)
                .filter(|due| last_success.is_none_or(|t| t < *due)),
            _ => None,
        };
        match overdue_since {
            Some(due) => self.is_overdue(due, last_success),
            None => self.on_schedule(schedule.is_ok(), last_success),
        }
        overdue_since
    }

    /// The run due at `due` has not succeeded: say so once.
    fn is_overdue(&mut self, due: DateTime<Utc>, last_success: Option<DateTime<Utc>>) {
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
        if !self.was_overdue() {
            self.events
                .push(Event::warning(reason::BACKUP_OVERDUE, message.as_str()));
        }
        let now = self.now;
        self.set(Condition::new(
            condition::BACKUP_OVERDUE,
            true,
            reason::BACKUP_OVERDUE,
            message,
            now,
        ));
    }

    /// Nothing is overdue: on schedule, suspended, or (with no valid
    /// schedule) unknown.
    fn on_schedule(&mut self, scheduled: bool, last_success: Option<DateTime<Utc>>) {
        let now = self.now;
        let suspended = self.backup.spec.suspend;
        if self.was_overdue() && scheduled {
            self.events.push(Event::normal(
                reason::BACKUP_ON_SCHEDULE,
                "backups are on schedule again",
            ));
        }
        if !scheduled && !suspended {
            // Nothing is scheduled from this spec, so nothing can be
            // judged late: unknown, not "on schedule".
            self.set(Condition {
                status: ConditionStatus::Unknown,
                ..Condition::new(
                    condition::BACKUP_OVERDUE,
                    false,
                    reason::NOT_SCHEDULED,
                    "no run is scheduled from this spec; see the Ready condition",
                    now,
                )
            });
        } else {
            // Not overdue is all this says: before any success, say so
            // rather than claim one.
            let why = match (suspended, last_success) {
                (true, _) => "backups are suspended".to_string(),
                (false, Some(t)) => format!(
                    "the latest backup succeeded at {}; no scheduled run is overdue",
                    t.to_rfc3339()
                ),
                (false, None) => {
                    "no backup has succeeded yet; no scheduled run is overdue yet".to_string()
                }
            };
            self.set(Condition::new(
                condition::BACKUP_OVERDUE,
                false,
                reason::BACKUP_ON_SCHEDULE,
                why,
                now,
            ));
        }
    }

    fn was_overdue(&self) -> bool {
        self.was(condition::BACKUP_OVERDUE)
            .is_some_and(Condition::is_true)
    }

    /// RunBlocked: a started run (backup or drill) whose pod cannot start
    /// would otherwise say Running until job.activeDeadlineSeconds.
    /// Whether a backup run (not a drill) is blocked: the phase is the
    /// backups'; a blocked drill shows in the condition.
    fn run_blocked(&mut self, observed: &Observed) -> bool {
        let now = self.now;
        let unfinished = || {
            observed
                .jobs
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none() && finished(j).is_none())
        };
        let blocked = super::pod_trouble::blocked(unfinished(), &observed.pods, now);
        let backup_blocked = super::pod_trouble::blocked(
            unfinished().filter(|j| RunKind::of(j) == RunKind::Backup),
            &observed.pods,
            now,
        );
        let was_blocked = self
            .was(condition::RUN_BLOCKED)
            .filter(|c| c.is_true())
            .map(|c| c.message.clone());
        match &blocked {
            Some(b) => {
                // Once per blocked Job: an image pull alternates between
                // ErrImagePull and ImagePullBackOff, which is no news.
                let job_said = format!("Job {} ", b.job);
                if was_blocked.is_none_or(|m| !m.starts_with(&job_said)) {
                    self.events
                        .push(Event::warning(reason::RUN_BLOCKED, b.message.as_str()));
                }
                self.set(Condition::new(
                    condition::RUN_BLOCKED,
                    true,
                    &b.reason,
                    &b.message,
                    now,
                ));
            }
            None => self.set(Condition::new(
                condition::RUN_BLOCKED,
                false,
                reason::RUN_NOT_BLOCKED,
                "no run is waiting for a pod that cannot start",
                now,
            )),
        }
        backup_blocked.is_some()
    }

    /// Suspended and Resumed, on the change.
    fn suspension_news(&mut self) {
        let suspended = self.backup.spec.suspend;
        let was_suspended = self.previous.phase == Some(BackupPhase::Suspended);
        if suspended && !was_suspended && self.previous.phase.is_some() {
            self.events
                .push(Event::normal(reason::SUSPENDED, "backups suspended"));
        }
        if !suspended && was_suspended {
            self.events
                .push(Event::normal(reason::RESUMED, "backups resumed"));
        }
    }
}

/// The Event of a finished backup run.
fn finished_event(record: &BackupRecord) -> Event {
    match record.result {
        BackupResult::Succeeded => Event::normal(
            reason::BACKUP_SUCCEEDED,
            format!(
                "backup {} finished in {}",
                record.backup_id.as_deref().unwrap_or("(no id)"),
                record
                    .duration_seconds
                    .map(|s| format!("{s:.0}s"))
                    .unwrap_or_else(|| "?".into())
            ),
        ),
        BackupResult::Failed => Event::warning(
            reason::BACKUP_FAILED,
            format!(
                "job {}: {}",
                record.job,
                record.message.as_deref().unwrap_or("failed")
            ),
        ),
    }
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

/// What stopped a failed Job from outside (evicted, past its deadline, out
/// of memory), from its Failed condition and its pods.
pub(super) fn stopped_from_outside(job: &Job, pods: &[Pod]) -> Option<super::pod_trouble::Stopped> {
    let failed = job
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    super::pod_trouble::stopped(
        job,
        failed.and_then(|c| c.reason.as_deref()),
        failed.and_then(|c| c.message.as_deref()),
        pods,
    )
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
    // What stopped the run from outside, when the agent could not say.
    let stopped = if succeeded {
        None
    } else {
        stopped_from_outside(job, pods)
    };
    let (error_category, message) = if succeeded {
        (None, None)
    } else {
        failure(summary.as_ref(), stopped, job_message)
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
        error_category,
        message,
    })
}

/// The category and message of a failed run. The agent's, as it knows what
/// failed — unless all it can say is that it was `interrupted` (it gets
/// SIGTERM when the Job's activeDeadlineSeconds passes or its pod is
/// evicted) and the Job or pod say from outside why: then theirs
/// (`deadline`, or the eviction that interrupted it).
pub(super) fn failure(
    summary: Option<&RunSummary>,
    stopped: Option<super::pod_trouble::Stopped>,
    job_message: Option<String>,
) -> (Option<String>, Option<String>) {
    let agent_category = summary.and_then(|s| s.error_category.clone());
    match stopped {
        Some(stopped) if agent_category.as_deref() == Some(ErrorCategory::Interrupted.as_str()) => {
            (Some(stopped.category.to_string()), Some(stopped.message))
        }
        stopped => {
            let message = summary
                .and_then(|s| s.error.clone())
                .or_else(|| stopped.as_ref().map(|s| s.message.clone()))
                .or(job_message);
            (
                agent_category.or_else(|| stopped.map(|s| s.category.to_string())),
                message,
            )
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_job(reason: &str, message: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "orders-1"},
            "spec": {"activeDeadlineSeconds": 3600, "template": {"spec": {"containers": []}}},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason,
                                        "message": message,
                                        "lastTransitionTime": "2026-11-30T03:00:00Z"}]},
        }))
        .expect("job")
    }

    fn pod_with(summary: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "orders-1-x", "labels": {"batch.kubernetes.io/job-name": "orders-1"}},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "agent", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 143,
                "finishedAt": "2026-11-30T03:00:00Z", "message": summary.to_string()}}}]},
        }))
        .expect("pod")
    }

    fn summary(category: &str, error: &str) -> serde_json::Value {
        json!({"command": "backup", "outcome": "interrupted", "error_category": category,
               "error": error, "exit_code": 143})
    }

    #[test]
    fn a_run_past_its_deadline_is_deadline_though_the_agent_says_interrupted() {
        let job = failed_job(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        );
        let pods = [pod_with(summary(
            "interrupted",
            "interrupted by SIGTERM: copying",
        ))];
        let record = record_of(&job, &pods).expect("record");
        assert_eq!(record.error_category.as_deref(), Some("deadline"));
        let message = record.message.unwrap_or_default();
        assert!(
            message.contains("activeDeadlineSeconds (3600 s)"),
            "{message}"
        );
    }

    #[test]
    fn the_agent_keeps_a_cause_it_knows_and_an_interruption_nobody_explains() {
        // The last attempt failed for a reason of its own before the deadline.
        let job = failed_job(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        );
        let pods = [pod_with(summary("store", "the bucket does not exist"))];
        let record = record_of(&job, &pods).expect("record");
        assert_eq!(record.error_category.as_deref(), Some("store"));
        assert_eq!(record.message.as_deref(), Some("the bucket does not exist"));
        // A SIGTERM the Job and pod do not explain stays the agent's.
        let job = failed_job(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
        let pods = [pod_with(summary("interrupted", "interrupted by SIGTERM"))];
        let record = record_of(&job, &pods).expect("record");
        assert_eq!(record.error_category.as_deref(), Some("interrupted"));
        assert_eq!(record.message.as_deref(), Some("interrupted by SIGTERM"));
    }
}
