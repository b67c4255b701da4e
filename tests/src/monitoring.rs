//! `monitoring/` read as the tests need it: the dashboards' panel and
//! variable queries, the alert rules, the metric names each of them uses,
//! and the metric names the code exports and the docs list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn monitoring_dir() -> PathBuf {
    crate::kube::cluster::workspace().join("monitoring")
}

/// One panel target.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub expr: String,
    /// Grafana runs it as an instant query (else over the time range).
    pub instant: bool,
}

/// A `label_values(selector, label)` variable.
#[derive(Debug, Clone)]
pub struct VariableQuery {
    pub dashboard: String,
    pub name: String,
    pub selector: Option<String>,
    pub label: String,
}

/// Every dashboard file: (file name, parsed JSON).
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = monitoring_dir().join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (file_name(&p), json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Panels, with the panels of collapsed rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

pub fn panel_queries(file: &str, dashboard: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push(PanelQuery {
                    dashboard: file.to_string(),
                    panel: p["title"].as_str().unwrap_or_default().to_string(),
                    expr: expr.to_string(),
                    instant: t["instant"] == true && t["range"] != true,
                });
            }
        }
    }
    out
}

pub fn variable_queries(file: &str, dashboard: &Value) -> Vec<VariableQuery> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        let Some((selector, label)) = parse_label_values(query) else {
            panic!(
                "{file}: variable {} is not label_values(…): {query}",
                v["name"]
            );
        };
        out.push(VariableQuery {
            dashboard: file.to_string(),
            name: v["name"].as_str().unwrap_or_default().to_string(),
            selector,
            label,
        });
    }
    out
}

/// `label_values(sel, label)` or `label_values(label)`.
pub fn parse_label_values(query: &str) -> Option<(Option<String>, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    match inner.rfind(',') {
        Some(i) => Some((
            Some(inner[..i].trim().to_string()),
            inner[i + 1..].trim().to_string(),
        )),
        None => Some((None, inner.trim().to_string())),
    }
}

/// A panel query with Grafana's variables as a query over everything
/// would have them: `$namespace`/`$name` as `.*`, the intervals as what a
/// short test history can answer.
pub fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("${datasource}", "")
        .replace("$namespace", ".*")
        .replace("$name", ".*")
}

/// The metric names a PromQL expression reads: every name of ours
/// (`vertice_…`), and the standard ones the rules use (`up`, `process_…`).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        if starts_word && is_ident(bytes[i]) {
            let end = (i..bytes.len())
                .find(|&j| !is_ident(bytes[j]))
                .unwrap_or(bytes.len());
            let word = &expr[i..end];
            let next = expr[end..].trim_start();
            let is_metric = word.starts_with("vertice_")
                || word.starts_with("process_")
                || (word == "up" && next.starts_with('{'));
            if is_metric {
                out.insert(word.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The series name a histogram's `_bucket`/`_sum`/`_count` belongs to.
pub fn family_of(name: &str, histograms: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if histograms.contains(base) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

/// The alert rules file, parsed.
pub fn alert_rules() -> Value {
    let path = monitoring_dir().join("alerts/vertice.rules.yaml");
    let text = std::fs::read_to_string(&path).expect("rules");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every alerting rule of the rules file.
pub fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["alert"].is_string())
        .collect()
}

/// The `vertice_…` names in string literals of the Rust sources under
/// `dirs`, skipping `#[cfg(test)]` modules and files under `tests/`: what
/// the code exports.
pub fn exported_metric_names(dirs: &[&str]) -> BTreeSet<String> {
    let root = crate::kube::cluster::workspace();
    let mut out = BTreeSet::new();
    for dir in dirs {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    if !path.ends_with("tests") {
                        stack.push(path);
                    }
                    continue;
                }
                if path.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                // Comments may quote anything (a file format's keys): only
                // code exports a metric.
                let code: String = code
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                out.extend(quoted_metric_names(&code));
            }
        }
    }
    out
}

/// `"vertice_…"` string literals in `code`.
pub fn quoted_metric_names(code: &str) -> BTreeSet<String> {
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("vertice_")
                && s.len() > "vertice_".len()
                && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .map(str::to_string)
        .collect()
}

/// The metric names `docs/ARCHITECTURE.md` lists (in backquotes).
pub fn documented_metric_names() -> BTreeSet<String> {
    let path = crate::kube::cluster::workspace().join("docs/ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).expect("ARCHITECTURE.md");
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| {
            let name = s.split(['{', ' ', ',']).next()?;
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            (plain
                && (name.starts_with("vertice_") || name.starts_with("process_") || name == "up"))
                .then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_read_out_of_promql() {
        let names = metric_names(
            r#"sum by (le) (rate(vertice_failover_probe_duration_seconds_bucket{kind="http"}[5m])) / on (namespace) up{job="x"} or vector(0) unless process_start_time_seconds"#,
        );
        let want: BTreeSet<String> = [
            "vertice_failover_probe_duration_seconds_bucket",
            "up",
            "process_start_time_seconds",
        ]
        .map(String::from)
        .into();
        assert_eq!(names, want);
        // A label value or a bare word `up` is no metric.
        assert!(metric_names(r#"x{direction="up"}"#).is_empty());
        let histograms = BTreeSet::from(["vertice_failover_probe_duration_seconds".to_string()]);
        assert_eq!(
            family_of(
                "vertice_failover_probe_duration_seconds_bucket",
                &histograms
            ),
            "vertice_failover_probe_duration_seconds"
        );
        assert_eq!(
            family_of("vertice_backup_total", &histograms),
            "vertice_backup_total"
        );
    }

    #[test]
    fn label_values_and_variables() {
        assert_eq!(
            parse_label_values(
                r#"label_values(vertice_backup_total{namespace=~"$namespace"}, backup)"#
            ),
            Some((
                Some(r#"vertice_backup_total{namespace=~"$namespace"}"#.into()),
                "backup".into()
            ))
        );
        assert_eq!(
            parse_label_values("label_values(namespace)"),
            Some((None, "namespace".into()))
        );
        assert_eq!(parse_label_values("query_result(up)"), None);
        assert_eq!(
            substitute(
                r#"increase(x{namespace=~"$namespace", backup=~"$name"}[$__rate_interval])"#
            ),
            r#"increase(x{namespace=~".*", backup=~".*"}[1m])"#
        );
    }

    #[test]
    fn quoted_names_skip_prefixes_and_format_strings() {
        let code = r#"let a = "vertice_backup_total"; let b = "vertice_"; let c = "vertice_{x}"; let d = "vertice-backup";"#;
        assert_eq!(
            quoted_metric_names(code),
            BTreeSet::from(["vertice_backup_total".to_string()])
        );
    }
}
