//! `vertice-controller scaler simulate --file CASE.yaml`: what the scaler
//! would decide, with no cluster. The file holds the VerticeScaler, `now`,
//! the target's scale, its Pods and PodMetrics as Kubernetes objects (what
//! `kubectl get -o yaml` prints), Prometheus results by metric name and,
//! optionally, the recorded history; the answer is the decision as JSON.
//!
//! A case is a debugging tool, so nothing in it is ignored: a key the
//! scaler's CRD does not know, a result for a metric the scaler does not
//! have, or a result missing for one it does, is an error naming the key.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::{Map, Value};
use vertice_crds::scaler::{VerticeScalerSpec, VerticeScalerStatus, PAUSED_ANNOTATION};
use vertice_crds::VerticeScaler;

use super::decide::{self, Observed, Plan, PromResult};
use super::pods::{PodMetrics, PodView};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    now: Value,
    scaler: Value,
    scale: Value,
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
    history: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PromCase {
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    time: Option<Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    empty: Option<bool>,
}

/// A time as RFC 3339; a time or a date without a zone is read as UTC (a
/// case is written by hand, and `kubectl` prints UTC anyway).
fn time(key: &str, value: &Value) -> Result<DateTime<Utc>, String> {
    let bad = || {
        format!(
            "{key}: {value} is not a time: use RFC 3339 such as \"2026-12-02T09:00:00Z\" (a time or date without a zone is read as UTC)"
        )
    };
    let text = value.as_str().ok_or_else(bad)?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(bad)
}

/// The first key of `value` that `schema` (an OpenAPI v3 schema from the
/// CRD) does not know, as `path.key`, with the keys it does know. Only
/// keys are checked; values are checked by the types.
fn unknown_key(schema: &Value, value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return None;
            }
            let known = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, v) in map {
                let sub = match (known.and_then(|k| k.get(key)), additional) {
                    (Some(sub), _) | (None, Some(sub)) => sub,
                    // A schema without properties is free-form.
                    (None, None) if known.is_none() => continue,
                    (None, None) => {
                        let names: Vec<&str> = known
                            .into_iter()
                            .flat_map(|k| k.keys().map(String::as_str))
                            .collect();
                        return Some(format!(
                            "{path}.{key}: unknown key; known here: {}",
                            names.join(", ")
                        ));
                    }
                };
                if let Some(e) = unknown_key(sub, v, &format!("{path}.{key}")) {
                    return Some(e);
                }
            }
            None
        }
        Value::Array(items) => {
            let sub = schema.get("items")?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, v)| unknown_key(sub, v, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// The VerticeScaler's schema, as the API server would check it.
fn scaler_schema() -> Result<Value, String> {
    let crd = serde_json::to_value(VerticeScaler::crd()).map_err(|e| e.to_string())?;
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .ok_or_else(|| "the VerticeScaler CRD has no schema".to_string())
}

fn scaler(value: Value, schema: &Value) -> Result<VerticeScaler, String> {
    let Value::Object(map) = &value else {
        return Err(
            "scaler: expected the VerticeScaler object (kubectl get vsc NAME -o yaml)".into(),
        );
    };
    for (key, v) in map {
        match key.as_str() {
            "apiVersion" | "metadata" => {}
            "kind" if v.as_str() == Some("VerticeScaler") => {}
            "kind" => return Err(format!("scaler.kind: {v} is not VerticeScaler")),
            "spec" | "status" => {
                let sub = schema
                    .pointer(&format!("/properties/{key}"))
                    .unwrap_or(&Value::Null);
                if let Some(e) = unknown_key(sub, v, &format!("scaler.{key}")) {
                    return Err(e);
                }
            }
            other => {
                return Err(format!(
                "scaler.{other}: unknown key; known here: apiVersion, kind, metadata, spec, status"
            ))
            }
        }
    }
    serde_json::from_value(value).map_err(|e| format!("scaler: {e}"))
}

fn history(value: Value, schema: &Value) -> Result<VerticeScalerStatus, String> {
    let sub = schema.pointer("/properties/status").unwrap_or(&Value::Null);
    if let Some(e) = unknown_key(sub, &value, "history") {
        return Err(e);
    }
    serde_json::from_value(value).map_err(|e| format!("history: {e}"))
}

fn replicas_of(map: &Map<String, Value>, path: &str, known: &[&str]) -> Result<i32, String> {
    if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "{path}.{key}: unknown key; known here: {}",
            known.join(", ")
        ));
    }
    match map.get("replicas") {
        // A Scale of 0 replicas omits the field.
        None => Ok(0),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{path}.replicas: {v} is not a replica count")),
    }
}

/// `(spec.replicas, status.replicas)` of an `autoscaling/v1` Scale as
/// `kubectl get --subresource=scale` prints it, or of `{replicas: N}`.
fn scale(value: &Value) -> Result<(i32, i32), String> {
    let shape = "scale: give the target's Scale (kubectl get deploy NAME --subresource=scale -o yaml) or {replicas: N}";
    let Value::Object(map) = value else {
        return Err(shape.into());
    };
    if !map.contains_key("spec") {
        if !map.contains_key("replicas") {
            return Err(shape.into());
        }
        let n = replicas_of(map, "scale", &["replicas"])?;
        return Ok((n, n));
    }
    if let Some(key) = map
        .keys()
        .find(|k| !["apiVersion", "kind", "metadata", "spec", "status"].contains(&k.as_str()))
    {
        return Err(format!(
            "scale.{key}: unknown key; known here: apiVersion, kind, metadata, spec, status"
        ));
    }
    let object = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(format!("scale.{key}: {other} is not an object")),
    };
    let spec = replicas_of(
        object("spec")?.unwrap_or(&Map::new()),
        "scale.spec",
        &["replicas"],
    )?;
    let status = match object("status")? {
        Some(o) => replicas_of(o, "scale.status", &["replicas", "selector"])?,
        None => spec,
    };
    Ok((spec, status))
}

/// A `List` (`items`) or a plain sequence, of objects of `kind`.
fn items<T: serde::de::DeserializeOwned>(
    field: &str,
    kind: &str,
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
            "{field}: expected a list of {kind}s or a List with items"
        ));
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            match v.get("kind").and_then(Value::as_str) {
                Some(k) if k != kind => {
                    return Err(format!("{field}[{i}].kind: {k} is not a {kind}"))
                }
                _ => {}
            }
            serde_json::from_value(v).map_err(|e| format!("{field}[{i}]: {e}"))
        })
        .collect()
}

/// PodMetrics, or the error the metrics API answered with.
fn pod_metrics(value: Option<Value>) -> Result<Result<Vec<PodMetrics>, String>, String> {
    match value {
        Some(Value::Object(o)) if o.contains_key("error") => {
            if let Some(key) = o.keys().find(|k| *k != "error") {
                return Err(format!(
                    "podMetrics.{key}: unknown key beside error; give either the PodMetrics or {{error: \"…\"}}"
                ));
            }
            match o.get("error") {
                Some(Value::String(e)) => Ok(Err(e.clone())),
                other => Err(format!(
                    "podMetrics.error: {} is not a message: give the error text as a string",
                    other.cloned().unwrap_or_default()
                )),
            }
        }
        other => Ok(Ok(items("podMetrics", "PodMetrics", other)?)),
    }
}

fn prom_result(name: &str, p: PromCase, now: DateTime<Utc>) -> Result<PromResult, String> {
    let one_of = || {
        format!("prometheus.{name}: give exactly one of value (and time), error, or empty: true")
    };
    if p.time.is_some() && p.value.is_none() {
        return Err(format!("prometheus.{name}.time: only a value has a time"));
    }
    match (p.value, p.error, p.empty) {
        (Some(value), None, None) => Ok(PromResult::Value {
            value,
            time: match &p.time {
                Some(t) => time(&format!("prometheus.{name}.time"), t)?,
                None => now,
            },
        }),
        (None, Some(e), None) => Ok(PromResult::Error(e)),
        (None, None, Some(true)) => Ok(PromResult::Empty),
        _ => Err(one_of()),
    }
}

/// The decision for the case in `yaml`, as JSON.
pub fn run(yaml: &str) -> Result<Value, String> {
    let case: Case = serde_saphyr::from_str(yaml).map_err(|e| format!("case file: {e}"))?;
    let now = time("now", &case.now)?;
    let schema = scaler_schema()?;
    let scaler = scaler(case.scaler, &schema)?;
    let (spec_replicas, status_replicas) = scale(&case.scale)?;
    let spec = &scaler.spec;
    let pods: Vec<Pod> = items("pods", "Pod", case.pods)?;
    let observed = Observed {
        spec_replicas,
        status_replicas,
        pods: pods.iter().map(PodView::from_pod).collect(),
        pod_metrics: case_pod_metrics(spec, case.pod_metrics)?,
        prometheus: case_prometheus(spec, case.prometheus, now)?,
        rollout_in_progress: case.rollout_in_progress,
        // The annotation pauses the controller, so it pauses the case too.
        paused: case.paused
            || scaler
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PAUSED_ANNOTATION))
                .is_some_and(|v| v == "true"),
        // A case is one scaler: no other autoscaler claims its target.
        refusal: None,
    };
    let history = match case.history {
        Some(value) => history(value, &schema)?,
        None => scaler.status.clone().unwrap_or_default(),
    };
    let plan = decide::plan(spec, scaler.metadata.generation, &observed, &history, now);
    output(&plan)
}

/// The case's PodMetrics, which it must give exactly when a metric reads
/// CPU or memory.
fn case_pod_metrics(
    spec: &VerticeScalerSpec,
    given: Option<Value>,
) -> Result<Option<Result<Vec<PodMetrics>, String>>, String> {
    let resource_metric = spec
        .metrics
        .iter()
        .find(|m| m.cpu.is_some() || m.memory.is_some())
        .map(|m| m.display_name());
    match (resource_metric, given) {
        (Some(_), Some(value)) => Ok(Some(pod_metrics(Some(value))?)),
        (Some(name), None) => Err(format!(
            "podMetrics: metric {name} reads CPU or memory: give kubectl get pods.metrics.k8s.io -l SELECTOR -o yaml, or {{error: \"…\"}}"
        )),
        (None, Some(_)) => Err(
            "podMetrics: no metric of the scaler reads CPU or memory: remove podMetrics".into(),
        ),
        (None, None) => Ok(None),
    }
}

/// The case's query answers: one for each prometheus metric, no other.
fn case_prometheus(
    spec: &VerticeScalerSpec,
    given: BTreeMap<String, PromCase>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, PromResult>, String> {
    let prometheus_metrics: Vec<String> = spec
        .metrics
        .iter()
        .filter(|m| m.prometheus.is_some())
        .map(|m| m.display_name())
        .collect();
    let mut prometheus = BTreeMap::new();
    for (name, p) in given {
        if !prometheus_metrics.contains(&name) {
            return Err(format!(
                "prometheus.{name}: the scaler has no prometheus metric named {name} (its prometheus metrics: {})",
                if prometheus_metrics.is_empty() {
                    "none".to_string()
                } else {
                    prometheus_metrics.join(", ")
                }
            ));
        }
        let result = prom_result(&name, p, now)?;
        prometheus.insert(name, result);
    }
    if let Some(name) = prometheus_metrics
        .iter()
        .find(|n| !prometheus.contains_key(*n))
    {
        return Err(format!(
            "prometheus.{name}: missing: give value (and time), error, or empty: true"
        ));
    }
    Ok(prometheus)
}

/// The decision as JSON, with whether it scales, its Events, conditions
/// and the whole status (the next case's `history`).
fn output(plan: &Plan) -> Result<Value, String> {
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
        // The whole status the controller would write, `lastDecision`
        // included (it decides which Events repeat): feed it back as
        // `history` to simulate the following poll.
        o.insert(
            "history".into(),
            serde_json::to_value(&plan.status).map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASE: &str = r#"
now: "2026-12-02T09:00:00Z"
scaler:
  apiVersion: vertice.io/v1alpha1
  kind: VerticeScaler
  metadata: {name: workers, namespace: shop}
  spec:
    targetRef: {kind: Deployment, name: workers}
    minReplicas: 2
    maxReplicas: 40
    prometheus: {url: "http://prometheus.monitoring:9090"}
    metrics:
      - name: queue-depth
        prometheus: {query: "sum(q)", targetAverageValue: 100}
scale: {replicas: 6}
prometheus:
  queue-depth: {value: 1250, time: "2026-12-02T08:59:55Z"}
"#;

    fn with(from: &str, to: &str) -> String {
        assert!(CASE.contains(from), "{from}");
        CASE.replacen(from, to, 1)
    }

    fn error(yaml: &str) -> String {
        run(yaml).expect_err("a bad case")
    }

    #[test]
    fn the_base_case_decides() {
        let d = run(CASE).expect("decision");
        assert_eq!(d["desiredReplicas"], 12, "{d:#}");
    }

    #[test]
    fn a_time_without_a_zone_is_utc_and_a_bad_one_names_the_key() {
        let zulu = run(CASE).expect("decision");
        for naive in [
            "2026-12-02T09:00:00",
            "2026-12-02 09:00:00",
            "2026-12-02T10:00:00+01:00",
        ] {
            let d = run(&with("2026-12-02T09:00:00Z", naive)).expect(naive);
            assert_eq!(d["time"], zulu["time"], "{naive}");
        }
        let d = run(&with("2026-12-02T09:00:00Z", "2026-12-02")).expect("a date");
        assert_eq!(d["time"], "2026-12-02T00:00:00Z");
        let e = error(&with("\"2026-12-02T09:00:00Z\"", "tomorrow"));
        assert!(
            e.starts_with("now: \"tomorrow\" is not a time") && e.contains("2026-12-02T09:00:00Z"),
            "{e}"
        );
        let e = error(&with("time: \"2026-12-02T08:59:55Z\"", "time: 5"));
        assert!(
            e.starts_with("prometheus.queue-depth.time: 5 is not a time"),
            "{e}"
        );
    }

    #[test]
    fn prometheus_results_must_match_the_prometheus_metrics() {
        let e = error(&with("  queue-depth: {value", "  queue-dept: {value"));
        assert!(
            e.starts_with("prometheus.queue-dept: the scaler has no prometheus metric named queue-dept (its prometheus metrics: queue-depth)"),
            "{e}"
        );
        let e = error(&format!("{CASE}  cpu: {{value: 1}}\n"));
        assert!(e.starts_with("prometheus.cpu: the scaler has no"), "{e}");
        let e = error(&with(
            "prometheus:\n  queue-depth: {value: 1250, time: \"2026-12-02T08:59:55Z\"}",
            "",
        ));
        assert!(e.starts_with("prometheus.queue-depth: missing"), "{e}");
        let e = error(&with(
            "{value: 1250, time: \"2026-12-02T08:59:55Z\"}",
            "{value: 1, error: down}",
        ));
        assert!(
            e.starts_with("prometheus.queue-depth: give exactly one of"),
            "{e}"
        );
        let e = error(&with(
            "{value: 1250, time: \"2026-12-02T08:59:55Z\"}",
            "{empty: false}",
        ));
        assert!(
            e.starts_with("prometheus.queue-depth: give exactly one of"),
            "{e}"
        );
        let e = error(&with(
            "{value: 1250, time: \"2026-12-02T08:59:55Z\"}",
            "{error: down, time: \"2026-12-02T08:59:55Z\"}",
        ));
        assert!(
            e.starts_with("prometheus.queue-depth.time: only a value"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_in_the_scaler_are_named() {
        let e = error(&with("targetAverageValue: 100", "targetAverageValu: 100"));
        assert!(
            e.starts_with(
                "scaler.spec.metrics[0].prometheus.targetAverageValu: unknown key; known here: "
            ) && e.contains("targetAverageValue"),
            "{e}"
        );
        let e = error(&with("    minReplicas: 2", "    minReplica: 2"));
        assert!(e.starts_with("scaler.spec.minReplica: unknown key"), "{e}");
        let e = error(&with("  spec:\n", "  specs: {}\n  spec:\n"));
        assert!(e.starts_with("scaler.specs: unknown key"), "{e}");
        let e = error(&with(
            "kind: VerticeScaler",
            "kind: HorizontalPodAutoscaler",
        ));
        assert!(
            e.starts_with("scaler.kind: \"HorizontalPodAutoscaler\""),
            "{e}"
        );
        let e = error(&format!("{CASE}history: {{recomendations: []}}\n"));
        assert!(e.starts_with("history.recomendations: unknown key"), "{e}");
    }

    #[test]
    fn other_bad_inputs_name_their_key() {
        let e = error(&with(
            "scale: {replicas: 6}",
            "scale: {replicas: 6, replica: 3}",
        ));
        assert!(e.starts_with("scale.replica: unknown key"), "{e}");
        let e = error(&with(
            "scale: {replicas: 6}",
            "scale: {spec: {replicas: -1}}",
        ));
        assert!(
            e.starts_with("scale.spec.replicas: -1 is not a replica count"),
            "{e}"
        );
        let e = error(&with("scale: {replicas: 6}", "scale: 6"));
        assert!(e.starts_with("scale: give the target's Scale"), "{e}");
        let e = error(&format!("{CASE}podMetrics: []\n"));
        assert!(
            e.starts_with("podMetrics: no metric of the scaler reads CPU or memory"),
            "{e}"
        );
        let e = error(&format!(
            "{CASE}pods: [{{kind: Deployment, metadata: {{name: x}}}}]\n"
        ));
        assert!(
            e.starts_with("pods[0].kind: Deployment is not a Pod"),
            "{e}"
        );
        let cpu = with(
            "      - name: queue-depth",
            "      - cpu: {targetAverageUtilization: 50}\n      - name: queue-depth",
        );
        let e = error(&cpu);
        assert!(
            e.starts_with("podMetrics: metric cpu reads CPU or memory"),
            "{e}"
        );
        let e = error(&format!("{cpu}podMetrics: {{error: 5}}\n"));
        assert!(e.starts_with("podMetrics.error: 5 is not a message"), "{e}");
        assert!(run(&format!("{cpu}podMetrics: {{error: unavailable}}\n")).is_ok());
    }

    #[test]
    fn the_printed_history_feeds_the_next_run() {
        // The only metric is broken: the scaler holds and says so once.
        let broken = with(
            "{value: 1250, time: \"2026-12-02T08:59:55Z\"}",
            "{error: connection refused}",
        );
        let first = run(&broken).expect("decision");
        assert_eq!(first["reason"], "MetricBroken");
        assert_eq!(first["events"][0]["reason"], "ScaleHeld");
        assert_eq!(first["history"]["lastDecision"]["reason"], "MetricBroken");
        let next = format!(
            "{}history: {}\n",
            broken.replace("2026-12-02T09:00:00Z", "2026-12-02T09:00:15Z"),
            first["history"]
        );
        let second = run(&next).expect("decision");
        assert_eq!(second["reason"], "MetricBroken");
        assert_eq!(second["events"], serde_json::json!([]), "{second:#}");
    }

    #[test]
    fn the_pause_annotation_pauses_the_case() {
        let paused = with(
            "metadata: {name: workers, namespace: shop}",
            "metadata: {name: workers, namespace: shop, annotations: {vertice.io/paused: \"true\"}}",
        );
        let d = run(&paused).expect("decision");
        assert_eq!(
            (d["notActed"].clone(), d["scale"].clone()),
            (true.into(), false.into())
        );
    }
}
