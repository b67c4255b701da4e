//! The HPA's replica calculator (`pkg/controller/podautoscaler/replica_calculator.go`),
//! reproduced step for step on milli-values so that it gives the HPA's
//! answer, including its integer truncations and its treatment of pending,
//! unready and unmeasured pods.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::pods::{PodSample, PodView, Readiness, Resource};

/// How far the usage ratio may stray from 1.0 before anything changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub up: f64,
    pub down: f64,
}

impl Tolerances {
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// Why the calculator has no proposal. "No data" (the pods report no
/// usable sample) is told apart from a failure by its type, so the metric's
/// state never rests on the wording of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum CalcError {
    /// No sample to compute from: the metric is `NoData`.
    NoData(String),
    /// Anything else (no pods, a missing request, a zero target): `Error`.
    Failed(String),
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalcError::NoData(m) | CalcError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<String> for CalcError {
    fn from(message: String) -> Self {
        CalcError::Failed(message)
    }
}

impl From<&str> for CalcError {
    fn from(message: &str) -> Self {
        CalcError::Failed(message.to_string())
    }
}

/// The clock and the readiness rules the pod grouping needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub now: DateTime<Utc>,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
    /// During a rollout, readiness is judged for every resource, not only
    /// CPU, so a surge of starting pods never reads as spare capacity or
    /// load (an addition of ours; the HPA judges only CPU).
    pub readiness_for_all_resources: bool,
}

/// One metric's proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// Utilization in percent, or the per-pod / total amount in units.
    pub value: f64,
    pub ratio: f64,
    /// The newest sample the proposal rests on: a metric is stale only when
    /// even this one is older than its `maxStaleness`.
    pub sample_time: Option<DateTime<Utc>>,
}

struct Groups {
    ready_count: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

/// upstream `groupPods`.
fn group_pods(
    pods: &[PodView],
    samples: &BTreeMap<String, PodSample>,
    resource: Resource,
    timing: &Timing,
) -> Groups {
    let mut groups = Groups {
        ready_count: 0,
        unready: BTreeSet::new(),
        missing: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    for pod in pods {
        if pod.deleted || pod.phase == "Failed" {
            groups.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == "Pending" {
            groups.unready.insert(pod.name.clone());
            continue;
        }
        let Some(sample) = samples.get(&pod.name) else {
            groups.missing.insert(pod.name.clone());
            continue;
        };
        if resource == Resource::Cpu || timing.readiness_for_all_resources {
            let unready = match (pod.ready, pod.start_time) {
                (Some((readiness, transition)), Some(start)) => {
                    // Only `False` sets a sample aside; `Unknown` does not,
                    // as upstream.
                    let not_ready = readiness == Readiness::False;
                    if start + timing.cpu_initialization_period > timing.now {
                        // Inside the initialization period: ignore the sample
                        // if the pod is unready or no full window was measured
                        // since its last readiness change.
                        not_ready || sample.timestamp < transition + sample.window
                    } else {
                        // Afterwards: ignore it only if the pod is unready and
                        // has never been ready.
                        not_ready && start + timing.initial_readiness_delay > transition
                    }
                }
                _ => true,
            };
            if unready {
                groups.unready.insert(pod.name.clone());
                continue;
            }
        }
        groups.ready_count += 1;
    }
    groups
}

/// upstream `GetResourceUtilizationRatio`: utilization is truncated to a
/// whole percent before the ratio is taken.
fn utilization_ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32), String> {
    let (mut used, mut requested) = (0_i64, 0_i64);
    for (pod, value) in metrics {
        if let Some(request) = requests.get(pod) {
            used += value;
            requested += request;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = i32::try_from(used * 100 / requested).unwrap_or(i32::MAX);
    Ok((f64::from(utilization) / f64::from(target), utilization))
}

/// upstream `GetMetricUsageRatio`: the average is an integer division.
fn usage_ratio(metrics: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().sum();
    let average = total / i64::try_from(metrics.len().max(1)).unwrap_or(1);
    (average as f64 / target as f64, average)
}

fn ceil_replicas(x: f64) -> i32 {
    // Go's int32(math.Ceil(x)); proposals are bounded later.
    x.ceil().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

fn newest(
    samples: &BTreeMap<String, PodSample>,
    used: &BTreeMap<String, i64>,
) -> Option<DateTime<Utc>> {
    used.keys()
        .filter_map(|p| samples.get(p).map(|s| s.timestamp))
        .max()
}

/// What tells the utilization target from the average value target; the
/// rest of the calculation is the same for both.
trait PerPodTarget {
    /// The usage ratio of these per-pod values and the value to report.
    fn ratio(&self, metrics: &BTreeMap<String, i64>) -> Result<(f64, f64), String>;
    /// What a pod without a sample counts as on a scale-down.
    fn full(&self, pod: &str) -> i64;
}

struct Utilization {
    target: i32,
    requests: BTreeMap<String, i64>,
}

impl PerPodTarget for Utilization {
    fn ratio(&self, metrics: &BTreeMap<String, i64>) -> Result<(f64, f64), String> {
        utilization_ratio(metrics, &self.requests, self.target)
            .map(|(ratio, utilization)| (ratio, f64::from(utilization)))
    }

    /// 100 % of its request, or the target when that is higher.
    fn full(&self, pod: &str) -> i64 {
        let fallback = i64::from(self.target.max(100));
        self.requests.get(pod).copied().unwrap_or(0) * fallback / 100
    }
}

struct AverageValue {
    target_milli: i64,
}

impl PerPodTarget for AverageValue {
    fn ratio(&self, metrics: &BTreeMap<String, i64>) -> Result<(f64, f64), String> {
        let (ratio, average) = usage_ratio(metrics, self.target_milli);
        Ok((ratio, average as f64 / 1000.0))
    }

    /// Exactly the target.
    fn full(&self, _pod: &str) -> i64 {
        self.target_milli
    }
}

/// The pods-and-samples part shared by the utilization and the average
/// value targets (upstream's `GetResourceReplicas` and
/// `calcPlainMetricReplicas`, which differ only in the ratio and in what a
/// missing pod counts as on a scale-down). `target` is built only once
/// there are samples to judge, so its errors (a missing request) come in
/// upstream's order.
fn pod_replicas<T: PerPodTarget>(
    current: i32,
    pods: &[PodView],
    samples: &BTreeMap<String, PodSample>,
    resource: Resource,
    tolerances: Tolerances,
    timing: &Timing,
    target: impl FnOnce() -> Result<T, String>,
) -> Result<Proposal, CalcError> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group_pods(pods, samples, resource, timing);
    let mut metrics: BTreeMap<String, i64> = samples
        .iter()
        .filter(|(p, _)| !groups.ignored.contains(*p) && !groups.unready.contains(*p))
        .map(|(p, s)| (p.clone(), s.value))
        .collect();
    if metrics.is_empty() {
        return Err(CalcError::NoData(
            "did not receive metrics for targeted pods (pods might be unready)".into(),
        ));
    }
    let target = target()?;
    let sample_time = newest(samples, &metrics);
    let (ratio, value) = target.ratio(&metrics)?;
    let proposal = |replicas| Proposal {
        replicas,
        value,
        ratio,
        sample_time,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_replicas(ratio * groups.ready_count as f64)));
    }
    // A pod without a sample counts as full on a scale-down and idle on a
    // scale-up; at exactly 1.0 it is left out, so a workload on target
    // stays where it is.
    for pod in &groups.missing {
        if ratio < 1.0 {
            metrics.insert(pod.clone(), target.full(pod));
        } else if ratio > 1.0 {
            metrics.insert(pod.clone(), 0);
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            metrics.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _) = target.ratio(&metrics)?;
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        // Too small a change, or the rebalanced ratio flips direction.
        return Ok(proposal(current));
    }
    let replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// `Utilization` target on CPU or memory (upstream `GetResourceReplicas`).
#[allow(clippy::too_many_arguments)]
pub fn resource_utilization(
    current: i32,
    target_utilization: i32,
    resource: Resource,
    container: Option<&str>,
    pods: &[PodView],
    samples: &BTreeMap<String, PodSample>,
    tolerances: Tolerances,
    timing: &Timing,
) -> Result<Proposal, CalcError> {
    pod_replicas(current, pods, samples, resource, tolerances, timing, || {
        let mut requests = BTreeMap::new();
        for pod in pods {
            requests.insert(pod.name.clone(), pod.request(resource, container)?);
        }
        Ok(Utilization {
            target: target_utilization,
            requests,
        })
    })
}

/// `AverageValue` target on CPU or memory (upstream `GetRawResourceReplicas`).
pub fn resource_average_value(
    current: i32,
    target_milli: i64,
    resource: Resource,
    pods: &[PodView],
    samples: &BTreeMap<String, PodSample>,
    tolerances: Tolerances,
    timing: &Timing,
) -> Result<Proposal, CalcError> {
    if target_milli <= 0 {
        return Err("targetAverageValue must be more than zero".into());
    }
    pod_replicas(current, pods, samples, resource, tolerances, timing, || {
        Ok(AverageValue { target_milli })
    })
}

/// A `Value` target on a summed external value (upstream
/// `GetExternalMetricReplicas` with `getUsageRatioReplicaCount`).
pub fn external_value(
    spec_replicas: i32,
    usage_milli: i64,
    target_milli: i64,
    pods: &[PodView],
    tolerances: Tolerances,
) -> Result<Proposal, CalcError> {
    if target_milli <= 0 {
        return Err("targetValue must be more than zero".into());
    }
    let ratio = usage_milli as f64 / target_milli as f64;
    let replicas = if spec_replicas != 0 {
        if tolerances.is_within(ratio) {
            spec_replicas
        } else {
            if pods.is_empty() {
                return Err("no pods returned by selector while calculating replica count".into());
            }
            let ready = pods.iter().filter(|p| p.is_running_and_ready()).count();
            ceil_replicas(ratio * ready as f64)
        }
    } else {
        // From zero: as many pods as the ratio says.
        ceil_replicas(ratio)
    };
    Ok(Proposal {
        replicas,
        value: usage_milli as f64 / 1000.0,
        ratio,
        sample_time: None,
    })
}

/// An `AverageValue` target on a summed external value (upstream
/// `GetExternalPerPodMetricReplicas`, judged against `status.replicas`).
pub fn external_average_value(
    status_replicas: i32,
    usage_milli: i64,
    target_milli: i64,
    tolerances: Tolerances,
) -> Result<Proposal, CalcError> {
    if target_milli <= 0 {
        return Err("targetAverageValue must be more than zero".into());
    }
    let ratio = usage_milli as f64 / (target_milli as f64 * f64::from(status_replicas));
    let mut replicas = status_replicas;
    if !tolerances.is_within(ratio) {
        replicas = ceil_replicas(usage_milli as f64 / target_milli as f64);
    }
    let per_pod = if status_replicas > 0 {
        (usage_milli as f64 / f64::from(status_replicas)).ceil() / 1000.0
    } else {
        usage_milli as f64 / 1000.0
    };
    Ok(Proposal {
        replicas,
        value: per_pod,
        ratio,
        sample_time: None,
    })
}
