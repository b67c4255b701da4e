//! The one-line JSON summary the agent writes to `/dev/termination-log` at
//! the end of every run. The controller reads it back from the finished pod's
//! status, so both sides use this one type.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSummary {
    pub command: String,
    /// `succeeded`, `failed` or `interrupted` (a signal stopped the run).
    pub outcome: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub backup_id: Option<String>,
    #[serde(default)]
    pub source_kind: Option<String>,
    #[serde(default)]
    pub store: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub stored_bytes: Option<u64>,
    #[serde(default)]
    pub raw_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<u32>,
    /// Hooks that ran, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookOutcome>,
    /// What a `drill` run restored and checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<crate::drill::DrillReport>,
    #[serde(default)]
    pub exit_code: i32,
    /// One of [`ErrorCategory`]'s names, when the run did not succeed.
    #[serde(default)]
    pub error_category: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

pub const OUTCOME_SUCCEEDED: &str = "succeeded";
pub const OUTCOME_FAILED: &str = "failed";
pub const OUTCOME_INTERRUPTED: &str = "interrupted";

/// Why a run failed, as a bounded label: what metrics, Events, status
/// reasons and alerts can tell apart without reading the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorCategory {
    /// A flag, URL, setting or permission is wrong; retrying cannot help.
    Config,
    /// The database being backed up (connection, dump tool, protocol).
    Source,
    /// The object store.
    Store,
    /// A stored backup does not match its manifest.
    Integrity,
    /// Encrypting or decrypting.
    Encryption,
    /// A pre- or post-hook.
    Hook,
    /// The database or file being restored into.
    Target,
    /// A restore drill's check of the restored data failed.
    Check,
    /// SIGTERM / SIGINT stopped the run.
    Interrupted,
}

impl ErrorCategory {
    /// Every category, in the order metrics list them.
    pub const ALL: [ErrorCategory; 9] = [
        ErrorCategory::Config,
        ErrorCategory::Source,
        ErrorCategory::Store,
        ErrorCategory::Integrity,
        ErrorCategory::Encryption,
        ErrorCategory::Hook,
        ErrorCategory::Target,
        ErrorCategory::Check,
        ErrorCategory::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Config => "config",
            ErrorCategory::Source => "source",
            ErrorCategory::Store => "store",
            ErrorCategory::Integrity => "integrity",
            ErrorCategory::Encryption => "encryption",
            ErrorCategory::Hook => "hook",
            ErrorCategory::Target => "target",
            ErrorCategory::Check => "check",
            ErrorCategory::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunSummary {
    pub fn succeeded(&self) -> bool {
        self.outcome == OUTCOME_SUCCEEDED
    }
}

/// What one hook did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookOutcome {
    pub name: String,
    /// `pre` or `post`.
    pub phase: String,
    pub ok: bool,
    pub duration_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
