//! `vertice-agent verify`: re-reads a stored artifact and checks its size and
//! SHA-256 (of the stored and, after decompressing, of the raw bytes) against
//! the manifest, without restoring anything.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, BufReader};

use super::choose_backup;
use crate::cli::VerifyArgs;
use crate::error::{Error, Result};
use crate::manifest::{backup_dir, Artifact, Manifest};
use crate::pipeline::codec::{decompressing, BoxRead};
use crate::pipeline::meter::{Meter, MeteredReader};
use crate::pipeline::progress::{Progress, ProgressMode};
use crate::store::Store;
use crate::summary::RunSummary;

pub async fn run(args: &VerifyArgs, summary: &mut RunSummary) -> Result<Manifest> {
    let (store, manifest) =
        choose_backup(&args.from, &args.backup, &args.names, &args.store, summary).await?;
    for artifact in &manifest.artifacts {
        verify_artifact(store.as_ref(), &manifest, artifact, args.run.progress).await?;
        tracing::info!(backup = %manifest.backup_id, artifact = %artifact.name, bytes = artifact.stored_bytes, "artifact verified");
    }
    summary.stored_bytes = Some(manifest.stored_bytes());
    summary.raw_bytes = Some(manifest.raw_bytes());
    Ok(manifest)
}

/// An artifact opened for reading, decompressed, with meters on both sides.
pub struct OpenArtifact {
    pub reader: BoxRead,
    pub stored: Arc<Meter>,
    pub raw: Arc<Meter>,
}

pub async fn open_artifact(
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
) -> Result<OpenArtifact> {
    if artifact.encryption.is_some() {
        return Err(Error::usage(format!(
            "artifact {} is encrypted; this agent version cannot decrypt it",
            artifact.name
        )));
    }
    let key = format!(
        "{}/{}",
        backup_dir(&manifest.namespace, &manifest.name, &manifest.backup_id),
        artifact.name
    );
    let stored = Meter::new();
    let raw = Meter::new();
    let input = store.get_stream(&key).await?;
    let decompressed = decompressing(
        artifact.compression,
        BufReader::with_capacity(256 * 1024, MeteredReader::new(input, Arc::clone(&stored))),
    );
    Ok(OpenArtifact {
        reader: Box::new(MeteredReader::new(decompressed, Arc::clone(&raw))),
        stored,
        raw,
    })
}

/// Compares what was read against the manifest. Call after the reader hit EOF.
pub fn check_integrity(
    manifest: &Manifest,
    artifact: &Artifact,
    stored: &Meter,
    raw: &Meter,
) -> Result<()> {
    let what = format!("backup {} artifact {}", manifest.backup_id, artifact.name);
    let mut problems = Vec::new();
    if stored.bytes() != artifact.stored_bytes {
        problems.push(format!(
            "stored size is {} bytes, manifest says {}",
            stored.bytes(),
            artifact.stored_bytes
        ));
    }
    let stored_sha = stored.sha256_hex();
    if stored_sha != artifact.stored_sha256 {
        problems.push(format!(
            "stored SHA-256 is {stored_sha}, manifest says {}",
            artifact.stored_sha256
        ));
    }
    if raw.bytes() != artifact.raw_bytes || raw.sha256_hex() != artifact.raw_sha256 {
        problems.push("the decompressed content does not match the manifest".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "{what} is corrupt: {}",
            problems.join("; ")
        )))
    }
}

pub async fn verify_artifact(
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    progress: ProgressMode,
) -> Result<()> {
    let mut open = open_artifact(store, manifest, artifact).await?;
    let _progress = Progress::start(progress, "verify", Arc::clone(&open.stored));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match open.reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(Error::failed(format!(
                    "backup {} artifact {} is corrupt or unreadable: {e}",
                    manifest.backup_id, artifact.name
                )))
            }
        }
    }
    check_integrity(manifest, artifact, &open.stored, &open.raw)
}
