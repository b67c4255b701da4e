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
    /// `export`: documents, settings and mappings as open NDJSON.
    pub mode: String,
    /// `point_in_time`: every index read from one point in time opened
    /// before the first document was read; `per_index`: each index read
    /// from its own consistent scroll (servers without `_shard_doc`).
    pub consistency: String,
    pub indices: Vec<IndexFacts>,
    /// What an export cannot carry, said once so nobody has to guess.
    pub not_kept: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFacts {
    pub name: String,
    pub documents: u64,
    pub primary_shards: u32,
    /// Every document's SHA-256 (of its `_id`, `_routing` and `_source` as
    /// exported) added up modulo 2^256, hex: independent of the order the
    /// cluster returns them in, so a restore and a drill that read the
    /// documents back compute it again.
    pub content_digest: String,
}

impl SearchFacts {
    pub fn index(&self, name: &str) -> Option<&IndexFacts> {
        self.indices.iter().find(|i| i.name == name)
    }
}
