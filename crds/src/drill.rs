//! Restore drills: what a drill checks after restoring a backup into a
//! throwaway target, and what it reports. `VerticeBackup.spec.drill.checks`
//! and the agent's `drill --checks` file are this one type, and the report
//! travels in the run summary to the controller.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a drill checks after the restore. Sections for other engines than
/// the backup's are ignored, so one file can serve several backups.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrillChecks {
    #[serde(default)]
    pub postgres: PostgresChecks,
    #[serde(default)]
    pub redis: RedisChecks,
    /// Checks of an Elasticsearch / OpenSearch restore, beyond the
    /// document-by-document comparison every such drill makes.
    #[serde(default, skip_serializing_if = "SearchChecks::is_empty")]
    pub search: SearchChecks,
}

/// Checks of an Elasticsearch / OpenSearch restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchChecks {
    /// Queries whose count in the restored index must reach a minimum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub assertions: Vec<SearchAssertion>,
}

impl SearchChecks {
    pub fn is_empty(&self) -> bool {
        self.assertions.is_empty()
    }
}

/// One user assertion: `_count` of `query` on the restored copy of
/// `index` is at least `minCount`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchAssertion {
    /// Shown in the report and status when it fails.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// An index of the backup (its original name).
    #[schemars(length(min = 1, max = 255))]
    pub index: String,
    /// The query clause as JSON, e.g. `{"term": {"status": "paid"}}`
    /// (default: every document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 10000))]
    pub query: Option<String>,
    #[serde(default)]
    pub min_count: u64,
}

/// Checks of a PostgreSQL restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresChecks {
    /// Every table, sequence and large object in the archive's table of
    /// contents must exist after the restore (default true).
    #[serde(default = "yes")]
    pub objects: bool,
    /// SQL that must return one row with one `true` column, run read-only
    /// in the restored database. `current_setting('vertice.backup_time')`
    /// is when the backup finished (`::timestamptz`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub assertions: Vec<SqlAssertion>,
}

impl Default for PostgresChecks {
    fn default() -> Self {
        Self {
            objects: true,
            assertions: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// One user assertion, e.g. `SELECT count(*) >= 1000 FROM orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlAssertion {
    /// Shown in the report and status when it fails.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// One statement.
    #[schemars(length(min = 1, max = 10000))]
    pub sql: String,
    /// Cancelled after this long (default 30).
    #[serde(default = "default_assertion_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u32,
}

fn default_assertion_timeout() -> u32 {
    30
}

/// Checks of a Redis restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisChecks {
    /// How far (percent) the restored key count may be from the count
    /// recorded at backup time (default 5: keys expire and the count is
    /// read just before the snapshot).
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub key_count_tolerance_percent: f64,
    /// Keys that must be present, optionally of a type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub keys: Vec<RedisKeyCheck>,
}

impl Default for RedisChecks {
    fn default() -> Self {
        Self {
            key_count_tolerance_percent: default_tolerance(),
            keys: Vec::new(),
        }
    }
}

fn default_tolerance() -> f64 {
    5.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisKeyCheck {
    #[schemars(length(min = 1, max = 1024))]
    pub key: String,
    /// Database number (default 0).
    #[serde(default)]
    #[schemars(range(max = 10000))]
    pub db: u32,
    /// `string`, `list`, `set`, `zset`, `hash` or `stream`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(string|list|set|zset|hash|stream)$"))]
    pub type_: Option<String>,
}

/// What a drill did, in the run summary (`drill` command only).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DrillReport {
    /// When the drilled backup finished.
    #[serde(default)]
    pub backup_finished_at: Option<DateTime<Utc>>,
    /// Age of the drilled backup when the drill started.
    #[serde(default)]
    pub backup_age_seconds: Option<f64>,
    /// How long the restore into the throwaway target took: the measured
    /// recovery time (verification and checks not included).
    #[serde(default)]
    pub restore_seconds: Option<f64>,
    /// Where it was restored, without secrets (`scratch database … on …`,
    /// `ephemeral redis-server`, `snapshot structure`).
    #[serde(default)]
    pub target: Option<String>,
    pub checks_passed: u32,
    pub checks_failed: u32,
    /// Every check, failed ones first (shortened to fit the termination message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckOutcome>,
    /// Whether the throwaway target was removed (false only when cleaning up failed).
    #[serde(default)]
    pub cleaned_up: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl DrillReport {
    pub fn record(&mut self, name: impl Into<String>, result: Result<(), String>) {
        let ok = result.is_ok();
        if ok {
            self.checks_passed += 1;
        } else {
            self.checks_failed += 1;
        }
        self.checks.push(CheckOutcome {
            name: name.into(),
            ok,
            detail: result.err(),
        });
        // Failed checks first, keeping their order.
        self.checks.sort_by_key(|c| c.ok);
    }

    /// The names of the failed checks, for the error message.
    pub fn failed_names(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_default_and_refuse_unknown_fields() {
        let checks: DrillChecks = serde_json::from_str("{}").expect("empty");
        assert!(checks.postgres.objects);
        assert_eq!(checks.redis.key_count_tolerance_percent, 5.0);
        let parsed: DrillChecks = serde_json::from_str(
            r#"{"postgres":{"assertions":[{"name":"orders","sql":"SELECT true"}]},"redis":{"keys":[{"key":"k","type":"hash"}]}}"#,
        )
        .expect("full");
        assert_eq!(parsed.postgres.assertions[0].timeout_seconds, 30);
        assert_eq!(parsed.redis.keys[0].type_.as_deref(), Some("hash"));
        let err = serde_json::from_str::<DrillChecks>(r#"{"postgres":{"asserts":[]}}"#)
            .expect_err("typo");
        assert!(err.to_string().contains("asserts"), "{err}");
    }

    #[test]
    fn failed_checks_lead_the_report() {
        let mut report = DrillReport::default();
        report.record("a", Ok(()));
        report.record("b", Err("no".into()));
        report.record("c", Ok(()));
        assert_eq!((report.checks_passed, report.checks_failed), (2, 1));
        assert_eq!(report.checks[0].name, "b");
        assert_eq!(report.failed_names(), vec!["b"]);
    }
}
