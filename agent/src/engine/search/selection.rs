//! Which indices an export takes (`--indices`: names and wildcard
//! patterns), and what the cluster says of each: flat settings, mappings,
//! aliases, shards, a size estimate. Refused before any document is read:
//! a pattern that matches nothing, a closed index named, an index whose
//! `_source` cannot give its documents back.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::client::{segment, Client};
use super::format::{portable_settings, source_problem, IndexDefinition};
use crate::error::{Error, Result};

/// One selected index.
#[derive(Debug, Clone)]
pub struct Selected {
    pub definition: IndexDefinition,
    pub primary_shards: u32,
    /// Documents and primary store bytes as `_cat/indices` saw them: a
    /// first guess of the document size, never a count to check against.
    pub estimate_documents: u64,
    pub estimate_bytes: u64,
}

/// Resolves `patterns` (empty: every open index that is neither hidden
/// nor a system index) into indices, sorted by name.
pub async fn resolve(client: &Client, patterns: &[String], export: bool) -> Result<Vec<Selected>> {
    let mut found: BTreeMap<String, (u32, u64, u64)> = BTreeMap::new();
    let wanted: Vec<String> = if patterns.is_empty() {
        vec!["*".to_string()]
    } else {
        patterns.to_vec()
    };
    for pattern in &wanted {
        check_pattern(pattern)?;
        let rows = cat_indices(client, pattern).await?;
        let literal = !pattern.contains('*');
        let mut matched = 0;
        for row in rows {
            let name = row["index"].as_str().unwrap_or_default().to_string();
            // Dot-indices are the cluster's own (security, tasks,
            // dashboards) unless named outright.
            if name.starts_with(".ds-") && !literal {
                // A data stream's backing index, restored as a plain index,
                // would no longer belong to its stream.
                tracing::warn!(index = %name, pattern = %pattern, "a data stream's backing index is left out: export mode does not back up data streams");
            }
            if name.is_empty() || (name.starts_with('.') && !literal) {
                continue;
            }
            if row["status"].as_str() == Some("close") {
                return Err(Error::usage(format!(
                    "--indices: index {name} is closed; open it (POST /{name}/_open) or leave it out"
                )));
            }
            if row["health"].as_str() == Some("red") {
                // Read anyway, some of its documents would be missing (a
                // snapshot would be PARTIAL); nothing waits out a red index.
                return Err(Error::source(format!(
                    "index {name} on {} is red (a primary shard is not started): it cannot be backed up whole; wait until the cluster recovers it, or leave it out of --indices",
                    client.address()
                )));
            }
            matched += 1;
            found.insert(
                name,
                (
                    number(&row["pri"]) as u32,
                    number(&row["docs.count"]),
                    number(&row["pri.store.size"]),
                ),
            );
        }
        if matched == 0 && !patterns.is_empty() {
            return Err(Error::usage(format!(
                "--indices: {pattern:?} matches no open index on {}",
                client.address()
            )));
        }
    }
    if found.is_empty() {
        return Err(Error::usage(format!(
            "{} {} holds no open index to back up; name them with --indices",
            client.flag,
            client.address()
        )));
    }
    let mut selected = Vec::with_capacity(found.len());
    for (name, (shards, docs, bytes)) in found {
        selected.push(Selected {
            definition: definition(client, &name, export).await?,
            primary_shards: shards,
            estimate_documents: docs,
            estimate_bytes: bytes,
        });
    }
    Ok(selected)
}

/// Index names and patterns hold no separators or exclusions the URL or
/// the cluster would read otherwise.
fn check_pattern(pattern: &str) -> Result<()> {
    let bad = pattern.is_empty()
        || pattern.starts_with(['-', '_', '+'])
        || pattern.contains(['/', '\\', ',', ' ', '"', '<', '>', '|', '?', '#', ':']);
    if bad {
        return Err(Error::usage(format!(
            "--indices: {pattern:?} is not an index name or pattern (letters, digits, '.', '-', '_' and '*'; comma-separated)"
        )));
    }
    Ok(())
}

async fn cat_indices(client: &Client, pattern: &str) -> Result<Vec<Value>> {
    let path = format!(
        "_cat/indices/{}?format=json&bytes=b&h=index,health,status,pri,docs.count,pri.store.size&expand_wildcards=open",
        segment(pattern)
    );
    let answer = client.send(reqwest::Method::GET, &path, None).await?;
    match answer.status.as_u16() {
        200 => Ok(answer.json().as_array().cloned().unwrap_or_default()),
        404 => Err(Error::usage(format!(
            "--indices: index {pattern:?} does not exist on {}",
            client.address()
        ))),
        _ => Err(client.refused(&reqwest::Method::GET, &path, &answer)),
    }
}

fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// An index's settings (without generated ones), mappings and aliases.
pub async fn definition(client: &Client, name: &str, export: bool) -> Result<IndexDefinition> {
    let index = segment(name);
    let settings = client
        .get(&format!("{index}/_settings?flat_settings=true"))
        .await?;
    let mappings = client.get(&format!("{index}/_mapping")).await?;
    let aliases = client.get(&format!("{index}/_alias")).await?;
    let flat = settings[name]["settings"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mappings = mappings[name]["mappings"].clone();
    // A snapshot keeps what `_source` does not; an export cannot.
    let problem =
        source_problem(&mappings).or_else(|| super::format::settings_source_problem(&flat));
    if let Some(problem) = problem.filter(|_| export) {
        return Err(Error::usage(format!(
            "--indices: index {name} cannot be exported: {problem}; leave it out of --indices"
        )));
    }
    Ok(IndexDefinition {
        name: name.to_string(),
        settings: portable_settings(&flat),
        mappings,
        aliases: aliases[name]["aliases"]
            .as_object()
            .cloned()
            .unwrap_or_else(Map::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_would_reach_elsewhere_are_refused() {
        for bad in [
            "", "-logs", "_all", "a/b", "a,b", "a b", "a?b", "x#y", "c:idx",
        ] {
            let err = check_pattern(bad).expect_err(bad);
            assert!(err.to_string().contains("--indices"), "{err}");
        }
        for good in ["logs-*", "orders", "logs-2026.12.*", "*"] {
            check_pattern(good).expect(good);
        }
    }

    #[test]
    fn cat_numbers_come_as_strings_or_numbers() {
        assert_eq!(number(&serde_json::json!("12")), 12);
        assert_eq!(number(&serde_json::json!(7)), 7);
        assert_eq!(number(&Value::Null), 0);
    }
}
