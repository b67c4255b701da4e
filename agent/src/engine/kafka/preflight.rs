//! Everything a restore checks before it writes anything: each target
//! topic absent or empty with the backup's partition count, records no
//! larger than the target accepts, groups without members. And the
//! configs a topic gets while it is loaded and afterwards.

use std::collections::BTreeMap;

use super::cluster::TopicState;
use crate::manifest::kafka::TopicFacts;

/// Configs whose limits would make the broker drop restored records: the
/// broker deletes records by their (original, possibly old) timestamps.
const SUSPENDED: [(&str, &str); 4] = [
    ("retention.ms", "-1"),
    ("retention.bytes", "-1"),
    // Restored records carry old timestamps, so the cleaner could compact
    // a topic while it is loaded (a drill would then count too few); the
    // topic's own policy comes back at the end.
    ("cleanup.policy", "delete"),
    // Records keep their original timestamps only as CreateTime; a
    // LogAppendTime topic gets its setting back at the end.
    ("message.timestamp.type", "CreateTime"),
];

/// Limits on old timestamps, lifted where the topic sets them, or the
/// broker does (`broker_lifts`; older brokers do not know these names).
pub const LIFTED_IF_SET: [&str; 2] = [
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
];

/// One topic to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restoring {
    pub source: String,
    pub target: String,
    pub partitions: i32,
    /// `Some(rf)`: created with this replication factor; `None`: the
    /// topic exists (empty) and is used as it is.
    pub create: Option<i32>,
    pub load_configs: BTreeMap<String, String>,
    pub final_configs: BTreeMap<String, String>,
    /// `--resume`: per partition, `(low, records present)` that a stopped
    /// restore of this backup already wrote; those are not produced again.
    pub resume_from: BTreeMap<i32, (i64, u64)>,
    /// The largest batch the target accepts (`max.message.bytes`), if known.
    pub max_message: Option<u64>,
}

/// The configs a topic is loaded with: its final ones with retention and
/// timestamp limits suspended.
pub fn suspended(
    configs: &BTreeMap<String, String>,
    broker_lifts: &[String],
) -> BTreeMap<String, String> {
    let mut load = configs.clone();
    for (key, value) in SUSPENDED {
        load.insert(key.to_string(), value.to_string());
    }
    for key in LIFTED_IF_SET {
        if load.contains_key(key) || broker_lifts.iter().any(|k| k == key) {
            load.insert(key.to_string(), i64::MAX.to_string());
        }
    }
    load
}

/// Whether a topic's own configs are the suspension a stopped restore
/// left (its real configs are then unknown).
fn carries_suspension(own: &BTreeMap<String, String>) -> bool {
    SUSPENDED
        .iter()
        .all(|(key, value)| own.get(*key).map(String::as_str) == Some(*value))
}

/// Decides how `topic` is restored into `target` given what the cluster
/// holds; an error names the topic and what would fix it.
pub fn plan_topic(
    topic: &TopicFacts,
    target: &str,
    existing: Option<(&TopicState, &BTreeMap<String, String>)>,
    brokers: usize,
    broker_max_message: Option<u64>,
    resume: bool,
    broker_lifts: &[String],
) -> Result<(Restoring, Vec<String>), String> {
    let partitions = topic.partitions.len() as i32;
    let mut notes = Vec::new();
    let mut resume_from = BTreeMap::new();
    let (create, final_configs) = match existing {
        Some((state, _)) if resume => {
            resume_from = resumable(topic, target, state)?;
            // What the stopped run suspended is all that is known of the
            // topic's configs now: it gets the backup's.
            (None, topic.configs.clone())
        }
        Some((state, own)) => (None, empty_topic(topic, target, state, own, &mut notes)?),
        None => {
            let mut configs = topic.configs.clone();
            let replication = topic.replication_factor.clamp(1, brokers.max(1) as i32);
            if replication < topic.replication_factor {
                notes.push(format!(
                    "{target}: replication factor {replication} (the source had {}; this cluster has {brokers} broker(s))",
                    topic.replication_factor
                ));
                let min_isr = configs
                    .get("min.insync.replicas")
                    .and_then(|v| v.parse::<i32>().ok());
                if min_isr.is_some_and(|m| m > replication) {
                    configs.insert("min.insync.replicas".into(), replication.to_string());
                    notes.push(format!(
                        "{target}: min.insync.replicas lowered to {replication}"
                    ));
                }
            }
            (Some(replication), configs)
        }
    };
    let limit = final_configs
        .get("max.message.bytes")
        .and_then(|v| v.parse::<u64>().ok())
        .or(broker_max_message);
    if let Some(limit) = limit {
        // A record travels in a batch with ~70 bytes of framing.
        if topic.max_record_bytes + 128 > limit {
            return Err(format!(
                "topic {}'s largest record is {} bytes, but {target} accepts at most {limit} (max.message.bytes); raise the target's limit first",
                topic.name, topic.max_record_bytes
            ));
        }
    }
    Ok((
        Restoring {
            source: topic.name.clone(),
            target: target.to_string(),
            partitions,
            create,
            load_configs: suspended(&final_configs, broker_lifts),
            final_configs,
            resume_from,
            max_message: limit,
        },
        notes,
    ))
}

/// The final configs of an existing topic, refused unless it is empty with
/// the backup's partition count.
fn empty_topic(
    topic: &TopicFacts,
    target: &str,
    state: &TopicState,
    own: &BTreeMap<String, String>,
    notes: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, String> {
    let partitions = topic.partitions.len();
    if state.partitions != partitions {
        return Err(format!(
            "target topic {target} has {} partitions, the backup of {} has {partitions}; records must go to the same partitions: delete it, or restore into another name with --topic-map {}=NEW",
            state.partitions, topic.name, topic.name
        ));
    }
    if let Some((p, low, high)) = state.offsets.iter().find(|(_, low, high)| high > low) {
        return Err(format!(
            "target topic {target} is not empty (partition {p} holds offsets {low}..{high}); restore into an absent or empty topic, choose another name with --topic-map {}=NEW, or, if it holds what a stopped restore of this backup wrote, run the restore again with --resume",
            topic.name
        ));
    }
    if carries_suspension(own) {
        notes.push(format!(
            "{target} carries the suspended retention a stopped restore left; it gets the backup's configs of {} at the end",
            topic.name
        ));
        return Ok(topic.configs.clone());
    }
    Ok(own.clone())
}

/// What a stopped restore left in `target`: per partition its low offset
/// and how many records it holds, each no more than the backup has there.
fn resumable(
    topic: &TopicFacts,
    target: &str,
    state: &TopicState,
) -> Result<BTreeMap<i32, (i64, u64)>, String> {
    if state.partitions != topic.partitions.len() {
        return Err(format!(
            "--resume: target topic {target} has {} partitions, the backup of {} has {}; it is not what a restore of this backup wrote",
            state.partitions,
            topic.name,
            topic.partitions.len()
        ));
    }
    let mut present = BTreeMap::new();
    for p in &topic.partitions {
        let (low, high) = state
            .offsets
            .iter()
            .find(|(id, _, _)| *id == p.partition)
            .map(|&(_, low, high)| (low, high))
            .unwrap_or((0, 0));
        let held = (high - low).max(0) as u64;
        if held > p.records {
            return Err(format!(
                "--resume: {target}/{} holds {held} records, more than the {} the backup has there; it is not what a restore of this backup wrote",
                p.partition, p.records
            ));
        }
        present.insert(p.partition, (low, held));
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::kafka::PartitionFacts;

    fn topic(partitions: i32, configs: &[(&str, &str)]) -> TopicFacts {
        TopicFacts {
            name: "orders".into(),
            topic_id: None,
            replication_factor: 3,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            max_record_bytes: 1000,
            partitions: (0..partitions)
                .map(|p| PartitionFacts {
                    partition: p,
                    log_start_offset: 0,
                    start_offset: None,
                    end_offset: 10,
                    records: 10,
                    first_offset: Some(0),
                    last_offset: Some(9),
                    content_sha256: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_new_topic_is_loaded_with_retention_suspended_and_gets_its_configs_after() {
        let t = topic(
            2,
            &[
                ("retention.ms", "3600000"),
                ("message.timestamp.type", "LogAppendTime"),
                ("min.insync.replicas", "2"),
            ],
        );
        let (r, notes) =
            plan_topic(&t, "orders-r", None, 1, Some(1_048_588), false, &[]).expect("plan");
        assert_eq!(r.create, Some(1));
        assert_eq!(r.load_configs["retention.ms"], "-1");
        assert_eq!(r.load_configs["retention.bytes"], "-1");
        assert_eq!(r.load_configs["message.timestamp.type"], "CreateTime");
        assert_eq!(r.final_configs["retention.ms"], "3600000");
        assert_eq!(r.final_configs["message.timestamp.type"], "LogAppendTime");
        assert_eq!(r.final_configs["min.insync.replicas"], "1");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(!r
            .load_configs
            .contains_key("message.timestamp.before.max.ms"));
        let (r, _) = plan_topic(
            &topic(1, &[("message.timestamp.before.max.ms", "1000")]),
            "o",
            None,
            3,
            None,
            false,
            &[],
        )
        .expect("plan");
        assert_eq!(
            r.load_configs["message.timestamp.before.max.ms"],
            i64::MAX.to_string()
        );
    }

    #[test]
    fn an_existing_topic_must_be_empty_with_the_same_partitions() {
        let own = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        let empty = TopicState {
            partitions: 2,
            offsets: vec![(0, 5, 5), (1, 0, 0)],
        };
        let (r, _) = plan_topic(
            &topic(2, &[]),
            "orders",
            Some((&empty, &own)),
            1,
            None,
            false,
            &[],
        )
        .expect("empty");
        assert_eq!((r.create, r.final_configs.clone()), (None, own.clone()));
        let full = TopicState {
            partitions: 2,
            offsets: vec![(0, 0, 0), (1, 3, 7)],
        };
        let err = plan_topic(
            &topic(2, &[]),
            "orders",
            Some((&full, &own)),
            1,
            None,
            false,
            &[],
        )
        .expect_err("full");
        assert!(
            err.contains("orders is not empty")
                && err.contains("partition 1")
                && err.contains("--resume"),
            "{err}"
        );
        let (r, _) = plan_topic(
            &topic(2, &[("retention.ms", "1")]),
            "orders",
            Some((&full, &own)),
            1,
            None,
            true,
            &[],
        )
        .expect("resume");
        assert_eq!(r.resume_from, BTreeMap::from([(0, (0, 0)), (1, (3, 4))]));
        assert_eq!(r.final_configs["retention.ms"], "1", "the backup's configs");
        let overfull = TopicState {
            partitions: 2,
            offsets: vec![(0, 0, 11), (1, 0, 0)],
        };
        let err = plan_topic(
            &topic(2, &[]),
            "orders",
            Some((&overfull, &own)),
            1,
            None,
            true,
            &[],
        )
        .expect_err("more than the backup");
        assert!(err.contains("holds 11 records, more than the 10"), "{err}");
        let err = plan_topic(
            &topic(3, &[]),
            "orders",
            Some((&empty, &own)),
            1,
            None,
            false,
            &[],
        )
        .expect_err("count");
        assert!(
            err.contains("has 2 partitions") && err.contains("--topic-map"),
            "{err}"
        );
    }

    #[test]
    fn records_larger_than_the_target_accepts_are_refused_first() {
        let mut t = topic(1, &[]);
        t.max_record_bytes = 2_000_000;
        let err =
            plan_topic(&t, "orders", None, 1, Some(1_048_588), false, &[]).expect_err("large");
        assert!(
            err.contains("2000000 bytes") && err.contains("max.message.bytes"),
            "{err}"
        );
        t.configs
            .insert("max.message.bytes".into(), "4000000".into());
        assert!(plan_topic(&t, "orders", None, 1, Some(1_048_588), false, &[]).is_ok());
    }
}
