//! The run summary: the one JSON line the agent writes to its termination
//! log (`--termination-log`, `/dev/termination-log` in a pod) for every run.

use std::path::Path;

use serde_json::Value;

/// The run summary the agent wrote to the termination log at `path`;
/// panics with the file's text when it is missing or not one JSON value.
pub fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("termination log {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("summary {text:?}: {e}"))
}
