//! Kafka: topics backed up record by record with a consistent cut per
//! partition (`backup.rs`), in an open JSON Lines format (`format.rs`),
//! with the facts a restore and a drill check in the manifest (their
//! types are the manifest's own, `manifest/kafka.rs`); continued from the
//! previous backup by `--incremental` (`increment.rs`) and replayed as a
//! chain (`chain.rs`); restored into absent or empty topics with their
//! configs and consumer groups' offsets translated (`restore.rs`,
//! `preflight.rs`, `load.rs`, `offsets.rs`, `groups.rs`); drilled into
//! scratch topics (`drill.rs`). The client is librdkafka (`client.rs`,
//! `cluster.rs`).

mod backup;
mod chain;
mod client;
mod cluster;
mod drill;
pub mod format;
mod groups;
pub mod increment;
mod load;
pub mod offsets;
mod preflight;
mod restore;
pub mod selection;
pub mod target;
mod topic_ids;

pub use drill::drill;
pub use restore::restore;
pub use target::KafkaTarget;

use cluster::Cluster;
use increment::Parent;
use selection::Selection;

use crate::engine::common::BackupStream;
use crate::engine::settings::{BackupSettings, KafkaBackup};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Producer, SourceInfo, SourceKind};
use crate::pipeline::redact::Redactor;

/// `--incremental`: `settings` continue `newest`, the newest backup of the
/// series whose chain restores, unless it is no Kafka backup or its chain
/// holds `--full-every` backups (then the run is a full backup).
pub fn continue_from(settings: &mut KafkaBackup, newest: &Manifest) {
    let Some(facts) = newest.source.kafka.clone() else {
        tracing::info!(newest = %newest.backup_id, "--incremental: a full backup (the newest backup of this name is not a Kafka backup)");
        return;
    };
    let parent = Parent {
        backup_id: newest.backup_id.clone(),
        facts,
    };
    settings.parent = increment::continues(Some(parent), settings.full_every);
    if settings.parent.is_none() {
        tracing::info!(
            "--incremental: a full backup (the chain ending at {} holds --full-every {} backups)",
            newest.backup_id,
            settings.full_every
        );
    }
}

/// Takes the cut (topics, groups' offsets, ends), then starts reading;
/// the manifest's facts arrive through `finished` once the stream ended.
pub async fn start_backup(
    target: &KafkaTarget,
    settings: &BackupSettings,
    redactor: &mut Redactor,
) -> Result<BackupStream> {
    if let Some(p) = &settings.password {
        redactor.add(p.expose());
    }
    let options = &settings.kafka;
    let cluster = Cluster::new(
        target,
        &options.connection,
        settings.password.as_ref(),
        "--source",
    )?;
    let source = backup::Source {
        address: cluster.address.clone(),
        config: cluster.config,
        timeout: cluster.timeout,
    };
    let selection = Selection {
        topics: options.topics.clone(),
        topic_regex: options.topic_regex.clone(),
        include_internal: options.include_internal,
        groups: options.groups.clone(),
        carry_groups: true,
    };
    let parent = options.parent.clone();
    let parent_id = parent.as_ref().map(|p| p.backup_id.clone());
    let (source, plan) = tokio::task::spawn_blocking(move || {
        let plan = source.plan(&selection, parent.as_ref());
        (source, plan)
    })
    .await
    .map_err(|e| Error::source(format!("taking the cut stopped: {e}")))?;
    let plan = plan?;
    tracing::info!(
        topics = plan.topic_count(),
        "Kafka cut taken: reading every partition to its end"
    );
    if let Some(parent) = &parent_id {
        tracing::info!(parent = %parent, chain_length = plan.chain_length, "incremental: each partition continues from the parent's end");
    }
    let (tx, stream) = backup::channel();
    let address = target.address();
    let info = SourceInfo {
        kind: SourceKind::Kafka,
        address: address.clone(),
        server_version: None,
        database: None,
        keys: None,
        roles: Vec::new(),
        kafka: None,
        search: None,
        postgres: None,
    };
    let mut finished_info = info.clone();
    let finished = tokio::task::spawn_blocking(move || {
        let read = source.read(plan, tx.clone());
        if let Err(e) = &read {
            // The upload must fail too, not store a stream cut short.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        finished_info.kafka = Some(read?);
        Ok(finished_info)
    });
    Ok(BackupStream {
        stream,
        source: info,
        artifact_stem: "records.jsonl",
        format: format::FORMAT,
        producer: Producer {
            tool: "vertice-agent (librdkafka consumer, read_committed)".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            arguments: Vec::new(),
        },
        finished: Some(finished),
        parent: parent_id,
        parts: None,
    })
}
