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
mod replace;
pub(crate) mod repository;
mod restore;
mod selection;
mod smile;
mod snapshot;
pub mod target;
mod witness;

pub use drill::drill;
pub use target::SearchTarget;

use client::{Client, Side};

use crate::engine::common::{BackupStream, Stored};
use crate::engine::settings::{BackupSettings, RestoreSettings, SnapshotRepository};
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
    let client = source_client(target, settings)?;
    let identity = cluster::identify(&client).await?;
    if let Some(repository) = &settings.search.snapshot {
        return start_snapshot(
            client,
            identity,
            target,
            repository,
            &settings.search.indices,
        )
        .await;
    }
    let plan = export::plan(&client, identity.clone(), &settings.search.indices).await?;
    tracing::info!(
        cluster = %identity.describe(),
        indices = plan.indices.len(),
        definitions = plan.definitions.len(),
        "exporting: definitions first, then every document"
    );
    let info = source_info(target, &identity);
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
        parts: None,
    })
}

/// Snapshot mode: the snapshot is taken and followed in the stream's
/// task; the stream is the record of it, written once it succeeded.
async fn start_snapshot(
    client: Client,
    identity: cluster::Identity,
    target: &SearchTarget,
    repository: &SnapshotRepository,
    patterns: &[String],
) -> Result<BackupStream> {
    let (repository, managed) = match repository {
        SnapshotRepository::Named(name) => {
            snapshot::repository_type(&client, name).await?;
            (name.clone(), None)
        }
        SnapshotRepository::Managed {
            place: Some(place), ..
        } => {
            let name = repository::repository_name(place);
            repository::ensure(&client, &name, place, repository::Purpose::Backup).await?;
            (name, Some(place.clone()))
        }
        SnapshotRepository::Managed { place: None, .. } => {
            return Err(Error::usage(
                "snapshot mode without --search-repository needs the store (--to) to place the agent's repository in",
            ))
        }
    };
    let indices = selection::resolve(&client, patterns, false).await?;
    let info = source_info(target, &identity);
    let (tx, stream) = crate::engine::common::chunk_channel(CHUNKS_IN_FLIGHT);
    let mut finished_info = info.clone();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let name = snapshot::snapshot_name(millis, (std::process::id() & 0xffff) as u16);
    let finished = tokio::spawn(async move {
        let taken = snapshot::take(&client, &identity, &repository, &indices, &name).await;
        let facts = match taken {
            Ok(mut facts) => {
                if let Some(taken) = facts.snapshot.as_mut() {
                    taken.managed = managed;
                }
                Ok(facts)
            }
            Err(e) => Err(e),
        };
        let facts = match facts {
            Ok(facts) => facts,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return Err(e);
            }
        };
        let mut record = serde_json::to_vec_pretty(&facts).unwrap_or_default();
        record.push(b'\n');
        if tx.send(Ok(bytes::Bytes::from(record))).await.is_err() {
            // No record will name it: a snapshot nobody can find or prune.
            if let Some(taken) = &facts.snapshot {
                let _ = snapshot::delete(&client, taken).await;
            }
            return Err(Error::source(
                "the upload stopped before the snapshot's record was written; the snapshot was deleted",
            ));
        }
        // The witnesses' ids are data: they stay in the record, which is
        // encrypted with the backup, and out of the manifest, which is not.
        let mut facts = facts;
        for index in &mut facts.indices {
            index.witnesses.clear();
        }
        finished_info.search = Some(facts);
        Ok(finished_info)
    });
    Ok(BackupStream {
        stream,
        source: info,
        artifact_stem: "snapshot.json",
        format: "search-snapshot-record",
        producer: Producer {
            tool: "vertice-agent (search snapshot)".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            arguments: Vec::new(),
        },
        finished: Some(finished),
        parent: None,
        parts: None,
    })
}

/// A client of the backup's source cluster.
fn source_client(target: &SearchTarget, settings: &BackupSettings) -> Result<Client> {
    Client::new(
        target,
        &settings.search.connection,
        settings.password.as_ref(),
        "--source",
        Side::Source,
    )
}

fn source_info(target: &SearchTarget, identity: &cluster::Identity) -> SourceInfo {
    SourceInfo {
        kind: SourceKind::Elasticsearch,
        address: target.address(),
        server_version: Some(identity.describe()),
        database: None,
        keys: None,
        roles: Vec::new(),
        kafka: None,
        search: None,
        postgres: None,
    }
}

/// Once the record is stored: the blobs of a snapshot in the agent's own
/// repository are read back from the store and listed in the manifest.
/// Failing that, the snapshot is deleted (no backup will name it).
pub async fn finish_backup(
    target: &SearchTarget,
    settings: &BackupSettings,
    store: &dyn crate::store::Store,
    backup: &mut BackupStream,
) -> Result<()> {
    let Some(facts) = backup.source.search.as_mut() else {
        return Ok(());
    };
    let Some(snapshot) = facts.snapshot.as_mut() else {
        return Ok(());
    };
    let Some(managed) = snapshot.managed.clone() else {
        return Ok(());
    };
    match repository::inventory(store, &managed, snapshot).await {
        Ok(blobs) => {
            let bytes: u64 = blobs.iter().map(|b| b.size).sum();
            tracing::info!(blobs = blobs.len(), bytes, repository = %managed.store_path, "the snapshot's blobs read back from the store");
            snapshot.blobs = blobs;
            Ok(())
        }
        Err(e) => {
            let deleted = match source_client(target, settings) {
                Ok(client) => snapshot::delete(&client, snapshot).await,
                Err(c) => Err(c),
            };
            Err(e.map_message(|m| match deleted {
                Ok(()) => format!("{m}; snapshot {} was deleted", snapshot.snapshot),
                Err(d) => format!(
                    "{m}; deleting snapshot {} failed too: {d}",
                    snapshot.snapshot
                ),
            }))
        }
    }
}

/// Deletes the snapshot this run took for a backup that will not be
/// stored (no manifest will name it).
pub async fn discard(
    target: &SearchTarget,
    settings: &BackupSettings,
    source: &SourceInfo,
) -> Result<()> {
    let Some(snapshot) = source.search.as_ref().and_then(|s| s.snapshot.as_ref()) else {
        return Ok(());
    };
    let client = source_client(target, settings)?;
    snapshot::delete(&client, snapshot).await?;
    tracing::info!(snapshot = %snapshot.snapshot, repository = %snapshot.repository, "the snapshot of a backup that was not stored is deleted");
    Ok(())
}

/// Deletes the snapshot of `old`, a snapshot-mode backup retention lets
/// go, through the cluster's delete-snapshot API (never by deleting blobs,
/// which would corrupt the repository); one already gone is fine. Only a
/// snapshot of this cluster and repository is deleted.
pub async fn release(
    target: &SearchTarget,
    settings: &BackupSettings,
    old: &Manifest,
) -> Result<()> {
    let Some(snapshot) = old.source.search.as_ref().and_then(|s| s.snapshot.as_ref()) else {
        return Ok(());
    };
    let client = source_client(target, settings)?;
    let identity = cluster::identify(&client).await?;
    let recorded_uuid = old
        .source
        .search
        .as_ref()
        .map(|s| s.cluster_uuid.as_str())
        .unwrap_or_default();
    if identity.uuid != recorded_uuid {
        return Err(Error::usage(format!(
            "backup {} was taken on cluster {recorded_uuid}, not {} ({}): its snapshot is deleted only through its own cluster",
            old.backup_id, identity.uuid, client.address()
        )));
    }
    snapshot::delete(&client, snapshot).await?;
    tracing::info!(backup = %old.backup_id, snapshot = %snapshot.snapshot, repository = %snapshot.repository, "snapshot deleted through the cluster");
    Ok(())
}

/// Restores every index under the name `names` gives it, checked; the
/// documents each holds. `keep_for_inspection`: a snapshot restore whose
/// counts do not match leaves its indices in place (not when they are a
/// replace's staging copies, which the caller removes).
async fn restore_into(
    client: &Client,
    backup: &Stored<'_>,
    facts: &SearchFacts,
    names: &std::collections::BTreeMap<String, String>,
    keep_for_inspection: bool,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let Some(taken) = &facts.snapshot else {
        let options = restore::Options {
            definitions: true,
            finish: true,
        };
        return Ok(restore::load(client, backup, facts, names, options)
            .await?
            .counts);
    };
    // Nothing is restored from a repository the store shows damaged.
    repository::check_blobs(backup.store, taken).await?;
    let counts = snapshot::restore(client, facts, names, true).await?;
    for index in &facts.indices {
        let restored = counts.get(&index.name).copied().unwrap_or(0);
        snapshot::count_check(index, restored).map_err(|why| {
            Error::target(format!(
                "index {} restored from snapshot: {why}{}",
                index.name,
                if keep_for_inspection {
                    "; the restored indices are left in place for inspection"
                } else {
                    ""
                }
            ))
        })?;
    }
    Ok(counts)
}

/// Restores an export into absent indices (`--index-map` renames them).
pub async fn restore(
    target: &SearchTarget,
    backup: &Stored<'_>,
    settings: &RestoreSettings,
) -> Result<()> {
    let facts = facts(backup.manifest)?;
    let asked = restore::index_map(&settings.search.index_map, facts)?;
    let mut names = asked.clone();
    let client = Client::new(
        target,
        &settings.search.connection,
        settings.password.as_ref(),
        "--to",
        Side::Target,
    )?;
    let identity = cluster::identify(&client).await?;
    let replaced = if settings.search.replace {
        replace::plan(&client, &backup.manifest.backup_id, &mut names).await?
    } else {
        restore::check_absent(
            &client,
            &names,
            "restore under other names with --index-map SOURCE=TARGET, or over them with --search-replace",
        )
        .await?;
        replace::Replaced::new()
    };
    if !replaced.is_empty() {
        tracing::info!(indices = %replaced.keys().cloned().collect::<Vec<_>>().join(", "), "these exist: each is restored under a staging name and replaced only once every index was restored and checked");
    }
    tracing::info!(cluster = %identity.describe(), indices = names.len(), "restoring: definitions the target lacks, then each index");
    let counts = match restore_into(&client, backup, facts, &names, replaced.is_empty()).await {
        Ok(counts) => counts,
        // Nothing existing was touched: the staging copies go, so that a
        // second try is not refused for them.
        Err(e) if !replaced.is_empty() => return Err(replace::discard(&client, &replaced, e).await),
        Err(e) => return Err(e),
    };
    replace::swap(&client, &replaced).await?;
    let summary: Vec<String> = counts
        .iter()
        .map(|(source, n)| {
            let into = &asked[source];
            if into == source {
                format!("{source}: {n}")
            } else {
                format!("{source} → {into}: {n}")
            }
        })
        .collect();
    let checked = if facts.snapshot.is_some() {
        "restore complete: every index checked by count"
    } else {
        "restore complete: every index checked by count and content digest"
    };
    tracing::info!(documents = %summary.join(", "), "{checked}");
    Ok(())
}
