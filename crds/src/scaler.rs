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

/// A closed vocabulary that travels as a string: the enum, its string form
/// (written once, in the invocation), a JSON schema of a plain string (so
/// the CRD schema stays what users know, patterns included), and decoding
/// that maps an unknown string to `fallback` instead of failing, because
/// one object that does not decode would stop the watch of every scaler.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident fallback $fallback:ident {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The form written to the API server, Events and metrics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value of `text`, or `None` for a word this version does
            /// not know.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$fallback
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> Self {
                value.as_str()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Ok($name::parse(&text).unwrap_or($name::$fallback))
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                "String".into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                String::json_schema(generator)
            }
        }
    };
}

string_enum! {
    /// What a broken metric does (`onFailure.type`). An unknown word holds,
    /// as `HoldScaleDown` does: the safe reading.
    pub enum FailurePolicyType fallback HoldScaleDown {
        /// Never go below the current count while the metric is broken.
        HoldScaleDown => "HoldScaleDown",
        /// The metric only ever scales up; its breakage blocks nothing.
        ScaleUpOnly => "ScaleUpOnly",
        /// Propose `onFailure.replicas` instead.
        Fallback => "Fallback",
    }
}

string_enum! {
    /// What a rate policy's `value` counts. An unknown word reads as a
    /// percentage, as before there was a type for it.
    pub enum PolicyType fallback Percent {
        Pods => "Pods",
        Percent => "Percent",
    }
}

string_enum! {
    /// Which of a direction's rate policies applies (`selectPolicy`).
    pub enum SelectPolicy fallback Max {
        /// The one that allows the largest change.
        Max => "Max",
        /// The one that allows the smallest change.
        Min => "Min",
        /// None: this direction never changes the count.
        Disabled => "Disabled",
    }
}

string_enum! {
    /// A metric's state in the decision.
    pub enum MetricState fallback Error {
        Ok => "Ok",
        /// It could not be read or computed.
        Error => "Error",
        /// It was read and had no samples (an empty result, no pod metrics).
        NoData => "NoData",
        /// Its newest sample is older than `maxStaleness`.
        Stale => "Stale",
    }
}

impl MetricState {
    /// Error, no data and stale are all broken: the failure policy applies.
    pub fn is_broken(self) -> bool {
        self != MetricState::Ok
    }
}

string_enum! {
    /// Which way the decision moves the target.
    pub enum Direction fallback None {
        ScaleUp => "ScaleUp",
        ScaleDown => "ScaleDown",
        None => "None",
    }
}

impl Direction {
    /// From `current` to `desired`.
    pub fn of(current: i32, desired: i32) -> Self {
        match desired.cmp(&current) {
            std::cmp::Ordering::Greater => Direction::ScaleUp,
            std::cmp::Ordering::Less => Direction::ScaleDown,
            std::cmp::Ordering::Equal => Direction::None,
        }
    }
}

string_enum! {
    /// What a metric's target is measured against.
    pub enum TargetType fallback Value {
        /// Percent of the pods' requests.
        Utilization => "Utilization",
        /// An amount per pod.
        AverageValue => "AverageValue",
        /// A total amount.
        Value => "Value",
    }
}

string_enum! {
    /// Why the scaler decided what it did: the decision's reason and, for
    /// most, the condition and Event reason that goes with it. An unknown
    /// word (a status written by another version) reads as `Unrecognized`
    /// and is replaced on the next poll.
    pub enum ScaleReason fallback Unrecognized {
        /// The recommendation needed no limit.
        DesiredWithinRange => "DesiredWithinRange",
        /// Stabilization moved nothing (behaviour's own word; the decision
        /// shows `DesiredWithinRange` then).
        ReadyForNewScale => "ReadyForNewScale",
        ScaleUpStabilized => "ScaleUpStabilized",
        ScaleDownStabilized => "ScaleDownStabilized",
        ScaleUpLimit => "ScaleUpLimit",
        ScaleDownLimit => "ScaleDownLimit",
        TooManyReplicas => "TooManyReplicas",
        TooFewReplicas => "TooFewReplicas",
        /// A schedule window raised the minimum, and it decided.
        ScheduleFloor => "ScheduleFloor",
        /// A schedule window lowered the maximum, and it decided.
        ScheduleCap => "ScheduleCap",
        /// A broken metric holds the count.
        MetricBroken => "MetricBroken",
        NoProposal => "NoProposal",
        /// The target was scaled to zero by hand.
        ScalingDisabled => "ScalingDisabled",
        InvalidSpec => "InvalidSpec",
        FailedUpdateScale => "FailedUpdateScale",
        TargetNotFound => "TargetNotFound",
        InvalidTarget => "InvalidTarget",
        FailedGetScale => "FailedGetScale",
        /// Several scalers claim the target.
        AmbiguousTarget => "AmbiguousTarget",
        /// An upstream HorizontalPodAutoscaler scales the target.
        TargetOwnedByHpa => "TargetOwnedByHPA",
        Unrecognized => "Unrecognized",
    }
}

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
    pub cpu_initialization_period: Option<crate::duration::SpecDuration>,
    /// A pod that turned unready within this time of starting has never been
    /// ready, as the HPA's `--horizontal-pod-autoscaler-initial-readiness-delay`
    /// (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smh])+$"))]
    pub initial_readiness_delay: Option<crate::duration::SpecDuration>,
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
    pub max_staleness: Option<crate::duration::SpecDuration>,
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
#[x_kube(validation = Rule::new("(!has(self.targetValue) || self.targetValue > 0.0) && (!has(self.targetAverageValue) || self.targetAverageValue > 0.0)").message("targetValue and targetAverageValue must be above 0, as an HPA's"))]
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
    pub type_: FailurePolicyType,
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
    pub duration: crate::duration::SpecDuration,
    /// Open this long before the cron time (pre-warming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub lead_time: Option<crate::duration::SpecDuration>,
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
    pub select_policy: Option<SelectPolicy>,
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
    pub type_: PolicyType,
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
    pub direction: Direction,
    /// Why, in one CamelCase word (`ScaleUpLimit`, `MetricBroken`,
    /// `ScheduleFloor`, `DesiredWithinRange`…).
    pub reason: ScaleReason,
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
    pub limited_by: Option<ScaleReason>,
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
    pub state: MetricState,
    /// Current value: percent for utilization, the per-pod or total amount
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub target: f64,
    /// `Utilization`, `AverageValue` or `Value`.
    pub target_type: TargetType,
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
    pub failure_policy: Option<FailurePolicyType>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug + Copy,
        T: std::fmt::Display,
    {
        for value in all {
            let json = serde_json::to_value(value).expect("serialize");
            assert_eq!(json, serde_json::Value::String(value.to_string()));
            let back: T = serde_json::from_value(json).expect("deserialize");
            assert_eq!(back, *value);
        }
    }

    #[test]
    fn every_word_is_written_and_read_as_its_string() {
        round_trips(FailurePolicyType::ALL);
        round_trips(PolicyType::ALL);
        round_trips(SelectPolicy::ALL);
        round_trips(MetricState::ALL);
        round_trips(Direction::ALL);
        round_trips(TargetType::ALL);
        round_trips(ScaleReason::ALL);
        assert_eq!(ScaleReason::TargetOwnedByHpa.as_str(), "TargetOwnedByHPA");
    }

    #[test]
    fn a_word_of_another_version_reads_as_the_fallback_instead_of_failing() {
        let read = |word: &str| -> MetricDecision {
            serde_json::from_value(serde_json::json!({
                "name": "cpu", "state": word, "target": 50.0, "targetType": word,
                "failurePolicy": word,
            }))
            .expect("a status of another version still decodes")
        };
        let m = read("Sideways");
        assert_eq!(
            (m.state, m.target_type, m.failure_policy),
            (
                MetricState::Error,
                TargetType::Value,
                Some(FailurePolicyType::HoldScaleDown)
            )
        );
        let reason: ScaleReason = serde_json::from_str("\"SomethingNew\"").expect("decodes");
        assert_eq!(reason, ScaleReason::Unrecognized);
    }

    #[test]
    fn the_schema_is_a_plain_string_as_before() {
        let schema = schemars::schema_for!(MetricDecision);
        let props = &schema.as_value()["properties"];
        for field in ["state", "targetType"] {
            assert_eq!(props[field]["type"], "string", "{field}: {}", props[field]);
        }
        // An optional one is a string or null, as an `Option<String>` was.
        assert_eq!(
            props["failurePolicy"]["type"],
            serde_json::json!(["string", "null"])
        );
    }
}
