//! Consumer groups on restore: which are carried, that none of them has
//! members, and their committed offsets translated to the restored
//! offsets and committed. Kafka accepts a commit from outside a group
//! only while the group has no members, so a group that gained members
//! during the restore is refused by the broker and reported.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;

use super::client::Watch;
use super::cluster::Cluster;
use super::load::LoadedPartitions;
use crate::error::{Error, Result};
use crate::manifest::kafka::KafkaFacts;

/// The backup's groups that `--groups` selects (all when not given).
pub fn carried(facts: &KafkaFacts, pattern: Option<&Regex>) -> Vec<String> {
    facts
        .groups
        .iter()
        .map(|g| g.group.clone())
        .filter(|g| pattern.is_none_or(|p| p.is_match(g)))
        .collect()
}

/// Refuses groups that have members on the target (exit 2).
pub fn check_empty(
    cluster: &Cluster,
    consumer: &BaseConsumer<Watch>,
    groups: &[String],
) -> Result<()> {
    for group in groups {
        let list = consumer
            .fetch_group_list(Some(group), cluster.timeout)
            .map_err(|e| {
                cluster.fail(consumer.context(), &format!("describing group {group}"), &e)
            })?;
        if let Some(g) = list.groups().iter().find(|g| !g.members().is_empty()) {
            return Err(Error::usage(format!(
                "consumer group {group} has {} active member(s) on {} (state {}); stop its consumers before the restore, or leave it out with --groups",
                g.members().len(),
                cluster.address,
                g.state()
            )));
        }
    }
    Ok(())
}

/// Translates and commits each carried group's offsets; returns what was
/// translated, one line per partition.
pub async fn commit(
    cluster: &Cluster,
    facts: &KafkaFacts,
    carried: &[String],
    targets: &BTreeMap<String, String>,
    loaded: &LoadedPartitions,
) -> Result<Vec<String>> {
    let mut plans = Vec::new();
    for group in facts.groups.iter().filter(|g| carried.contains(&g.group)) {
        let mut offsets = Vec::new();
        for o in &group.offsets {
            let Some(target) = targets.get(&o.topic) else {
                continue;
            };
            let key = (o.topic.clone(), o.partition);
            let map = loaded
                .get(&key)
                .map(|l| l.offsets.clone())
                .unwrap_or_default();
            offsets.push((target.clone(), o.partition, o.offset, map));
        }
        plans.push((group.group.clone(), offsets));
    }
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || commit_blocking(&cluster, plans))
        .await
        .map_err(|e| Error::target(format!("committing group offsets stopped: {e}")))?
}

type GroupPlan = (String, Vec<(String, i32, i64, super::offsets::OffsetMap)>);

fn commit_blocking(cluster: &Cluster, plans: Vec<GroupPlan>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (group, offsets) in plans {
        let consumer = cluster.consumer(&group)?;
        let mut list = TopicPartitionList::new();
        let mut said = Vec::new();
        for (topic, partition, committed, map) in offsets {
            let (_, end) = consumer
                .fetch_watermarks(&topic, partition, cluster.timeout)
                .map_err(|e| {
                    cluster.fail(
                        consumer.context(),
                        &format!("reading the end of {topic}/{partition}"),
                        &e,
                    )
                })?;
            let translated = map.translate(committed, end);
            list.add_partition_offset(&topic, partition, Offset::Offset(translated))
                .map_err(|e| Error::target(format!("{}: {e}", cluster.address)))?;
            said.push(format!(
                "{group}: {topic}/{partition} {committed} → {translated}"
            ));
        }
        if list.count() == 0 {
            continue;
        }
        consumer.commit(&list, CommitMode::Sync).map_err(|e| {
            Error::target(format!(
                "{}: committing consumer group {group}'s offsets failed ({e}): the group may have gained members during the restore; the translated offsets are {}",
                cluster.address,
                said.join(", ")
            ))
        })?;
        lines.append(&mut said);
    }
    Ok(lines)
}
