//! What the controller reports on a `VerticeBackup`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

/// Condition types of a `VerticeBackup`.
pub mod condition {
    /// The CronJob exists and matches the spec.
    pub const READY: &str = "Ready";
    /// The most recent finished backup succeeded.
    pub const LAST_BACKUP_SUCCEEDED: &str = "LastBackupSucceeded";
    /// No backup succeeded within `overdueAfter` of a scheduled time.
    pub const BACKUP_OVERDUE: &str = "BackupOverdue";
    /// The newest verified backup is younger than `drill.maxUnverifiedAge`.
    pub const BACKUP_VERIFIED: &str = "BackupVerified";
    /// True while a started run's pod cannot start (a missing Secret, an
    /// image that cannot be pulled): the reason is the container's waiting
    /// reason, the message names what is missing.
    pub const RUN_BLOCKED: &str = "RunBlocked";
}

/// The one-word summary in `kubectl get verticebackups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupPhase {
    /// The spec cannot be turned into a CronJob; see the Ready condition.
    Invalid,
    /// Scheduled, no backup has finished yet.
    Scheduled,
    /// A backup is running.
    Running,
    /// The last backup succeeded and none is overdue.
    Healthy,
    /// The last backup failed.
    Failed,
    /// No backup succeeded in time.
    Overdue,
    /// `spec.suspend` is set.
    Suspended,
    /// A backup run started but its pod cannot start; see the RunBlocked
    /// condition (which also names a drill whose pod cannot start).
    Blocked,
}

/// Observed state of a `VerticeBackup`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerticeBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `.metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the CronJob that runs the backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_job: Option<String>,
    /// The CronJob's `metadata.generation` after the controller last applied
    /// it: while it is unchanged (no hand edit) and the spec hash matches,
    /// the controller does not write the CronJob again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_job_generation: Option<i64>,
    /// When the next backup is scheduled (none while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_backup: Option<DateTime<Utc>>,
    /// When `suspend` was last lifted; runs scheduled before it are not
    /// counted as overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<DateTime<Utc>>,
    /// The most recent finished backup, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupRecord>,
    /// The most recent successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<BackupRecord>,
    /// Recent finished backups, newest first (at most `HISTORY_LIMIT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<BackupRecord>,
    /// The last on-demand run started through the `vertice.io/run-now`
    /// annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_now: Option<RunNowRecord>,
    /// The last on-demand drill started through `vertice.io/drill-now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_now: Option<RunNowRecord>,
    /// A `vertice.io/run-now` request waiting for the backup's active run to
    /// end: one run of a backup at a time, scheduled or on demand. Only the
    /// newest request waits; it starts when the active run ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_now_queued: Option<QueuedRun>,
    /// A `vertice.io/drill-now` request waiting for the active drill to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_now_queued: Option<QueuedRun>,
    /// The drill CronJob's `metadata.generation` after the controller last
    /// applied it (as `cronJobGeneration` is for the backup CronJob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_cron_job_generation: Option<i64>,
    /// Name of the CronJob that runs the restore drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_cron_job: Option<String>,
    /// When the next drill is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drill: Option<DateTime<Utc>>,
    /// The most recent finished drill, passed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillRecord>,
    /// The newest drill that passed: that backup is known to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_backup: Option<DrillRecord>,
    /// Recent finished drills, newest first (at most `DRILL_HISTORY_LIMIT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drill_history: Vec<DrillRecord>,
    /// The longest measured restore among the drills in the history that
    /// passed (`1m32s`): how long a restore would take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_recent_rto: Option<String>,
}

/// The annotation that starts a drill now: each new value starts one Job.
pub const DRILL_NOW_ANNOTATION: &str = "vertice.io/drill-now";

/// How many finished drills `status.drillHistory` keeps.
pub const DRILL_HISTORY_LIMIT: usize = 10;

/// One finished restore drill, from its Job and the agent's run summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillRecord {
    /// The Job that ran it.
    pub job: String,
    pub result: BackupResult,
    /// The drilled backup's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// When the drilled backup was taken (finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_finished_at: Option<DateTime<Utc>>,
    /// When the drill finished.
    pub drilled_at: DateTime<Utc>,
    /// The measured restore time (RTO), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
    #[serde(default)]
    pub checks_passed: u32,
    #[serde(default)]
    pub checks_failed: u32,
    /// Names of the failed checks (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
}

/// The annotation that starts a backup now: each new value starts one Job.
pub const RUN_NOW_ANNOTATION: &str = "vertice.io/run-now";

/// An on-demand run the controller started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunNowRecord {
    /// The annotation's value that asked for it.
    pub token: String,
    /// The Job created for it.
    pub job: String,
    pub started_at: DateTime<Utc>,
}

/// An on-demand request waiting for an active run to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRun {
    /// The annotation's value that asked for it.
    pub token: String,
    /// The active Job it waits for.
    pub waiting_for: String,
    pub queued_at: DateTime<Utc>,
}

/// How many finished backups `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

/// How a backup run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupResult {
    Succeeded,
    Failed,
}

/// One finished backup run, from its Job and the agent's termination message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// The Job that ran it.
    pub job: String,
    pub result: BackupResult,
    /// The backup's id in the store (successful runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Bytes in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// Bytes before compression and encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<u64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The agent's bounded error category (config, source, store, integrity,
    /// encryption, hook, target, check, interrupted) of a failed run; when
    /// the agent could not say, the controller's from the Job and its pods:
    /// `interrupted` (evicted, preempted, node shut down), `deadline`
    /// (`job.activeDeadlineSeconds` passed), `resources` (out of memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
}
