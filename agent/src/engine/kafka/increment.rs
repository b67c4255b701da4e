//! `--incremental`: where each partition continues from the previous
//! backup's end, and the cases where it cannot without leaving a gap or
//! mixing two topics' records — refused, never papered over.

use crate::manifest::kafka::TopicFacts;

/// The backup an incremental run continues; the run's settings carry it
/// from where the store is read down to the engine.
pub use crate::engine::settings::KafkaParent as Parent;

/// One partition's cut as the run found it: `(partition, log start, end)`.
pub type Cut = (i32, i64, i64);

/// Whether an incremental run continues `parent` or takes a full backup:
/// `None` when there is no Kafka parent, or its chain has reached
/// `full_every` backups (so retention can let old chains go).
pub fn continues(parent: Option<Parent>, full_every: u32) -> Option<Parent> {
    parent.filter(|p| p.facts.chain_length < full_every.max(1))
}

/// Per partition of `topic` (in the order of `cut`), where this run starts
/// reading: `Some(parent's end)` to continue, `None` for a full read (a
/// topic or partition the parent does not have). An error names the
/// partition, what happened and what to run instead.
pub fn starts(
    parent: &Parent,
    topic: &str,
    topic_id: Option<&str>,
    cut: &[Cut],
) -> Result<Vec<Option<i64>>, String> {
    let Some(before) = parent.facts.topic(topic) else {
        return Ok(vec![None; cut.len()]);
    };
    let id = &parent.backup_id;
    let full = "run a full backup to start a new chain (without --incremental, or with --full-every 1; on Kubernetes, set spec.target.kafka.incremental.fullEvery to 1 for a run)";
    match (before.topic_id.as_deref(), topic_id) {
        (Some(was), Some(now)) if was != now => {
            return Err(format!(
                "topic {topic} was deleted and created again since backup {id} (topic id {was}, now {now}): its records cannot continue that backup's; {full}"
            ));
        }
        // Without the id, a topic created again with as many records
        // cannot be told from the same topic continued.
        (Some(_), None) => {
            return Err(format!(
                "the id of topic {topic} could not be read this time (backup {id} has it), so a topic deleted and created again could not be told apart: run again, or {full}"
            ));
        }
        _ => {}
    }
    if let Some(gone) = before
        .partitions
        .iter()
        .find(|p| !cut.iter().any(|c| c.0 == p.partition))
    {
        return Err(format!(
            "topic {topic} has lost partition {} since backup {id} (Kafka never removes partitions: the topic was created again); {full}",
            gone.partition
        ));
    }
    cut.iter()
        .map(|&(partition, low, end)| start(before, id, topic, partition, low, end, full))
        .collect()
}

fn start(
    before: &TopicFacts,
    id: &str,
    topic: &str,
    partition: i32,
    low: i64,
    end: i64,
    full: &str,
) -> Result<Option<i64>, String> {
    let Some(was) = before.partitions.iter().find(|p| p.partition == partition) else {
        return Ok(None);
    };
    let previous_end = was.end_offset;
    if end < previous_end {
        return Err(format!(
            "{topic}/{partition} ends at offset {end}, before the end {previous_end} backup {id} read to: the partition was truncated (an unclean leader election) or the topic was created again; {full}"
        ));
    }
    if low > previous_end {
        return Err(format!(
            "records {previous_end}..{low} of {topic}/{partition} were deleted (retention or deleteRecords) after backup {id} and before this run: continuing would leave a gap; {full}, and run backups more often than the topic's retention"
        ));
    }
    Ok(Some(previous_end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::kafka::{KafkaFacts, PartitionFacts};
    use std::collections::BTreeMap;

    fn parent(chain_length: u32, id: Option<&str>, ends: &[(i32, i64)]) -> Parent {
        Parent {
            backup_id: "20261206T010000Z-aaaa".into(),
            facts: KafkaFacts {
                topics: vec![TopicFacts {
                    name: "orders".into(),
                    topic_id: id.map(str::to_string),
                    replication_factor: 1,
                    configs: BTreeMap::new(),
                    max_record_bytes: 10,
                    partitions: ends
                        .iter()
                        .map(|&(partition, end)| PartitionFacts {
                            partition,
                            log_start_offset: 0,
                            start_offset: None,
                            end_offset: end,
                            records: end as u64,
                            first_offset: None,
                            last_offset: None,
                            content_sha256: String::new(),
                        })
                        .collect(),
                }],
                groups: Vec::new(),
                chain_length,
            },
        }
    }

    #[test]
    fn each_partition_continues_from_the_parents_end() {
        let p = parent(1, Some("id-1"), &[(0, 10), (1, 0)]);
        let starts = starts(&p, "orders", Some("id-1"), &[(0, 0, 25), (1, 0, 3)]);
        assert_eq!(starts, Ok(vec![Some(10), Some(0)]));
    }

    #[test]
    fn new_topics_and_new_partitions_are_read_in_full() {
        let p = parent(1, None, &[(0, 10)]);
        assert_eq!(starts(&p, "payments", None, &[(0, 5, 9)]), Ok(vec![None]));
        assert_eq!(
            starts(&p, "orders", None, &[(0, 0, 12), (1, 0, 4)]),
            Ok(vec![Some(10), None])
        );
    }

    #[test]
    fn records_deleted_between_runs_are_a_gap_named_with_the_fix() {
        let p = parent(1, None, &[(0, 10)]);
        let err = starts(&p, "orders", None, &[(0, 11, 30)]).expect_err("gap");
        assert!(
            err.contains("records 10..11 of orders/0 were deleted"),
            "{err}"
        );
        assert!(err.contains("without --incremental"), "{err}");
        // Deleted up to the previous end exactly: nothing is missing.
        assert_eq!(
            starts(&p, "orders", None, &[(0, 10, 30)]),
            Ok(vec![Some(10)])
        );
    }

    #[test]
    fn a_topic_created_again_is_refused_by_its_id_or_its_offsets() {
        let p = parent(1, Some("id-1"), &[(0, 10), (1, 10)]);
        let err =
            starts(&p, "orders", Some("id-2"), &[(0, 0, 50), (1, 0, 50)]).expect_err("new id");
        assert!(err.contains("deleted and created again"), "{err}");
        assert!(err.contains("id-1") && err.contains("id-2"), "{err}");
        let err = starts(&p, "orders", None, &[(0, 0, 50), (1, 0, 50)]).expect_err("no id");
        assert!(err.contains("could not be read this time"), "{err}");
        let p = parent(1, None, &[(0, 10), (1, 10)]);
        let err = starts(&p, "orders", None, &[(0, 0, 4), (1, 0, 50)]).expect_err("shorter");
        assert!(
            err.contains("orders/0 ends at offset 4, before the end 10"),
            "{err}"
        );
        let err = starts(&p, "orders", None, &[(0, 0, 50)]).expect_err("fewer partitions");
        assert!(err.contains("lost partition 1"), "{err}");
        assert!(err.contains("--full-every 1"), "{err}");
    }

    #[test]
    fn a_chain_at_its_limit_starts_over_with_a_full_backup() {
        assert!(continues(Some(parent(6, None, &[])), 7).is_some());
        assert!(continues(Some(parent(7, None, &[])), 7).is_none());
        assert!(continues(Some(parent(1, None, &[])), 1).is_none());
        assert!(continues(None, 7).is_none());
    }
}
