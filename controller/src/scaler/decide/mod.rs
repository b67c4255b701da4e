//! `plan(spec, observed, history, now)`: one poll's decision, explained.
//! The steps, in upstream's order: the spec (`config`), each metric's
//! proposal (`metric`), the failure policies (`policy`), the desired count
//! from bounds, stabilization and rate limits (`replicas`), and the Events
//! that announce it (`explain`).

mod config;
mod draft;
mod explain;
mod metric;
mod policy;
mod replicas;
mod types;

use chrono::{DateTime, Utc};
use vertice_crds::scaler::{VerticeScalerSpec, VerticeScalerStatus};

use super::conditions::{ABLE_TO_SCALE, SUCCEEDED_GET_SCALE};
use super::unobserved::{self, Unobserved};
use super::windows;
use draft::Draft;
use replicas::History;

pub use config::DEFAULT_MAX_STALENESS;
pub use explain::scale_note;
pub use types::{Observed, Plan, PromResult};

/// Whether the spec can be acted on at all: `Err` with the sentence an
/// `InvalidSpec` decision shows. Depends on the spec only, so every replica
/// of the controller and every tick agree (`overlap.rs` leaves such a
/// scaler out of the claims: it cannot hold a target it never scales).
pub fn validate(spec: &VerticeScalerSpec) -> Result<(), String> {
    config::config(spec, false, DateTime::<Utc>::UNIX_EPOCH).map(|_| ())
}

/// The plan of a poll, whether or not it could read its target: with no
/// target there is nothing to decide, and the status says why
/// (`unobserved.rs`).
pub fn plan_poll(
    spec: &VerticeScalerSpec,
    generation: Option<i64>,
    observation: Result<&Observed, Unobserved<'_>>,
    history: &VerticeScalerStatus,
    now: DateTime<Utc>,
) -> Plan {
    match observation {
        Ok(observed) => plan(spec, generation, observed, history, now),
        Err(why) => {
            let (status, events) = unobserved::plan(spec, generation, history, &why, now);
            Plan {
                desired: status.desired_replicas.unwrap_or_default(),
                current: None,
                scale: false,
                status,
                events,
                fallback_active: false,
                previous: history.clone(),
            }
        }
    }
}

/// One poll's decision on what it observed: the count to set, the status
/// that explains it and the Events that announce it.
pub fn plan(
    spec: &VerticeScalerSpec,
    generation: Option<i64>,
    observed: &Observed,
    history: &VerticeScalerStatus,
    now: DateTime<Utc>,
) -> Plan {
    let mut draft = Draft::new(spec, generation, observed, history, now);
    let cfg = match config::config(spec, observed.rollout_in_progress, now) {
        Ok(cfg) => cfg,
        Err(e) => return draft.invalid_spec(e),
    };
    draft.cond(
        ABLE_TO_SCALE,
        true,
        SUCCEEDED_GET_SCALE,
        "the scaler read the target's scale",
    );
    let bounds = windows::bounds(spec.min_replicas, spec.max_replicas, &cfg.windows, now);
    draft.decision.min_replicas = bounds.min;
    draft.decision.max_replicas = bounds.max;
    draft.decision.open_windows = bounds.open.clone();
    // Every metric is evaluated, also when a bound decides, so the status
    // always shows what the metrics say.
    let proposals = draft.metrics(spec, observed, &cfg);
    let current = observed.spec_replicas;
    let desired = if current == 0 && spec.min_replicas != 0 {
        draft.scaling_disabled()
    } else {
        let history = History {
            recommendations: &history.recommendations,
            scale_events: &history.scale_events,
        };
        replicas::desired(current, &bounds, &proposals, &cfg.behavior, &history, now)
    };
    draft.record(desired, current);
    draft.act(spec, observed, &cfg, &proposals)
}
