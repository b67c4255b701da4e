//! What `plan` reads and returns, apart from the steps: the observation of
//! one poll and the plan it leads to. A leaf, so the steps (`metric`,
//! `draft`) and `decide` itself use it without importing each other.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vertice_crds::common::{keep_transition_times, set_condition, Condition};
use vertice_crds::scaler::{ScaleReason, VerticeScalerStatus};

use super::super::conditions::ABLE_TO_SCALE;
use super::super::overlap::Refusal;
use super::super::pods::{PodMetrics, PodView};
use crate::events::Event;

/// One Prometheus query's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PromResult {
    /// The sum of the result vector (or the scalar) and its sample time.
    Value {
        value: f64,
        time: DateTime<Utc>,
    },
    /// An empty vector: the series is gone, which is not a zero.
    Empty,
    Error(String),
    /// The administrator's rules forbid the query (a Secret not opted in):
    /// nothing was sent. `reason` is the condition and Event reason.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// Everything one poll observed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// The target's `/scale`: `spec.replicas` and `status.replicas`.
    pub spec_replicas: i32,
    pub status_replicas: i32,
    /// The pods of `status.selector`.
    pub pods: Vec<PodView>,
    /// PodMetrics of those pods, when a CPU or memory metric asked for them.
    pub pod_metrics: Option<Result<Vec<PodMetrics>, String>>,
    /// By metric name.
    pub prometheus: BTreeMap<String, PromResult>,
    pub rollout_in_progress: bool,
    /// The pause annotation is set.
    pub paused: bool,
    /// Another autoscaler owns the target (`overlap.rs`): decide and
    /// explain, never act.
    pub refusal: Option<Refusal>,
}

/// What to do and what to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub desired: i32,
    /// The target's count as read; `None` when the target was not read, so
    /// no count is current.
    pub current: Option<i32>,
    /// Patch `/scale` to `desired`.
    pub scale: bool,
    pub status: VerticeScalerStatus,
    pub events: Vec<Event>,
    pub fallback_active: bool,
    /// The status to write instead when the scale patch fails.
    pub(super) previous: VerticeScalerStatus,
}

impl Plan {
    /// The scale patch failed: nothing changed, so no scale event is
    /// recorded; the condition says why.
    pub fn scale_failed(&mut self, message: &str, now: DateTime<Utc>) {
        let reason = ScaleReason::FailedUpdateScale;
        let mut status = self.status.clone();
        status.scale_events = self.previous.scale_events.clone();
        status.last_scale_time = self.previous.last_scale_time;
        if let Some(d) = status.last_decision.as_mut() {
            d.reason = reason;
            d.message = message.to_string();
        }
        // Written as it always was, without an observed generation: this
        // refactor keeps what the status shows.
        set_condition(
            &mut status.conditions,
            Condition::new(ABLE_TO_SCALE, false, reason.as_str(), message, now),
        );
        // Measured against the status the poll started from, not the values
        // set on the way (AbleToScale True on reading the scale, then False
        // for a refusal, a pause or a dry run).
        keep_transition_times(&mut status.conditions, &self.previous.conditions);
        self.status = status;
        self.scale = false;
        self.events = vec![Event::warning(reason.as_str(), message)];
    }
}
