//! `vertice-agent list`: the backups in a store, newest first.

use serde::Serialize;

use super::store_from_args;
use crate::catalog;
use crate::cli::{ListArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::pipeline::progress::{human_bytes, human_duration};

#[derive(Debug, Serialize)]
struct Row<'a> {
    id: &'a str,
    namespace: &'a str,
    name: &'a str,
    time: String,
    source_kind: String,
    source: &'a str,
    server_version: Option<&'a str>,
    stored_bytes: u64,
    raw_bytes: u64,
    duration_seconds: f64,
    /// Fingerprints of the age recipients, when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    encrypted_to: Option<Vec<String>>,
    /// `ok` or `damaged` (an artifact is missing or of the wrong size).
    status: &'static str,
    /// Where it stands in its series (`catalog::series_time`).
    #[serde(skip)]
    order: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a str>,
}

/// A manifest that does not describe where it is stored, or cannot be read.
#[derive(Debug, Serialize)]
struct StrayRow<'a> {
    status: &'static str,
    key: &'a str,
    problem: &'a str,
}

fn row<'a>(m: &'a Manifest, problem: Option<&'a str>) -> Row<'a> {
    Row {
        status: if problem.is_some() { "damaged" } else { "ok" },
        order: catalog::series_time(m),
        problem,
        id: &m.backup_id,
        namespace: &m.namespace,
        name: &m.name,
        time: m
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        source_kind: m.source.kind.to_string(),
        source: &m.source.address,
        server_version: m.source.server_version.as_deref(),
        stored_bytes: m.stored_bytes(),
        raw_bytes: m.raw_bytes(),
        duration_seconds: m.duration_seconds(),
        encrypted_to: m
            .artifacts
            .iter()
            .find_map(|a| a.encryption.as_ref())
            .map(|e| e.recipient_fingerprints.clone()),
    }
}

pub async fn run(args: &ListArgs) -> Result<String> {
    let scope = super::scope_of(&args.names)?;
    let store = store_from_args(&args.from, "--from", &args.store).await?;
    let found = catalog::load_catalog(store.as_ref(), &scope).await?;
    let mut rows: Vec<Row> = found
        .intact
        .iter()
        .map(|m| row(m, None))
        .chain(found.damaged.iter().map(|(m, p)| row(m, Some(p.as_str()))))
        .collect();
    rows.sort_by(|a, b| b.order.cmp(&a.order).then_with(|| b.id.cmp(a.id)));
    let strays: Vec<StrayRow> = found
        .strays
        .iter()
        .map(|s| StrayRow {
            status: "stray",
            key: &s.key,
            problem: &s.problem,
        })
        .collect();
    match args.output {
        OutputFormat::Json => {
            let mut all: Vec<serde_json::Value> = Vec::new();
            for r in &rows {
                all.push(serde_json::to_value(r).map_err(|e| Error::target(e.to_string()))?);
            }
            for s in &strays {
                all.push(serde_json::to_value(s).map_err(|e| Error::target(e.to_string()))?);
            }
            serde_json::to_string_pretty(&all).map_err(|e| Error::target(e.to_string()))
        }
        OutputFormat::Table => Ok(table(&rows, &strays)),
    }
}

fn table(rows: &[Row], strays: &[StrayRow]) -> String {
    let header = [
        "ID", "BACKUP", "TIME", "SOURCE", "STORED", "RAW", "DURATION",
    ]
    .map(String::from);
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                match r.problem {
                    Some(_) => format!("{} DAMAGED", r.id),
                    None => r.id.to_string(),
                },
                format!("{}/{}", r.namespace, r.name),
                r.time.clone(),
                format!("{} {}", r.source_kind, r.source),
                format!(
                    "{}{}",
                    human_bytes(r.stored_bytes),
                    if r.encrypted_to.is_some() {
                        " (age)"
                    } else {
                        ""
                    }
                ),
                human_bytes(r.raw_bytes),
                human_duration(std::time::Duration::from_secs_f64(
                    r.duration_seconds.max(0.0),
                )),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &cells {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &[String; 7]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![render(&header)];
    out.extend(cells.iter().map(render));
    if cells.is_empty() {
        out.push("(no backups)".into());
    }
    for r in rows {
        if let Some(problem) = r.problem {
            out.push(format!(
                "DAMAGED {}/{}/{}: {problem}",
                r.namespace, r.name, r.id
            ));
        }
    }
    for s in strays {
        out.push(format!(
            "STRAY {} (never selected, never pruned by): {}",
            s.key, s.problem
        ));
    }
    out.join("\n")
}
