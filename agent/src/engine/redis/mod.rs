//! Redis / Valkey: the `redis://` target (`target.rs`), the RDB snapshot
//! taken over the replication protocol (`sync.rs`), its format (checksum,
//! structure: `rdb.rs`, `packed.rs`, `lzf.rs`, `census.rs`), restores into
//! a file or a running instance (`restore.rs`, `live_restore.rs`;
//! `resp.rs`, `wire.rs`, `staging.rs`), `sql` hooks (`hook.rs`), and the
//! drill (`drill.rs`) on a throwaway server (`throwaway.rs`).

pub mod census;
pub mod checksum;
mod drill;
mod hook;
pub mod live_restore;
pub mod lzf;
pub mod packed;
pub mod rdb;
pub mod resp;
mod restore;
pub mod staging;
pub mod sync;
pub mod target;
pub mod throwaway;
pub mod wire;

pub use drill::drill;
pub use hook::run_statement;
pub use restore::{restore_file, restore_live};
pub use target::RedisTarget;

use crate::engine::common::BackupStream;
use crate::engine::settings::BackupSettings;
use crate::error::Result;
use crate::manifest::{Producer, SourceInfo, SourceKind};
use crate::pipeline::redact::Redactor;

/// Starts a full resynchronisation as a replica would; the RDB it sends is
/// the backup stream.
pub async fn start_backup(
    redis: &RedisTarget,
    settings: &BackupSettings,
    redactor: &mut Redactor,
) -> Result<BackupStream> {
    if let Some(p) = &settings.password {
        redactor.add(p.expose());
    }
    let snapshot = sync::start(redis, crate::secret::exposed(&settings.password)).await?;
    Ok(BackupStream {
        stream: Box::new(snapshot.stream),
        source: SourceInfo {
            kind: SourceKind::Redis,
            address: redis.address(),
            server_version: snapshot.server_version,
            database: None,
            keys: snapshot.keys,
            roles: Vec::new(),
            kafka: None,
            search: None,
            postgres: None,
        },
        artifact_stem: "dump.rdb",
        format: "redis-rdb",
        producer: Producer {
            tool: "vertice-agent (replication protocol)".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            arguments: vec!["PSYNC ? -1".into()],
        },
        finished: None,
        parent: None,
        parts: None,
    })
}
