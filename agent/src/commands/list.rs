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
}

fn row(m: &Manifest) -> Row<'_> {
    Row {
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
    let scope = crate::names::scope(&args.names)?;
    let store = store_from_args(&args.from, "--from", &args.store).await?;
    let manifests = catalog::load(store.as_ref(), &scope).await?;
    match args.output {
        OutputFormat::Json => {
            let rows: Vec<Row> = manifests.iter().map(row).collect();
            serde_json::to_string_pretty(&rows).map_err(|e| Error::target(e.to_string()))
        }
        OutputFormat::Table => Ok(table(&manifests)),
    }
}

pub fn table(manifests: &[Manifest]) -> String {
    let header = [
        "ID", "BACKUP", "TIME", "SOURCE", "STORED", "RAW", "DURATION",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = manifests
        .iter()
        .map(|m| {
            let r = row(m);
            [
                r.id.to_string(),
                format!("{}/{}", r.namespace, r.name),
                r.time,
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
    for r in &rows {
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
    out.extend(rows.iter().map(render));
    if rows.is_empty() {
        out.push("(no backups)".into());
    }
    out.join("\n")
}
