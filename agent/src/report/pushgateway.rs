//! Pushes the backup metrics (docs/ARCHITECTURE.md "Metrics") to a
//! Prometheus Pushgateway, grouped by
//! `{job="vertice-backup", namespace, backup}`.
//!
//! The Pushgateway keeps only what was pushed last, so counters are carried
//! forward: the agent reads the group's current values, adds this run, and
//! pushes with POST, which replaces only the metrics it names. A failed run
//! therefore leaves the last success's size and timestamp in place.

use std::collections::BTreeMap;

use base64::Engine;
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use vertice_crds::run_summary::{ErrorCategory, RunSummary};

use crate::error::{Error, Result};

pub const JOB: &str = "vertice-backup";

/// Metric names (docs/ARCHITECTURE.md "Metrics"; monitoring/ uses exactly these).
pub mod name {
    pub const TOTAL: &str = "vertice_backup_total";
    pub const SUCCESS_TOTAL: &str = "vertice_backup_success_total";
    pub const FAILURE_TOTAL: &str = "vertice_backup_failure_total";
    pub const FAILURES_BY_CATEGORY: &str = "vertice_backup_failures_by_category_total";
    pub const DURATION: &str = "vertice_backup_duration_seconds";
    pub const SIZE: &str = "vertice_backup_size_bytes";
    pub const RAW_SIZE: &str = "vertice_backup_raw_bytes";
    pub const LAST_SUCCESS: &str = "vertice_backup_last_success_timestamp_seconds";
    pub const LAST_FAILURE: &str = "vertice_backup_last_failure_timestamp_seconds";
    pub const LAST_VERIFIED: &str = "vertice_backup_last_verified_timestamp_seconds";
    pub const VERIFY_FAILURE_TOTAL: &str = "vertice_backup_verify_failure_total";
    pub const DRILL_DURATION: &str = "vertice_restore_drill_duration_seconds";
    pub const DRILL_SUCCESS_TOTAL: &str = "vertice_restore_drill_success_total";
    pub const DRILL_FAILURE_TOTAL: &str = "vertice_restore_drill_failure_total";
    pub const DRILL_LAST_TIMESTAMP: &str = "vertice_restore_drill_last_timestamp_seconds";
    pub const DRILL_BACKUP_AGE: &str = "vertice_restore_drill_backup_age_seconds";
}

/// The group's values before this run, by metric name; a labelled series
/// is keyed `name{label="value"}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupState {
    pub values: BTreeMap<String, f64>,
}

impl GroupState {
    fn get(&self, metric: &str) -> f64 {
        self.values.get(metric).copied().unwrap_or(0.0)
    }

    /// Whether the last run this group saw failed.
    pub fn last_run_failed(&self) -> bool {
        self.get(name::LAST_FAILURE) > self.get(name::LAST_SUCCESS)
    }
}

fn category_key(category: &str) -> String {
    format!("{}{{category=\"{category}\"}}", name::FAILURES_BY_CATEGORY)
}

/// One series to push.
struct Series {
    metric: &'static str,
    help: &'static str,
    category: Option<&'static str>,
    value: f64,
}

fn series(metric: &'static str, help: &'static str, value: f64) -> Series {
    Series {
        metric,
        help,
        category: None,
        value,
    }
}

/// The exposition text for this run on top of `before`. A backup run
/// carries its counters forward; a verify run pushes only its own metrics,
/// so it never disturbs the backup's.
pub fn render(before: &GroupState, summary: &RunSummary) -> Result<String> {
    let succeeded = summary.succeeded();
    let finished = summary
        .finished_at
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
        .unwrap_or(0.0);
    // Counters go on from what the group held before this run.
    let count = |metric: &str, this_run: bool| before.get(metric) + f64::from(u8::from(this_run));
    let metrics = match summary.command.as_str() {
        "verify" => verify_series(succeeded, finished, count),
        "drill" => drill_series(summary, succeeded, finished, count),
        _ => backup_series(summary, succeeded, finished, count),
    };
    encode(metrics)
}

/// A verify run pushes its failures, and when it passed, the time.
fn verify_series(succeeded: bool, finished: f64, count: impl Fn(&str, bool) -> f64) -> Vec<Series> {
    let mut metrics = Vec::new();
    if succeeded {
        metrics.push(series(
            name::LAST_VERIFIED,
            "When a backup of this group last passed verification",
            finished,
        ));
    }
    metrics.push(series(
        name::VERIFY_FAILURE_TOTAL,
        "Verify runs that failed",
        count(name::VERIFY_FAILURE_TOTAL, !succeeded),
    ));
    metrics
}

/// A backup run: its counters and duration, failures by category, then
/// the size and time of a success or the time of a failure.
fn backup_series(
    summary: &RunSummary,
    succeeded: bool,
    finished: f64,
    count: impl Fn(&str, bool) -> f64,
) -> Vec<Series> {
    let mut metrics = vec![
        series(name::TOTAL, "Backup runs", count(name::TOTAL, true)),
        series(
            name::SUCCESS_TOTAL,
            "Successful backup runs",
            count(name::SUCCESS_TOTAL, succeeded),
        ),
        series(
            name::FAILURE_TOTAL,
            "Failed backup runs",
            count(name::FAILURE_TOTAL, !succeeded),
        ),
        series(
            name::DURATION,
            "Duration of the last backup run",
            summary.duration_seconds.unwrap_or(0.0),
        ),
    ];
    // Every category is pushed, so a rate over any of them is defined
    // from the first run on.
    for category in ErrorCategory::ALL.map(ErrorCategory::as_str) {
        let this_run = !succeeded && summary.error_category.as_deref() == Some(category);
        metrics.push(Series {
            metric: name::FAILURES_BY_CATEGORY,
            help: "Failed backup runs by error category",
            category: Some(category),
            value: count(&category_key(category), this_run),
        });
    }
    if succeeded {
        metrics.extend(success_series(summary, finished));
    } else {
        metrics.push(series(
            name::LAST_FAILURE,
            "When the last failed backup finished",
            finished,
        ));
    }
    metrics
}

/// What only a successful backup updates: its sizes and time.
fn success_series(summary: &RunSummary, finished: f64) -> [Series; 3] {
    [
        series(
            name::SIZE,
            "Stored bytes of the last successful backup",
            summary.stored_bytes.unwrap_or(0) as f64,
        ),
        series(
            name::RAW_SIZE,
            "Bytes of the last successful backup before compression and encryption",
            summary.raw_bytes.unwrap_or(0) as f64,
        ),
        series(
            name::LAST_SUCCESS,
            "When the last successful backup finished",
            finished,
        ),
    ]
}

/// A drill pushes its own metrics only; a passed drill is also a
/// verification of the group's backups.
fn drill_series(
    summary: &RunSummary,
    succeeded: bool,
    finished: f64,
    count: impl Fn(&str, bool) -> f64,
) -> Vec<Series> {
    let drill = summary.drill.clone().unwrap_or_default();
    let mut metrics = vec![
        series(
            name::DRILL_SUCCESS_TOTAL,
            "Restore drills that passed",
            count(name::DRILL_SUCCESS_TOTAL, succeeded),
        ),
        series(
            name::DRILL_FAILURE_TOTAL,
            "Restore drills that failed",
            count(name::DRILL_FAILURE_TOTAL, !succeeded),
        ),
        series(
            name::DRILL_LAST_TIMESTAMP,
            "When the last restore drill finished",
            finished,
        ),
    ];
    if let Some(seconds) = drill.restore_seconds {
        metrics.push(series(
            name::DRILL_DURATION,
            "How long the last drill's restore took (the measured recovery time)",
            seconds,
        ));
    }
    if let Some(age) = drill.backup_age_seconds {
        metrics.push(series(
            name::DRILL_BACKUP_AGE,
            "Age of the backup the last drill restored, at drill time",
            age,
        ));
    }
    if succeeded {
        metrics.push(series(
            name::LAST_VERIFIED,
            "When a backup of this group last passed verification",
            finished,
        ));
    }
    metrics
}

fn encode(metrics: Vec<Series>) -> Result<String> {
    let registry = Registry::new();
    let mut by_category: BTreeMap<&str, GaugeVec> = BTreeMap::new();
    let err = |e: prometheus::Error| Error::target(e.to_string());
    for s in metrics {
        // Counters are pushed as their running totals; the text format only
        // needs the TYPE line to say counter.
        match s.category {
            None => {
                let gauge = Gauge::with_opts(Opts::new(s.metric, s.help)).map_err(err)?;
                gauge.set(s.value);
                registry.register(Box::new(gauge)).map_err(err)?;
            }
            Some(category) => {
                let vec = match by_category.get(s.metric) {
                    Some(v) => v.clone(),
                    None => {
                        let v = GaugeVec::new(Opts::new(s.metric, s.help), &["category"])
                            .map_err(err)?;
                        registry.register(Box::new(v.clone())).map_err(err)?;
                        by_category.insert(s.metric, v.clone());
                        v
                    }
                };
                vec.with_label_values(&[category]).set(s.value);
            }
        }
    }
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .map_err(|e| Error::target(e.to_string()))?;
    let text = String::from_utf8_lossy(&buffer).to_string();
    Ok(text
        .lines()
        .map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest)
                if rest
                    .split(' ')
                    .next()
                    .is_some_and(|m| m.ends_with("_total")) =>
            {
                format!(
                    "# TYPE {} counter",
                    rest.split(' ').next().unwrap_or_default()
                )
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// `{base}/metrics/job/vertice-backup/namespace/<ns>/backup/<name>`, with
/// values base64-encoded when they could break the path.
pub fn group_url(base: &str, namespace: &str, backup: &str) -> String {
    let part = |label: &str, value: &str| {
        if value.is_empty() || value.contains(['/', '%', '?', '#']) {
            format!(
                "{label}@base64/{}",
                base64::engine::general_purpose::URL_SAFE.encode(value)
            )
        } else {
            format!("{label}/{value}")
        }
    };
    format!(
        "{}/metrics/job/{JOB}/{}/{}",
        base.trim_end_matches('/'),
        part("namespace", namespace),
        part("backup", backup)
    )
}

/// Reads the group, pushes this run, and returns what was there before.
pub async fn push(
    base: &str,
    namespace: &str,
    backup: &str,
    summary: &RunSummary,
) -> Result<Option<GroupState>> {
    let client = super::http::http_client()?;
    let before = match read_group(&client, base, namespace, backup).await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(error = %e, "could not read previous metrics; counters restart from this run");
            None
        }
    };
    let body = render(before.as_ref().unwrap_or(&GroupState::default()), summary)?;
    let url = group_url(base, namespace, backup);
    let response = client
        .post(&url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            Error::target(format!(
                "Pushgateway {}: {}",
                host_of(base),
                e.without_url()
            ))
        })?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(Error::target(format!(
            "Pushgateway answered {status}: {}",
            text.trim()
        )));
    }
    tracing::info!(pushgateway = %host_of(base), "metrics pushed");
    Ok(before)
}

/// `--pushgateway-url` must be an http(s) URL with a host (exit 2 otherwise);
/// the message shows it redacted.
pub fn validate_url(raw: &str) -> Result<()> {
    let shown = vertice_crds::redact::redact_url(raw);
    let url = reqwest::Url::parse(raw).map_err(|e| {
        Error::usage(format!(
            "--pushgateway-url {shown:?} is not a URL ({e}); write it as http://pushgateway:9091"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Error::usage(format!(
            "--pushgateway-url {shown:?} must be an http:// or https:// URL with a host, e.g. http://pushgateway:9091"
        )));
    }
    Ok(())
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

async fn read_group(
    client: &reqwest::Client,
    base: &str,
    namespace: &str,
    backup: &str,
) -> Result<Option<GroupState>> {
    let url = format!("{}/api/v1/metrics", base.trim_end_matches('/'));
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| Error::target(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(Error::target(format!(
            "{} answered {}",
            vertice_crds::redact::redact_url(&url),
            response.status()
        )));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| Error::target(e.without_url().to_string()))?;
    Ok(parse_group(&body, namespace, backup))
}

/// Finds our group in the Pushgateway's `/api/v1/metrics` answer.
pub fn parse_group(body: &serde_json::Value, namespace: &str, backup: &str) -> Option<GroupState> {
    let group = body["data"].as_array()?.iter().find(|g| {
        let labels = &g["labels"];
        labels["job"] == JOB && labels["namespace"] == namespace && labels["backup"] == backup
    })?;
    let mut values = BTreeMap::new();
    for (metric, family) in group.as_object()? {
        for series in family["metrics"].as_array().into_iter().flatten() {
            let Some(v) = series["value"].as_str().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            let key = match series["labels"]["category"].as_str() {
                Some(category) => category_key(category),
                None => metric.clone(),
            };
            values.insert(key, v);
        }
    }
    Some(GroupState { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_forward_and_failures_keep_the_last_success() {
        let before = GroupState {
            values: BTreeMap::from([
                (name::TOTAL.to_string(), 4.0),
                (name::SUCCESS_TOTAL.to_string(), 3.0),
                (name::FAILURE_TOTAL.to_string(), 1.0),
            ]),
        };
        let failed = RunSummary {
            outcome: "failed".into(),
            duration_seconds: Some(2.5),
            ..Default::default()
        };
        let text = render(&before, &failed).expect("render");
        assert!(
            text.contains("# TYPE vertice_backup_total counter"),
            "{text}"
        );
        assert!(text.contains("vertice_backup_total 5"), "{text}");
        assert!(text.contains("vertice_backup_failure_total 2"), "{text}");
        assert!(text.contains("vertice_backup_success_total 3"), "{text}");
        assert!(
            !text.contains(name::LAST_SUCCESS) && !text.contains(name::SIZE),
            "a failure must not touch the last success: {text}"
        );
    }

    #[test]
    fn failures_are_counted_by_category_and_carried_forward() {
        let mut before = GroupState::default();
        before.values.insert(category_key("store"), 2.0);
        let failed = RunSummary {
            outcome: "failed".into(),
            error_category: Some("source".into()),
            ..Default::default()
        };
        let text = render(&before, &failed).expect("render");
        assert!(
            text.contains(r#"vertice_backup_failures_by_category_total{category="source"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vertice_backup_failures_by_category_total{category="store"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vertice_backup_failures_by_category_total{category="config"} 0"#),
            "every category is present: {text}"
        );
        let body = serde_json::json!({"data": [{
            "labels": {"job": JOB, "namespace": "ns", "backup": "b"},
            "vertice_backup_failures_by_category_total": {"metrics": [
                {"labels": {"category": "store", "job": JOB}, "value": "3"},
                {"labels": {"category": "hook", "job": JOB}, "value": "1"}
            ]},
            "vertice_backup_total": {"metrics": [{"labels": {}, "value": "7"}]}
        }]});
        let state = parse_group(&body, "ns", "b").expect("group");
        assert_eq!(state.get(&category_key("store")), 3.0);
        assert_eq!(state.get(&category_key("hook")), 1.0);
        assert_eq!(state.get(name::TOTAL), 7.0);
    }

    #[test]
    fn a_verify_run_pushes_only_its_own_metrics() {
        let mut before = GroupState::default();
        before.values.insert(name::TOTAL.into(), 9.0);
        let verified = RunSummary {
            command: "verify".into(),
            outcome: "succeeded".into(),
            finished_at: chrono::DateTime::from_timestamp(1_700_000_000, 0),
            raw_bytes: Some(10),
            ..Default::default()
        };
        let text = render(&before, &verified).expect("render");
        assert!(
            text.contains("vertice_backup_last_verified_timestamp_seconds 1700000000"),
            "{text}"
        );
        assert!(
            text.contains("vertice_backup_verify_failure_total 0"),
            "{text}"
        );
        assert!(
            !text.contains(name::TOTAL) && !text.contains(name::RAW_SIZE),
            "{text}"
        );
        let failed = RunSummary {
            command: "verify".into(),
            outcome: "failed".into(),
            ..Default::default()
        };
        let text = render(&before, &failed).expect("render");
        assert!(!text.contains(name::LAST_VERIFIED), "{text}");
        assert!(
            text.contains("vertice_backup_verify_failure_total 1"),
            "{text}"
        );
    }

    #[test]
    fn a_drill_counts_its_outcome_and_verifies_only_when_it_passed() {
        let mut before = GroupState::default();
        before.values.insert(name::DRILL_SUCCESS_TOTAL.into(), 2.0);
        before.values.insert(name::TOTAL.into(), 9.0);
        let passed = RunSummary {
            command: "drill".into(),
            outcome: "succeeded".into(),
            finished_at: chrono::DateTime::from_timestamp(1_700_000_000, 0),
            drill: Some(vertice_crds::drill::DrillReport {
                restore_seconds: Some(12.5),
                backup_age_seconds: Some(3600.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = render(&before, &passed).expect("render");
        for line in [
            "vertice_restore_drill_success_total 3",
            "vertice_restore_drill_failure_total 0",
            "vertice_restore_drill_duration_seconds 12.5",
            "vertice_restore_drill_backup_age_seconds 3600",
            "vertice_backup_last_verified_timestamp_seconds 1700000000",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            !text.contains(name::TOTAL),
            "backup counters untouched: {text}"
        );
        let failed = RunSummary {
            command: "drill".into(),
            outcome: "failed".into(),
            ..Default::default()
        };
        let text = render(&before, &failed).expect("render");
        assert!(
            text.contains("vertice_restore_drill_failure_total 1"),
            "{text}"
        );
        assert!(!text.contains(name::LAST_VERIFIED), "{text}");
    }

    #[test]
    fn pushgateway_urls_are_checked_and_never_echoed_with_secrets() {
        assert!(validate_url("http://pg:9091").is_ok());
        for bad in ["pg:9091", "ftp://pg", "http://", "not a url"] {
            let err = validate_url(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("--pushgateway-url"), "{err}");
        }
        let err = validate_url("ftp://u:hunter2@pg/?token=t0k3n").expect_err("scheme");
        assert!(
            !err.to_string().contains("hunter2") && !err.to_string().contains("t0k3n"),
            "{err}"
        );
    }

    #[test]
    fn group_urls_encode_awkward_values() {
        assert_eq!(
            group_url("http://pg:9091/", "shop", "orders"),
            "http://pg:9091/metrics/job/vertice-backup/namespace/shop/backup/orders"
        );
        assert!(group_url("http://pg:9091", "shop", "a/b").ends_with("backup@base64/YS9i"));
    }
}
