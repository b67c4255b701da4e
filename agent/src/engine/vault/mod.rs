//! Vault / OpenBao: raft snapshots through the HTTP API (`client.rs`),
//! restored with `snapshot-force`, drilled by structure and in a throwaway
//! server (`throwaway_bao.rs`).

pub mod client;
mod drill;
mod restore;
pub mod target;
pub mod throwaway_bao;

pub use client::{VaultClient, VaultLogin};
pub use drill::drill;
pub use restore::restore;
pub use target::VaultTarget;

use crate::engine::common::BackupStream;
use crate::engine::settings::BackupSettings;
use crate::error::Result;
use crate::manifest::{Producer, SourceInfo, SourceKind};
use crate::pipeline::redact::Redactor;

/// Logs in and starts the snapshot download.
pub async fn start_backup(
    vault: &VaultTarget,
    settings: &BackupSettings,
    redactor: &mut Redactor,
) -> Result<BackupStream> {
    let (client, secrets) = VaultClient::connect(vault, &settings.vault).await?;
    for secret in &secrets {
        redactor.add(secret);
    }
    let server_version = client.version().await;
    let stream = client.snapshot().await?;
    Ok(BackupStream {
        stream,
        source: SourceInfo {
            kind: SourceKind::Vault,
            address: vault.base.as_str().trim_end_matches('/').to_string(),
            server_version,
            database: None,
            keys: None,
            roles: Vec::new(),
            kafka: None,
            search: None,
            postgres: None,
        },
        artifact_stem: "raft.snap",
        format: "vault-raft-snapshot",
        producer: Producer {
            tool: "Vault HTTP API".into(),
            version: None,
            arguments: vec!["GET /v1/sys/storage/raft/snapshot".into()],
        },
        finished: None,
        parent: None,
        parts: None,
    })
}
