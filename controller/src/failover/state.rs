//! The part of `VerticeFailover` status the controller owns and applies —
//! never `observations`, which belong to the probe runners.

use chrono::{DateTime, Utc};
use serde::Serialize;
use vertice_crds::common::Condition;
use vertice_crds::failover::{
    FailoverPhase, ReplicaHealth, ReplicaWeight, SwitchRecord, Transition, VerticeFailoverStatus,
};

#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OwnedStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<FailoverPhase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_replica: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<ReplicaWeight>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<ReplicaHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_switch_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_switch_reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<SwitchRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl OwnedStatus {
    /// Our fields of a status as read.
    pub fn from_status(status: &VerticeFailoverStatus) -> Self {
        Self {
            phase: status.phase,
            active_replica: status.active_replica.clone(),
            weights: status.weights.clone(),
            health: status.health.clone(),
            last_switch_time: status.last_switch_time,
            last_switch_reason: status.last_switch_reason.clone(),
            switches: status.switches.clone(),
            transition: status.transition.clone(),
            observed_generation: status.observed_generation,
            conditions: status.conditions.clone(),
        }
    }
}
