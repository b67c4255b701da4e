//! Health probes: one check of one replica, bounded by a timeout, reduced to
//! ok or failed, its latency and a short reason. `probe check` runs one by
//! hand or as an exec probe; `probe serve` runs them for every
//! VerticeFailover and reports what it saw.

pub mod address_policy;
pub mod check;
pub mod grpc;
pub mod http;
pub mod json_field;
pub mod metrics;
pub mod permits;
pub mod postgres;
pub mod readiness;
pub mod reasons;
pub mod redis;
pub mod resolve;
pub mod secrets;
pub mod serve;
pub mod tally;
pub mod target;
pub mod tcp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use vertice_crds::failover::{HealthCheck, MAX_REASON};

pub use address_policy::AddressPolicy;
pub use resolve::Probe;

/// `--max-probe-body-bytes`' default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// `--max-probe-timeout`'s default.
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// What the administrator bounds every probe by, whatever a failover asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Addresses a probe may connect to.
    pub addresses: Arc<AddressPolicy>,
    /// HTTP bodies longer than this fail their check.
    pub max_body_bytes: usize,
    /// No check waits longer than this, whatever its `timeoutSeconds`.
    pub max_timeout: Duration,
}

impl Default for Limits {
    /// The runner's defaults.
    fn default() -> Self {
        Self {
            addresses: Arc::new(AddressPolicy::default()),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_timeout: DEFAULT_MAX_TIMEOUT,
        }
    }
}

impl Limits {
    /// `probe check`: its user chose the target and the timeout herself,
    /// so only the body stays bounded.
    pub fn hand_run() -> Self {
        Self {
            addresses: Arc::new(AddressPolicy::any()),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_timeout: Duration::MAX,
        }
    }

    /// The check's timeout, capped by the administrator's.
    pub fn timeout(&self, check: &HealthCheck) -> Duration {
        Duration::from_secs(u64::from(check.timeout_seconds)).min(self.max_timeout)
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    pub ok: bool,
    /// Wall time of the probe, including connecting.
    pub latency_ms: u64,
    /// Why it failed, or what was seen (a role), bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A probe's failure: a short sentence for the status and the logs, built
/// from the check's own words and error categories, never from content
/// the target sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed(pub String);

impl Failed {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

// No `From<impl Error>`: an error's own text may carry what the target
// said, so every failure is turned into a reason explicitly (`reasons`).

/// Runs `probe` with `timeout` over all of it (resolving, connecting,
/// asking); a probe that does not answer in time has failed.
pub async fn run(probe: &Probe, timeout: Duration) -> ProbeResult {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, probe.check(timeout)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failed(format!(
            "no answer within {} s",
            timeout.as_secs_f64()
        ))),
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(()) => ProbeResult {
            ok: true,
            latency_ms,
            reason: None,
        },
        Err(Failed(reason)) => ProbeResult {
            ok: false,
            latency_ms,
            reason: Some(bounded(&reason)),
        },
    }
}

/// One line, at most [`MAX_REASON`] bytes, cut on a character boundary.
pub fn bounded(reason: &str) -> String {
    let line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    if line.len() <= MAX_REASON {
        return line.to_string();
    }
    let mut end = MAX_REASON - 3;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_capped_by_the_administrator() {
        let check: HealthCheck =
            serde_json::from_value(serde_json::json!({"tcp": {}, "timeoutSeconds": 600}))
                .expect("check");
        assert_eq!(Limits::default().timeout(&check), Duration::from_secs(10));
        assert_eq!(Limits::hand_run().timeout(&check), Duration::from_secs(600));
        let short: HealthCheck =
            serde_json::from_value(serde_json::json!({"tcp": {}, "timeoutSeconds": 2}))
                .expect("check");
        assert_eq!(Limits::default().timeout(&short), Duration::from_secs(2));
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        assert_eq!(bounded("a\nb\tc "), "a b c");
        let long = "é".repeat(300);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_REASON && cut.ends_with("..."), "{cut}");
    }
}
