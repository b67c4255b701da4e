//! `restore --to vault://…`. Vault installs a snapshot atomically, but a
//! restore cannot be taken back: the artifact is verified first (one read),
//! then streamed in (a second).

use super::client::VaultClient;
use super::target::VaultTarget;
use crate::artifact::NoteStoreFailure;
use crate::engine::common::Stored;
use crate::engine::settings::RestoreSettings;
use crate::error::Result;
use crate::pipeline::progress::Progress;

pub async fn restore(
    target: &VaultTarget,
    backup: &Stored<'_>,
    settings: &RestoreSettings,
) -> Result<()> {
    let (manifest, artifact) = (backup.manifest, backup.artifact);
    let (client, _secrets) = VaultClient::connect(target, &settings.vault).await?;
    backup.verify(settings.progress).await?;
    let open = backup.open().await?;
    let _progress = Progress::start(
        settings.progress,
        "restore",
        std::sync::Arc::clone(&open.stored),
    );
    let (reader, store_failed) = NoteStoreFailure::wrap(open.reader);
    client
        .restore(Box::new(reader), settings.force)
        .await
        .map_err(|e| match store_failed.error(manifest, artifact) {
            // Vault saw its upload cut short: the store failed, not Vault.
            Some(store) => store.map_message(|m| format!("{m}; {e}")),
            None => e,
        })?;
    tracing::info!(vault = %target.base, force = settings.force, "snapshot installed");
    Ok(())
}
