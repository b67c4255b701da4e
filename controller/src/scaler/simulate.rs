//! `vertice-controller scaler simulate --file CASE.yaml`: what the scaler
//! would decide, with no cluster. The file holds the VerticeScaler, `now`,
//! the target's scale, its Pods and PodMetrics as Kubernetes objects (what
//! `kubectl get -o yaml` prints), Prometheus results by metric name and,
//! optionally, the recorded history; the answer is the decision as JSON.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::Value;
use vertice_crds::scaler::VerticeScalerStatus;
use vertice_crds::VerticeScaler;

use super::decide::{self, Observed, PromResult};
use super::pods::{PodMetrics, PodView};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    now: DateTime<Utc>,
    scaler: VerticeScaler,
    scale: Scale,
    #[serde(default)]
    pods: Option<Value>,
    #[serde(default)]
    pod_metrics: Option<Value>,
    #[serde(default)]
    prometheus: BTreeMap<String, PromCase>,
    #[serde(default)]
    rollout_in_progress: bool,
    #[serde(default)]
    paused: bool,
    /// Default: `scaler.status`.
    #[serde(default)]
    history: Option<VerticeScalerStatus>,
}

/// An `autoscaling/v1` Scale as `kubectl get --subresource=scale` prints
/// it, or just `{replicas: N}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scale {
    Object {
        spec: ScaleSpec,
        #[serde(default)]
        status: Option<ScaleStatus>,
    },
    Short {
        replicas: i32,
    },
}

#[derive(Debug, Deserialize)]
struct ScaleSpec {
    #[serde(default)]
    replicas: i32,
}

#[derive(Debug, Deserialize)]
struct ScaleStatus {
    #[serde(default)]
    replicas: i32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PromCase {
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    empty: bool,
}

/// A `List` (`items`) or a plain sequence, of objects of type `T`.
fn items<T: serde::de::DeserializeOwned>(
    field: &str,
    value: Option<Value>,
) -> Result<Vec<T>, String> {
    let value = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(mut o)) if o.contains_key("items") => {
            o.remove("items").unwrap_or_default()
        }
        Some(v) => v,
    };
    let Value::Array(list) = value else {
        return Err(format!(
            "{field}: expected a list of objects or a List with items"
        ));
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value(v).map_err(|e| format!("{field}[{i}]: {e}")))
        .collect()
}

/// The decision for the case in `yaml`, as JSON.
pub fn run(yaml: &str) -> Result<Value, String> {
    let case: Case = serde_saphyr::from_str(yaml).map_err(|e| format!("case file: {e}"))?;
    let (spec_replicas, status_replicas) = match case.scale {
        Scale::Object { spec, status } => {
            (spec.replicas, status.map_or(spec.replicas, |s| s.replicas))
        }
        Scale::Short { replicas } => (replicas, replicas),
    };
    let pods: Vec<Pod> = items("pods", case.pods)?;
    let pod_metrics = match case.pod_metrics {
        Some(Value::Object(o)) if o.contains_key("error") => Some(Err(o
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string())),
        other => Some(Ok(items::<PodMetrics>("podMetrics", other)?)),
    };
    let mut prometheus = BTreeMap::new();
    for (name, p) in case.prometheus {
        let result = match (p.error, p.empty, p.value) {
            (Some(e), _, _) => PromResult::Error(e),
            (None, true, _) => PromResult::Empty,
            (None, false, Some(value)) => PromResult::Value {
                value,
                time: p.time.unwrap_or(case.now),
            },
            (None, false, None) => {
                return Err(format!(
                    "prometheus.{name}: give value (and time), error, or empty: true"
                ))
            }
        };
        prometheus.insert(name, result);
    }
    let observed = Observed {
        spec_replicas,
        status_replicas,
        pods: pods.iter().map(PodView::from_pod).collect(),
        pod_metrics,
        prometheus,
        rollout_in_progress: case.rollout_in_progress,
        paused: case.paused,
    };
    let history = case
        .history
        .or_else(|| case.scaler.status.clone())
        .unwrap_or_default();
    let plan = decide::plan(
        &case.scaler.spec,
        case.scaler.metadata.generation,
        &observed,
        &history,
        case.now,
    );
    let mut out = serde_json::to_value(&plan.status.last_decision).map_err(|e| e.to_string())?;
    if let Value::Object(o) = &mut out {
        o.insert("scale".into(), Value::Bool(plan.scale));
        o.insert(
            "events".into(),
            plan.events
                .iter()
                .map(|e| serde_json::json!({"type": if e.warning {"Warning"} else {"Normal"}, "reason": e.reason, "note": e.note}))
                .collect(),
        );
        o.insert(
            "conditions".into(),
            serde_json::to_value(&plan.status.conditions).map_err(|e| e.to_string())?,
        );
        // What the status would hold next: feed it back as `history` to
        // simulate the following poll.
        let next = VerticeScalerStatus {
            recommendations: plan.status.recommendations.clone(),
            scale_events: plan.status.scale_events.clone(),
            last_scale_time: plan.status.last_scale_time,
            ..Default::default()
        };
        o.insert(
            "history".into(),
            serde_json::to_value(next).map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}
