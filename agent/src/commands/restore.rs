//! `vertice-agent restore`: store → SHA-256 → decompress → target, where the
//! target never sees a backup whose checksum fails.
//!
//! - PostgreSQL: see [`super::restore_postgres`]: the agent sends the COMMIT,
//!   only after the whole artifact matched its manifest.
//! - Redis, RDB file: written to a temporary name, published only when whole
//!   and verified; an existing file is replaced only with `--force`.
//! - Redis, running instance: the artifact is verified first (one read), then
//!   replayed with RESTORE (a second read).

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::choose_backup;
use super::verify::{
    check_identities, check_integrity, load_identities, open_artifact, verify_artifact,
    OpenArtifact,
};
use crate::cli::RestoreArgs;
use crate::error::{Error, Result};
use crate::manifest::{Artifact, Manifest, SourceKind};
use crate::pipeline::encryption::x25519;
use crate::pipeline::progress::Progress;
use crate::redis::live_restore::{self, LiveRestoreError};
use crate::source::vault::VaultClient;
use crate::store::Store;
use crate::summary::RunSummary;
use crate::target::{resolve_password, RedisTarget, Target, VaultTarget, REDIS_PASSWORD_ENV};

pub async fn run(args: &RestoreArgs, summary: &mut RunSummary) -> Result<Manifest> {
    let target = Target::parse_as(
        &args.to,
        "--to",
        args.target_kind == Some(crate::cli::SourceKindArg::Vault),
    )?;
    let identities = load_identities(args.identity.as_deref())?;
    let ids = identities.as_deref();
    let (store, manifest) =
        choose_backup(&args.from, &args.backup, &args.names, &args.store, summary).await?;
    let artifact = manifest
        .artifacts
        .first()
        .ok_or_else(|| Error::target(format!("backup {} has no artifacts", manifest.backup_id)))?
        .clone();
    // A missing or wrong key is found out before the target is touched.
    check_identities(&manifest, &artifact, ids)?;
    tracing::info!(backup = %manifest.backup_id, artifact = %artifact.name, "restore started");

    match (&target, manifest.source.kind) {
        (Target::Postgres(pg), SourceKind::Postgres) => {
            let settings = super::restore_postgres::PgRestoreSettings::from_args(args)?;
            super::restore_postgres::restore(
                &settings,
                store.as_ref(),
                &manifest,
                &artifact,
                ids,
                pg,
                // The warning in the log is all a plain restore reports.
                &Default::default(),
            )
            .await?
        }
        (Target::File(path), SourceKind::Redis) => {
            restore_rdb_file(args, store.as_ref(), &manifest, &artifact, ids, path).await?
        }
        (Target::Redis(redis), SourceKind::Redis) => {
            restore_redis_live(args, store.as_ref(), &manifest, &artifact, ids, redis).await?
        }
        (Target::Vault(vault), SourceKind::Vault) => {
            restore_vault(args, store.as_ref(), &manifest, &artifact, ids, vault).await?
        }
        (_, kind) => {
            return Err(Error::usage(format!(
                "backup {} is a {kind} backup; --to must be {}",
                manifest.backup_id,
                match kind {
                    SourceKind::Postgres => "a postgres:// URL",
                    SourceKind::Redis => "a redis:// URL or file:///path/dump.rdb",
                    SourceKind::Vault => "a vault:// URL (or http(s):// with --target-kind vault)",
                }
            )))
        }
    }
    summary.stored_bytes = Some(manifest.stored_bytes());
    summary.raw_bytes = Some(manifest.raw_bytes());
    tracing::info!(backup = %manifest.backup_id, "restore complete");
    Ok(manifest)
}

async fn restore_rdb_file(
    args: &RestoreArgs,
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    ids: Option<&[x25519::Identity]>,
    path: &Path,
) -> Result<()> {
    if path.as_os_str().is_empty() || path.file_name().is_none() {
        return Err(Error::usage(
            "--to file:// needs a file path, e.g. file:///data/dump.rdb",
        ));
    }
    if tokio::fs::try_exists(path).await.unwrap_or(false) && !args.force {
        return Err(Error::usage(format!(
            "--to {}: the file exists; pass --force to replace it",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::target(format!("creating {}: {e}", dir.display())))?;
    }
    let temp = temp_sibling(path);
    let result = write_verified(store, manifest, artifact, ids, &temp, args).await;
    let published = match result {
        Ok(()) if args.force => tokio::fs::rename(&temp, path).await,
        // Without --force, linking fails if the file appeared meanwhile.
        Ok(()) => tokio::fs::hard_link(&temp, path).await,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
    };
    let _ = tokio::fs::remove_file(&temp).await;
    published.map_err(|e| Error::target(format!("publishing {}: {e}", path.display())))
}

async fn write_verified(
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    ids: Option<&[x25519::Identity]>,
    temp: &Path,
    args: &RestoreArgs,
) -> Result<()> {
    let mut open = open_artifact(store, manifest, artifact, ids).await?;
    let _progress = Progress::start(
        args.run.progress,
        "restore",
        std::sync::Arc::clone(&open.stored),
    );
    let mut file = tokio::fs::File::create(temp)
        .await
        .map_err(|e| Error::target(format!("creating {}: {e}", temp.display())))?;
    tokio::io::copy(&mut open.reader, &mut file)
        .await
        .map_err(|e| match crate::store::store_failure(&e) {
            // The store failed midway: not the target's fault, nor the backup's.
            Some(_) => super::verify::read_failed(manifest, artifact, &e),
            None => Error::target(format!(
                "restoring backup {} into {}: {e}",
                manifest.backup_id,
                temp.display()
            )),
        })?;
    // tokio reports a failed write only on the next operation: flush first.
    file.flush()
        .await
        .map_err(|e| Error::target(format!("writing {}: {e}", temp.display())))?;
    file.sync_all()
        .await
        .map_err(|e| Error::target(format!("syncing {}: {e}", temp.display())))?;
    check_integrity(manifest, artifact, &open)
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".vertice-partial-{}", std::process::id()));
    path.with_file_name(name)
}

async fn restore_redis_live(
    args: &RestoreArgs,
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    ids: Option<&[x25519::Identity]>,
    target: &RedisTarget,
) -> Result<()> {
    let password = resolve_password(args.password_file.as_ref(), REDIS_PASSWORD_ENV)?;
    let connect_to = target.clone();
    let replace = args.force;
    let (conn, mode) = tokio::task::spawn_blocking(move || {
        let mut conn = live_restore::connect(&connect_to, password.as_deref())?;
        let mode = live_restore::preflight(&mut conn, &connect_to.address(), replace)?;
        Ok::<_, LiveRestoreError>((conn, mode))
    })
    .await
    .map_err(|e| Error::target(format!("restore task failed: {e}")))?
    .map_err(live_error)?;
    // Staged restores check the artifact at the end, before the swap; a
    // direct one cannot be taken back, so it is checked first (one more read).
    if let live_restore::Mode::Direct { why } = &mode {
        tracing::warn!(reason = %why, "the restore goes straight into the target; verifying the backup first");
        verify_artifact(store, manifest, artifact, ids, args.run.progress).await?;
    }
    let open = open_artifact(store, manifest, artifact, ids).await?;
    let _progress = Progress::start(
        args.run.progress,
        "restore",
        std::sync::Arc::clone(&open.stored),
    );
    let address = target.address();
    let (reader, store_failed) = NoteStoreFailure::wrap(open.reader);
    let reader = tokio_util::io::SyncIoBridge::new(reader);
    let (manifest_c, artifact_c) = (manifest.clone(), artifact.clone());
    let (stored, raw, raw_checked) = (open.stored, open.raw, open.raw_checked);
    let stats = tokio::task::spawn_blocking(move || {
        let mut conn = conn;
        live_restore::restore(
            &mut conn,
            &address,
            reader,
            &mode,
            replace,
            chrono::Utc::now().timestamp_millis(),
            || {
                let read = OpenArtifact {
                    reader: Box::new(tokio::io::empty()),
                    stored,
                    raw,
                    raw_checked,
                };
                check_integrity(&manifest_c, &artifact_c, &read).map_err(|e| e.to_string())
            },
        )
    })
    .await
    .map_err(|e| Error::target(format!("restore task failed: {e}")))?
    .map_err(|e| match store_failed.error(manifest, artifact) {
        // The replay reports a read error as its own: the store failed.
        Some(store) => store.map_message(|m| format!("{m}; {e}")),
        None => live_error(e),
    })?;
    tracing::info!(
        keys = stats.keys,
        expired_skipped = stats.expired_skipped,
        functions = stats.functions,
        "keys restored"
    );
    Ok(())
}

fn live_error(e: LiveRestoreError) -> Error {
    match e {
        LiveRestoreError::Usage(m) => Error::usage(m),
        LiveRestoreError::Failed(m) => Error::target(m),
    }
}

/// Vault installs a snapshot atomically, but a restore cannot be taken back:
/// the artifact is verified first (one read), then streamed in (a second).
async fn restore_vault(
    args: &RestoreArgs,
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    ids: Option<&[x25519::Identity]>,
    target: &VaultTarget,
) -> Result<()> {
    let (client, _secrets) = VaultClient::connect(target, &super::vault_login(&args.vault)).await?;
    verify_artifact(store, manifest, artifact, ids, args.run.progress).await?;
    let open = open_artifact(store, manifest, artifact, ids).await?;
    let _progress = Progress::start(
        args.run.progress,
        "restore",
        std::sync::Arc::clone(&open.stored),
    );
    let (reader, store_failed) = NoteStoreFailure::wrap(open.reader);
    client
        .restore(Box::new(reader), args.force)
        .await
        .map_err(|e| match store_failed.error(manifest, artifact) {
            // Vault saw its upload cut short: the store failed, not Vault.
            Some(store) => store.map_message(|m| format!("{m}; {e}")),
            None => e,
        })?;
    tracing::info!(vault = %target.base, force = args.force, "snapshot installed");
    Ok(())
}

/// A store failure that passed through a reader whose consumer turns read
/// errors into text (the Redis replay, Vault's upload body), kept so that
/// the outcome is reported as the store's failure (`store`), not the
/// target's (or, in the Vault drill, a failed check).
#[derive(Clone, Default)]
pub(crate) struct StoreFailed(std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>);

impl StoreFailed {
    pub(crate) fn error(&self, manifest: &Manifest, artifact: &Artifact) -> Option<Error> {
        let e = self.0.lock().ok()?.take()?;
        Some(super::verify::read_failed(manifest, artifact, &e))
    }
}

pub(crate) struct NoteStoreFailure<R> {
    inner: R,
    noted: StoreFailed,
}

impl<R> NoteStoreFailure<R> {
    pub(crate) fn wrap(inner: R) -> (Self, StoreFailed) {
        let noted = StoreFailed::default();
        (
            NoteStoreFailure {
                inner,
                noted: noted.clone(),
            },
            noted,
        )
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for NoteStoreFailure<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if crate::store::store_failure(&e).is_some() => {
                // The consumer gets the same words; the original is kept.
                let shown = std::io::Error::new(e.kind(), e.to_string());
                if let Ok(mut noted) = self.noted.0.lock() {
                    noted.get_or_insert(e);
                }
                std::task::Poll::Ready(Err(shown))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_store_failure_is_kept_whatever_the_consumer_makes_of_it() {
        let cut = crate::store::ReadFailure::wrap(
            "s3://b",
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
        );
        let failing = failing_reader(cut);
        let (mut reader, noted) = NoteStoreFailure::wrap(failing);
        let mut buf = [0u8; 8];
        let seen = reader.read(&mut buf).await.expect_err("failed");
        assert!(seen.to_string().contains("connection reset"), "{seen}");
        let kept = noted.0.lock().expect("lock").take().expect("noted");
        assert!(crate::store::store_failure(&kept).is_some());

        // Other errors (a corrupt stream) are not the store's.
        let (mut reader, noted) =
            NoteStoreFailure::wrap(failing_reader(std::io::Error::other("zstd: corrupt")));
        reader.read(&mut buf).await.expect_err("failed");
        assert!(noted.0.lock().expect("lock").is_none());
    }

    /// A reader that fails at once with `e`.
    fn failing_reader(e: std::io::Error) -> impl tokio::io::AsyncRead + Unpin {
        tokio_util::io::StreamReader::new(futures::stream::iter(vec![Err::<
            bytes::Bytes,
            std::io::Error,
        >(e)]))
    }
}
