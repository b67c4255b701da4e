//! The backup: a consistent cut per partition, read record by record.
//!
//! Order matters. The groups' committed offsets are read first, then each
//! partition's end — its last stable offset, since the consumer reads
//! `read_committed` — and then every partition is read from its log start
//! to exactly that end: records produced meanwhile are never taken, and no
//! group offset points past what the backup holds. Aborted transactions
//! and control markers never reach the consumer; the offsets they (and
//! compaction) leave out are normal gaps.
//!
//! librdkafka's consumer is synchronous, so the reading runs on a blocking
//! thread that hands 256 KiB chunks to the upload through a bounded
//! channel: memory is bounded by the channel and the consumer's queue,
//! whatever the topic's size.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::client::{self, Watch};
use super::format::{PartitionDigest, Record, TimestampType};
use super::increment::{self, Parent};
use super::selection::Selection;
use super::topic_ids;
use crate::error::{Error, Result};
use crate::manifest::kafka::{GroupFacts, GroupOffset, KafkaFacts, PartitionFacts, TopicFacts};

/// Chunks handed to the upload.
const CHUNK: usize = 256 * 1024;
/// Chunks waiting for the upload.
const CHUNKS_IN_FLIGHT: usize = 8;

/// One topic to read: its shape and its partitions' cut.
struct PlannedTopic {
    name: String,
    topic_id: Option<String>,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
    partitions: Vec<PlannedPartition>,
}

struct PlannedPartition {
    partition: i32,
    /// The log start offset.
    low: i64,
    /// An incremental run: the parent's end, where reading starts.
    start: Option<i64>,
    end: i64,
}

/// What the cut decided before any record is read.
pub struct Plan {
    topics: Vec<PlannedTopic>,
    groups: Vec<GroupFacts>,
    /// 1, or the parent's plus one.
    pub chain_length: u32,
}

impl Plan {
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }
}

/// A cluster connection for one backup run.
pub struct Source {
    pub address: String,
    pub config: rdkafka::ClientConfig,
    pub timeout: Duration,
}

impl Source {
    fn consumer(&self, group: &str) -> Result<BaseConsumer<Watch>> {
        let mut config = self.config.clone();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "true")
            // Bounded prefetch: the consumer's whole queue, not per partition.
            .set("queued.max.messages.kbytes", "8192")
            // When that queue is full librdkafka pauses fetching for this
            // long (1 s by default): with a small queue the backup would
            // spend most of its time waiting.
            .set("fetch.queue.backoff.ms", "10")
            // The broker holds a fetch with nothing to return this long
            // (500 ms by default), and librdkafka sends the next fetch to a
            // broker only after it: a topic's last fetch, at its partitions'
            // ends, kept the next topic's first one waiting.
            .set("fetch.wait.max.ms", "20")
            .set("fetch.max.bytes", "8388608")
            .set("receive.message.max.bytes", "268435456")
            .set("check.crcs", "true");
        config
            .create_with_context(Watch::default())
            .map_err(|e| Error::usage(format!("{}: {e}", self.address)))
    }

    fn fail(&self, watch: &Watch, doing: &str, e: &KafkaError) -> Error {
        client::failure(watch, &self.address, doing, e, Error::source)
    }

    /// Chooses the topics and groups and takes the cut (blocking); with a
    /// parent, each partition continues from the parent's end.
    pub fn plan(&self, selection: &Selection, parent: Option<&Parent>) -> Result<Plan> {
        let consumer = self.consumer("vertice-backup")?;
        let metadata = client::metadata(&consumer, self.timeout)
            .map_err(|e| self.fail(consumer.context(), "reading the cluster's metadata", &e))?;
        let names = selection.topics(metadata.topics().iter().map(|t| t.name()))?;
        let topics = self.shapes(&metadata, &names)?;
        // First the groups' offsets, then the ends: a committed offset read
        // before the end can never point past it.
        let groups = self.group_offsets(&consumer, selection, &topics)?;
        let configs = self.topic_configs(&names)?;
        let ids = self.topic_ids(&consumer, &names);
        let mut planned = Vec::new();
        for (name, replication_factor, partitions) in topics {
            let cut = self.cut(&consumer, &name, partitions)?;
            let topic_id = ids.get(&name).cloned();
            let starts = match parent {
                Some(parent) => increment::starts(parent, &name, topic_id.as_deref(), &cut)
                    .map_err(|e| Error::source(format!("{}: {e}", self.address)))?,
                None => vec![None; cut.len()],
            };
            planned.push(PlannedTopic {
                configs: configs.get(&name).cloned().unwrap_or_default(),
                name,
                topic_id,
                replication_factor,
                partitions: cut
                    .into_iter()
                    .zip(starts)
                    .map(|((partition, low, end), start)| PlannedPartition {
                        partition,
                        low,
                        start,
                        end,
                    })
                    .collect(),
            });
        }
        Ok(Plan {
            topics: planned,
            groups,
            chain_length: parent.map_or(1, |p| p.facts.chain_length + 1),
        })
    }

    /// Each selected topic's name, replication factor and sorted partition
    /// ids, in the selection's order. A topic the metadata reports with an
    /// error fails the run: its partition list cannot be trusted.
    fn shapes(
        &self,
        metadata: &rdkafka::metadata::Metadata,
        names: &[String],
    ) -> Result<Vec<(String, i32, Vec<i32>)>> {
        let mut topics = Vec::new();
        for name in names {
            let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
                continue;
            };
            if let Some(e) = topic.error() {
                return Err(Error::source(format!(
                    "{}: topic {name}: {:?}",
                    self.address,
                    RDKafkaErrorCode::from(e)
                )));
            }
            let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            let replication_factor = topic
                .partitions()
                .iter()
                .map(|p| p.replicas().len() as i32)
                .max()
                .unwrap_or(1);
            topics.push((name.clone(), replication_factor, partitions));
        }
        Ok(topics)
    }

    /// The topics' ids, or none: they only let a later incremental run
    /// notice a topic deleted and created again, so the backup goes on
    /// without them.
    fn topic_ids(
        &self,
        consumer: &BaseConsumer<Watch>,
        names: &[String],
    ) -> BTreeMap<String, String> {
        match topic_ids::describe(consumer.client(), names, self.timeout) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(
                    "{}: the topics' ids could not be read ({e}); the manifest goes without them",
                    self.address
                );
                BTreeMap::new()
            }
        }
    }

    /// One topic's cut: each partition's log start and end. Called only
    /// after the groups' offsets were read (see `plan`).
    fn cut(
        &self,
        consumer: &BaseConsumer<Watch>,
        name: &str,
        partitions: Vec<i32>,
    ) -> Result<Vec<increment::Cut>> {
        let mut cut = Vec::new();
        for partition in partitions {
            let (low, end) = consumer
                .fetch_watermarks(name, partition, self.timeout)
                .map_err(|e| {
                    self.fail(
                        consumer.context(),
                        &format!("reading the offsets of {name}/{partition}"),
                        &e,
                    )
                })?;
            cut.push((partition, low, end));
        }
        Ok(cut)
    }

    /// The committed offsets of every selected group on the selected
    /// topics; groups with none there are left out.
    fn group_offsets(
        &self,
        consumer: &BaseConsumer<Watch>,
        selection: &Selection,
        topics: &[(String, i32, Vec<i32>)],
    ) -> Result<Vec<GroupFacts>> {
        if !selection.carry_groups {
            return Ok(Vec::new());
        }
        let list = consumer
            .fetch_group_list(None, self.timeout)
            .map_err(|e| self.fail(consumer.context(), "listing consumer groups", &e))?;
        let mut ids: Vec<String> = list
            .groups()
            .iter()
            .map(|g| g.name().to_string())
            .filter(|g| selection.takes_group(g))
            .collect();
        ids.sort();
        let mut wanted = TopicPartitionList::new();
        for (name, _, partitions) in topics {
            for p in partitions {
                wanted.add_partition(name, *p);
            }
        }
        let mut groups = Vec::new();
        for id in ids {
            let reader = self.consumer(&id)?;
            let committed = reader
                .committed_offsets(wanted.clone(), self.timeout)
                .map_err(|e| {
                    self.fail(
                        reader.context(),
                        &format!("reading group {id}'s offsets"),
                        &e,
                    )
                })?;
            if let Some(e) = committed.elements().iter().find(|e| e.error().is_err()) {
                let why = e.error().err().map(|e| e.to_string()).unwrap_or_default();
                return Err(Error::source(format!(
                    "{}: group {id}'s committed offset on {}/{} could not be read ({why}); without it a restored group would start over — grant the backup user Describe on the group and the topic, or leave the group out with --groups",
                    self.address,
                    e.topic(),
                    e.partition()
                )));
            }
            let offsets: Vec<GroupOffset> = committed
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(offset) => Some(GroupOffset {
                        topic: e.topic().to_string(),
                        partition: e.partition(),
                        offset,
                    }),
                    _ => None,
                })
                .collect();
            if !offsets.is_empty() {
                groups.push(GroupFacts { group: id, offsets });
            }
        }
        Ok(groups)
    }

    /// The configs set on each topic itself (not broker defaults), without
    /// sensitive values.
    fn topic_configs(&self, names: &[String]) -> Result<HashMap<String, BTreeMap<String, String>>> {
        let admin: AdminClient<Watch> = self
            .config
            .create_with_context(Watch::default())
            .map_err(|e| Error::usage(format!("{}: {e}", self.address)))?;
        let specifiers: Vec<ResourceSpecifier<'_>> =
            names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let options = AdminOptions::new().request_timeout(Some(self.timeout));
        let results = futures::executor::block_on(admin.describe_configs(&specifiers, &options))
            .map_err(|e| self.fail(admin.inner().context(), "reading topic configs", &e))?;
        let mut configs = HashMap::new();
        for (name, result) in names.iter().zip(results) {
            let resource = result.map_err(|code| {
                Error::source(format!(
                    "{}: reading the configs of topic {name} failed: {code}",
                    self.address
                ))
            })?;
            let own: BTreeMap<String, String> = resource
                .entries
                .into_iter()
                .filter(|e| e.source == ConfigSource::DynamicTopic && !e.is_sensitive)
                .filter_map(|e| e.value.map(|v| (e.name, v)))
                .collect();
            configs.insert(name.clone(), own);
        }
        Ok(configs)
    }

    /// Reads every planned partition to its end into `out` (blocking);
    /// returns the facts of what was read. Fails when the cluster stays
    /// silent longer than the timeout or records are deleted under it.
    pub fn read(&self, plan: Plan, out: mpsc::Sender<io::Result<Bytes>>) -> Result<KafkaFacts> {
        let consumer = self.consumer("vertice-backup")?;
        let mut sink = Sink {
            out,
            buffer: Vec::with_capacity(CHUNK + 64 * 1024),
        };
        let mut topics = Vec::new();
        for topic in plan.topics {
            topics.push(self.read_topic(&consumer, topic, &mut sink)?);
        }
        sink.flush()?;
        Ok(KafkaFacts {
            topics,
            groups: plan.groups,
            chain_length: plan.chain_length,
        })
    }

    fn read_topic(
        &self,
        consumer: &BaseConsumer<Watch>,
        topic: PlannedTopic,
        sink: &mut Sink,
    ) -> Result<TopicFacts> {
        let mut digests: BTreeMap<i32, PartitionDigest> = BTreeMap::new();
        let mut open: BTreeMap<i32, i64> = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in &topic.partitions {
            digests.insert(p.partition, PartitionDigest::default());
            let from = p.start.unwrap_or(p.low);
            if from < p.end {
                open.insert(p.partition, p.end);
                assignment
                    .add_partition_offset(&topic.name, p.partition, Offset::Offset(from))
                    .map_err(|e| Error::source(format!("{}: {e}", self.address)))?;
            }
        }
        if !open.is_empty() {
            consumer
                .assign(&assignment)
                .map_err(|e| self.fail(consumer.context(), "assigning partitions", &e))?;
            self.drain(consumer, &topic.name, &mut open, &mut digests, sink)?;
            consumer
                .unassign()
                .map_err(|e| self.fail(consumer.context(), "releasing partitions", &e))?;
        }
        let max_record_bytes = digests
            .values()
            .map(|d| d.max_record_bytes)
            .max()
            .unwrap_or(0);
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let digest = digests.remove(&p.partition).unwrap_or_default();
                PartitionFacts {
                    partition: p.partition,
                    log_start_offset: p.low,
                    start_offset: p.start,
                    end_offset: p.end,
                    records: digest.records,
                    first_offset: digest.first_offset,
                    last_offset: digest.last_offset,
                    content_sha256: digest.hex(),
                }
            })
            .collect();
        tracing::info!(topic = %topic.name, "topic read to its cut");
        Ok(TopicFacts {
            name: topic.name,
            topic_id: topic.topic_id,
            replication_factor: topic.replication_factor,
            configs: topic.configs,
            max_record_bytes,
            partitions,
        })
    }

    /// Polls until every open partition has reached its end.
    fn drain(
        &self,
        consumer: &BaseConsumer<Watch>,
        topic: &str,
        open: &mut BTreeMap<i32, i64>,
        digests: &mut BTreeMap<i32, PartitionDigest>,
        sink: &mut Sink,
    ) -> Result<()> {
        let mut last_progress = Instant::now();
        while !open.is_empty() {
            interrupted(topic)?;
            let message = match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => message,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    if self.reached_cut(consumer, topic, partition, open) {
                        last_progress = Instant::now();
                        self.close(consumer, topic, partition, open);
                    }
                    continue;
                }
                Some(Err(e)) => {
                    self.consumer_error(consumer, topic, open, last_progress, &e)?;
                    continue;
                }
                None => {
                    self.check_stall(consumer, topic, open, last_progress)?;
                    continue;
                }
            };
            let partition = message.partition();
            let Some(&end) = open.get(&partition) else {
                continue;
            };
            last_progress = Instant::now();
            let offset = message.offset();
            if offset >= end {
                self.close(consumer, topic, partition, open);
                continue;
            }
            let digest = digests.get_mut(&partition);
            self.take(topic, &message, offset, digest, &mut sink.buffer)?;
            if offset + 1 >= end {
                self.close(consumer, topic, partition, open);
            }
            if sink.buffer.len() >= CHUNK {
                sink.flush()?;
            }
        }
        Ok(())
    }

    /// Appends one message below the cut to the chunk and its partition's
    /// digest.
    #[inline]
    fn take(
        &self,
        topic: &str,
        message: &rdkafka::message::BorrowedMessage<'_>,
        offset: i64,
        digest: Option<&mut PartitionDigest>,
        buffer: &mut Vec<u8>,
    ) -> Result<()> {
        // The client library panics on a header name that is not UTF-8;
        // the run fails naming the record instead of a lost thread.
        let Ok(record) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| record_of(topic, message)))
        else {
            return Err(Error::source(format!(
                "{}: the record at {topic}/{} offset {offset} has a header name that is not UTF-8, which the Kafka client library cannot read; the backup cannot take this topic",
                self.address,
                message.partition()
            )));
        };
        if let Some(digest) = digest {
            digest.add(&record);
        }
        record.write_line(buffer);
        Ok(())
    }

    /// Whether a reported end of `partition` is its cut.
    ///
    /// The fetch reached the partition's end as it is now. That is at or
    /// past the cut — unless a new leader (after a broker failure) has not
    /// yet caught up to the high watermark the cut saw: then the partition
    /// is not complete, and reading goes on (librdkafka reports the end
    /// again when it gets there). A failed query keeps the old rule.
    fn reached_cut(
        &self,
        consumer: &BaseConsumer<Watch>,
        topic: &str,
        partition: i32,
        open: &BTreeMap<i32, i64>,
    ) -> bool {
        let Some(&end) = open.get(&partition) else {
            return false;
        };
        // Once per partition: one request to its leader.
        let high = consumer
            .fetch_watermarks(topic, partition, self.timeout.min(Duration::from_secs(5)))
            .ok()
            .map(|(_, high)| high);
        if high.is_none_or(|high| high < 0 || high >= end) {
            return true;
        }
        tracing::debug!(
            topic,
            partition,
            end,
            "end of partition reported below the cut; reading on"
        );
        false
    }

    /// A consumer error other than a partition's end: fails the run when
    /// the partition cannot be read to its cut or the cluster has been
    /// silent too long; otherwise librdkafka recovers and reading goes on.
    fn consumer_error(
        &self,
        consumer: &BaseConsumer<Watch>,
        topic: &str,
        open: &BTreeMap<i32, i64>,
        last_progress: Instant,
        e: &KafkaError,
    ) -> Result<()> {
        // Errors are no progress: a dead broker reports one on every
        // reconnection attempt.
        self.check_stall(consumer, topic, open, last_progress)?;
        if let Some(error) = self.fatal(consumer.context(), topic, e) {
            return Err(error);
        }
        tracing::debug!(topic, "consumer: {e}");
        Ok(())
    }

    /// Fails the run when nothing has arrived for longer than the timeout.
    #[inline]
    fn check_stall(
        &self,
        consumer: &BaseConsumer<Watch>,
        topic: &str,
        open: &BTreeMap<i32, i64>,
        last_progress: Instant,
    ) -> Result<()> {
        if last_progress.elapsed() > self.timeout {
            return Err(self.silent(consumer.context(), topic, open));
        }
        Ok(())
    }

    /// A partition is complete: stop fetching it.
    fn close(
        &self,
        consumer: &BaseConsumer<Watch>,
        topic: &str,
        partition: i32,
        open: &mut BTreeMap<i32, i64>,
    ) {
        if open.remove(&partition).is_some() {
            let mut done = TopicPartitionList::new();
            done.add_partition(topic, partition);
            // Pausing only saves fetches; a failure costs nothing.
            let _ = consumer.pause(&done);
        }
    }

    /// The run's error for a consumer error after which the partition
    /// cannot be read to its cut; `None` for errors librdkafka recovers
    /// from (a broker reconnecting).
    fn fatal(&self, watch: &Watch, topic: &str, e: &KafkaError) -> Option<Error> {
        let address = &self.address;
        match e.rdkafka_error_code()? {
            RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset => {
                Some(Error::source(format!(
                    "{address}: reading {topic} failed: {e}; records were deleted (retention or deleteRecords) while the backup read them — run the backup again"
                )))
            }
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition => Some(Error::source(format!(
                "{address}: topic {topic} was deleted while the backup read it ({e})"
            ))),
            RDKafkaErrorCode::TopicAuthorizationFailed => Some(client::failure(
                watch,
                address,
                &format!("reading {topic} (the user may describe it but not read it)"),
                e,
                Error::source,
            )),
            _ => None,
        }
    }

    fn silent(&self, watch: &Watch, topic: &str, open: &BTreeMap<i32, i64>) -> Error {
        let waiting: Vec<String> = open.keys().map(|p| format!("{topic}/{p}")).collect();
        let e = KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut);
        client::failure(
            watch,
            &self.address,
            &format!(
                "reading {} (nothing for {} s)",
                waiting.join(", "),
                self.timeout.as_secs()
            ),
            &e,
            Error::source,
        )
    }
}

/// Checked between polls, so a signal stops the read within one poll's
/// wait instead of after the whole topic.
#[inline]
fn interrupted(topic: &str) -> Result<()> {
    if let Some(signal) = crate::interrupt::received() {
        return Err(Error::source(format!(
            "reading {topic} stopped: {}",
            crate::interrupt::signal_name(signal)
        )));
    }
    Ok(())
}

/// A consumed message as a backup record, borrowing its bytes.
pub(super) fn record_of<'a>(
    topic: &'a str,
    message: &'a rdkafka::message::BorrowedMessage<'a>,
) -> Record<'a> {
    let (timestamp, timestamp_type) = match message.timestamp() {
        Timestamp::NotAvailable => (None, None),
        Timestamp::CreateTime(t) => (Some(t), Some(TimestampType::Create)),
        Timestamp::LogAppendTime(t) => (Some(t), Some(TimestampType::LogAppend)),
    };
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (Cow::Borrowed(h.key), h.value.map(Cow::Borrowed)))
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: Cow::Borrowed(topic),
        partition: message.partition(),
        offset: message.offset(),
        timestamp,
        timestamp_type,
        key: message.key().map(Cow::Borrowed),
        value: message.payload().map(Cow::Borrowed),
        headers,
    }
}

/// The lines on their way to the upload.
struct Sink {
    out: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Sink {
    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK + 64 * 1024));
        self.out
            .blocking_send(Ok(Bytes::from(chunk)))
            // The upload stopped reading: it failed or was interrupted and
            // says why itself.
            .map_err(|_| Error::source("the upload stopped before the topics were read"))
    }
}

/// A bounded channel and the reader the upload takes its bytes from.
pub fn channel() -> (
    mpsc::Sender<io::Result<Bytes>>,
    crate::pipeline::codec::BoxRead,
) {
    crate::engine::common::chunk_channel(CHUNKS_IN_FLIGHT)
}
