//! `vertice-agent verify`: re-reads a stored artifact and checks its size and
//! SHA-256 (of the stored and, after decompressing, of the raw bytes) against
//! the manifest, without restoring anything — for an incremental backup,
//! of every backup in its chain.

use super::choose_backup;
use crate::artifact::{load_identities, verify_artifact};
use crate::cli::VerifyArgs;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::summary::RunSummary;

pub async fn run(args: &VerifyArgs, summary: &mut RunSummary) -> Result<Manifest> {
    if let Some(url) = &args.pushgateway_url {
        crate::report::pushgateway::validate_url(url)?;
    }
    let identities = load_identities(args.identity.as_deref())?;
    let (store, manifest) =
        choose_backup(&args.from, &args.backup, &args.names, &args.store, summary).await?;
    // An incremental backup restores only with its whole chain: every
    // backup it continues is present and intact too, or it does not verify.
    let chain = crate::catalog::chain(store.as_ref(), &manifest).await?;
    for member in &chain {
        for artifact in &member.artifacts {
            if artifact.encryption.is_some() && identities.is_none() {
                tracing::warn!(artifact = %artifact.name, "encrypted and no --identity given: checking the stored bytes only");
            }
            verify_artifact(
                store.as_ref(),
                member,
                artifact,
                identities.as_deref(),
                args.run.progress,
            )
            .await?;
            tracing::info!(backup = %member.backup_id, artifact = %artifact.name, bytes = artifact.stored_bytes, "artifact verified");
        }
    }
    let held = crate::engine::check_held_data(store.as_ref(), &manifest).await?;
    if held > 0 {
        tracing::info!(backup = %manifest.backup_id, blobs = held, "the snapshot's repository blobs are all in the store with their sizes");
    }
    if chain.len() > 1 {
        tracing::info!(backup = %manifest.backup_id, backups = chain.len(), full = %chain[0].backup_id, "incremental backup: its whole chain verified");
    }
    summary.stored_bytes = Some(manifest.stored_bytes());
    summary.raw_bytes = Some(manifest.raw_bytes());
    Ok(manifest)
}
