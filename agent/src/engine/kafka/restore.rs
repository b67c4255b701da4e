//! `restore --to kafka://…`: preflight, then topics created (or taken
//! empty) with retention suspended, the backup's records produced in
//! offset order, the topics' own configs put back, and last the consumer
//! groups' offsets translated and committed.
//!
//! Kafka has no transaction that could take a restore back, so nothing is
//! written before the backup (an incremental one: its whole chain) has
//! been read once end to end (verified) and every check passed. A restore
//! that stops later (the broker failed, a signal) says exactly which
//! partitions are complete.

use std::collections::{BTreeMap, BTreeSet};

use super::chain::{self, Replay};
use super::cluster::Cluster;
use super::format::PartitionDigest;
use super::groups;
use super::load::{self, LoadedPartitions, Pass};
use super::preflight::{self, Restoring};
use super::target::KafkaTarget;
use crate::engine::common::Stored;
use crate::engine::settings::RestoreSettings;
use crate::error::{Error, Result};
use crate::manifest::kafka::KafkaFacts;
use crate::manifest::Manifest;
use crate::pipeline::progress::ProgressMode;

/// A backup with the chain it replays (itself alone for a full backup).
pub struct Chained<'a> {
    /// The full backup first, the chosen backup last.
    pub members: Vec<Stored<'a>>,
    pub replay: Replay,
}

/// The Kafka facts of a Kafka backup's manifest: without them nothing
/// can be checked, so nothing is restored.
fn facts_of(manifest: &Manifest) -> Result<&KafkaFacts> {
    manifest.source.kafka.as_ref().ok_or_else(|| {
        Error::integrity(format!(
            "backup {} is a Kafka backup without its topics' facts in the manifest; it cannot be restored safely",
            manifest.backup_id
        ))
    })
}

impl<'a> Chained<'a> {
    /// The chain of `backup` from `manifests` (`catalog::chain`), each
    /// member readable with the backup's identities.
    pub fn new(backup: &Stored<'a>, manifests: &'a [Manifest]) -> Result<Chained<'a>> {
        let mut members = Vec::new();
        let mut facts = Vec::new();
        for m in manifests {
            let artifact = m.artifacts.first().ok_or_else(|| {
                Error::integrity(format!("backup {} has no artifacts", m.backup_id))
            })?;
            crate::artifact::check_identities(m, artifact, backup.identities)?;
            facts.push(facts_of(m)?);
            members.push(Stored {
                store: backup.store,
                manifest: m,
                artifact,
                identities: backup.identities,
            });
        }
        let replay = match facts.as_slice() {
            [one] => Replay::single(one),
            _ => Replay::of(&facts).map_err(|e| {
                Error::integrity(format!("backup {}: {e}", backup.manifest.backup_id))
            })?,
        };
        if members.len() > 1 {
            tracing::info!(backups = members.len(), full = %members[0].manifest.backup_id, "incremental backup: its chain is replayed from the full backup");
        }
        Ok(Chained { members, replay })
    }
}

/// How `load_into` treats the chain.
pub struct LoadOptions {
    /// `--resume`.
    pub resume: bool,
    /// Read every member end to end before writing (the chosen backup
    /// too unless `head_verified`).
    pub verify: Option<ProgressMode>,
    pub head_verified: bool,
    /// Hash the chain's records as one (`Loaded::whole`) for a drill.
    pub whole: bool,
}

pub async fn restore(
    target: &KafkaTarget,
    backup: &Stored<'_>,
    settings: &RestoreSettings,
) -> Result<()> {
    let options = &settings.kafka;
    let cluster = Cluster::new(
        target,
        &options.connection,
        settings.password.as_ref(),
        "--to",
    )?;
    let manifests = crate::catalog::chain(backup.store, backup.manifest).await?;
    let chained = Chained::new(backup, &manifests)?;
    let facts = &chained.replay.facts;
    let names: Vec<&str> = facts.topics.iter().map(|t| t.name.as_str()).collect();
    let targets = super::offsets::topic_map(&options.topic_map, &names).map_err(Error::usage)?;
    let carried = groups::carried(facts, options.groups.as_ref());
    let load_options = LoadOptions {
        resume: options.resume,
        verify: Some(settings.progress),
        head_verified: false,
        whole: false,
    };
    let (plan, loaded) = load_into(&cluster, &chained, &targets, &carried, &load_options).await?;
    for r in plan
        .iter()
        .filter(|r| r.resume_from.values().any(|&(_, held)| held > 0))
    {
        let held: u64 = r.resume_from.values().map(|&(_, held)| held).sum();
        tracing::info!(topic = %r.target, records_already_there = held, "resumed: those records were checked, not produced again");
    }
    // The topics are complete: their own configs first, so a group commit
    // that fails leaves nothing suspended.
    finish(&cluster, &plan, options.keep_retention_suspended).await?;
    let translated = groups::commit(&cluster, facts, &carried, &targets, &loaded).await?;
    for line in &translated {
        tracing::info!("consumer group offset translated: {line}");
    }
    let untimed: u64 = loaded.values().map(|l| l.untimed).sum();
    if untimed > 0 {
        tracing::warn!(records = untimed, "records without a timestamp (or with 0) were given the time of the restore: Kafka's producer cannot write them otherwise");
    }
    if !options.keep_retention_suspended {
        for warning in expiring(&plan, &loaded, chrono::Utc::now().timestamp_millis()) {
            tracing::warn!("{warning}");
        }
    }
    for r in &plan {
        let records: i64 = loaded
            .iter()
            .filter(|((t, _), _)| *t == r.source)
            .map(|(_, l)| l.offsets.records())
            .sum();
        tracing::info!(topic = %r.source, into = %r.target, records, "topic restored");
    }
    Ok(())
}

/// Preflight, (with `verify`: the chain read once end to end,) topics
/// created or suspended, every record produced and checked against its
/// backup's manifest. Returns the topics' plan and where each record
/// landed.
pub async fn load_into(
    cluster: &Cluster,
    chained: &Chained<'_>,
    targets: &BTreeMap<String, String>,
    carried: &[String],
    options: &LoadOptions,
) -> Result<(Vec<Restoring>, LoadedPartitions)> {
    let facts = &chained.replay.facts;
    let (plan, notes) =
        preflight_blocking(cluster, facts, targets, carried, options.resume).await?;
    for note in &notes {
        tracing::warn!("{note}");
    }
    if let Some(progress) = options.verify {
        // A damaged backup, or a damaged member of its chain, writes nothing.
        let last = chained.members.len() - 1;
        for (k, member) in chained.members.iter().enumerate() {
            if k < last || !options.head_verified {
                member.verify(progress).await?;
            }
        }
    }
    prepare(cluster, &plan).await?;
    let skip = resume_points(cluster, &plan).await?;
    let loaded = load_chain(cluster, chained, targets, &plan, &skip, options.whole).await?;
    Ok((plan, loaded))
}

/// The preflight, on a blocking thread (librdkafka's metadata calls block).
pub async fn preflight_blocking(
    cluster: &Cluster,
    facts: &KafkaFacts,
    targets: &BTreeMap<String, String>,
    carried: &[String],
    resume: bool,
) -> Result<(Vec<Restoring>, Vec<String>)> {
    let cluster = cluster.clone();
    let (facts, targets, carried) = (facts.clone(), targets.clone(), carried.to_vec());
    tokio::task::spawn_blocking(move || preflight(&cluster, &facts, &targets, &carried, resume))
        .await
        .map_err(|e| Error::target(format!("the preflight stopped: {e}")))?
}

fn preflight(
    cluster: &Cluster,
    facts: &KafkaFacts,
    targets: &BTreeMap<String, String>,
    carried: &[String],
    resume: bool,
) -> Result<(Vec<Restoring>, Vec<String>)> {
    let consumer = cluster.consumer("vertice-restore")?;
    let wanted: Vec<&str> = targets.values().map(String::as_str).collect();
    let (brokers, existing) = cluster.topics(&consumer, &wanted)?;
    let existing_names: Vec<&str> = existing.keys().map(String::as_str).collect();
    let own = cluster.own_configs(&existing_names)?;
    let broker = broker_id(cluster, &consumer);
    let broker_max = broker
        .and_then(|id| cluster.broker_config(id, "message.max.bytes"))
        .and_then(|v| v.parse::<u64>().ok());
    // The broker's own limits on old timestamps, lifted on the topics too.
    let broker_lifts: Vec<String> = preflight::LIFTED_IF_SET
        .iter()
        .filter(|key| {
            broker
                .and_then(|id| cluster.broker_config(id, &format!("log.{key}")))
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < i64::MAX)
        })
        .map(|key| key.to_string())
        .collect();
    let empty = BTreeMap::new();
    let mut plan = Vec::new();
    let mut notes = Vec::new();
    for topic in &facts.topics {
        let target = &targets[&topic.name];
        let here = existing
            .get(target)
            .map(|state| (state, own.get(target).unwrap_or(&empty)));
        let (restoring, mut topic_notes) = preflight::plan_topic(
            topic,
            target,
            here,
            brokers,
            broker_max,
            resume,
            &broker_lifts,
        )
        .map_err(Error::usage)?;
        plan.push(restoring);
        notes.append(&mut topic_notes);
    }
    groups::check_empty(cluster, &consumer, carried)?;
    Ok((plan, notes))
}

fn broker_id(
    cluster: &Cluster,
    consumer: &rdkafka::consumer::BaseConsumer<super::client::Watch>,
) -> Option<i32> {
    use rdkafka::consumer::Consumer;
    let metadata = consumer.fetch_metadata(None, cluster.timeout).ok()?;
    metadata.brokers().first().map(|b| b.id())
}

/// Creates the absent topics and suspends retention on the empty ones.
async fn prepare(cluster: &Cluster, plan: &[Restoring]) -> Result<()> {
    let create: Vec<(String, i32, i32, BTreeMap<String, String>)> = plan
        .iter()
        .filter_map(|r| {
            r.create
                .map(|rf| (r.target.clone(), r.partitions, rf, r.load_configs.clone()))
        })
        .collect();
    cluster.create_topics(&create).await?;
    let existing: Vec<(String, BTreeMap<String, String>)> = plan
        .iter()
        .filter(|r| r.create.is_none())
        .map(|r| (r.target.clone(), r.load_configs.clone()))
        .collect();
    cluster.set_configs(&existing).await?;
    for r in plan {
        tracing::info!(
            topic = %r.target,
            created = r.create.is_some(),
            "retention suspended while the topic is loaded (retention.ms=-1, CreateTime); its own configs are put back at the end"
        );
    }
    Ok(())
}

/// Produces every record of the chain, one backup after the other, each
/// checked against its manifest; on failure, the error says which
/// partitions are complete.
async fn load_chain(
    cluster: &Cluster,
    chained: &Chained<'_>,
    targets: &BTreeMap<String, String>,
    plan: &[Restoring],
    skip: &load::Skips,
    whole: bool,
) -> Result<LoadedPartitions> {
    let facts = &chained.replay.facts;
    let max_record = facts
        .topics
        .iter()
        .map(|t| t.max_record_bytes)
        .max()
        .unwrap_or(0);
    let batch_limit = plan.iter().filter_map(|r| r.max_message).min();
    let producer = load::producer(cluster, max_record, batch_limit)?;
    let views = &chained.replay.views;
    let reset = chained.members.len() > 1;
    let mut loaded = LoadedPartitions::new();
    for (k, (member, view)) in chained.members.iter().zip(views).enumerate() {
        let only: BTreeSet<(String, i32)> = view
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
            .collect();
        if only.is_empty() {
            continue;
        }
        let skips = chain::member_skips(skip, views, k);
        let pass = Pass {
            targets,
            skips: &skips,
            only: &only,
            whole,
        };
        let stopped = |e: Error, loaded: &LoadedPartitions| {
            e.map_message(|m| format!("{m}; {}", progress(facts, loaded, targets)))
        };
        let open = match member.open().await {
            Ok(open) => open,
            Err(e) => return Err(stopped(e, &loaded)),
        };
        let (manifest, artifact) = (member.manifest, member.artifact);
        let read_failed = |e: &std::io::Error| crate::artifact::read_failed(manifest, artifact, e);
        loaded = match load::load(cluster, &producer, open.reader, &pass, loaded, read_failed).await
        {
            Ok(loaded) => loaded,
            Err(s) => return Err(stopped(s.error, &s.loaded)),
        };
        check_content(view, &mut loaded, reset).map_err(|e| stopped(e, &loaded))?;
    }
    Ok(loaded)
}

/// `--resume`: for each partition a stopped restore wrote into, where its
/// records start, how many there are and the content hash of the last one
/// (it must be the backup's record at that position).
async fn resume_points(cluster: &Cluster, plan: &[Restoring]) -> Result<load::Skips> {
    let mut wanted = Vec::new();
    for r in plan {
        for (&partition, &(low, held)) in &r.resume_from {
            if held > 0 {
                wanted.push((r.source.clone(), r.target.clone(), partition, low, held));
            }
        }
    }
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let mut skips = load::Skips::new();
        for (source, target, partition, low, held) in wanted {
            let last = cluster.record_hash(&target, partition, low + held as i64 - 1)?;
            skips.insert(
                (source, partition),
                load::Skip {
                    low,
                    held,
                    last: Some(last),
                },
            );
        }
        Ok(skips)
    })
    .await
    .map_err(|e| Error::target(format!("reading where to resume stopped: {e}")))?
}

/// Which partitions hold all their records, which some, which none.
pub fn progress(
    facts: &KafkaFacts,
    loaded: &LoadedPartitions,
    targets: &BTreeMap<String, String>,
) -> String {
    let (mut complete, mut partial, mut untouched) = (Vec::new(), Vec::new(), Vec::new());
    for topic in &facts.topics {
        let target = targets.get(&topic.name).unwrap_or(&topic.name);
        for p in &topic.partitions {
            let done = loaded
                .get(&(topic.name.clone(), p.partition))
                .map_or(0, |l| l.offsets.records()) as u64;
            let name = format!("{target}/{}", p.partition);
            if done >= p.records {
                complete.push(name);
            } else if done == 0 {
                untouched.push(name);
            } else {
                partial.push(format!(
                    "{name} ({done} of {} records confirmed)",
                    p.records
                ));
            }
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "complete: {}; partly written: {}; not written: {}; consumer group offsets were not committed and the topics keep retention suspended: run the same restore again with --resume to continue",
        list(&complete),
        list(&partial),
        list(&untouched)
    )
}

/// Every partition's count and content hash, as the backup (`view`: one
/// member of a chain) recorded them; with `reset`, the hashes start over
/// for the next member.
fn check_content(view: &KafkaFacts, loaded: &mut LoadedPartitions, reset: bool) -> Result<()> {
    for topic in &view.topics {
        for p in &topic.partitions {
            let here = loaded.get_mut(&(topic.name.clone(), p.partition));
            let (records, hash) = here.map_or_else(
                || (0, PartitionDigest::default().hex()),
                |l| {
                    let digest = if reset {
                        std::mem::take(&mut l.digest)
                    } else {
                        l.digest.clone()
                    };
                    (digest.records, digest.hex())
                },
            );
            if records != p.records || hash != p.content_sha256 {
                return Err(Error::integrity(format!(
                    "{}/{} was restored from records that do not match the manifest ({records} records, the manifest says {}; content hash {hash}, the manifest says {})",
                    topic.name, p.partition, p.records, p.content_sha256,
                )));
            }
        }
    }
    Ok(())
}

/// Puts each topic's own configs in place of the suspension (or keeps it).
async fn finish(cluster: &Cluster, plan: &[Restoring], keep_suspended: bool) -> Result<()> {
    if keep_suspended {
        tracing::warn!("retention stays suspended (--kafka-keep-retention-suspended): set the topics' retention yourself");
        return Ok(());
    }
    let finals: Vec<(String, BTreeMap<String, String>)> = plan
        .iter()
        .map(|r| (r.target.clone(), r.final_configs.clone()))
        .collect();
    cluster.set_configs(&finals).await?;
    tracing::info!("retention and timestamp settings of the restored topics put back");
    Ok(())
}

/// Broker default retention when a topic sets none (`log.retention.hours`).
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Topics whose restored records are all older than their retention: the
/// broker will delete them at its next retention check.
pub fn expiring(plan: &[Restoring], loaded: &LoadedPartitions, now_ms: i64) -> Vec<String> {
    let mut warnings = Vec::new();
    for r in plan {
        let retention = r
            .final_configs
            .get("retention.ms")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(DEFAULT_RETENTION_MS);
        if retention < 0 {
            continue;
        }
        let old: Vec<String> = loaded
            .iter()
            .filter(|((t, _), l)| {
                *t == r.source
                    && l.newest_timestamp
                        .is_some_and(|newest| newest < now_ms.saturating_sub(retention))
            })
            .map(|((_, p), _)| format!("{}/{p}", r.target))
            .collect();
        if !old.is_empty() {
            warnings.push(format!(
                "every record of {} is older than the topic's retention ({} ms): the broker will delete them at its next retention check; restore again with --kafka-keep-retention-suspended to keep them",
                old.join(", "),
                retention
            ));
        }
    }
    warnings
}
