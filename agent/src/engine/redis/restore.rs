//! Redis restores: into an RDB file (written to a temporary name, published
//! only when whole and verified; an existing file is replaced only with
//! `--force`), or into a running instance (staged and swapped, or direct
//! after a full verification: `live_restore`).

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::live_restore::{self, LiveRestoreError};
use super::target::RedisTarget;
use crate::artifact::{check_integrity, read_failed, NoteStoreFailure, OpenArtifact};
use crate::engine::common::Stored;
use crate::engine::settings::RestoreSettings;
use crate::error::{Error, Result};
use crate::pipeline::progress::Progress;

/// `restore --to file:///path/dump.rdb`.
pub async fn restore_file(
    path: &Path,
    backup: &Stored<'_>,
    settings: &RestoreSettings,
) -> Result<()> {
    if path.as_os_str().is_empty() || path.file_name().is_none() {
        return Err(Error::usage(
            "--to file:// needs a file path, e.g. file:///data/dump.rdb",
        ));
    }
    if tokio::fs::try_exists(path).await.unwrap_or(false) && !settings.force {
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
    let result = write_verified(backup, &temp, settings).await;
    let published = match result {
        Ok(()) if settings.force => tokio::fs::rename(&temp, path).await,
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
    backup: &Stored<'_>,
    temp: &Path,
    settings: &RestoreSettings,
) -> Result<()> {
    let (manifest, artifact) = (backup.manifest, backup.artifact);
    let mut open = backup.open().await?;
    let _progress = Progress::start(
        settings.progress,
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
            Some(_) => read_failed(manifest, artifact, &e),
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

/// `restore --to redis://…`: preflight, then staged or direct.
pub async fn restore_live(
    target: &RedisTarget,
    backup: &Stored<'_>,
    settings: &RestoreSettings,
) -> Result<()> {
    let (manifest, artifact) = (backup.manifest, backup.artifact);
    let password = settings.password.clone();
    let connect_to = target.clone();
    let replace = settings.force;
    let (conn, mode) = tokio::task::spawn_blocking(move || {
        let mut conn = live_restore::connect(&connect_to, crate::secret::exposed(&password))?;
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
        backup.verify(settings.progress).await?;
    }
    let open = backup.open().await?;
    let _progress = Progress::start(
        settings.progress,
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
