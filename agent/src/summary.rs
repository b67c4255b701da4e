//! The one-line JSON summary of a run, written to the termination-log path
//! so the controller can read the result from the pod status.

use std::path::{Path, PathBuf};

/// Kubernetes keeps at most 4096 bytes of a termination message.
const MAX_BYTES: usize = 4096;
pub const DEFAULT_PATH: &str = "/dev/termination-log";

pub use vertice_crds::run_summary::RunSummary;

/// The JSON line, shortened (the error message first, then hook errors) to
/// fit the Kubernetes termination-message limit.
pub fn to_line(original: &RunSummary) -> String {
    let mut summary = original.clone();
    loop {
        let line = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into());
        if line.len() <= MAX_BYTES {
            return line;
        }
        match &mut summary.error {
            Some(err) if err.len() > 64 => {
                let keep = err
                    .len()
                    .saturating_sub(line.len() - MAX_BYTES + 16)
                    .max(32);
                let cut = (0..=keep)
                    .rev()
                    .find(|i| err.is_char_boundary(*i))
                    .unwrap_or(0);
                err.truncate(cut);
                err.push('…');
            }
            _ if shorten_drill(&mut summary.drill) => {}
            _ if summary.hooks.iter().any(|h| h.error.is_some()) => {
                for hook in &mut summary.hooks {
                    hook.error = None;
                }
            }
            _ if !summary.hooks.is_empty() => summary.hooks.clear(),
            _ => {
                summary.error = None;
                summary.store = None;
            }
        }
    }
}

/// One step of shortening a drill report: passed checks' details, then
/// passed checks, then failed checks' details, then all but the first
/// failed checks. False when nothing is left to shorten.
fn shorten_drill(drill: &mut Option<vertice_crds::drill::DrillReport>) -> bool {
    let Some(report) = drill else {
        return false;
    };
    let checks = &mut report.checks;
    if checks.iter().any(|c| c.ok && c.detail.is_some()) {
        checks
            .iter_mut()
            .filter(|c| c.ok)
            .for_each(|c| c.detail = None);
    } else if checks.iter().any(|c| c.ok) {
        checks.retain(|c| !c.ok);
    } else if let Some(c) = checks
        .iter_mut()
        .find(|c| c.detail.as_ref().is_some_and(|d| d.len() > 80))
    {
        let cut = (0..=77)
            .rev()
            .find(|i| c.detail.as_ref().is_some_and(|d| d.is_char_boundary(*i)))
            .unwrap_or(0);
        if let Some(d) = c.detail.as_mut() {
            d.truncate(cut);
            d.push('…');
        }
    } else if checks.len() > 1 {
        checks.truncate(1);
    } else {
        return false;
    }
    true
}

/// Where to write: an explicit path always; the default only if it exists
/// (so a run on a laptop does not create files under /dev).
pub fn target_path(explicit: Option<&PathBuf>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    }
}

pub fn write(path: &Path, summary: &RunSummary) {
    if let Err(e) = std::fs::write(path, to_line(summary) + "\n") {
        tracing::warn!(path = %path.display(), error = %e, "could not write the run summary");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_to_fit_the_kubernetes_limit() {
        let summary = RunSummary {
            command: "backup".into(),
            outcome: "failed".into(),
            error: Some("é".repeat(5000)),
            exit_code: 1,
            ..Default::default()
        };
        let line = to_line(&summary);
        assert!(line.len() <= MAX_BYTES, "{}", line.len());
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["outcome"], "failed");
        assert!(parsed["error"].as_str().expect("error kept").ends_with('…'));
    }
}
