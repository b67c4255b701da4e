//! What an Elasticsearch / OpenSearch export records in its manifest
//! (`source.search`): the cluster it came from, how consistent the view
//! was, and per index its document count and content digest, so a restore
//! and a drill can tell that every document came back unchanged.
//!
//! The manifest owns these types, so reading a manifest needs no engine;
//! the search engine (`engine/search/`) fills and reads them. A leaf: it
//! imports nothing of the agent.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchFacts {
    /// `elasticsearch` or `opensearch`.
    pub flavour: String,
    pub version: String,
    pub cluster_name: String,
    pub cluster_uuid: String,
    /// `export`: documents, settings and mappings as open NDJSON;
    /// `snapshot`: the cluster's own snapshot in a repository it knows
    /// ([`SnapshotFacts`]), the artifact only a record of it.
    pub mode: String,
    /// `point_in_time`: every index read from one point in time opened
    /// before the first document was read; `per_index`: each index read
    /// from its own consistent scroll (servers without `_shard_doc`).
    pub consistency: String,
    pub indices: Vec<IndexFacts>,
    /// What an export cannot carry, said once so nobody has to guess.
    pub not_kept: Vec<String>,
    /// Snapshot mode: which snapshot in which repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotFacts>,
}

/// A snapshot the cluster wrote for a snapshot-mode backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFacts {
    /// The repository's name on the cluster, and its type (`fs`, `s3`, …).
    pub repository: String,
    pub repository_type: String,
    pub snapshot: String,
    pub uuid: String,
    /// `SUCCESS`: a backup is never made of anything less.
    pub state: String,
    pub shards: u64,
    /// The repository the agent registered under the store for this
    /// series, when no `--search-repository` was named: how to register
    /// it again (read-only for a restore on another cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRepository>,
    /// Every blob of the repository this snapshot needs, read back from
    /// the store once the snapshot succeeded (managed repositories only):
    /// `verify` and the drill check each is still there with its size.
    /// Only blobs a repository never rewrites are listed (never `index-N`
    /// or `index.latest`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<RepositoryBlob>,
}

/// A snapshot repository the agent registers itself, inside the backup
/// store: `<prefix>/<namespace>/<name>/repository`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedRepository {
    /// `fs`, `s3`, `gcs` or `azure`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The settings it is registered with (bucket, base path, client; no
    /// credentials: the nodes hold those).
    pub settings: std::collections::BTreeMap<String, String>,
    /// Where it lies in the backup store, relative to the store's prefix.
    pub store_path: String,
}

/// One blob of a snapshot repository: its key under the repository's
/// base path, and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryBlob {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFacts {
    pub name: String,
    pub documents: u64,
    pub primary_shards: u32,
    /// Every document's SHA-256 (of its `_id`, `_routing` and `_source` as
    /// exported) added up modulo 2^256, hex: independent of the order the
    /// cluster returns them in, so a restore and a drill that read the
    /// documents back compute it again. Empty in snapshot mode.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_digest: String,
    /// Snapshot mode: the count again once the snapshot ended; `documents`
    /// was counted just before it started. Equal for an index nobody wrote
    /// to meanwhile, which a drill then checks exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents_after: Option<u64>,
    /// Snapshot mode: what the snapshot's status said of this index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<IndexSnapshotStats>,
    /// Snapshot mode: the SHA-256 of the index's mappings as canonical
    /// JSON (keys sorted), when they were the same just before and just
    /// after the snapshot (so the snapshot holds exactly them): a drill
    /// compares the restored copy's. Empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mappings_digest: String,
    /// Snapshot mode, in the record artifact only (document ids are data,
    /// and the manifest is not encrypted): documents drawn at random that
    /// were unchanged — same sequence number, primary term and content —
    /// from just before the snapshot to just after it, so the snapshot
    /// holds exactly them; a drill reads each back from the restored copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<WitnessDocument>,
}

/// One index of a snapshot, as the cluster's snapshot status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSnapshotStats {
    pub shards: u64,
    pub shards_failed: u64,
    /// Files and bytes of the index's shards in this snapshot, and of
    /// them the ones this snapshot uploaded (the rest were already in the
    /// repository from earlier snapshots).
    pub files: u64,
    pub bytes: u64,
    pub new_files: u64,
    pub new_bytes: u64,
}

/// A document a snapshot certainly holds as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessDocument {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
    /// The document's digest as [`IndexFacts::content_digest`] sums them.
    pub digest: String,
}

impl SearchFacts {
    pub fn index(&self, name: &str) -> Option<&IndexFacts> {
        self.indices.iter().find(|i| i.name == name)
    }
}
