//! Producing a backup's records into the target: an idempotent producer,
//! each record to its own partition number in offset order, its key,
//! value, headers and timestamp as they were. Delivery reports are taken
//! in order, so each partition's source→target offsets are known exactly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::client::Watch;
use super::cluster::Cluster;
use super::format::{PartitionDigest, Record};
use super::offsets::OffsetMap;
use crate::error::{Error, Result};
use crate::pipeline::read_ahead::read_ahead;

/// Records awaiting their delivery report.
const IN_FLIGHT: usize = 50_000;
/// And their bytes (`Record::size`): once reading keeps up with the
/// producer, the producer's queue would otherwise stay full (32 MiB).
const IN_FLIGHT_BYTES: u64 = 16 << 20;
/// How far reading (decryption, decompression, hashing) may run ahead of
/// parsing and producing, on another thread.
const READ_AHEAD: usize = 2 << 20;

/// What was restored into one target partition.
#[derive(Debug, Default)]
pub struct Loaded {
    pub offsets: OffsetMap,
    /// The records of the backup being loaded (one member of a chain),
    /// checked against its manifest and reset before the next member.
    pub digest: PartitionDigest,
    /// With `Pass::whole`: every record of the chain, in order, for a
    /// drill to compare with what it reads back.
    pub whole: PartitionDigest,
    /// The newest record timestamp of the whole chain.
    pub newest_timestamp: Option<i64>,
    /// Records without a timestamp (or with 0), which the producer can only
    /// give the time of the restore.
    pub untimed: u64,
}

/// Per `(source topic, partition)`.
pub type LoadedPartitions = BTreeMap<(String, i32), Loaded>;

/// `--resume`: records a stopped restore already wrote into a partition.
#[derive(Debug, Clone)]
pub struct Skip {
    /// The target partition's first offset.
    pub low: i64,
    /// How many of the backup's records it holds.
    pub held: u64,
    /// The content hash of the last of them, which must be the backup's
    /// record at that position (`None`: it lies in a later backup of the
    /// chain).
    pub last: Option<String>,
}

/// One backup (of a chain) to load: where its topics go, what a stopped
/// restore left, which partitions it contributes.
pub struct Pass<'a> {
    pub targets: &'a BTreeMap<String, String>,
    pub skips: &'a Skips,
    pub only: &'a BTreeSet<(String, i32)>,
    /// Also hash every record into `Loaded::whole`.
    pub whole: bool,
}

/// Per `(source topic, partition)`.
pub type Skips = BTreeMap<(String, i32), Skip>;

/// Why a load stopped, with what it had delivered by then.
pub struct Stopped {
    pub error: Error,
    pub loaded: LoadedPartitions,
}

/// The restore's producer. `target_limit` is the smallest
/// `max.message.bytes` among the target topics: librdkafka does not split
/// a batch the broker refuses as too large, so batches stay below it.
pub fn producer(
    cluster: &Cluster,
    max_record_bytes: u64,
    target_limit: Option<u64>,
) -> Result<FutureProducer<Watch>> {
    let mut config = cluster.config.clone();
    let message_max = (max_record_bytes + (1 << 20)).max(1_000_000);
    let batch = target_limit
        .map_or(1_000_000, |limit| limit.saturating_sub(1024).min(1_000_000))
        .max(max_record_bytes + 1024);
    // The queue must hold the largest record, or every send is refused.
    let queue_kib = 32_768u64.max(message_max / 1024 * 2);
    // Time queued locally counts too: room for a slow, healthy cluster.
    let timeout_ms = cluster
        .timeout
        .as_millis()
        .saturating_mul(4)
        .clamp(4_000, 3_600_000);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", batch.to_string())
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", queue_kib.to_string())
        .set("message.max.bytes", message_max.to_string())
        .set("message.timeout.ms", timeout_ms.to_string());
    config
        .create_with_context(Watch::default())
        .map_err(|e| Error::usage(format!("{}: {e}", cluster.address)))
}

/// Reads `input` (the backup's lines) and produces every record of the
/// pass's partitions into its topic, leaving out what its skips say is
/// there already; `loaded` is what earlier backups of the chain loaded.
/// `read_failed` turns a read error into the run's error (store, integrity
/// or interruption).
pub async fn load(
    cluster: &Cluster,
    producer: &FutureProducer<Watch>,
    input: impl AsyncRead + Send + Unpin + 'static,
    pass: &Pass<'_>,
    loaded: LoadedPartitions,
    read_failed: impl Fn(&std::io::Error) -> Error,
) -> std::result::Result<LoadedPartitions, Box<Stopped>> {
    let mut loader = Loader {
        cluster,
        producer,
        waiting: VecDeque::new(),
        waiting_bytes: 0,
        loaded,
        current: None,
    };
    // The read-ahead passes the input's bytes and then its end or error
    // as they were.
    let mut reader = BufReader::with_capacity(256 * 1024, read_ahead(input, READ_AHEAD));
    let mut line = Vec::new();
    // The records' decoded bytes, reused line after line.
    let mut scratch = Vec::new();
    let mut number = 0u64;
    let outcome = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break loader.settle().await,
            Ok(_) => number += 1,
            Err(e) => break Err(read_failed(&e)),
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let taken = match Record::parse_line(text, &mut scratch) {
            Ok(record) => loader.take(&record, pass).await,
            Err(e) => Err(Error::integrity(format!(
                "line {number} of the backup: {e}"
            ))),
        };
        if let Err(e) = taken {
            break Err(e);
        }
    };
    match outcome {
        Ok(()) => Ok(loader.loaded),
        Err(error) => {
            // What was sent is waited for, so the report counts it.
            loader.settle().await.ok();
            Err(Box::new(Stopped {
                error,
                loaded: loader.loaded,
            }))
        }
    }
}

/// A `(source topic, partition)`, shared by the partition's records.
type Key = Arc<(String, i32)>;

/// The load's state: deliveries awaited in order, and what each partition
/// received.
struct Loader<'a> {
    cluster: &'a Cluster,
    producer: &'a FutureProducer<Watch>,
    waiting: VecDeque<(Key, i64, u64, DeliveryFuture)>,
    waiting_bytes: u64,
    loaded: LoadedPartitions,
    /// The key of the partition the last record was of: records come in
    /// runs of one partition, so most need no key of their own.
    current: Option<Key>,
}

impl Loader<'_> {
    /// Counts and hashes one record, then produces it unless a stopped
    /// restore wrote it already.
    async fn take(&mut self, record: &Record<'_>, pass: &Pass<'_>) -> Result<()> {
        let Some(topic) = pass.targets.get(record.topic.as_ref()) else {
            return Ok(());
        };
        let key = match &self.current {
            Some(k) if k.1 == record.partition && k.0 == record.topic.as_ref() => Arc::clone(k),
            _ => {
                let k = Arc::new((record.topic.to_string(), record.partition));
                self.current = Some(Arc::clone(&k));
                k
            }
        };
        if !pass.only.contains(key.as_ref()) {
            return Ok(());
        }
        // A new key only for a partition's first record.
        let here = match self.loaded.get_mut(key.as_ref()) {
            Some(here) => here,
            None => self.loaded.entry(key.as_ref().clone()).or_default(),
        };
        let index = here.digest.records;
        here.digest.add(record);
        if pass.whole {
            here.whole.add(record);
        }
        if let Some(t) = record.timestamp {
            here.newest_timestamp = Some(here.newest_timestamp.map_or(t, |n| n.max(t)));
        }
        if record.timestamp.is_none_or(|t| t <= 0) {
            here.untimed += 1;
        }
        if let Some(skip) = pass.skips.get(key.as_ref()).filter(|s| index < s.held) {
            // Already in the target from the stopped run: where it landed
            // is known, and the last of them must be this backup's record.
            here.offsets.push(record.offset, skip.low + index as i64);
            let last = skip.last.as_ref().filter(|_| index + 1 == skip.held);
            if last.is_some_and(|last| *last != one_hash(record)) {
                return Err(Error::usage(format!(
                    "--resume: {topic}/{} holds records that are not this backup's (the record at offset {} differs from the backup's record {} of the partition); it was not written by a restore of this backup",
                    record.partition,
                    skip.low + index as i64,
                    index + 1
                )));
            }
            return Ok(());
        }
        self.produce(key, topic, record).await
    }

    async fn produce(&mut self, key: Key, topic: &str, record: &Record<'_>) -> Result<()> {
        let mut delivery = send(self.producer, topic, record);
        // A full queue: wait for the oldest deliveries, then try again.
        while let Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) = delivery {
            if self.waiting.is_empty() {
                return Err(Error::target(format!(
                    "{}: the producer's queue cannot take a record of {topic} ({} bytes)",
                    self.cluster.address,
                    record.size()
                )));
            }
            self.settle_one().await?;
            delivery = send(self.producer, topic, record);
        }
        let future = delivery.map_err(|e| {
            Error::target(format!(
                "{}: producing to {topic} failed: {e}",
                self.cluster.address
            ))
        })?;
        let size = record.size();
        self.waiting.push_back((key, record.offset, size, future));
        self.waiting_bytes += size;
        while self.waiting.len() > IN_FLIGHT || self.waiting_bytes > IN_FLIGHT_BYTES {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Waits for every outstanding delivery, in order.
    async fn settle(&mut self) -> Result<()> {
        let mut first_error = None;
        while !self.waiting.is_empty() {
            if let Err(e) = self.settle_one().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits for the oldest delivery and records where it landed.
    async fn settle_one(&mut self) -> Result<()> {
        let Some((key, source_offset, size, future)) = self.waiting.pop_front() else {
            return Ok(());
        };
        self.waiting_bytes = self.waiting_bytes.saturating_sub(size);
        // A signal must not wait for deliveries (up to message.timeout.ms).
        let delivered = tokio::select! {
            delivered = future => delivered,
            () = crate::interrupt::cancelled() => {
                return Err(Error::target(format!(
                    "stopped while {}/{} was being written",
                    key.0, key.1
                )));
            }
        };
        let address = &self.cluster.address;
        match delivered {
            Ok(Ok(delivery)) => {
                let here = match self.loaded.get_mut(key.as_ref()) {
                    Some(here) => here,
                    None => self.loaded.entry(key.as_ref().clone()).or_default(),
                };
                here.offsets.push(source_offset, delivery.offset);
                Ok(())
            }
            Ok(Err((e, _))) => Err(Error::target(format!(
                "{address}: a record of {}/{} (offset {source_offset}) was not delivered: {e}",
                key.0, key.1
            ))),
            Err(_) => Err(Error::target(format!(
                "{address}: the producer stopped before a record of {}/{} was delivered",
                key.0, key.1
            ))),
        }
    }
}

/// The content hash of one record, as `Cluster::record_hash` computes it.
fn one_hash(record: &Record<'_>) -> String {
    let mut digest = PartitionDigest::default();
    digest.add(record);
    digest.hex()
}

fn send(
    producer: &FutureProducer<Watch>,
    topic: &str,
    record: &Record<'_>,
) -> std::result::Result<DeliveryFuture, KafkaError> {
    let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(record.partition);
    if let Some(key) = record.key.as_deref() {
        out = out.key(key);
    }
    if let Some(value) = record.value.as_deref() {
        out = out.payload(value);
    }
    if let Some(t) = record.timestamp {
        out = out.timestamp(t);
    }
    if !record.headers.is_empty() {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k.as_ref(),
                    value: v.as_deref(),
                })
            },
        );
        out = out.headers(headers);
    }
    producer.send_result(out).map_err(|(e, _)| e)
}
