//! Gathers one poll's input: the target's `/scale` and rollout state, its
//! pods, their PodMetrics (`metrics.k8s.io`) and the Prometheus queries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde::Deserialize;
use vertice_crds::scaler::{PrometheusServer, ScaleTargetRef};
use vertice_crds::VerticeScalerSpec;

use super::decide::PromResult;
use super::pods::{PodMetrics, PodMetricsList};
use crate::error::{kube_err, Error};

/// A Prometheus query that takes longer than this is an error, not a wait.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `apiVersion`/`kind` to the resource path once per kind.
#[derive(Default)]
pub struct Kinds {
    known: Mutex<HashMap<(String, String), ApiResource>>,
}

impl Kinds {
    pub async fn resolve(
        &self,
        client: &Client,
        target: &ScaleTargetRef,
    ) -> Result<ApiResource, Error> {
        let key = (target.api_version.clone(), target.kind.clone());
        if let Some(found) = self.known.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(found);
        }
        let (group, version) = match target.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), target.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
        let (resource, _caps) =
            kube::discovery::pinned_kind(client, &gvk)
                .await
                .map_err(kube_err(format!(
                    "discover {} {}",
                    target.api_version, target.kind
                )))?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(key, resource.clone());
        }
        Ok(resource)
    }
}

/// The target's scale and whether a rollout is under way.
pub struct TargetState {
    pub spec_replicas: i32,
    pub status_replicas: i32,
    pub selector: Option<String>,
    pub rollout_in_progress: bool,
}

fn target_api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// A kind with no watch cache, read through its `/scale` (no rollout state).
pub async fn target_by_scale(
    client: &Client,
    kinds: &Kinds,
    namespace: &str,
    target: &ScaleTargetRef,
) -> Result<TargetState, Error> {
    let resource = kinds.resolve(client, target).await?;
    let api = target_api(client, namespace, &resource);
    let scale: Scale = api.get_scale(&target.name).await.map_err(kube_err(format!(
        "get the scale of {} {}",
        target.kind, target.name
    )))?;
    let spec_replicas = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let status = scale.status.unwrap_or_default();
    Ok(TargetState {
        spec_replicas,
        status_replicas: status.replicas,
        selector: status.selector.filter(|s| !s.is_empty()),
        rollout_in_progress: false,
    })
}

/// A `LabelSelector` (matchLabels, matchExpressions) in the string form a
/// list's `labelSelector` takes, as `/scale` reports it.
pub fn selector_string(selector: &serde_json::Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(|m| m.as_object()) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str()?));
        }
    }
    for e in selector
        .get("matchExpressions")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        let key = e.get("key")?.as_str()?;
        let values: Vec<&str> = e
            .get("values")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        parts.push(match e.get("operator")?.as_str()? {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// What tells a Deployment's or StatefulSet's rollout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutView {
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub desired: i64,
    pub replicas: Option<i64>,
    pub updated: Option<i64>,
    /// StatefulSet: current and update revision.
    pub revisions: Option<(String, String)>,
}

impl RolloutView {
    /// Rolling out while its controller has not seen the newest spec, or not
    /// every replica runs the newest template, or old replicas are still
    /// around.
    pub fn rolling_out(&self) -> bool {
        if let (Some(g), Some(o)) = (self.generation, self.observed_generation) {
            if o < g {
                return true;
            }
        }
        if let Some((current, update)) = &self.revisions {
            if current != update {
                return true;
            }
        }
        match (self.replicas, self.updated) {
            (Some(r), Some(u)) => u < self.desired.min(r) || r > self.desired,
            _ => false,
        }
    }
}

pub async fn set_replicas(
    client: &Client,
    kinds: &Kinds,
    namespace: &str,
    target: &ScaleTargetRef,
    replicas: i32,
) -> Result<(), Error> {
    let resource = kinds.resolve(client, target).await?;
    let api = target_api(client, namespace, &resource);
    api.patch_scale(
        &target.name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
    )
    .await
    .map_err(kube_err(format!("scale {} {}", target.kind, target.name)))?;
    Ok(())
}

/// PodMetrics of the pods matching `selector`, through the aggregated
/// `metrics.k8s.io` API. An error is a broken metric, not a failed poll.
pub async fn pod_metrics(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<PodMetrics>, String> {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?labelSelector={}",
        url::form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
    );
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let list: PodMetricsList = client
        .request(request)
        .await
        .map_err(|e| format!("metrics.k8s.io: {}", crate::error::short(&e)))?;
    Ok(list.items)
}

/// The bearer token for Prometheus, from the Secret the spec names.
pub async fn bearer_token(
    client: &Client,
    namespace: &str,
    server: &PrometheusServer,
) -> Result<Option<String>, String> {
    let Some(r) = &server.bearer_token_secret_ref else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get(&r.name).await.map_err(|e| {
        format!(
            "spec.prometheus.bearerTokenSecretRef: Secret {}: {}",
            r.name,
            crate::error::short(&e)
        )
    })?;
    let bytes = secret
        .data
        .and_then(|d| d.get(&r.key).cloned())
        .ok_or_else(|| {
            format!(
                "spec.prometheus.bearerTokenSecretRef: Secret {} has no key {}",
                r.name, r.key
            )
        })?;
    let token = String::from_utf8(bytes.0).map_err(|_| {
        format!(
            "spec.prometheus.bearerTokenSecretRef: key {} is not text",
            r.key
        )
    })?;
    Ok(Some(token.trim().to_string()))
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// Reads an instant query's body: a vector is summed (as the HPA sums an
/// External metric's series), a scalar taken as is, an empty vector is
/// "no data".
pub fn parse_query_response(body: &[u8]) -> PromResult {
    let response: QueryResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return PromResult::Error(format!("not a Prometheus API response: {e}")),
    };
    if response.status != "success" {
        return PromResult::Error(format!(
            "Prometheus: {}: {}",
            response.error_type.unwrap_or_else(|| "error".into()),
            response.error.unwrap_or_default()
        ));
    }
    let Some(data) = response.data else {
        return PromResult::Error("Prometheus answered without data".into());
    };
    let sample = |pair: &serde_json::Value| -> Option<(f64, DateTime<Utc>)> {
        let ts = pair.get(0)?.as_f64()?;
        let value: f64 = pair.get(1)?.as_str()?.parse().ok()?;
        let time = Utc.timestamp_millis_opt((ts * 1000.0) as i64).single()?;
        Some((value, time))
    };
    match data.result_type.as_str() {
        "scalar" => match sample(&data.result) {
            Some((value, time)) => PromResult::Value { value, time },
            None => PromResult::Error("Prometheus returned a malformed scalar".into()),
        },
        "vector" => {
            let Some(series) = data.result.as_array() else {
                return PromResult::Error("Prometheus returned a malformed vector".into());
            };
            if series.is_empty() {
                return PromResult::Empty;
            }
            let mut total = 0.0;
            let mut oldest: Option<DateTime<Utc>> = None;
            for s in series {
                let Some((value, time)) = s.get("value").and_then(sample) else {
                    return PromResult::Error("Prometheus returned a malformed sample".into());
                };
                total += value;
                oldest = Some(oldest.map_or(time, |o| o.min(time)));
            }
            PromResult::Value {
                value: total,
                time: oldest.unwrap_or_default(),
            }
        }
        other => PromResult::Error(format!(
            "the query returns a {other}; a scaler needs an instant vector or a scalar"
        )),
    }
}

/// Bearer tokens read from their Secrets, kept for `TOKEN_TTL`: one Secret
/// read per scaler per poll would be the loop's largest API load. A rotated
/// token is picked up within the TTL; a failed read is not kept.
#[derive(Default)]
pub struct Tokens {
    read: Mutex<HashMap<SecretKey, (std::time::Instant, Option<String>)>>,
}

/// Namespace, Secret name, key.
type SecretKey = (String, String, String);

const TOKEN_TTL: Duration = Duration::from_secs(60);

impl Tokens {
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        server: &PrometheusServer,
    ) -> Result<Option<String>, String> {
        let Some(r) = &server.bearer_token_secret_ref else {
            return Ok(None);
        };
        let key = (namespace.to_string(), r.name.clone(), r.key.clone());
        let fresh = self.read.lock().ok().and_then(|m| {
            m.get(&key)
                .filter(|(at, _)| at.elapsed() < TOKEN_TTL)
                .map(|(_, token)| token.clone())
        });
        if let Some(token) = fresh {
            return Ok(token);
        }
        let token = bearer_token(client, namespace, server).await?;
        if let Ok(mut m) = self.read.lock() {
            m.insert(key, (std::time::Instant::now(), token.clone()));
        }
        Ok(token)
    }
}

/// Prometheus servers that did not answer recently. One dead server must
/// not cost every scaler that queries it a full timeout: within
/// `DOWN_MEMORY` of a transport failure the others get the same error at
/// once (their metrics are broken either way).
#[derive(Default)]
pub struct DownServers {
    down: Mutex<HashMap<String, (std::time::Instant, String)>>,
}

const DOWN_MEMORY: Duration = Duration::from_secs(10);

impl DownServers {
    fn recent(&self, url: &str) -> Option<String> {
        let down = self.down.lock().ok()?;
        let (at, error) = down.get(url)?;
        (at.elapsed() < DOWN_MEMORY).then(|| error.clone())
    }

    fn record(&self, url: &str, failure: Option<&str>) {
        if let Ok(mut down) = self.down.lock() {
            match failure {
                Some(e) => {
                    down.insert(url.to_string(), (std::time::Instant::now(), e.to_string()));
                }
                None => {
                    down.remove(url);
                }
            }
        }
    }
}

/// One instant query. `Err` is a transport failure (no answer, a timeout,
/// a 5xx): the server, not the query, is broken.
pub async fn query(
    http: &reqwest::Client,
    server: &PrometheusServer,
    token: Option<&str>,
    promql: &str,
) -> Result<PromResult, String> {
    let base = format!("{}/api/v1/query", server.url.trim_end_matches('/'));
    let url = match url::Url::parse_with_params(&base, [("query", promql)]) {
        Ok(u) => u,
        Err(e) => {
            return Ok(PromResult::Error(format!(
                "spec.prometheus.url {:?}: {e}",
                server.url
            )))
        }
    };
    let mut request = http.get(url).timeout(QUERY_TIMEOUT);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(r) => r,
        // Without the URL: reqwest's message is enough, and it never holds
        // the token.
        Err(e) => return Err(format!("Prometheus at {}: {}", server.url, e.without_url())),
    };
    let status = response.status();
    match response.bytes().await.map(|b| b.to_vec()) {
        Ok(body) if status.is_success() || status.as_u16() == 400 || status.as_u16() == 422 => {
            Ok(parse_query_response(&body))
        }
        Ok(_) if status.is_server_error() => {
            Err(format!("Prometheus at {} answered {status}", server.url))
        }
        Ok(_) => Ok(PromResult::Error(format!(
            "Prometheus at {} answered {status}",
            server.url
        ))),
        Err(e) => Err(format!("Prometheus at {}: {}", server.url, e.without_url())),
    }
}

/// Runs every Prometheus metric's query of `spec`.
pub async fn prometheus(
    http: &reqwest::Client,
    down: &DownServers,
    tokens: &Tokens,
    client: &Client,
    namespace: &str,
    spec: &VerticeScalerSpec,
) -> BTreeMap<String, PromResult> {
    let mut out = BTreeMap::new();
    let queries: Vec<_> = spec
        .metrics
        .iter()
        .filter_map(|m| Some((m.display_name(), m.prometheus.as_ref()?.query.clone())))
        .collect();
    if queries.is_empty() {
        return out;
    }
    let Some(server) = &spec.prometheus else {
        for (name, _) in queries {
            out.insert(
                name,
                PromResult::Error("spec.prometheus.url is not set".into()),
            );
        }
        return out;
    };
    let token = match tokens.get(client, namespace, server).await {
        Ok(t) => t,
        Err(e) => {
            for (name, _) in queries {
                out.insert(name, PromResult::Error(e.clone()));
            }
            return out;
        }
    };
    for (name, promql) in queries {
        let result = match down.recent(&server.url) {
            Some(error) => PromResult::Error(error),
            None => match query(http, server, token.as_deref(), &promql).await {
                Ok(result) => {
                    down.record(&server.url, None);
                    result
                }
                Err(error) => {
                    down.record(&server.url, Some(&error));
                    PromResult::Error(error)
                }
            },
        };
        out.insert(name, result);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_results_are_summed_and_emptiness_is_its_own_answer() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"q":"a"},"value":[1764669600.5,"30"]},
            {"metric":{"q":"b"},"value":[1764669600,"12.5"]}]}}"#;
        match parse_query_response(vector) {
            PromResult::Value { value, time } => {
                assert_eq!(value, 42.5);
                assert_eq!(time.timestamp(), 1_764_669_600);
            }
            other => panic!("{other:?}"),
        }
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_query_response(empty), PromResult::Empty);
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1764669600,"7"]}}"#;
        assert!(
            matches!(parse_query_response(scalar), PromResult::Value { value, .. } if value == 7.0)
        );
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert_eq!(
            parse_query_response(bad),
            PromResult::Error("Prometheus: bad_data: parse error at char 3".into())
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            matches!(parse_query_response(matrix), PromResult::Error(e) if e.contains("matrix"))
        );
        assert!(matches!(
            parse_query_response(b"<html>"),
            PromResult::Error(_)
        ));
    }

    #[test]
    fn an_unreachable_server_is_remembered_briefly_and_forgotten_on_success() {
        let down = DownServers::default();
        assert_eq!(down.recent("http://p:9090"), None);
        down.record(
            "http://p:9090",
            Some("Prometheus at http://p:9090: connection refused"),
        );
        assert_eq!(
            down.recent("http://p:9090").as_deref(),
            Some("Prometheus at http://p:9090: connection refused")
        );
        assert_eq!(down.recent("http://other:9090"), None);
        down.record("http://p:9090", None);
        assert_eq!(down.recent("http://p:9090"), None);
    }

    #[test]
    fn selectors_take_the_list_form() {
        let s = serde_json::json!({"matchLabels": {"app": "web", "tier": "front"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]},
                                 {"key": "canary", "operator": "DoesNotExist"},
                                 {"key": "zone", "operator": "Exists"}]});
        assert_eq!(
            selector_string(&s).as_deref(),
            Some("app=web,tier=front,env in (prod,staging),!canary,zone")
        );
        assert_eq!(selector_string(&serde_json::json!({})), None);
    }

    #[test]
    fn rollouts_are_seen_from_the_status() {
        let view = |generation, observed, replicas, updated| RolloutView {
            generation: Some(generation),
            observed_generation: Some(observed),
            desired: 3,
            replicas: Some(replicas),
            updated: Some(updated),
            revisions: None,
        };
        assert!(!view(3, 3, 3, 3).rolling_out());
        assert!(view(4, 4, 4, 1).rolling_out(), "a surge");
        assert!(view(5, 4, 3, 3).rolling_out(), "a spec not yet seen");
        let sts = RolloutView {
            revisions: Some(("db-1".into(), "db-2".into())),
            ..view(2, 2, 3, 3)
        };
        assert!(sts.rolling_out());
    }
}
