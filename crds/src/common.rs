//! Small building blocks every custom resource uses: Secret references and
//! status conditions.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret in the same namespace as the resource. Secrets are only
/// ever referenced, never copied: the controller mounts them into the Job as
/// environment variables (`secretKeyRef`) or files, and the agent reads them
/// there.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl SecretKeySelector {
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
        }
    }
}

/// `True`, `False` or `Unknown`, as in every Kubernetes condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// The standard Kubernetes condition shape, so `kubectl wait --for=condition=Ready`
/// and dashboards work on our resources as on built-in ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase reason for the last transition.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The `.metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition computed now; `set_condition` keeps the previous transition
    /// time when the status did not change.
    pub fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status: if status {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: None,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Replaces the condition of the same type in `conditions`, keeping its
/// `lastTransitionTime` when the status is unchanged (a condition that flips
/// on every reconcile would make "since when" meaningless).
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time;
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}

/// Gives each condition whose status equals that of the same type in
/// `before` (the status as stored) the stored `lastTransitionTime`: for
/// conditions set more than once in one pass, where `set_condition` only
/// sees the pass's own earlier value and would call an unchanged status a
/// transition.
pub fn keep_transition_times(conditions: &mut [Condition], before: &[Condition]) {
    for c in conditions {
        if let Some(stored) = before
            .iter()
            .find(|b| b.type_ == c.type_ && b.status == c.status)
        {
            c.last_transition_time = stored.last_transition_time;
        }
    }
}

/// Drops the condition of `type_`, if present.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of type `type_`, if any.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let t1 = Utc
            .with_ymd_and_hms(2026, 1, 2, 0, 0, 0)
            .single()
            .expect("valid");
        let mut conditions = vec![Condition::new("Ready", true, "A", "", t0)];
        set_condition(
            &mut conditions,
            Condition::new("Ready", true, "B", "again", t1),
        );
        assert_eq!(conditions[0].last_transition_time, t0);
        assert_eq!(conditions[0].reason, "B");
        set_condition(&mut conditions, Condition::new("Ready", false, "C", "", t1));
        assert_eq!(conditions[0].last_transition_time, t1);
        set_condition(&mut conditions, Condition::new("Other", true, "D", "", t1));
        assert_eq!(conditions.len(), 2);
    }

    #[test]
    fn a_status_flipped_and_back_in_one_pass_keeps_the_stored_time() {
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let t1 = Utc
            .with_ymd_and_hms(2026, 1, 2, 0, 0, 0)
            .single()
            .expect("valid");
        let stored = vec![Condition::new("Ready", false, "A", "", t0)];
        let mut pass = stored.clone();
        set_condition(&mut pass, Condition::new("Ready", true, "B", "", t1));
        set_condition(&mut pass, Condition::new("Ready", false, "C", "", t1));
        set_condition(&mut pass, Condition::new("New", true, "D", "", t1));
        assert_eq!(pass[0].last_transition_time, t1, "set_condition alone");
        keep_transition_times(&mut pass, &stored);
        assert_eq!(pass[0].last_transition_time, t0);
        assert_eq!(pass[1].last_transition_time, t1, "nothing stored to keep");
    }
}
