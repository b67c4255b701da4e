//! The one-line JSON summary the agent writes to `/dev/termination-log` at
//! the end of every run. The controller reads it back from the finished pod's
//! status, so both sides use this one type.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSummary {
    pub command: String,
    /// `succeeded` or `failed`.
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
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub error_category: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

pub const OUTCOME_SUCCEEDED: &str = "succeeded";
pub const OUTCOME_FAILED: &str = "failed";

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
