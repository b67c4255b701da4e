//! Reading a drill's report out of its run summary, and what a drill left
//! behind: shared by the drill suites of every engine.

use std::path::Path;

use serde_json::Value;

/// The drill's check named `name` in the run summary; panics when absent.
pub fn check<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["drill"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name:?} in {summary}"))
}

/// Each named check is in the summary and passed.
#[track_caller]
pub fn passed(summary: &Value, names: &[&str]) {
    for name in names {
        assert_eq!(check(summary, name)["ok"], true, "{name}: {summary}");
    }
}

/// What a drill left in the temporary directory it was given (TMPDIR):
/// its servers' private directories must be gone.
pub fn left_in(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .expect("temp dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
