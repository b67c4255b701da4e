//! One metric's proposal before failure policies, one function per source
//! as upstream's `computeReplicasForMetric`: resource (CPU, memory) and
//! external (a Prometheus query).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use vertice_crds::scaler::{
    MetricState, PrometheusMetric, ResourceMetric, ScalerMetric, TargetType,
};

use super::super::algorithm::{self, CalcError, Proposal, Timing, Tolerances};
use super::super::pods::{self, PodSample, Resource};
use super::super::quantity;
use super::types::{Observed, PromResult};

/// Why a metric has no proposal.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Broken {
    pub state: MetricState,
    pub error: String,
    /// A reading that was taken but cannot be used (a negative one), shown
    /// in the metric's `value`, never in its error text, which is compared
    /// between polls.
    pub value: Option<f64>,
}

impl Broken {
    fn error(error: impl Into<String>) -> Self {
        Broken {
            state: MetricState::Error,
            error: error.into(),
            value: None,
        }
    }

    fn no_data(error: impl Into<String>) -> Self {
        Broken {
            state: MetricState::NoData,
            error: error.into(),
            value: None,
        }
    }

    /// The text names the sample's time, not its age: an age grows every
    /// poll and would make every poll a status write.
    fn stale(newest: Option<DateTime<Utc>>, max_staleness: Duration) -> Self {
        let when = newest
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_else(|| "unknown".into());
        Broken {
            state: MetricState::Stale,
            error: format!(
                "the newest sample (from {when}) is older than maxStaleness ({}s)",
                max_staleness.num_seconds()
            ),
            value: None,
        }
    }
}

impl From<CalcError> for Broken {
    fn from(e: CalcError) -> Self {
        match e {
            CalcError::NoData(m) => Broken::no_data(m),
            CalcError::Failed(m) => Broken::error(m),
        }
    }
}

/// A metric's outcome and the target it was judged against.
pub(super) struct Evaluated {
    pub outcome: Result<Proposal, Broken>,
    pub target: f64,
    pub target_type: TargetType,
}

/// What every source needs besides its own spec.
pub(super) struct Context<'a> {
    pub observed: &'a Observed,
    pub tolerances: Tolerances,
    pub timing: &'a Timing,
    pub max_staleness: Duration,
}

impl Context<'_> {
    fn stale_before(&self) -> DateTime<Utc> {
        self.timing.now - self.max_staleness
    }
}

pub(super) fn evaluate(metric: &ScalerMetric, cx: &Context<'_>) -> Evaluated {
    let resource = match (&metric.cpu, &metric.memory) {
        (Some(r), _) => Some((Resource::Cpu, r)),
        (None, Some(r)) => Some((Resource::Memory, r)),
        _ => None,
    };
    let evaluated = if let Some((resource, r)) = resource {
        let (target, target_type) = resource_target(r);
        Evaluated {
            outcome: resource_metric(resource, r, cx),
            target,
            target_type,
        }
    } else if let Some(p) = &metric.prometheus {
        let (target, target_type) = external_target(p);
        Evaluated {
            outcome: external_metric(&metric.display_name(), p, cx),
            target,
            target_type,
        }
    } else {
        Evaluated {
            outcome: Err(Broken::error(
                "the metric sets none of cpu, memory, prometheus",
            )),
            target: 0.0,
            target_type: TargetType::Value,
        }
    };
    // A proposal is stale only when even its newest sample is.
    let outcome = match evaluated.outcome {
        Ok(p) if p.sample_time.is_some_and(|t| t < cx.stale_before()) => {
            Err(Broken::stale(p.sample_time, cx.max_staleness))
        }
        other => other,
    };
    Evaluated {
        outcome,
        ..evaluated
    }
}

fn resource_target(r: &ResourceMetric) -> (f64, TargetType) {
    match (r.target_average_utilization, &r.target_average_value) {
        (Some(u), _) => (f64::from(u), TargetType::Utilization),
        (None, Some(v)) => (
            quantity::milli(v).unwrap_or(0) as f64 / 1000.0,
            TargetType::AverageValue,
        ),
        (None, None) => (0.0, TargetType::Utilization),
    }
}

fn external_target(p: &PrometheusMetric) -> (f64, TargetType) {
    match (p.target_value, p.target_average_value) {
        (Some(v), _) => (v, TargetType::Value),
        (None, Some(v)) => (v, TargetType::AverageValue),
        (None, None) => (0.0, TargetType::Value),
    }
}

/// CPU or memory of the target's pods (upstream `computeStatusForResourceMetric`).
fn resource_metric(
    resource: Resource,
    r: &ResourceMetric,
    cx: &Context<'_>,
) -> Result<Proposal, Broken> {
    let samples = fresh_samples(resource, r, cx)?;
    let observed = cx.observed;
    let current = observed.spec_replicas;
    let result = match (r.target_average_utilization, &r.target_average_value) {
        (Some(u), _) => algorithm::resource_utilization(
            current,
            u,
            resource,
            r.container.as_deref(),
            &observed.pods,
            &samples,
            cx.tolerances,
            cx.timing,
        ),
        (None, Some(v)) => algorithm::resource_average_value(
            current,
            quantity::milli(v).unwrap_or(0),
            resource,
            &observed.pods,
            &samples,
            cx.tolerances,
            cx.timing,
        ),
        (None, None) => Err(CalcError::Failed(
            "set targetAverageUtilization or targetAverageValue".into(),
        )),
    };
    result.map_err(Broken::from)
}

/// The pods' samples of `resource`, without those older than maxStaleness;
/// stale as a whole when even the newest is.
fn fresh_samples(
    resource: Resource,
    r: &ResourceMetric,
    cx: &Context<'_>,
) -> Result<BTreeMap<String, PodSample>, Broken> {
    let list = match &cx.observed.pod_metrics {
        None => return Err(Broken::error("resource metrics were not fetched")),
        Some(Err(e)) => {
            return Err(Broken::error(format!(
                "unable to get metrics for resource {}: {e}",
                resource.key()
            )))
        }
        Some(Ok(list)) => list,
    };
    let mut samples =
        pods::samples(list, resource, r.container.as_deref()).map_err(Broken::error)?;
    let newest = samples.values().map(|s| s.timestamp).max();
    let stale_before = cx.stale_before();
    if newest.is_some_and(|t| t < stale_before) {
        return Err(Broken::stale(newest, cx.max_staleness));
    }
    // Some samples are fresh: a pod whose own sample is older than
    // maxStaleness counts as a pod without one (full on a scale-down, idle
    // on a scale-up, left out on target), so one lagging pod neither holds
    // the metric nor drives it.
    samples.retain(|_, s| s.timestamp >= stale_before);
    Ok(samples)
}

/// A Prometheus query's answer (upstream `computeStatusForExternalMetric`).
fn external_metric(name: &str, p: &PrometheusMetric, cx: &Context<'_>) -> Result<Proposal, Broken> {
    let (value, time) = match cx.observed.prometheus.get(name) {
        None => return Err(Broken::error("the query was not run")),
        Some(PromResult::Error(e)) => return Err(Broken::error(e.clone())),
        Some(PromResult::Refused { message, .. }) => return Err(Broken::error(message.clone())),
        Some(PromResult::Empty) => {
            return Err(Broken::no_data(
                "the query returned an empty result: the series it selects are gone",
            ))
        }
        Some(PromResult::Value { value, time }) => (*value, *time),
    };
    if !value.is_finite() {
        return Err(Broken::error(format!(
            "the query returned {value}, not a number to scale on"
        )));
    }
    // A negative reading would propose a negative count, which the bounds
    // then turn into a silent scale-down to the minimum (upstream's
    // outcome). Targets are positive, so a negative value is a query that
    // measures something else (a deriv(), a difference): an error of this
    // metric, held by its policy. The text is fixed (the reading is in the
    // metric's value): a negative value that changes every poll must not
    // make every poll a status write.
    if value < 0.0 {
        return Err(Broken {
            value: Some(value),
            ..Broken::error(
                "the query returned a value below zero: a value to scale on is a count, rate or size; \
                 fix the query (clamp_min(..., 0) if negative values mean none)",
            )
        });
    }
    let observed = cx.observed;
    let usage = milli_of(value);
    let result = match (p.target_value, p.target_average_value) {
        (Some(t), _) => algorithm::external_value(
            observed.spec_replicas,
            usage,
            milli_of(t),
            &observed.pods,
            cx.tolerances,
        ),
        (None, Some(t)) => algorithm::external_average_value(
            observed.status_replicas,
            usage,
            milli_of(t),
            cx.tolerances,
        ),
        (None, None) => Err(CalcError::Failed(
            "set targetValue or targetAverageValue".into(),
        )),
    };
    // Only the pod calculator tells no data from a failure; an external
    // value that was read is never "no data".
    let mut proposal = result.map_err(|e| Broken::error(e.to_string()))?;
    proposal.sample_time = Some(time);
    Ok(proposal)
}

fn milli_of(value: f64) -> i64 {
    (value * 1000.0)
        .round()
        .clamp(i64::MIN as f64, i64::MAX as f64) as i64
}
