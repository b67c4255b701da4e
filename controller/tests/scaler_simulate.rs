//! `vertice-controller scaler simulate`, through the real binary on the case
//! files in `tests/scaler_cases/` (the format the README documents).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

fn simulate(file: &Path) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vertice-controller"))
        .args(["scaler", "simulate", "--file"])
        .arg(file)
        .env_remove("VERTICE_AGENT_IMAGE")
        .output()
        .expect("run the controller binary");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn case(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scaler_cases")
        .join(name)
}

#[test]
fn a_business_hours_window_and_a_queue_metric() {
    let (code, d, err) = simulate(&case("business-hours-queue.yaml"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(d["desiredReplicas"], 12, "{d:#}");
    assert_eq!(d["direction"], "ScaleUp");
    assert_eq!(d["reason"], "ScaleUpLimit");
    assert_eq!(d["recommendation"], 13);
    assert_eq!(d["winner"], "queue-depth");
    assert_eq!(d["minReplicas"], 6);
    assert_eq!(d["openWindows"][0], "business-hours");
    assert_eq!(d["metrics"][0]["state"], "Ok");
    assert_eq!(d["metrics"][0]["targetType"], "AverageValue");
    assert_eq!(d["scale"], true);
    assert_eq!(d["events"][0]["reason"], "ScaledUp");
    // The history to feed the next poll holds the scale event.
    assert_eq!(d["history"]["scaleEvents"][0]["change"], 6);
}

#[test]
fn kubectl_shaped_pods_and_metrics_and_a_broken_queue() {
    let (code, d, err) = simulate(&case("cpu-with-broken-queue.yaml"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(d["metrics"][0]["name"], "cpu");
    assert_eq!(d["metrics"][0]["value"], 20.0, "{d:#}");
    assert_eq!(d["metrics"][0]["proposal"], 2);
    assert_eq!(d["metrics"][1]["state"], "NoData");
    assert_eq!(d["desiredReplicas"], 4);
    assert_eq!(d["reason"], "MetricBroken");
    assert_eq!(d["scale"], false);
    assert_eq!(d["events"][0]["reason"], "ScaleHeld");
}

#[test]
fn a_bad_case_file_names_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(case("business-hours-queue.yaml"))
        .expect("case")
        .replace(
            "queue-depth: {value: 1250, time: \"2026-12-02T08:59:55Z\"}",
            "queue-depth: {}",
        );
    std::fs::write(&file, text).expect("write");
    let (code, _, err) = simulate(&file);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("prometheus.queue-depth: give exactly one of value"),
        "{err}"
    );
    let (code, _, err) = simulate(&dir.path().join("missing.yaml"));
    assert_eq!(code, Some(2));
    assert!(err.contains("--file"), "{err}");
}

#[test]
fn a_case_on_standard_input_with_a_time_in_utc() {
    // `--file -` reads the case from stdin; a `now` without a zone is UTC.
    let text = std::fs::read_to_string(case("business-hours-queue.yaml"))
        .expect("case")
        .replace("\"2026-12-02T09:00:00Z\"", "2026-12-02T09:00:00");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vertice-controller"))
        .args(["scaler", "simulate", "--file", "-"])
        .env_remove("VERTICE_AGENT_IMAGE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the controller binary");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the case");
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let d: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(d["desiredReplicas"], 12, "{d:#}");
    assert_eq!(d["time"], "2026-12-02T09:00:00Z");
    // The history to feed the next run carries the decision too.
    assert_eq!(d["history"]["lastDecision"]["desiredReplicas"], 12);
}
