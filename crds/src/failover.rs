//! `VerticeFailover`: health checks on a set of replicas and the Istio
//! VirtualService whose route weights send traffic to the healthy one with the
//! highest priority. The probe runner writes observations into the status; the
//! controller decides and patches weights.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeySelector};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vertice.io",
    version = "v1alpha1",
    kind = "VerticeFailover",
    plural = "verticefailovers",
    namespaced,
    status = "VerticeFailoverStatus",
    shortname = "vf",
    shortname = "vfailover",
    category = "vertice",
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeReplica"}"#,
    printcolumn = r#"{"name":"VirtualService","type":"string","jsonPath":".spec.virtualService.name"}"#,
    printcolumn = r#"{"name":"Last Switch","type":"date","jsonPath":".status.lastSwitchTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.replicas.all(r, self.replicas.exists_one(o, o.name == r.name))").message("replica names must be unique"))]
#[serde(rename_all = "camelCase")]
pub struct VerticeFailoverSpec {
    /// The VirtualService whose HTTP route weights are set.
    pub virtual_service: VirtualServiceRef,
    /// Candidates, each a route destination.
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
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Address the probe checks (`host:port`), default `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_address: Option<String>,
    /// Higher wins among healthy replicas.
    #[serde(default)]
    pub priority: i32,
}

/// Exactly one of `postgres`, `redis`, `http`, `tcp`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.redis), has(self.http), has(self.tcp)].filter(x, x).size() == 1").message("a check sets exactly one of postgres, redis, http, tcp"))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<DatabaseCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<DatabaseCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: u32,
    #[serde(default = "default_check_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
    /// Consecutive failures before a replica counts as down.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
    /// Consecutive successes before a replica counts as up again.
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// Count a replica that is a read-only standby as unhealthy.
    #[serde(default)]
    pub require_primary: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub https: bool,
}

fn default_path() -> String {
    "/".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct TcpCheck {}

/// Anti-thrash rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    /// Never switch more often than this.
    #[serde(default = "default_min_switch")]
    #[schemars(range(min = 0))]
    pub min_switch_interval_seconds: u32,
    /// Return to a higher-priority replica only after it stayed healthy this long.
    #[serde(default = "default_failback")]
    #[schemars(range(min = 0))]
    pub failback_after_seconds: u32,
    /// Move traffic back automatically at all.
    #[serde(default = "default_true")]
    pub auto_failback: bool,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            min_switch_interval_seconds: default_min_switch(),
            failback_after_seconds: default_failback(),
            auto_failback: true,
        }
    }
}

fn default_min_switch() -> u32 {
    60
}
fn default_failback() -> u32 {
    300
}
fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerticeFailoverStatus {
    /// The replica receiving traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_replica: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switch_time: Option<DateTime<Utc>>,
    /// What the probe runner observed, per replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaHealth {
    pub name: String,
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_probe_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
