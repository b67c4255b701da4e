//! `vertice-agent verify`: re-reads a stored artifact and checks its size and
//! SHA-256 (of the stored and, after decompressing, of the raw bytes) against
//! the manifest, without restoring anything.

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
    for artifact in &manifest.artifacts {
        if artifact.encryption.is_some() && identities.is_none() {
            tracing::warn!(artifact = %artifact.name, "encrypted and no --identity given: checking the stored bytes only");
        }
        verify_artifact(
            store.as_ref(),
            &manifest,
            artifact,
            identities.as_deref(),
            args.run.progress,
        )
        .await?;
        tracing::info!(backup = %manifest.backup_id, artifact = %artifact.name, bytes = artifact.stored_bytes, "artifact verified");
    }
    summary.stored_bytes = Some(manifest.stored_bytes());
    summary.raw_bytes = Some(manifest.raw_bytes());
    Ok(manifest)
}
