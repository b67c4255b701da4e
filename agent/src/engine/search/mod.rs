//! Elasticsearch and OpenSearch: an export of chosen indices — their
//! settings, mappings and aliases, the cluster's templates and ingest
//! pipelines, then every document — as open NDJSON through the agent's
//! compression, encryption and SHA-256 (`format.rs`, `export.rs`), read in
//! one consistent view per index (`cursor.rs`, in the cluster's own dialect:
//! `cluster.rs`); restored all or nothing into absent indices by bulk
//! (`restore.rs`, `load.rs`) and drilled into throwaway indices
//! (`drill.rs`). The client is a thin one over reqwest (`client.rs`).

mod client;
pub mod cluster;
mod cursor;
mod definitions;
mod drill;
mod export;
pub mod format;
mod load;
mod restore;
mod selection;
pub mod target;

pub use drill::drill;
pub use target::SearchTarget;

use client::{Client, Side};

use crate::engine::common::{BackupStream, Stored};
use crate::engine::settings::{BackupSettings, RestoreSettings};
use crate::error::{Error, Result};
use crate::manifest::search::SearchFacts;
use crate::manifest::{Manifest, Producer, SourceInfo, SourceKind};
use crate::pipeline::redact::Redactor;

/// Chunks of the export waiting for the upload.
const CHUNKS_IN_FLIGHT: usize = 8;

/// The facts an export recorded, or why this backup has none.
pub fn facts(manifest: &Manifest) -> Result<&SearchFacts> {
    manifest.source.search.as_ref().ok_or_else(|| {
        Error::integrity(format!(
            "backup {} is an Elasticsearch backup whose manifest records no indices (source.search)",
            manifest.backup_id
        ))
    })
}

/// Identifies the cluster, resolves the indices, opens the views, then
/// streams the export; the manifest's facts arrive through `finished`.
pub async fn start_backup(
    target: &SearchTarget,
    settings: &BackupSettings,
    redactor: &mut Redactor,
) -> Result<BackupStream> {
    if let Some(p) = &settings.password {
        redactor.add(p.expose());
    }
    if let Some(key) = &settings.search.connection.api_key {
        redactor.add(key.expose());
    }
    let client = Client::new(
        target,
        &settings.search.connection,
        settings.password.as_ref(),
        "--source",
        Side::Source,
    )?;
    let identity = cluster::identify(&client).await?;
    let plan = export::plan(&client, identity.clone(), &settings.search.indices).await?;
    tracing::info!(
        cluster = %identity.describe(),
        indices = plan.indices.len(),
        definitions = plan.definitions.len(),
        "exporting: definitions first, then every document"
    );
    let info = SourceInfo {
        kind: SourceKind::Elasticsearch,
        address: target.address(),
        server_version: Some(identity.describe()),
        database: None,
        keys: None,
        roles: Vec::new(),
        kafka: None,
        search: None,
    };
    let (tx, stream) = crate::engine::common::chunk_channel(CHUNKS_IN_FLIGHT);
    let mut finished_info = info.clone();
    let finished = tokio::spawn(async move {
        let written = export::write(&client, plan, tx.clone()).await;
        if let Err(e) = &written {
            // The upload must fail too, not store an export cut short.
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
        finished_info.search = Some(written?);
        Ok(finished_info)
    });
    Ok(BackupStream {
        stream,
        source: info,
        artifact_stem: "search.ndjson",
        format: format::FORMAT,
        producer: Producer {
            tool: "vertice-agent (search export)".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            arguments: Vec::new(),
        },
        finished: Some(finished),
        parent: None,
    })
}

/// Restores an export into absent indices (`--index-map` renames them).
pub async fn restore(
    target: &SearchTarget,
    backup: &Stored<'_>,
    settings: &RestoreSettings,
) -> Result<()> {
    let facts = facts(backup.manifest)?;
    let names = restore::index_map(&settings.search.index_map, facts)?;
    let client = Client::new(
        target,
        &settings.search.connection,
        settings.password.as_ref(),
        "--to",
        Side::Target,
    )?;
    let identity = cluster::identify(&client).await?;
    restore::check_absent(
        &client,
        &names,
        "restore under other names with --index-map SOURCE=TARGET",
    )
    .await?;
    tracing::info!(cluster = %identity.describe(), indices = names.len(), "restoring: definitions the target lacks, then each index");
    let options = restore::Options {
        definitions: true,
        finish: true,
    };
    let loaded = restore::load(&client, backup, facts, &names, options).await?;
    let summary: Vec<String> = loaded
        .counts
        .iter()
        .map(|(source, n)| {
            let into = &names[source];
            if into == source {
                format!("{source}: {n}")
            } else {
                format!("{source} → {into}: {n}")
            }
        })
        .collect();
    tracing::info!(documents = %summary.join(", "), "restore complete: every index checked by count and content digest");
    Ok(())
}
