//! `VerticeFailover`: health checks on a set of replicas and the Istio
//! VirtualService whose route weights send traffic to the healthy replicas
//! with the highest priority. Probe runners (`vertice-agent probe serve`, one
//! per vantage) write what they observed into the status; the controller
//! decides and patches the weights.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeySelector;
pub use crate::failover_status::*;

/// A user asks for a planned switchover by setting this annotation to a
/// replica's name; traffic drains to it in `policy.switchoverSteps` steps
/// and stays there while the annotation is set and the replica is healthy.
pub const SWITCHOVER_ANNOTATION: &str = "vertice.io/switchover-to";

/// A probe runner writes its entry at least every two periods (a heartbeat
/// when nothing changed), and a round may take up to the timeout: a
/// staleness limit at or below `2 × period + timeout` makes healthy runners
/// stale between writes. Mirrored by
/// [`VerticeFailoverSpec::observer_stale_after_too_short`] for objects
/// stored before the rule.
pub const OBSERVER_STALE_RULE: &str = "!has(self.policy) || !has(self.policy.observerStaleAfterSeconds) || self.policy.observerStaleAfterSeconds > 2 * self.check.periodSeconds + self.check.timeoutSeconds";
pub const OBSERVER_STALE_MESSAGE: &str = "policy.observerStaleAfterSeconds must be greater than 2 * check.periodSeconds + check.timeoutSeconds: a probe runner writes at least every two periods, so a shorter limit makes healthy runners stale between writes";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vertice.io",
    version = "v1alpha1",
    kind = "VerticeFailover",
    plural = "verticefailovers",
    namespaced,
    status = "VerticeFailoverStatus",
    shortname = "vf",
    shortname = "vfo",
    shortname = "vfailover",
    category = "vertice",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeReplica"}"#,
    printcolumn = r#"{"name":"VirtualService","type":"string","jsonPath":".spec.virtualService.name"}"#,
    printcolumn = r#"{"name":"Last Switch","type":"date","jsonPath":".status.lastSwitchTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.replicas.all(r, self.replicas.exists_one(o, o.name == r.name))").message("replica names must be unique"))]
#[x_kube(validation = Rule::new("!(has(self.check.tcp) || has(self.check.grpc)) || has(self.check.port) || self.replicas.all(r, has(r.probeAddress))").message("tcp and grpc checks need check.port or a probeAddress (host:port) on every replica"))]
#[x_kube(validation = Rule::new("!has(self.policy) || !has(self.policy.quorum) || !has(self.policy.vantages) || self.policy.quorum <= size(self.policy.vantages)").message("policy.quorum cannot exceed the number of policy.vantages"))]
#[x_kube(validation = Rule::new(OBSERVER_STALE_RULE).message(OBSERVER_STALE_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct VerticeFailoverSpec {
    /// The VirtualService whose HTTP route weights are set.
    pub virtual_service: VirtualServiceRef,
    /// Candidates, each a destination of the route.
    #[schemars(length(min = 2, max = 16))]
    pub replicas: Vec<FailoverReplica>,
    /// How each replica is checked.
    pub check: HealthCheck,
    #[serde(default)]
    pub policy: FailoverPolicy,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace (default: the failover's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the HTTP route to steer (default: the first route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverReplica {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Destination host in the route (`pg-a.db.svc.cluster.local`).
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Destination subset, when the route tells replicas apart by subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Address the probe checks (`host:port`); default `host` and
    /// `check.port` (or the check's usual port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 260))]
    pub probe_address: Option<String>,
    /// Higher wins among healthy replicas; equal priorities share traffic.
    #[serde(default)]
    pub priority: i32,
}

/// Exactly one of `postgres`, `redis`, `http`, `tcp`, `grpc`, plus timing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.redis), has(self.http), has(self.tcp), has(self.grpc)].filter(x, x).size() == 1").message("a check sets exactly one of postgres, redis, http, tcp, grpc"))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcCheck>,
    /// Port used with each replica's host when it has no `probeAddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: u32,
    #[serde(default = "default_check_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
    /// Consecutive failures before a vantage counts a replica as down.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
    /// Consecutive successes before a vantage counts a replica as up again.
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,
}

fn default_period() -> u32 {
    10
}
fn default_check_timeout() -> u32 {
    3
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    3
}

/// Which role a database replica must have to count as healthy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RequiredRole {
    /// Any role: reachable and answering is enough.
    #[default]
    Any,
    /// Must accept writes (PostgreSQL not in recovery, Redis `master`).
    Primary,
    /// Must be a standby / replica.
    Replica,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    #[serde(default)]
    pub require_role: RequiredRole,
    /// A standby whose replay lags more than this many seconds is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_replication_lag_seconds: Option<u32>,
    /// `disable`, `prefer` or `require` (TLS without verification of the
    /// server's name, as libpq's `require`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(disable|prefer|require)$"))]
    pub ssl_mode: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    #[serde(default)]
    pub require_role: RequiredRole,
    /// A replica whose link to its primary is down is unhealthy (default true).
    #[serde(default = "default_true")]
    pub require_replica_link: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.minStatus <= self.maxStatus").message("minStatus must not exceed maxStatus"))]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    #[serde(default = "default_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    #[serde(default)]
    pub https: bool,
    /// Accepted status codes, inclusive (default 200–399).
    #[serde(default = "default_min_status")]
    #[schemars(range(min = 100, max = 599))]
    pub min_status: u16,
    #[serde(default = "default_max_status")]
    #[schemars(range(min = 100, max = 599))]
    pub max_status: u16,
    /// The body must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// The body must be JSON with this field (a dotted path) equal to a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_field: Option<JsonFieldCheck>,
    /// Request headers; values from Secrets for tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HttpHeader>,
    /// PEM CA bundle that signs the server's certificate, besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<SecretKeySelector>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        Self {
            path: default_path(),
            https: false,
            min_status: default_min_status(),
            max_status: default_max_status(),
            body_contains: None,
            json_field: None,
            headers: Vec::new(),
            ca_bundle_secret_ref: None,
        }
    }
}

fn default_path() -> String {
    "/".into()
}
fn default_min_status() -> u16 {
    200
}
fn default_max_status() -> u16 {
    399
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonFieldCheck {
    /// Dotted path into the body, e.g. `status` or `checks.db.state`;
    /// array elements by index (`items.0.ok`).
    #[schemars(length(min = 1))]
    pub path: String,
    /// Expected value, compared with the field's JSON value (strings as
    /// they are, other values in their JSON text: `true`, `3`).
    pub equals: String,
}

/// One header: a literal `value` or a `valueFrom` Secret key, not both.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("a header sets exactly one of value, valueFrom"))]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeySelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct TcpCheck {}

/// The standard `grpc.health.v1.Health/Check`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrpcCheck {
    /// Service name to ask about (default: the server as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Connect with TLS (system roots).
    #[serde(default)]
    pub tls: bool,
}

/// How observations become decisions, and the anti-thrash rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    /// Vantages expected to observe (default: every vantage that has
    /// written observations). Observations from others are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub vantages: Option<Vec<String>>,
    /// Vantages that must agree before a replica counts as down or up
    /// (default: a majority of the expected vantages). Nothing is decided
    /// unless a majority of the expected vantages is heard; with fewer
    /// heard than `quorum` (a vantage lost with its region) every heard
    /// vantage must agree. Two vantages cannot survive the loss of one:
    /// add a third (a witness) — condition `QuorumResilient` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub quorum: Option<u32>,
    /// A vantage whose entry the controller has not seen change for this
    /// long, by the controller's own clock, is stale (default 3 × period +
    /// timeout + 5 s). Runners' timestamps are never compared with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub observer_stale_after_seconds: Option<u32>,
    /// Never start a switch sooner than this after the last one.
    #[serde(default = "default_min_switch")]
    pub min_switch_interval_seconds: u32,
    /// More than `maxSwitches` switches within `flapWindowSeconds` pins the
    /// routing until the window has room again.
    #[serde(default = "default_max_switches")]
    #[schemars(range(min = 1, max = 100))]
    pub max_switches: u32,
    #[serde(default = "default_flap_window")]
    #[schemars(range(min = 1))]
    pub flap_window_seconds: u32,
    /// Move traffic back to a higher-priority replica automatically.
    #[serde(default = "default_true")]
    pub auto_failback: bool,
    /// ...only after it stayed healthy this long.
    #[serde(default = "default_failback")]
    pub failback_after_seconds: u32,
    /// Failback in this many weight steps (1: all at once).
    #[serde(default = "default_failback_steps")]
    #[schemars(range(min = 1, max = 20))]
    pub failback_steps: u32,
    /// A planned switchover drains in this many steps.
    #[serde(default = "default_switchover_steps")]
    #[schemars(range(min = 1, max = 20))]
    pub switchover_steps: u32,
    /// Pause between weight steps.
    #[serde(default = "default_step_interval")]
    #[schemars(range(min = 1))]
    pub step_interval_seconds: u32,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            vantages: None,
            quorum: None,
            observer_stale_after_seconds: None,
            min_switch_interval_seconds: default_min_switch(),
            max_switches: default_max_switches(),
            flap_window_seconds: default_flap_window(),
            auto_failback: true,
            failback_after_seconds: default_failback(),
            failback_steps: default_failback_steps(),
            switchover_steps: default_switchover_steps(),
            step_interval_seconds: default_step_interval(),
        }
    }
}

fn default_min_switch() -> u32 {
    60
}
fn default_max_switches() -> u32 {
    3
}
fn default_flap_window() -> u32 {
    3600
}
fn default_failback() -> u32 {
    300
}
fn default_failback_steps() -> u32 {
    1
}
fn default_switchover_steps() -> u32 {
    4
}
fn default_step_interval() -> u32 {
    30
}
fn default_true() -> bool {
    true
}

impl HealthCheck {
    /// The check's kind, as metrics and logs name it.
    pub fn kind(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else if self.redis.is_some() {
            "redis"
        } else if self.http.is_some() {
            "http"
        } else if self.grpc.is_some() {
            "grpc"
        } else {
            "tcp"
        }
    }

    /// The port used when a replica has no probe address and `port` is unset.
    pub fn usual_port(&self) -> Option<u16> {
        match () {
            _ if self.postgres.is_some() => Some(5432),
            _ if self.redis.is_some() => Some(6379),
            _ if self.http.as_ref().is_some_and(|h| h.https) => Some(443),
            _ if self.http.is_some() => Some(80),
            _ => None,
        }
    }
}

impl VerticeFailoverSpec {
    /// Why `policy.observerStaleAfterSeconds` is too short for the runners'
    /// heartbeat ([`OBSERVER_STALE_RULE`], which the API server enforces on
    /// writes since it was added; an object stored before keeps it).
    pub fn observer_stale_after_too_short(&self) -> Option<String> {
        let limit = self.policy.observer_stale_after_seconds?;
        let heartbeat =
            2 * u64::from(self.check.period_seconds) + u64::from(self.check.timeout_seconds);
        (u64::from(limit) <= heartbeat).then(|| {
            format!(
                "spec.policy.observerStaleAfterSeconds is {limit} but must be greater than \
                 2 * spec.check.periodSeconds + spec.check.timeoutSeconds = {heartbeat}: a probe \
                 runner writes at least every two periods, so healthy runners would turn stale \
                 between writes; raise spec.policy.observerStaleAfterSeconds or remove it (default \
                 3 * periodSeconds + timeoutSeconds + 5)"
            )
        })
    }
}

impl FailoverReplica {
    /// `host:port` to probe, or None when neither the replica nor the check
    /// names a port.
    pub fn probe_target(&self, check: &HealthCheck) -> Option<String> {
        if let Some(address) = &self.probe_address {
            if address
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                return Some(address.clone());
            }
            return check
                .port
                .or(check.usual_port())
                .map(|p| format!("{address}:{p}"));
        }
        check
            .port
            .or(check.usual_port())
            .map(|p| format!("{}:{p}", self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: serde_json::Value) -> HealthCheck {
        serde_json::from_value(json).expect("check")
    }

    #[test]
    fn probe_targets_take_the_address_then_the_port_then_the_usual_port() {
        let replica = |address: Option<&str>| FailoverReplica {
            name: "a".into(),
            host: "pg-a.db".into(),
            subset: None,
            probe_address: address.map(String::from),
            priority: 0,
        };
        let pg = check(serde_json::json!({"postgres": {}}));
        assert_eq!(
            replica(None).probe_target(&pg).as_deref(),
            Some("pg-a.db:5432")
        );
        assert_eq!(
            replica(Some("10.0.0.1:6543")).probe_target(&pg).as_deref(),
            Some("10.0.0.1:6543")
        );
        assert_eq!(
            replica(Some("pg-a.other")).probe_target(&pg).as_deref(),
            Some("pg-a.other:5432")
        );
        let tcp = check(serde_json::json!({"tcp": {}}));
        assert_eq!(replica(None).probe_target(&tcp), None);
        let tcp_port = check(serde_json::json!({"tcp": {}, "port": 9000}));
        assert_eq!(
            replica(None).probe_target(&tcp_port).as_deref(),
            Some("pg-a.db:9000")
        );
        let https = check(serde_json::json!({"http": {"https": true}}));
        assert_eq!(
            replica(None).probe_target(&https).as_deref(),
            Some("pg-a.db:443")
        );
    }

    fn spec(period: u32, timeout: u32, stale: Option<u32>) -> VerticeFailoverSpec {
        let mut policy = serde_json::json!({});
        if let Some(stale) = stale {
            policy["observerStaleAfterSeconds"] = stale.into();
        }
        serde_json::from_value(serde_json::json!({
            "virtualService": {"name": "db"},
            "replicas": [{"name": "a", "host": "pg-a"}, {"name": "b", "host": "pg-b"}],
            "check": {"postgres": {}, "periodSeconds": period, "timeoutSeconds": timeout},
            "policy": policy,
        }))
        .expect("spec")
    }

    #[test]
    fn the_staleness_limit_must_outlast_the_runners_heartbeat() {
        // The rule sits at spec level (it reads spec.policy and spec.check),
        // with the message naming both.
        let crd =
            serde_json::to_value(<VerticeFailover as kube::CustomResourceExt>::crd()).expect("crd");
        let rules = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["x-kubernetes-validations"];
        let rule = rules
            .as_array()
            .expect("spec-level rules")
            .iter()
            .find(|r| r["rule"] == OBSERVER_STALE_RULE)
            .expect("the staleness rule at spec level");
        let message = rule["message"].as_str().expect("message");
        for field in [
            "policy.observerStaleAfterSeconds",
            "check.periodSeconds",
            "check.timeoutSeconds",
        ] {
            assert!(message.contains(field), "{message}");
        }
        // Unset stays valid (the default, 3 periods + timeout + 5, is
        // always above the bound); the bound is exclusive. The same cases,
        // by the Rust mirror the controller uses for objects stored before
        // the rule: the CEL rule reads
        // `stale > 2 * period + timeout`, nothing else.
        assert!(OBSERVER_STALE_RULE.ends_with(
            "self.policy.observerStaleAfterSeconds > 2 * self.check.periodSeconds + self.check.timeoutSeconds"
        ));
        for (period, timeout, stale, ok) in [
            (10, 3, None, true),
            (10, 3, Some(24), true),
            (10, 3, Some(23), false),
            (10, 3, Some(20), false),
            (5, 3, Some(14), true),
            (5, 3, Some(13), false),
            (1, 1, Some(1), false),
            (3600, 600, Some(7801), true),
            (3600, 600, Some(7800), false),
        ] {
            let refusal = spec(period, timeout, stale).observer_stale_after_too_short();
            assert_eq!(
                refusal.is_none(),
                ok,
                "{period}/{timeout}/{stale:?}: {refusal:?}"
            );
            if let Some(why) = refusal {
                assert!(
                    why.contains("spec.policy.observerStaleAfterSeconds")
                        && why.contains("spec.check.periodSeconds"),
                    "{why}"
                );
            }
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = check(serde_json::json!({"http": {}}));
        assert_eq!((c.period_seconds, c.timeout_seconds), (10, 3));
        assert_eq!((c.failure_threshold, c.success_threshold), (3, 3));
        let h = c.http.expect("http");
        assert_eq!(
            (h.min_status, h.max_status, h.path.as_str()),
            (200, 399, "/")
        );
        let p = FailoverPolicy::default();
        assert_eq!(p.min_switch_interval_seconds, 60);
        assert_eq!((p.max_switches, p.flap_window_seconds), (3, 3600));
    }
}
