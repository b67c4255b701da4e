//! `manifest.json`: the record that makes a set of uploaded artifacts a backup.
//! Written last; an artifact without one is an unfinished upload.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vertice_crds::Compression;

pub mod kafka;
pub mod postgres;
pub mod search;

/// Bumped when a change would mislead an older agent reading a newer
/// manifest; the highest this agent reads. 2: the backup has a `parent`
/// (an incremental backup), which an agent reading only 1 would restore
/// without its chain, and prune without keeping the chain.
pub const FORMAT_VERSION: u32 = 3;

/// The version a new manifest is written with: the lowest that tells an
/// older agent what it must know (a full backup stays readable by agents
/// that know only version 1). Version 3: a parallel PostgreSQL backup,
/// whose data an older agent would not restore (it reads one artifact).
pub fn format_version(incremental: bool, parallel: bool) -> u32 {
    if parallel {
        3
    } else if incremental {
        2
    } else {
        1
    }
}
pub const MANIFEST_FILE: &str = "manifest.json";
/// A series' directory where a search cluster keeps the snapshot
/// repository the agent registered (`<ns>/<name>/repository/`): the
/// cluster's objects, never a backup's, never pruned by the agent.
pub const REPOSITORY_DIR: &str = "repository";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Postgres,
    Redis,
    Vault,
    Kafka,
    /// Elasticsearch or OpenSearch (the manifest's `source.search` says which).
    Elasticsearch,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Redis => "redis",
            SourceKind::Vault => "vault",
            SourceKind::Kafka => "kafka",
            SourceKind::Elasticsearch => "elasticsearch",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub kind: SourceKind,
    /// The source URL without any password.
    pub address: String,
    pub server_version: Option<String>,
    /// Database name (PostgreSQL).
    pub database: Option<String>,
    /// Redis: keys the server reported (`INFO keyspace`) just before the
    /// snapshot; a drill compares the restored count with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// PostgreSQL: the source cluster's role names (`pg_roles`, built-in
    /// `pg_*` left out; never anything else of a role). A drill's ephemeral
    /// server creates them, so policies, grants and `aclitem` data naming a
    /// role restore. Empty in backups of agents that did not record them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Kafka: each topic's shape, configs and per-partition cut, count and
    /// content hash, and the consumer groups' offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<kafka::KafkaFacts>,
    /// Elasticsearch / OpenSearch: the cluster, the view's consistency and
    /// per index its count and content digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<search::SearchFacts>,
    /// PostgreSQL with `--jobs` > 1: the snapshot and the data parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<postgres::PostgresFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    pub tool: String,
    pub version: Option<String>,
    pub arguments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    pub scheme: String,
    pub recipient_fingerprints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name within the backup's directory, e.g. `dump.pgdump.zst`.
    pub name: String,
    /// `pg_dump-custom` or `redis-rdb`: what the raw bytes are.
    pub format: String,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub stored_sha256: String,
    pub raw_sha256: String,
    pub compression: Compression,
    pub encryption: Option<Encryption>,
    pub producer: Producer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub backup_id: String,
    pub namespace: String,
    pub name: String,
    pub source: SourceInfo,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub agent_version: String,
    pub artifacts: Vec<Artifact>,
    /// An incremental backup: the id of the backup (same series) it
    /// continues; a restore replays the chain from its full backup, and
    /// retention keeps every backup a kept one depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl Manifest {
    pub fn duration_seconds(&self) -> f64 {
        (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0
    }

    pub fn stored_bytes(&self) -> u64 {
        self.artifacts.iter().map(|a| a.stored_bytes).sum()
    }

    pub fn raw_bytes(&self) -> u64 {
        self.artifacts.iter().map(|a| a.raw_bytes).sum()
    }

    pub fn parse(bytes: &[u8], key: &str) -> Result<Manifest, String> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let version: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|e| format!("{key} is not a Vertice manifest: {e}"))?;
        if version.format_version > FORMAT_VERSION {
            return Err(format!(
                "{key} has manifest format {} but this agent reads up to {FORMAT_VERSION}; upgrade vertice-agent",
                version.format_version
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("{key} is not a valid manifest: {e}"))
    }
}

/// Where things live inside a store: `<namespace>/<name>/<backup-id>/…`.
pub fn backup_dir(namespace: &str, name: &str, id: &str) -> String {
    format!("{namespace}/{name}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Manifest {
        let t = DateTime::parse_from_rfc3339("2026-11-27T06:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        Manifest {
            format_version: FORMAT_VERSION,
            backup_id: "20261127T060000Z-1a2b".into(),
            namespace: "default".into(),
            name: "app".into(),
            source: SourceInfo {
                kind: SourceKind::Postgres,
                address: "postgres://app@db:5432/app".into(),
                server_version: Some("15.18".into()),
                database: Some("app".into()),
                keys: None,
                roles: Vec::new(),
                kafka: None,
                search: None,
                postgres: None,
            },
            started_at: t,
            finished_at: t + chrono::Duration::milliseconds(2500),
            agent_version: "0.1.0".into(),
            parent: None,
            artifacts: vec![Artifact {
                name: "dump.pgdump.zst".into(),
                format: "pg_dump-custom".into(),
                stored_bytes: 10,
                raw_bytes: 40,
                stored_sha256: "ab".into(),
                raw_sha256: "cd".into(),
                compression: Compression::Zstd,
                encryption: None,
                producer: Producer {
                    tool: "pg_dump".into(),
                    version: Some("15.18".into()),
                    arguments: vec!["--format=custom".into()],
                },
            }],
        }
    }

    #[test]
    fn round_trips_and_sums() {
        let m = sample();
        let json = serde_json::to_vec(&m).expect("serialize");
        assert_eq!(Manifest::parse(&json, "k").expect("parse"), m);
        assert_eq!(m.duration_seconds(), 2.5);
        assert_eq!((m.stored_bytes(), m.raw_bytes()), (10, 40));
    }

    #[test]
    fn only_incremental_backups_need_the_newer_format() {
        assert_eq!(
            format_version(false, false),
            1,
            "full backups stay readable by older agents"
        );
        assert_eq!(format_version(true, false), 2);
        assert_eq!(format_version(false, true), 3);
        assert!(format_version(true, true) <= FORMAT_VERSION);
    }

    #[test]
    fn refuses_newer_formats_with_advice() {
        let mut v = serde_json::to_value(sample()).expect("value");
        v["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let err = Manifest::parse(&serde_json::to_vec(&v).expect("bytes"), "k").expect_err("newer");
        assert!(err.contains("upgrade vertice-agent"), "{err}");
        assert!(Manifest::parse(b"{}", "k").is_err());
    }
}
