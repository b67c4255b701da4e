//! `VerticeScaler`: HPA-like scaling of a Deployment or StatefulSet from CPU,
//! memory and Prometheus metrics, with schedules, stabilization and policies.
//! The decision algorithm lives in the controller; this is its input.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vertice.io",
    version = "v1alpha1",
    kind = "VerticeScaler",
    plural = "verticescalers",
    namespaced,
    status = "VerticeScalerStatus",
    shortname = "vs",
    shortname = "vscaler",
    category = "vertice",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRef.name"}"#,
    printcolumn = r#"{"name":"Min","type":"integer","jsonPath":".spec.minReplicas"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxReplicas"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentReplicas"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct VerticeScalerSpec {
    /// The workload whose `/scale` subresource is set.
    pub target_ref: ScaleTargetRef,
    #[serde(default = "default_min")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Signals; the largest proposal wins, as in the HPA.
    #[schemars(length(min = 1, max = 10))]
    pub metrics: Vec<ScalerMetric>,
    /// Time windows that raise or lower the bounds (e.g. business hours).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
    /// Prometheus base URL for `prometheus` metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    /// Compute and report decisions without scaling.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_min() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// `apps/v1`.
    #[serde(default = "default_apps_v1")]
    pub api_version: String,
    /// `Deployment` or `StatefulSet`.
    #[schemars(regex(pattern = r"^(Deployment|StatefulSet)$"))]
    pub kind: String,
    pub name: String,
}

fn default_apps_v1() -> String {
    "apps/v1".into()
}

/// Exactly one of `cpu`, `memory`, `prometheus`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.cpu), has(self.memory), has(self.prometheus)].filter(x, x).size() == 1").message("a metric sets exactly one of cpu, memory, prometheus"))]
#[serde(rename_all = "camelCase")]
pub struct ScalerMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ResourceMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ResourceMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
}

/// Average utilization of requests across the target's pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetric {
    #[schemars(range(min = 1, max = 1000))]
    pub target_average_utilization: i32,
}

/// A PromQL query returning one number and the value to keep it at, per pod
/// (`AverageValue`) or in total (`Value`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.targetValue) != has(self.targetAverageValue)").message("a prometheus metric sets exactly one of targetValue or targetAverageValue"))]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    #[schemars(length(min = 1))]
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_average_value: Option<f64>,
}

/// Replica bounds while a cron window is open.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct ScheduleWindow {
    pub name: String,
    /// When the window opens.
    pub cron: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How long it stays open: `9h`, `30m`.
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub duration: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
}

/// Stabilization and rate policies, per direction, as in the HPA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Act on the most conservative recommendation of this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ScalingPolicy>,
    /// `Max` (default), `Min` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Max|Min|Disabled)$"))]
    pub select_policy: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^(Pods|Percent)$"))]
    pub type_: String,
    #[schemars(range(min = 1))]
    pub value: i32,
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerticeScalerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
