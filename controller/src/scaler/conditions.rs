//! The scaler's condition types (upstream HPA's three) and the condition
//! and Event reasons that are no decision's reason (those are
//! `vertice_crds::scaler::ScaleReason`), each spelled once.

/// Whether the scaler read the target's scale and may set it.
pub const ABLE_TO_SCALE: &str = "AbleToScale";
/// Whether the metrics let it compute a count.
pub const SCALING_ACTIVE: &str = "ScalingActive";
/// Whether a bound or a rate policy limited the count.
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// `AbleToScale`: the scale was read.
pub const SUCCEEDED_GET_SCALE: &str = "SucceededGetScale";
/// `AbleToScale`: the pause annotation is set.
pub const PAUSED: &str = "Paused";
/// `AbleToScale`: `spec.dryRun` is set.
pub const DRY_RUN: &str = "DryRun";
/// `ScalingActive`: every metric is healthy.
pub const VALID_METRIC_FOUND: &str = "ValidMetricFound";
/// `ScalingActive`: every metric is broken.
pub const FAILED_GET_METRICS: &str = "FailedGetMetrics";
/// `ScalingActive`: some metrics are broken, the others decide.
pub const SOME_METRICS_BROKEN: &str = "SomeMetricsBroken";

/// Event: the target was scaled up.
pub const SCALED_UP: &str = "ScaledUp";
/// Event: the target was scaled down.
pub const SCALED_DOWN: &str = "ScaledDown";
/// Event: a broken metric holds the count.
pub const SCALE_HELD: &str = "ScaleHeld";
/// Event: a broken metric's fallback proposes the count.
pub const FALLBACK_ACTIVE: &str = "FallbackActive";
