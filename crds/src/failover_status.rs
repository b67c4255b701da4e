//! `VerticeFailover` status. Two kinds of writer share it, each applying
//! only its own fields with server-side apply:
//! - every probe runner owns its entry of `observations` (a list-map keyed
//!   by `vantage`, field manager `vertice-probe-<vantage>`);
//! - the controller owns everything else (field manager `vertice-controller`).
//!
//! The controller's decision state (health since when, the switch history,
//! a transition in steps) lives here, bounded, so a new leader carries on.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

/// Switches kept in `status.switches`.
pub const MAX_SWITCH_HISTORY: usize = 20;
/// Probe reasons are cut to this many bytes.
pub const MAX_REASON: usize = 200;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerticeFailoverStatus {
    /// What each vantage observed. Owned by the probe runners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["vantage"]))]
    pub observations: Vec<VantageObservation>,

    // Everything below is owned by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FailoverPhase>,
    /// The replica with the largest weight (first by name on a tie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_replica: Option<String>,
    /// The route weights the controller last saw or set, per replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<ReplicaWeight>,
    /// The decided health of each replica across vantages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<ReplicaHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switch_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switch_reason: Option<String>,
    /// The newest switches, newest last (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<SwitchRecord>,
    /// A failback or switchover in progress, moving weights in steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One probe runner's view of every replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VantageObservation {
    pub vantage: String,
    /// When this vantage last finished a round of probes.
    pub observed_at: DateTime<Utc>,
    /// The generation of the spec the probes ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ProbeObservation>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeObservation {
    pub name: String,
    /// The newest probe succeeded.
    pub ok: bool,
    /// Failures in a row, counted up to the failure threshold.
    pub consecutive_failures: u32,
    /// Successes in a row, counted up to the success threshold.
    pub consecutive_successes: u32,
    /// Share of the last 20 probes that succeeded (0–1, two decimals).
    #[serde(default)]
    pub success_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why the newest probe failed (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailoverPhase {
    /// Not enough observations yet to know any replica's health.
    Observing,
    /// Traffic is on the healthy replicas of the highest priority.
    Healthy,
    /// Traffic is on lower-priority replicas because better ones are down.
    FailedOver,
    /// Moving traffic back to a higher-priority replica in steps.
    FailingBack,
    /// A planned switchover is draining traffic in steps.
    SwitchingOver,
    /// Too many switches in the flap window: routing held.
    Pinned,
    /// Too few vantages can see: routing held, nothing decided.
    ObserversStale,
    /// No replica is healthy: routing held.
    NoHealthyReplica,
    /// The VirtualService or its route does not match the replicas.
    RouteMismatch,
    /// `spec.virtualService.namespace` is another namespace the
    /// administrator did not allow: nothing read, nothing steered.
    CrossNamespaceRefused,
    /// The check names a Secret its owner did not opt in: routing held.
    SecretNotAllowed,
}

impl FailoverPhase {
    pub const ALL: [FailoverPhase; 11] = [
        Self::Observing,
        Self::Healthy,
        Self::FailedOver,
        Self::FailingBack,
        Self::SwitchingOver,
        Self::Pinned,
        Self::ObserversStale,
        Self::NoHealthyReplica,
        Self::RouteMismatch,
        Self::CrossNamespaceRefused,
        Self::SecretNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observing => "Observing",
            Self::Healthy => "Healthy",
            Self::FailedOver => "FailedOver",
            Self::FailingBack => "FailingBack",
            Self::SwitchingOver => "SwitchingOver",
            Self::Pinned => "Pinned",
            Self::ObserversStale => "ObserversStale",
            Self::NoHealthyReplica => "NoHealthyReplica",
            Self::RouteMismatch => "RouteMismatch",
            Self::CrossNamespaceRefused => crate::tenancy::CROSS_NAMESPACE_REFUSED,
            Self::SecretNotAllowed => crate::tenancy::SECRET_NOT_ALLOWED,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaWeight {
    pub replica: String,
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaHealth {
    pub name: String,
    pub health: Health,
    /// When `health` last changed.
    pub since: DateTime<Utc>,
    /// Fresh vantages that count it down / up right now.
    #[serde(default)]
    pub down_votes: u32,
    #[serde(default)]
    pub up_votes: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchRecord {
    pub time: DateTime<Utc>,
    /// `Failover`, `Failback` or `Switchover`.
    pub reason: String,
    pub from: Vec<ReplicaWeight>,
    pub to: Vec<ReplicaWeight>,
    #[serde(default)]
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// `Failback` or `Switchover`.
    pub reason: String,
    pub from: Vec<ReplicaWeight>,
    pub to: Vec<ReplicaWeight>,
    /// Steps done so far (1 after the first patch).
    pub step: u32,
    pub steps: u32,
    /// When the next step may be taken.
    pub next_step_at: DateTime<Utc>,
}
