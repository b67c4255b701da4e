//! Health probes: one check of one replica, bounded by a timeout, reduced to
//! ok or failed, its latency and a short reason. `probe check` runs one by
//! hand or as an exec probe; `probe serve` runs them for every
//! VerticeFailover and reports what it saw.

pub mod cli;
pub mod grpc;
pub mod http;
pub mod json_field;
pub mod metrics;
pub mod postgres;
pub mod redis;
pub mod resolve;
pub mod serve;
pub mod tally;
pub mod tcp;
pub mod tls;

use std::time::{Duration, Instant};

use serde::Serialize;
use vertice_crds::failover::MAX_REASON;

pub use resolve::Probe;

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

/// A probe's failure: a short sentence for the status and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed(pub String);

impl Failed {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl<T: std::fmt::Display> From<T> for Failed
where
    T: std::error::Error,
{
    fn from(e: T) -> Self {
        Self(e.to_string())
    }
}

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
    fn reasons_are_one_bounded_line() {
        assert_eq!(bounded("a\nb\tc "), "a b c");
        let long = "é".repeat(300);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_REASON && cut.ends_with("..."), "{cut}");
    }
}
