//! A Kafka drill: the backup restored into scratch topics
//! (`vertice-drill-<backup>-<topic>`) on the cluster `--restore-to` names,
//! read back and compared with the manifest partition by partition (record
//! count and content hash in offset order), the groups' offsets
//! translated; the scratch topics are always deleted afterwards, also when
//! a step fails or a signal arrives.

use std::collections::BTreeMap;

use vertice_crds::drill::DrillReport;

use super::backup::{self, Source};
use super::cluster::Cluster;
use super::load::LoadedPartitions;
use super::restore::{load_into, Chained, LoadOptions};
use super::selection::Selection;
use super::target::KafkaTarget;
use crate::engine::common::{record_restore, timed, Drilled};
use crate::error::{Error, Result};
use crate::manifest::kafka::KafkaFacts;

/// Kafka's limit on a topic name.
const MAX_TOPIC_NAME: usize = 249;

pub async fn drill(d: &Drilled<'_>, target: &KafkaTarget, report: &mut DrillReport) -> Result<()> {
    let manifest = d.backup.manifest;
    let manifests = crate::catalog::chain(d.backup.store, manifest).await?;
    let chained = Chained::new(&d.backup, &manifests)?;
    let facts = &chained.replay.facts;
    let cluster = Cluster::new(
        target,
        &d.args.kafka,
        d.args.password.as_ref(),
        "--restore-to",
    )?;
    let scratch = scratch_names(&manifest.backup_id, facts)?;
    report.target = Some(format!(
        "scratch topics vertice-drill-{}-* on {}",
        manifest.backup_id.to_ascii_lowercase(),
        cluster.address
    ));
    // A drill of the same backup killed before it cleaned up left these.
    let names: Vec<String> = scratch.values().cloned().collect();
    let _ = cluster.delete_topics(&names).await;
    let outcome = restore_and_check(d, &chained, &cluster, &scratch, report).await;
    let left = cluster.delete_topics(&names).await;
    report.cleaned_up = left.is_empty();
    if !left.is_empty() {
        tracing::warn!(topics = %left.join(", "), "scratch topics could not be deleted");
    }
    outcome
}

async fn restore_and_check(
    d: &Drilled<'_>,
    chained: &Chained<'_>,
    cluster: &Cluster,
    scratch: &BTreeMap<String, String>,
    report: &mut DrillReport,
) -> Result<()> {
    let facts = &chained.replay.facts;
    let whole = chained.members.len() > 1;
    // The drill command verified the backup already; the rest of its
    // chain is verified here.
    let options = LoadOptions {
        resume: false,
        verify: Some(d.args.progress),
        head_verified: true,
        whole,
    };
    let loaded = timed(report, async {
        load_into(cluster, chained, scratch, &[], &options)
            .await
            .map(|(_, loaded)| loaded)
    })
    .await;
    let loaded = record_restore(report, loaded, |_| Ok(()))?;
    let read = read_back(cluster, scratch).await?;
    for topic in &facts.topics {
        let name = &scratch[&topic.name];
        report.record(
            format!("records of {}", topic.name),
            compare(topic, &loaded, whole, read.topic(name)),
        );
    }
    report.record(
        "consumer group offsets translate",
        translate(facts, &loaded),
    );
    Ok(())
}

/// `vertice-drill-<backup id>-<topic>` for each topic, within Kafka's limit.
fn scratch_names(backup_id: &str, facts: &KafkaFacts) -> Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    for topic in &facts.topics {
        let name = format!(
            "vertice-drill-{}-{}",
            backup_id.to_ascii_lowercase(),
            topic.name
        );
        if name.len() > MAX_TOPIC_NAME {
            return Err(Error::usage(format!(
                "topic {} is too long a name for a scratch topic ({name}); Kafka allows {MAX_TOPIC_NAME} characters",
                topic.name
            )));
        }
        names.insert(topic.name.clone(), name);
    }
    Ok(names)
}

/// Reads the scratch topics back to their ends, as a backup would.
async fn read_back(cluster: &Cluster, scratch: &BTreeMap<String, String>) -> Result<KafkaFacts> {
    let source = Source {
        address: cluster.address.clone(),
        config: cluster.config.clone(),
        timeout: cluster.timeout,
    };
    let selection = Selection {
        topics: scratch.values().cloned().collect(),
        topic_regex: None,
        include_internal: false,
        groups: None,
        carry_groups: false,
    };
    let (tx, mut stream) = backup::channel();
    let discard =
        tokio::spawn(async move { tokio::io::copy(&mut stream, &mut tokio::io::sink()).await });
    let read = tokio::task::spawn_blocking(move || {
        let plan = source.plan(&selection, None)?;
        source.read(plan, tx)
    })
    .await
    .map_err(|e| Error::target(format!("reading the scratch topics back stopped: {e}")))?;
    discard.abort();
    read.map_err(|e| e.map_message(|m| format!("reading the scratch topics back: {m}")))
}

/// One topic's partitions as read back against the backup: the counts of
/// the manifest (a chain's added up) and the content hashes of the
/// records loaded, each checked against its manifest while loading (with
/// `whole`, the chain's records hashed as one).
fn compare(
    backed_up: &crate::manifest::kafka::TopicFacts,
    loaded: &LoadedPartitions,
    whole: bool,
    restored: Option<&crate::manifest::kafka::TopicFacts>,
) -> std::result::Result<(), String> {
    let Some(restored) = restored else {
        return Err("the scratch topic is missing".into());
    };
    let mut wrong = Vec::new();
    for p in &backed_up.partitions {
        let expected = loaded
            .get(&(backed_up.name.clone(), p.partition))
            .map_or_else(
                || super::format::PartitionDigest::default().hex(),
                |l| if whole { l.whole.hex() } else { l.digest.hex() },
            );
        let here = restored
            .partitions
            .iter()
            .find(|r| r.partition == p.partition);
        match here {
            None => wrong.push(format!("partition {} is missing", p.partition)),
            Some(r) if r.records != p.records => wrong.push(format!(
                "partition {} holds {} records, the backup {}",
                p.partition, r.records, p.records
            )),
            Some(r) if r.content_sha256 != expected => wrong.push(format!(
                "partition {}'s content differs from the backup's (same count, {} records)",
                p.partition, p.records
            )),
            Some(_) => {}
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// Every carried offset names a partition the backup holds and translates
/// into the restored range. (An offset may lie past the cut: a
/// `read_uncommitted` group can commit up to an open transaction's end,
/// beyond the last stable offset; it translates to the restored end.)
fn translate(facts: &KafkaFacts, loaded: &LoadedPartitions) -> std::result::Result<(), String> {
    for group in &facts.groups {
        for o in &group.offsets {
            facts
                .topic(&o.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == o.partition))
                .ok_or_else(|| {
                    format!(
                        "group {} has an offset on {}/{}, which the backup does not hold",
                        group.group, o.topic, o.partition
                    )
                })?;
            let (restored, translated) =
                loaded
                    .get(&(o.topic.clone(), o.partition))
                    .map_or((0, 0), |l| {
                        let restored = l.offsets.records();
                        (restored, l.offsets.translate(o.offset, restored))
                    });
            if !(0..=restored).contains(&translated) {
                return Err(format!(
                    "group {} on {}/{}: offset {} translated to {translated}, outside the {restored} restored records",
                    group.group, o.topic, o.partition, o.offset
                ));
            }
        }
    }
    Ok(())
}
