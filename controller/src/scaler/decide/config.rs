//! The spec read once per poll: schedule windows, readiness timing,
//! staleness per metric and behaviour, or the sentence that says why the
//! spec cannot be acted on.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use vertice_crds::duration::SpecDuration;
use vertice_crds::scaler::{ScalerMetric, ScalingBehavior, VerticeScalerSpec};

use super::super::algorithm::Timing;
use super::super::behavior::Behavior;
use super::super::quantity;
use super::super::windows::Window;

/// A sample older than this is stale unless the metric says otherwise.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::minutes(2);
const DEFAULT_CPU_INITIALIZATION: Duration = Duration::minutes(5);
const DEFAULT_READINESS_DELAY: Duration = Duration::seconds(30);

pub(super) struct Config {
    pub windows: Vec<Window>,
    pub timing: Timing,
    /// Per metric, in spec order.
    pub staleness: Vec<Duration>,
    pub behavior: Behavior,
}

/// `spec.<field>` as a duration, or the default when unset.
fn duration(
    field: &str,
    value: &Option<SpecDuration>,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(d) => d.get().map_err(|_| {
            let text = d.as_str();
            format!("spec.{field} {text:?}: use a duration such as 30s or 5m")
        }),
    }
}

pub(super) fn config(
    spec: &VerticeScalerSpec,
    rollout_in_progress: bool,
    now: DateTime<Utc>,
) -> Result<Config, String> {
    let windows = spec
        .schedules
        .iter()
        .enumerate()
        .map(|(i, w)| Window::parse(i, w))
        .collect::<Result<Vec<_>, _>>()?;
    let timing = Timing {
        now,
        cpu_initialization_period: duration(
            "cpuInitializationPeriod",
            &spec.cpu_initialization_period,
            DEFAULT_CPU_INITIALIZATION,
        )?,
        initial_readiness_delay: duration(
            "initialReadinessDelay",
            &spec.initial_readiness_delay,
            DEFAULT_READINESS_DELAY,
        )?,
        readiness_for_all_resources: rollout_in_progress,
    };
    let staleness = metrics(&spec.metrics)?;
    check_tolerances(spec.behavior.as_ref())?;
    Ok(Config {
        windows,
        timing,
        staleness,
        behavior: Behavior::from_spec(spec.behavior.as_ref()),
    })
}

/// Each metric's staleness, once every metric is usable.
fn metrics(metrics: &[ScalerMetric]) -> Result<Vec<Duration>, String> {
    let mut names = BTreeSet::new();
    let mut staleness = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        if !names.insert(m.display_name()) {
            return Err(format!(
                "spec.metrics[{i}].name {:?} is used twice: give each metric its own name",
                m.display_name()
            ));
        }
        staleness.push(duration(
            &format!("metrics[{i}].maxStaleness"),
            &m.max_staleness,
            DEFAULT_MAX_STALENESS,
        )?);
        check_targets(i, m)?;
    }
    Ok(staleness)
}

/// As upstream's validation: a target is above zero. Zero divides by zero;
/// a negative target would read a higher load as a lower ratio.
fn check_targets(i: usize, m: &ScalerMetric) -> Result<(), String> {
    if let Some(p) = &m.prometheus {
        for (field, target) in [
            ("targetValue", p.target_value),
            ("targetAverageValue", p.target_average_value),
        ] {
            match target {
                Some(t) if !(t.is_finite() && t > 0.0) => {
                    return Err(format!(
                        "spec.metrics[{i}].prometheus.{field} {t}: use a number above 0, the value to keep the query at"
                    ))
                }
                _ => {}
            }
        }
    }
    if let Some(r) = m.cpu.as_ref().or(m.memory.as_ref()) {
        if let Some(v) = &r.target_average_value {
            quantity::milli(v).map_err(|e| format!("spec.metrics[{i}].targetAverageValue: {e}"))?;
        }
    }
    Ok(())
}

fn check_tolerances(behavior: Option<&ScalingBehavior>) -> Result<(), String> {
    let Some(b) = behavior else {
        return Ok(());
    };
    for (direction, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
        match rules.as_ref().and_then(|r| r.tolerance) {
            // NaN compares false with everything: no ratio would ever be
            // within it, so every wobble would scale.
            Some(t) if t.is_nan() || t < 0.0 => {
                return Err(format!(
                    "spec.behavior.{direction}.tolerance {t}: use a number of 0 or more, such as 0.1 (the default)"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}
