//! `VerticeScaler`: HPA-exact scaling of anything with a `/scale`
//! subresource from CPU, memory and Prometheus metrics, with schedules,
//! stabilization, rate policies and a per-metric failure policy. The
//! decision algorithm lives in the controller; this is its input and the
//! status it explains itself in.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeySelector};

/// Annotation that pauses acting: decisions are still made and explained.
pub const PAUSED_ANNOTATION: &str = "vertice.io/paused";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vertice.io",
    version = "v1alpha1",
    kind = "VerticeScaler",
    plural = "verticescalers",
    namespaced,
    status = "VerticeScalerStatus",
    shortname = "vsc",
    shortname = "vscaler",
    category = "vertice",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRef.name"}"#,
    printcolumn = r#"{"name":"Min","type":"integer","jsonPath":".spec.minReplicas"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxReplicas"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentReplicas"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".status.lastDecision.reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.schedules) || self.schedules.all(w, !has(w.minReplicas) || w.minReplicas <= self.maxReplicas)").message("a schedule window's minReplicas must not exceed spec.maxReplicas"))]
#[x_kube(validation = Rule::new("!self.metrics.exists(m, has(m.prometheus)) || has(self.prometheus)").message("prometheus metrics need spec.prometheus.url"))]
#[serde(rename_all = "camelCase")]
pub struct VerticeScalerSpec {
    /// The workload whose `/scale` subresource is read and set.
    pub target_ref: ScaleTargetRef,
    /// Lower bound (0 allows scaling to zero on Prometheus metrics).
    #[serde(default = "default_min")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Signals; the largest proposal wins, as in the HPA.
    #[schemars(length(min = 1, max = 10))]
    pub metrics: Vec<ScalerMetric>,
    /// Time windows that raise the floor or cap the ceiling (business hours,
    /// pre-warming before a known peak).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub schedules: Vec<ScheduleWindow>,
    /// Stabilization, rate policies and tolerance per direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
    /// The Prometheus server `prometheus` metrics query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusServer>,
    /// CPU samples of pods younger than this are judged by readiness and
    /// sample time, as the HPA's `--horizontal-pod-autoscaler-cpu-initialization-period`
    /// (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smh])+$"))]
    pub cpu_initialization_period: Option<String>,
    /// A pod that turned unready within this time of starting has never been
    /// ready, as the HPA's `--horizontal-pod-autoscaler-initial-readiness-delay`
    /// (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smh])+$"))]
    pub initial_readiness_delay: Option<String>,
    /// Decide and explain without acting.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_min() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// Group/version of the target, default `apps/v1`.
    #[serde(default = "default_apps_v1")]
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// Any kind with a `/scale` subresource: `Deployment`, `StatefulSet`,
    /// `ReplicaSet`, or a custom resource's kind.
    #[schemars(regex(pattern = r"^[A-Z][A-Za-z0-9]*$"))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_apps_v1() -> String {
    "apps/v1".into()
}

/// Exactly one of `cpu`, `memory`, `prometheus`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.cpu), has(self.memory), has(self.prometheus)].filter(x, x).size() == 1").message("a metric sets exactly one of cpu, memory, prometheus"))]
#[x_kube(validation = Rule::new("!has(self.prometheus) || has(self.name)").message("a prometheus metric needs a name"))]
#[serde(rename_all = "camelCase")]
pub struct ScalerMetric {
    /// Name in status, Events and metrics labels (default `cpu` / `memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ResourceMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ResourceMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// A sample older than this is stale, i.e. broken (default `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smh])+$"))]
    pub max_staleness: Option<String>,
    /// What to do while this metric is broken (errors, no data, stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailurePolicy>,
}

impl ScalerMetric {
    /// The name used in status and metric labels.
    pub fn display_name(&self) -> String {
        match (&self.name, &self.cpu, &self.memory) {
            (Some(name), _, _) => name.clone(),
            (None, Some(_), _) => "cpu".into(),
            (None, _, Some(_)) => "memory".into(),
            _ => "prometheus".into(),
        }
    }
}

/// CPU or memory of the target's pods against their requests
/// (`targetAverageUtilization`, percent) or as a plain amount per pod
/// (`targetAverageValue`, a quantity such as `500m` or `512Mi`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.targetAverageUtilization) != has(self.targetAverageValue)").message("set exactly one of targetAverageUtilization or targetAverageValue"))]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_average_utilization: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub target_average_value: Option<String>,
    /// Only this container's usage and requests (as the HPA's
    /// `ContainerResource`); default: the whole pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A PromQL instant query and the value to keep it at, in total (`Value`,
/// as an HPA External metric) or per pod (`AverageValue`). A vector result
/// is summed, as the HPA sums an External metric's series; an empty result
/// is "no data", never a zero.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.targetValue) != has(self.targetAverageValue)").message("a prometheus metric sets exactly one of targetValue or targetAverageValue"))]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_average_value: Option<f64>,
}

/// Where `prometheus` metrics are queried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusServer {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Bearer token sent with every query, from a Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeySelector>,
}

/// While a metric is broken: `HoldScaleDown` (default) never goes below the
/// current count; `ScaleUpOnly` makes the metric a scale-up signal only (its
/// breakage neither scales down nor blocks other metrics from doing so);
/// `Fallback` proposes `replicas` instead (never below what healthy metrics
/// ask).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("(self.type == 'Fallback') == has(self.replicas)").message("Fallback needs replicas, and only Fallback takes them"))]
#[serde(rename_all = "camelCase")]
pub struct FailurePolicy {
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^(HoldScaleDown|ScaleUpOnly|Fallback)$"))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
}

/// Replica bounds while a cron window is open.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.minReplicas) || has(self.maxReplicas)").message("a schedule window sets minReplicas, maxReplicas or both"))]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct ScheduleWindow {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// When the window opens (five-field cron).
    #[schemars(length(min = 1, max = 200))]
    pub cron: String,
    /// IANA time zone the cron is read in (default `Etc/UTC`); DST-correct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How long it stays open: `9h`, `30m`.
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub duration: String,
    /// Open this long before the cron time (pre-warming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub lead_time: Option<String>,
    /// Floor while open; overlapping windows take the highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_replicas: Option<i32>,
    /// Ceiling while open; overlapping windows take the lowest.
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Act on the most conservative recommendation of this window (default:
    /// 0 up, 300 down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    /// Default up: 4 pods or 100 % per 15 s, whichever is more; down: 100 %
    /// per 15 s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub policies: Vec<ScalingPolicy>,
    /// `Max` (default), `Min` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Max|Min|Disabled)$"))]
    pub select_policy: Option<String>,
    /// Ratio deviation from the target that is left alone (default 0.1):
    /// any value of 0 or more, as the HPA's (scaling down at 1 or more never
    /// happens; scaling up above 1 waits until the metric more than doubles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub tolerance: Option<f64>,
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
    /// Raw recommendations inside the longest stabilization window (one
    /// entry per distinct value, its latest time; bounded), so a new leader
    /// stabilizes exactly as the old one would have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<TimedRecommendation>,
    /// Scale changes inside the longest policy period (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_events: Vec<ScaleEvent>,
    /// Why the scaler did what it did, last poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimedRecommendation {
    pub time: DateTime<Utc>,
    pub replicas: i32,
}

/// A change of the target's replicas made by the scaler: positive up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleEvent {
    pub time: DateTime<Utc>,
    pub change: i32,
}

/// One decision, explained.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub time: DateTime<Utc>,
    pub current_replicas: i32,
    pub desired_replicas: i32,
    /// `ScaleUp`, `ScaleDown` or `None`.
    pub direction: String,
    /// Why, in one CamelCase word (`ScaleUpLimit`, `MetricBroken`,
    /// `ScheduleFloor`, `DesiredWithinRange`…).
    pub reason: String,
    pub message: String,
    /// Per metric: value, target, ratio, proposal or error.
    pub metrics: Vec<MetricDecision>,
    /// The metric whose proposal won.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// The largest proposal over all metrics, before stabilization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<i32>,
    /// The recommendation after the stabilization windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilized: Option<i32>,
    /// The rate policy or bound that limited the result, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    /// Effective bounds, after schedule windows.
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Schedule windows open now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_windows: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollout_in_progress: bool,
    /// Decided, but not acted on (`dryRun` or the pause annotation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_acted: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricDecision {
    pub name: String,
    /// `Ok`, `Error`, `NoData` or `Stale`.
    pub state: String,
    /// Current value: percent for utilization, the per-pod or total amount
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub target: f64,
    /// `Utilization`, `AverageValue` or `Value`.
    pub target_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<i32>,
    /// The newest sample the value rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure policy applied, when the metric is broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<String>,
}
