//! What a Kafka backup records in its manifest (`source.kafka`): per topic
//! its shape and own configs, per partition the cut that was read and what
//! it held, and the consumer groups' committed offsets, read before the
//! cut so none of them points past it.
//!
//! The manifest owns these types, so reading a manifest needs no engine;
//! the Kafka engine (`engine/kafka/`) fills and reads them. A leaf: it
//! imports nothing of the agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaFacts {
    pub topics: Vec<TopicFacts>,
    #[serde(default)]
    pub groups: Vec<GroupFacts>,
    /// How many backups a restore of this one replays: 1 for a full
    /// backup, its parent's plus one for an incremental one (the manifest's
    /// `parent` names the parent).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub chain_length: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicFacts {
    pub name: String,
    /// Kafka's topic id (UUID, as Kafka prints it), where the cluster
    /// gives one: a topic deleted and created again gets a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    pub replication_factor: i32,
    /// Configs set on the topic itself (source: the topic), not the
    /// broker's defaults; sensitive ones are left out.
    pub configs: BTreeMap<String, String>,
    /// The largest record (key, value and headers), so a restore can check
    /// the target accepts it before writing anything.
    pub max_record_bytes: u64,
    pub partitions: Vec<PartitionFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFacts {
    pub partition: i32,
    /// The log start offset when the cut was taken.
    pub log_start_offset: i64,
    /// Incremental backups: where this backup started reading, the
    /// parent's `end_offset`; the records below it are the parents'.
    /// Absent: read from the log start (a full backup of the partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<i64>,
    /// The cut: the last stable offset (`read_committed`) when the backup
    /// started; the backup holds every committed record below it and none
    /// at or above it.
    pub end_offset: i64,
    pub records: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    /// SHA-256 of the records' canonical encoding in offset order
    /// (`format::Record::canonical`).
    pub content_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFacts {
    pub group: String,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    /// The committed offset: the next record the group would read.
    pub offset: i64,
}

impl KafkaFacts {
    pub fn topic(&self, name: &str) -> Option<&TopicFacts> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn records(&self) -> u64 {
        self.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records)
            .sum()
    }
}
