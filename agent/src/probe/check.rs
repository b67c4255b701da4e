//! `probe check`: one check run once by hand or as an exec probe, through
//! the same code as the runner's, reported on stdout and by exit code.

use serde_json::json;
use vertice_crds::common::SecretKeySelector;
use vertice_crds::failover::{FailoverReplica, HealthCheck};

/// Where a secret value of `probe check` comes from: a file or a variable.
/// The check names them as `SecretKeySelector`s so that it is resolved by
/// the same code as a VerticeFailover's.
pub const FROM_FILE: &str = "file";
pub const FROM_ENV: &str = "env";

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One sentence.
    Text,
    /// One JSON object.
    Json,
}

/// Reads a `probe check` secret: a file's content or a variable's value.
fn local_secret(selector: &SecretKeySelector) -> Result<String, String> {
    match selector.name.as_str() {
        FROM_FILE => std::fs::read_to_string(&selector.key)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| format!("cannot read {}: {e}", selector.key)),
        _ => std::env::var(&selector.key).map_err(|_| format!("{} is not set", selector.key)),
    }
}

/// Runs `check` against `replica` once; the exit code: 0 healthy, 1 not,
/// 2 when the check cannot be built.
pub async fn run(check: &HealthCheck, replica: &FailoverReplica, output: Output) -> i32 {
    // The hand-run check goes where its user says: no address policy.
    let limits = super::Limits::hand_run();
    let probe = match super::resolve::for_replica_within(check, replica, &local_secret, &limits) {
        Ok(probe) => probe,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = super::run(&probe, limits.timeout(check)).await;
    let target = replica.probe_address.clone().unwrap_or_default();
    match output {
        Output::Json => println!(
            "{}",
            json!({"kind": check.kind(), "target": target, "ok": result.ok,
                   "latencyMs": result.latency_ms, "reason": result.reason})
        ),
        Output::Text if result.ok => {
            println!("ok: {} {target} in {} ms", check.kind(), result.latency_ms)
        }
        Output::Text => println!(
            "failed: {} {target} after {} ms: {}",
            check.kind(),
            result.latency_ms,
            result.reason.as_deref().unwrap_or("")
        ),
    }
    i32::from(!result.ok)
}
