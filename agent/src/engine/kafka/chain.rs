//! Restoring an incremental backup means replaying its chain: the full
//! backup it started from, then each backup that continued it, up to
//! itself. Per partition only the backups that read it in a row count
//! (a topic that left the selection and came back was read in full again,
//! so what came before is not replayed a second time). The chain's
//! manifests come from the store through `catalog::chain`.

use std::collections::BTreeSet;

use super::load;
use crate::manifest::kafka::{KafkaFacts, PartitionFacts, TopicFacts};

/// What a chain restores: the facts as one backup would state them
/// (`facts`), and per member the partitions it contributes (`views`: its
/// own facts cut down to them, which its records are checked against).
#[derive(Debug, Clone)]
pub struct Replay {
    pub facts: KafkaFacts,
    pub views: Vec<KafkaFacts>,
}

impl Replay {
    /// `members` in chain order, the head last.
    pub fn of(members: &[&KafkaFacts]) -> std::result::Result<Replay, String> {
        let Some(head) = members.last() else {
            return Err("an empty chain".into());
        };
        let mut taken: Vec<BTreeSet<(String, i32)>> = vec![BTreeSet::new(); members.len()];
        let mut facts = (*head).clone();
        facts.chain_length = members.len() as u32;
        for topic in &mut facts.topics {
            let mut max_record_bytes = 0;
            for p in &mut topic.partitions {
                let (folded, took) = fold(members, &topic.name, p)?;
                for k in took {
                    taken[k].insert((topic.name.clone(), p.partition));
                    max_record_bytes = max_record_bytes.max(
                        members[k]
                            .topic(&topic.name)
                            .map_or(0, |t| t.max_record_bytes),
                    );
                }
                *p = folded;
            }
            topic.max_record_bytes = max_record_bytes;
        }
        let views = members
            .iter()
            .zip(&taken)
            .map(|(member, taken)| view(member, taken))
            .collect();
        Ok(Replay { facts, views })
    }

    /// Every partition the chain restores, for the one-backup case.
    pub fn single(facts: &KafkaFacts) -> Replay {
        Replay {
            facts: facts.clone(),
            views: vec![facts.clone()],
        }
    }
}

/// One partition of the head as the whole chain holds it, and the members
/// (indices) whose records it takes.
fn fold(
    members: &[&KafkaFacts],
    topic: &str,
    head: &PartitionFacts,
) -> std::result::Result<(PartitionFacts, Vec<usize>), String> {
    let mut took = Vec::new();
    let mut k = members.len() - 1;
    let mut current = head.clone();
    loop {
        took.push(k);
        let Some(start) = current.start_offset else {
            break;
        };
        let earlier = k
            .checked_sub(1)
            .and_then(|j| members[j].topic(topic).map(|t| (j, t)))
            .and_then(|(j, t)| {
                t.partitions
                    .iter()
                    .find(|p| p.partition == head.partition)
                    .map(|p| (j, p))
            });
        match earlier {
            Some((j, p)) if p.end_offset == start => {
                k = j;
                current = p.clone();
            }
            _ => {
                return Err(format!(
                    "{topic}/{} continues from offset {start}, but the backup before it in the chain does not end there; the chain is broken",
                    head.partition
                ))
            }
        }
    }
    took.reverse();
    let parts: Vec<&PartitionFacts> = took
        .iter()
        .filter_map(|&k| {
            members[k]
                .topic(topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == head.partition))
        })
        .collect();
    let first = parts
        .first()
        .map_or(head.log_start_offset, |p| p.log_start_offset);
    Ok((
        PartitionFacts {
            partition: head.partition,
            log_start_offset: first,
            start_offset: None,
            end_offset: head.end_offset,
            records: parts.iter().map(|p| p.records).sum(),
            first_offset: parts.iter().find_map(|p| p.first_offset),
            last_offset: parts.iter().rev().find_map(|p| p.last_offset),
            // A chain has no single hash: each member's records are checked
            // against its own (`views`).
            content_sha256: String::new(),
        },
        took,
    ))
}

/// A member's facts cut down to the partitions it contributes.
fn view(member: &KafkaFacts, taken: &BTreeSet<(String, i32)>) -> KafkaFacts {
    let topics = member
        .topics
        .iter()
        .filter_map(|t| {
            let partitions: Vec<PartitionFacts> = t
                .partitions
                .iter()
                .filter(|p| taken.contains(&(t.name.clone(), p.partition)))
                .cloned()
                .collect();
            (!partitions.is_empty()).then(|| TopicFacts {
                partitions,
                ..t.clone()
            })
        })
        .collect();
    KafkaFacts {
        topics,
        groups: Vec::new(),
        chain_length: member.chain_length,
    }
}

/// The part of each `--resume` skip that falls in member `k` of the chain:
/// the records of the partition in the members before it come first.
pub fn member_skips(skips: &load::Skips, views: &[KafkaFacts], k: usize) -> load::Skips {
    let records = |view: &KafkaFacts, (topic, partition): &(String, i32)| -> u64 {
        view.topic(topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == *partition))
            .map_or(0, |p| p.records)
    };
    let mut out = load::Skips::new();
    for (key, skip) in skips {
        let before: u64 = views[..k].iter().map(|v| records(v, key)).sum();
        let here = records(&views[k], key);
        let held = skip.held.saturating_sub(before).min(here);
        if held == 0 {
            continue;
        }
        let ends_here = before < skip.held && skip.held <= before + here;
        out.insert(
            key.clone(),
            load::Skip {
                low: skip.low + before as i64,
                held,
                last: skip.last.clone().filter(|_| ends_here),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_resumed_chain_skips_what_the_target_holds_member_by_member() {
        let full = member(&[("orders", &[(0, None, 10, 10)])]);
        let second = member(&[("orders", &[(0, Some(10), 15, 5)])]);
        let third = member(&[("orders", &[(0, Some(15), 20, 5)])]);
        let views = Replay::of(&[&full, &second, &third]).expect("chain").views;
        let key = ("orders".to_string(), 0);
        // The stopped restore wrote 12 records from offset 100 of the target.
        let mut skips = load::Skips::new();
        skips.insert(
            key.clone(),
            load::Skip {
                low: 100,
                held: 12,
                last: Some("hash".into()),
            },
        );
        let first = member_skips(&skips, &views, 0);
        assert_eq!((first[&key].low, first[&key].held), (100, 10));
        assert_eq!(
            first[&key].last, None,
            "the last record written is further on"
        );
        let second = member_skips(&skips, &views, 1);
        assert_eq!((second[&key].low, second[&key].held), (110, 2));
        assert_eq!(second[&key].last.as_deref(), Some("hash"));
        assert!(member_skips(&skips, &views, 2).is_empty());
    }

    /// `(partition, start offset, end offset, records)`.
    type Part = (i32, Option<i64>, i64, u64);

    fn member(topics: &[(&str, &[Part])]) -> KafkaFacts {
        KafkaFacts {
            topics: topics
                .iter()
                .map(|(name, parts)| TopicFacts {
                    name: name.to_string(),
                    topic_id: None,
                    replication_factor: 1,
                    configs: BTreeMap::new(),
                    max_record_bytes: parts.len() as u64,
                    partitions: parts
                        .iter()
                        .map(|&(partition, start, end, records)| PartitionFacts {
                            partition,
                            log_start_offset: 0,
                            start_offset: start,
                            end_offset: end,
                            records,
                            first_offset: (records > 0).then_some(start.unwrap_or(0)),
                            last_offset: (records > 0).then_some(end - 1),
                            content_sha256: "h".into(),
                        })
                        .collect(),
                })
                .collect(),
            groups: Vec::new(),
            chain_length: 1,
        }
    }

    #[test]
    fn a_chain_adds_up_each_partition_and_checks_each_member_on_its_own() {
        let full = member(&[("orders", &[(0, None, 10, 10)])]);
        let second = member(&[("orders", &[(0, Some(10), 15, 5), (1, None, 4, 4)])]);
        let third = member(&[("orders", &[(0, Some(15), 15, 0), (1, Some(4), 9, 5)])]);
        let replay = Replay::of(&[&full, &second, &third]).expect("chain");
        let orders = replay.facts.topic("orders").expect("orders");
        let p0 = &orders.partitions[0];
        assert_eq!(
            (p0.records, p0.first_offset, p0.last_offset),
            (15, Some(0), Some(14))
        );
        assert_eq!(orders.partitions[1].records, 9);
        assert_eq!(replay.facts.chain_length, 3);
        assert_eq!(replay.views.len(), 3);
        assert_eq!(replay.views[0].topics[0].partitions.len(), 1);
        assert_eq!(replay.views[1].topics[0].partitions.len(), 2);
    }

    #[test]
    fn a_topic_read_in_full_again_does_not_replay_what_came_before() {
        let full = member(&[("orders", &[(0, None, 10, 10)])]);
        let without = member(&[("payments", &[(0, None, 3, 3)])]);
        let back = member(&[("orders", &[(0, None, 12, 12)])]);
        let replay = Replay::of(&[&full, &without, &back]).expect("chain");
        assert_eq!(replay.facts.topics[0].partitions[0].records, 12);
        assert!(replay.views[0].topics.is_empty());
        assert!(
            replay.views[1].topics.is_empty(),
            "payments is not in the head"
        );
    }

    #[test]
    fn a_chain_whose_offsets_do_not_meet_is_broken() {
        let full = member(&[("orders", &[(0, None, 10, 10)])]);
        let next = member(&[("orders", &[(0, Some(11), 15, 4)])]);
        let err = Replay::of(&[&full, &next]).expect_err("broken");
        assert!(err.contains("orders/0 continues from offset 11"), "{err}");
        let orphan = member(&[("orders", &[(0, Some(10), 15, 5)])]);
        assert!(Replay::of(&[&orphan]).is_err());
    }
}
