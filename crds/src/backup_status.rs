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
    /// encryption, hook, target, interrupted) of a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
}
