//! The Prometheus half of a poll: the bearer token (only from an opted-in
//! Secret), the servers the administrator allows, the bounded query and
//! what its answer may say in status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde::Deserialize;
use vertice_crds::common::SecretKeySelector;
use vertice_crds::redact::{redact_url, redact_urls};
use vertice_crds::scaler::PrometheusServer;
use vertice_crds::tenancy::{
    check_secret, SecretReferencePolicy, SecretRefused, NOT_ALLOWED_BY_ADMIN, SECRET_NOT_ALLOWED,
};
use vertice_crds::VerticeScalerSpec;

use super::decide::PromResult;
use super::limit::{self, ReadError};
use crate::config::TenancyArgs;

/// A Prometheus query that takes longer than this is an error, not a wait
/// (lowered further by `--max-metric-query-timeout`).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a bearer token could not be had.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenError {
    /// The Secret is not opted in for Vertice: no request may carry it.
    Refused(SecretRefused),
    /// The Secret could not be read or holds no usable token.
    Failed(String),
}

/// The token `selector` names in `secret`, if the administrator's rule lets
/// resources of `namespace` use that Secret. The labels are checked before
/// the data is looked at: a tenant who may create scalers but not read
/// Secrets must not get one sent to a server of her choosing.
pub fn token_from_secret(
    policy: SecretReferencePolicy,
    namespace: &str,
    selector: &SecretKeySelector,
    secret: &Secret,
) -> Result<String, TokenError> {
    check_secret(
        policy,
        namespace,
        &selector.name,
        secret.metadata.labels.as_ref(),
    )
    .map_err(TokenError::Refused)?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .ok_or_else(|| {
            TokenError::Failed(format!(
                "spec.prometheus.bearerTokenSecretRef: Secret {} has no key {}: name the key that holds the token",
                selector.name, selector.key
            ))
        })?;
    let token = std::str::from_utf8(&bytes.0).map_err(|_| {
        TokenError::Failed(format!(
            "spec.prometheus.bearerTokenSecretRef: key {} of Secret {} is not text: store the token as text",
            selector.key, selector.name
        ))
    })?;
    Ok(token.trim().to_string())
}

/// Reads the Secret and takes its token under the administrator's rule.
pub async fn bearer_token(
    client: &Client,
    policy: SecretReferencePolicy,
    namespace: &str,
    selector: &SecretKeySelector,
) -> Result<String, TokenError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let failed = |e: kube::Error| {
        TokenError::Failed(format!(
            "spec.prometheus.bearerTokenSecretRef: Secret {}: {}",
            selector.name,
            crate::error::short(&e)
        ))
    };
    if policy == SecretReferencePolicy::Labelled {
        // Labels first, from the metadata alone: a refused Secret's data
        // never enters this process, and a missing one is refused in the
        // same words (its name's existence is not the tenant's to learn).
        let labels = match secrets.get_metadata_opt(&selector.name).await {
            Ok(Some(meta)) => meta.metadata.labels,
            Ok(None) => None,
            Err(e) => return Err(failed(e)),
        };
        check_secret(policy, namespace, &selector.name, labels.as_ref())
            .map_err(TokenError::Refused)?;
    }
    let secret = secrets.get(&selector.name).await.map_err(failed)?;
    token_from_secret(policy, namespace, selector, &secret)
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

/// Typed, so an answer's series labels are skipped instead of kept as a
/// `serde_json::Value` tree several times the answer's size.
#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Element>,
}

/// An element of `result`: a scalar is `[time, "value"]`, a vector a list
/// of series. Untagged, so only one element at a time is buffered.
#[derive(Deserialize)]
#[serde(untagged)]
enum Element {
    Number(f64),
    Text(String),
    Series(Series),
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    value: Option<(f64, String)>,
}

fn sample(time: f64, value: &str) -> Option<(f64, DateTime<Utc>)> {
    let value: f64 = value.parse().ok()?;
    let time = Utc.timestamp_millis_opt((time * 1000.0) as i64).single()?;
    Some((value, time))
}

/// Reads an instant query's body: a vector is summed (as the HPA sums an
/// External metric's series), a scalar taken as is, an empty vector is
/// "no data".
pub fn parse_query_response(body: &[u8]) -> PromResult {
    let response: QueryResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        // Not the parser's words: they quote the answer, and the answer may
        // come from any server a tenant names.
        Err(_) => return PromResult::Error("the answer is not a Prometheus query result".into()),
    };
    if response.status != "success" {
        return PromResult::Error(prometheus_error(
            response.error_type.as_deref(),
            response.error.as_deref(),
        ));
    }
    let Some(data) = response.data else {
        return PromResult::Error("Prometheus answered without data".into());
    };
    match data.result_type.as_str() {
        "scalar" => match data.result.as_slice() {
            [Element::Number(t), Element::Text(v)] => match sample(*t, v) {
                Some((value, time)) => PromResult::Value { value, time },
                None => PromResult::Error("Prometheus returned a malformed scalar".into()),
            },
            _ => PromResult::Error("Prometheus returned a malformed scalar".into()),
        },
        "vector" => {
            if data.result.is_empty() {
                return PromResult::Empty;
            }
            let mut total = 0.0;
            // The newest sample time: a metric is stale only when even its newest
            // sample is (an instant query stamps every series with the
            // evaluation time anyway).
            let mut newest: Option<DateTime<Utc>> = None;
            for element in &data.result {
                let found = match element {
                    Element::Series(Series {
                        value: Some((t, v)),
                    }) => sample(*t, v),
                    _ => None,
                };
                let Some((value, time)) = found else {
                    return PromResult::Error("Prometheus returned a malformed sample".into());
                };
                total += value;
                newest = Some(newest.map_or(time, |n| n.max(time)));
            }
            PromResult::Value {
                value: total,
                time: newest.unwrap_or_default(),
            }
        }
        other @ ("matrix" | "string") => PromResult::Error(format!(
            "the query returns a {other}; a scaler needs an instant vector or a scalar"
        )),
        _ => PromResult::Error(
            "the query returns an unknown result type; a scaler needs an instant vector or a scalar"
                .into(),
        ),
    }
}

/// Prometheus' own error types; an answer naming another is not taken for one.
const PROMETHEUS_ERROR_TYPES: &[&str] = &[
    "bad_data",
    "timeout",
    "canceled",
    "execution",
    "internal",
    "unavailable",
    "not_found",
    "not_acceptable",
];
/// A Prometheus error message is kept up to here: enough for a PromQL
/// parse error, too little to carry a page of whatever answered.
const MAX_ERROR_TEXT: usize = 200;

/// The error a Prometheus answer reports. Its message helps with a broken
/// query, so it is kept, bounded and only under one of Prometheus' own
/// error types; anything else is reported without its text.
fn prometheus_error(error_type: Option<&str>, error: Option<&str>) -> String {
    match error_type {
        Some(t) if PROMETHEUS_ERROR_TYPES.contains(&t) => {
            let text = error.unwrap_or_default();
            let cut = (0..=text.len().min(MAX_ERROR_TEXT))
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            let more = if cut < text.len() { "…" } else { "" };
            format!("Prometheus: {t}: {}{more}", &text[..cut])
        }
        _ => "Prometheus answered an error of an unknown type".into(),
    }
}

/// Bearer tokens read from their Secrets, and Secrets refused, kept for
/// `TOKEN_TTL`: one Secret read per scaler per poll would be the loop's
/// largest API load. The labels are checked on every read, so a rotated
/// token, a label added or a label removed is noticed within the TTL; a
/// failed read is not kept. A refused Secret's token is never kept.
#[derive(Default)]
pub struct Tokens {
    read: Mutex<HashMap<SecretKey, (Instant, TokenOutcome)>>,
}

/// A token, or the refusal of its Secret.
type TokenOutcome = Result<String, SecretRefused>;

/// Namespace, Secret name, key.
type SecretKey = (String, String, String);

pub const TOKEN_TTL: Duration = Duration::from_secs(60);

impl Tokens {
    fn fresh(&self, key: &SecretKey, now: Instant) -> Option<TokenOutcome> {
        let read = self.read.lock().ok()?;
        let (at, outcome) = read.get(key)?;
        (now.saturating_duration_since(*at) < TOKEN_TTL).then(|| outcome.clone())
    }

    fn remember(&self, key: SecretKey, now: Instant, outcome: TokenOutcome) {
        if let Ok(mut read) = self.read.lock() {
            // Expired entries go, so scalers deleted long ago leave nothing.
            read.retain(|_, (at, _)| now.saturating_duration_since(*at) < TOKEN_TTL);
            read.insert(key, (now, outcome));
        }
    }

    pub async fn get(
        &self,
        client: &Client,
        policy: SecretReferencePolicy,
        namespace: &str,
        server: &PrometheusServer,
    ) -> Result<Option<String>, TokenError> {
        let Some(r) = &server.bearer_token_secret_ref else {
            return Ok(None);
        };
        let key = (namespace.to_string(), r.name.clone(), r.key.clone());
        if let Some(known) = self.fresh(&key, Instant::now()) {
            return known.map(Some).map_err(TokenError::Refused);
        }
        let outcome = bearer_token(client, policy, namespace, r).await;
        match &outcome {
            Ok(token) => self.remember(key, Instant::now(), Ok(token.clone())),
            Err(TokenError::Refused(refused)) => {
                self.remember(key, Instant::now(), Err(refused.clone()))
            }
            Err(TokenError::Failed(_)) => {}
        }
        outcome.map(Some)
    }
}

/// Prometheus servers that did not answer recently, per namespace. One
/// dead server must not cost every scaler that queries it a full timeout:
/// within `DOWN_MEMORY` of a transport failure the namespace's other
/// scalers get the same error at once. Keyed by namespace too, because a
/// timeout is as often the query's fault as the server's: one tenant's slow
/// queries on a shared Prometheus must not fail everyone else's metrics.
#[derive(Default)]
pub struct DownServers {
    down: Mutex<HashMap<ServerKey, (Instant, String)>>,
}

/// Namespace, server URL.
type ServerKey = (String, String);

const DOWN_MEMORY: Duration = Duration::from_secs(10);

impl DownServers {
    pub fn recent(&self, namespace: &str, url: &str) -> Option<String> {
        let down = self.down.lock().ok()?;
        let (at, error) = down.get(&(namespace.to_string(), url.to_string()))?;
        (at.elapsed() < DOWN_MEMORY).then(|| error.clone())
    }

    pub fn record(&self, namespace: &str, url: &str, failure: Option<&str>) {
        let Ok(mut down) = self.down.lock() else {
            return;
        };
        let key = (namespace.to_string(), url.to_string());
        match failure {
            Some(e) => {
                // Expired entries go, so the map holds only current failures.
                down.retain(|_, (at, _)| at.elapsed() < DOWN_MEMORY);
                down.insert(key, (Instant::now(), e.to_string()));
            }
            None => {
                down.remove(&key);
            }
        }
    }
}

/// The administrator's bounds on one Prometheus query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryLimits {
    /// Largest answer read (`--max-metric-response-bytes`).
    pub max_bytes: usize,
    /// Longest wait for the whole answer: ours, capped by
    /// `--max-metric-query-timeout`.
    pub timeout: Duration,
}

impl QueryLimits {
    pub fn new(tenancy: &TenancyArgs) -> Self {
        QueryLimits {
            max_bytes: tenancy.max_metric_response_bytes,
            timeout: QUERY_TIMEOUT.min(tenancy.max_metric_query_timeout),
        }
    }
}

/// A reqwest error with its causes ("connection refused"), never its URL,
/// which may carry the tenant's credentials.
fn describe(error: reqwest::Error) -> String {
    // reqwest's Display stops at "error sending request"; the causes
    // ("connection refused", "operation timed out") say what failed.
    redact_urls(&crate::error::with_causes(&error.without_url()))
}

/// One instant query, its answer read under `limits`. `Err` is a transport
/// failure (no answer, a timeout, a 5xx): the server, or the query's cost
/// on it, is the problem. Every text names the server without credentials.
pub async fn query(
    http: &reqwest::Client,
    server: &PrometheusServer,
    token: Option<&str>,
    promql: &str,
    limits: QueryLimits,
) -> Result<PromResult, String> {
    let shown = redact_url(&server.url);
    // The whole exchange, body included, within the timeout: a server that
    // trickles its answer is cut off like one that never answers.
    match tokio::time::timeout(
        limits.timeout,
        exchange(http, server, token, promql, limits),
    )
    .await
    {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(format!("Prometheus at {shown}: {e}")),
        Err(_) => Err(format!(
            "Prometheus at {shown}: no complete answer within {}s (the query timeout)",
            limits.timeout.as_secs()
        )),
    }
}

async fn exchange(
    http: &reqwest::Client,
    server: &PrometheusServer,
    token: Option<&str>,
    promql: &str,
    limits: QueryLimits,
) -> Result<PromResult, String> {
    // A base URL only: a `#` would push our path into the fragment and let
    // the spec choose the exact path asked for, a `?` would add parameters.
    if url::Url::parse(&server.url).is_ok_and(|u| u.query().is_some() || u.fragment().is_some()) {
        return Ok(PromResult::Error(format!(
            "spec.prometheus.url {:?}: give a base URL without ?query or #fragment, such as http://prometheus.monitoring:9090",
            redact_url(&server.url)
        )));
    }
    let base = format!("{}/api/v1/query", server.url.trim_end_matches('/'));
    // Prometheus stops evaluating when we stop waiting: a tenant's heavy
    // query does not keep loading a shared server after we gave up on it.
    let timeout = format!("{}s", limits.timeout.as_secs().max(1));
    let url = match url::Url::parse_with_params(&base, [("query", promql), ("timeout", &timeout)]) {
        Ok(u) => u,
        Err(e) => {
            return Ok(PromResult::Error(format!(
                "spec.prometheus.url {:?}: {e}: give a base URL such as http://prometheus.monitoring:9090",
                redact_url(&server.url)
            )))
        }
    };
    // No reqwest timeout: the caller's covers connect, answer and body.
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(describe)?;
    let status = response.status();
    if status.is_server_error() {
        return Err(format!("answered {status}"));
    }
    if !(status.is_success() || status.as_u16() == 400 || status.as_u16() == 422) {
        // The body is not read: nothing in it would be used.
        return Ok(PromResult::Error(format!(
            "Prometheus at {} answered {status}",
            redact_url(&server.url)
        )));
    }
    match limit::read_response(response, "Prometheus", limits.max_bytes).await {
        Ok(body) => Ok(parse_query_response(&body)),
        // Too large is the query's doing, not the server's: an error of
        // this metric only.
        Err(e @ ReadError::TooLarge { .. }) => Ok(PromResult::Error(e.to_string())),
        Err(ReadError::Transport(e)) => Err(redact_urls(&e)),
    }
}

/// What the Prometheus metrics of one scaler are queried with.
pub struct Prometheus<'a> {
    pub http: &'a reqwest::Client,
    pub down: &'a DownServers,
    pub tokens: &'a Tokens,
    pub client: &'a Client,
    pub policy: SecretReferencePolicy,
    pub limits: QueryLimits,
    /// `--allowed-prometheus-urls`: empty allows any server.
    pub allowed_urls: &'a [String],
}

/// Whether `url` is one of the servers the administrator allowed: the same
/// scheme, host and port, and a path under the allowed one. Compared
/// parsed, so `http://prom.monitoring` does not allow
/// `http://prom.monitoring.evil.example`.
pub fn prometheus_url_allowed(url: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    allowed.iter().any(|a| {
        let Ok(a) = url::Url::parse(a) else {
            return false;
        };
        let dir = |p: &str| format!("{}/", p.trim_end_matches('/'));
        url.scheme() == a.scheme()
            && url.host_str() == a.host_str()
            && url.port_or_known_default() == a.port_or_known_default()
            && dir(url.path()).starts_with(&dir(a.path()))
    })
}

impl Prometheus<'_> {
    /// Runs every Prometheus metric's query of `spec`. With a refused
    /// Secret no query is sent at all.
    pub async fn run(
        &self,
        namespace: &str,
        spec: &VerticeScalerSpec,
    ) -> BTreeMap<String, PromResult> {
        let queries: Vec<_> = spec
            .metrics
            .iter()
            .filter_map(|m| Some((m.display_name(), m.prometheus.as_ref()?.query.clone())))
            .collect();
        if queries.is_empty() {
            return BTreeMap::new();
        }
        let every = |result: PromResult| {
            queries
                .iter()
                .map(|(name, _)| (name.clone(), result.clone()))
                .collect()
        };
        let Some(server) = &spec.prometheus else {
            return every(PromResult::Error(
                "spec.prometheus.url is not set: give the Prometheus server's base URL".into(),
            ));
        };
        // Before its token is read: a server the administrator did not
        // allow gets no request, with or without credentials.
        if !prometheus_url_allowed(&server.url, self.allowed_urls) {
            return every(PromResult::Refused {
                reason: NOT_ALLOWED_BY_ADMIN,
                message: format!(
                    "spec.prometheus.url {} is not allowed by the administrator \
                     (--allowed-prometheus-urls / chart tenancy.allowedPrometheusUrls)",
                    redact_url(&server.url)
                ),
            });
        }
        let token = match self
            .tokens
            .get(self.client, self.policy, namespace, server)
            .await
        {
            Ok(t) => t,
            Err(TokenError::Refused(refused)) => {
                return every(PromResult::Refused {
                    reason: SECRET_NOT_ALLOWED,
                    message: refused.to_string(),
                })
            }
            Err(TokenError::Failed(e)) => return every(PromResult::Error(e)),
        };
        let mut out = BTreeMap::new();
        for (name, promql) in &queries {
            let result = match self.down.recent(namespace, &server.url) {
                Some(error) => PromResult::Error(error),
                None => match query(self.http, server, token.as_deref(), promql, self.limits).await
                {
                    Ok(result) => {
                        self.down.record(namespace, &server.url, None);
                        result
                    }
                    Err(error) => {
                        self.down.record(namespace, &server.url, Some(&error));
                        PromResult::Error(error)
                    }
                },
            };
            out.insert(name.clone(), result);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_transport_failure_names_its_cause() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let server = PrometheusServer {
            url: format!("http://user:pw@127.0.0.1:{port}"),
            bearer_token_secret_ref: None,
        };
        let limits = QueryLimits {
            max_bytes: 1024,
            timeout: Duration::from_secs(2),
        };
        let e = query(&reqwest::Client::new(), &server, None, "up", limits)
            .await
            .expect_err("nobody listens");
        assert!(e.to_lowercase().contains("connection refused"), "{e}");
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn query_results_are_summed_and_emptiness_is_its_own_answer() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"q":"a"},"value":[1764669600.5,"30"]},
            {"metric":{"q":"b"},"value":[1764669570,"12.5"]}]}}"#;
        match parse_query_response(vector) {
            PromResult::Value { value, time } => {
                assert_eq!(value, 42.5);
                // The newest sample's time: staleness asks whether anything is fresh.
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
    fn an_unreachable_server_is_remembered_briefly_per_namespace_and_forgotten_on_success() {
        let down = DownServers::default();
        let url = "http://prometheus.monitoring:9090";
        assert_eq!(down.recent("team-a", url), None);
        down.record("team-a", url, Some("no complete answer within 5s"));
        assert_eq!(
            down.recent("team-a", url).as_deref(),
            Some("no complete answer within 5s")
        );
        // Another tenant of the same shared server still asks it.
        assert_eq!(down.recent("team-b", url), None);
        assert_eq!(down.recent("team-a", "http://other:9090"), None);
        down.record("team-a", url, None);
        assert_eq!(down.recent("team-a", url), None);
    }

    fn secret(labels: &[(&str, &str)], token: &str) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("prom".into()),
                namespace: Some("team-a".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "token".to_string(),
                k8s_openapi::ByteString(token.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn an_unlabelled_secret_is_refused_before_its_data_is_read() {
        let selector = SecretKeySelector::new("prom", "token");
        let refused = token_from_secret(
            SecretReferencePolicy::Labelled,
            "team-a",
            &selector,
            &secret(&[], "s3cr3t"),
        )
        .expect_err("not opted in");
        let TokenError::Refused(refused) = refused else {
            panic!("{refused:?}");
        };
        let text = refused.to_string();
        assert!(text.contains("Secret team-a/prom"), "{text}");
        assert!(text.contains("vertice.io/allow-reference=true"), "{text}");
        assert!(!text.contains("s3cr3t"));
        let labelled = secret(
            &[(vertice_crds::tenancy::ALLOW_REFERENCE_LABEL, "true")],
            " s3cr3t\n",
        );
        assert_eq!(
            token_from_secret(
                SecretReferencePolicy::Labelled,
                "team-a",
                &selector,
                &labelled
            ),
            Ok("s3cr3t".to_string())
        );
        assert_eq!(
            token_from_secret(
                SecretReferencePolicy::Any,
                "team-a",
                &selector,
                &secret(&[], "t")
            ),
            Ok("t".to_string())
        );
        let missing = SecretKeySelector::new("prom", "nope");
        assert!(matches!(
            token_from_secret(SecretReferencePolicy::Any, "team-a", &missing, &secret(&[], "t")),
            Err(TokenError::Failed(e)) if e.contains("has no key nope")
        ));
    }

    #[test]
    fn cached_tokens_and_refusals_expire_so_labels_are_checked_again() {
        let tokens = Tokens::default();
        let key = (
            "team-a".to_string(),
            "prom".to_string(),
            "token".to_string(),
        );
        let now = Instant::now();
        tokens.remember(key.clone(), now, Ok("t".into()));
        assert_eq!(
            tokens.fresh(&key, now + TOKEN_TTL / 2),
            Some(Ok("t".into()))
        );
        // After the TTL the Secret is read again, labels and all: a label
        // removed stops the token within the TTL.
        assert_eq!(tokens.fresh(&key, now + TOKEN_TTL), None);
        let refused = SecretRefused {
            namespace: "team-a".into(),
            name: "prom".into(),
        };
        tokens.remember(key.clone(), now, Err(refused.clone()));
        assert_eq!(tokens.fresh(&key, now), Some(Err(refused)));
        let other = (
            "team-b".to_string(),
            "prom".to_string(),
            "token".to_string(),
        );
        assert_eq!(tokens.fresh(&other, now), None);
    }

    #[test]
    fn query_limits_are_capped_by_the_administrator() {
        let tenancy = TenancyArgs {
            max_metric_query_timeout: Duration::from_secs(2),
            max_metric_response_bytes: 1000,
            ..TenancyArgs::default()
        };
        assert_eq!(
            QueryLimits::new(&tenancy),
            QueryLimits {
                max_bytes: 1000,
                timeout: Duration::from_secs(2)
            }
        );
        assert_eq!(
            QueryLimits::new(&TenancyArgs::default()).timeout,
            QUERY_TIMEOUT,
            "the admin's 10 s cap does not lengthen our 5 s"
        );
    }

    #[test]
    fn series_labels_are_skipped_and_malformed_samples_named() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1","b":"2"},"value":[1764669600,"1"]},
            {"metric":{},"value":[1764669600,"x"]}]}}"#;
        assert_eq!(
            parse_query_response(body),
            PromResult::Error("Prometheus returned a malformed sample".into())
        );
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1764669600]}}"#;
        assert_eq!(
            parse_query_response(scalar),
            PromResult::Error("Prometheus returned a malformed scalar".into())
        );
    }

    #[test]
    fn prometheus_urls_are_compared_parsed() {
        let allowed = vec!["http://prom.monitoring:9090".to_string()];
        assert!(prometheus_url_allowed("http://anything:1", &[]));
        assert!(prometheus_url_allowed(
            "http://prom.monitoring:9090",
            &allowed
        ));
        assert!(prometheus_url_allowed(
            "http://prom.monitoring:9090/",
            &allowed
        ));
        assert!(prometheus_url_allowed(
            "http://u:p@prom.monitoring:9090/sub",
            &allowed
        ));
        assert!(!prometheus_url_allowed(
            "http://prom.monitoring.evil.example:9090",
            &allowed
        ));
        assert!(!prometheus_url_allowed(
            "https://prom.monitoring:9090",
            &allowed
        ));
        assert!(!prometheus_url_allowed(
            "http://prom.monitoring:9091",
            &allowed
        ));
        assert!(!prometheus_url_allowed("not a url", &allowed));
        let under = vec!["https://thanos.example/tenant-a".to_string()];
        assert!(prometheus_url_allowed(
            "https://thanos.example/tenant-a/",
            &under
        ));
        assert!(!prometheus_url_allowed(
            "https://thanos.example/tenant-ab",
            &under
        ));
        assert!(!prometheus_url_allowed("https://thanos.example/", &under));
    }

    #[test]
    fn answers_of_other_servers_are_not_quoted() {
        let secret = "sk-live-secret-value";
        for body in [
            format!(r#"{{"status":"success","data":"{secret}"}}"#),
            format!(r#"{{"status":"error","errorType":"{secret}","error":"{secret}"}}"#),
            format!(r#"{{"status":"success","data":{{"resultType":"{secret}","result":[]}}}}"#),
            format!("<html>{secret}</html>"),
        ] {
            match parse_query_response(body.as_bytes()) {
                PromResult::Error(e) => assert!(!e.contains(secret), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        // Prometheus' own errors keep their (bounded) words.
        let long = "x".repeat(1000);
        let body =
            format!(r#"{{"status":"error","errorType":"bad_data","error":"parse error {long}"}}"#);
        match parse_query_response(body.as_bytes()) {
            PromResult::Error(e) => {
                assert!(e.starts_with("Prometheus: bad_data: parse error"), "{e}");
                assert!(e.len() < 300, "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}
