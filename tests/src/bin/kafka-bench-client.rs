//! `scripts/bench-kafka`'s librdkafka client: fills the source topics and
//! is the baseline the agent is measured against, with the client settings
//! the agent uses where they matter (fetch sizes and read_committed for the
//! consumer; idempotence, acks=all, lz4, linger and batch size for the
//! producer; see agent/src/engine/kafka/backup.rs and load.rs).
//!
//! ```text
//! kafka-bench-client fill    BOOTSTRAP MB RECORDS_FILE   create the topics, produce ~MB of records, keep them in RECORDS_FILE
//! kafka-bench-client consume BOOTSTRAP TOPIC[,TOPIC…]    read every partition to its end, into /dev/null
//! kafka-bench-client replay  BOOTSTRAP RECORDS_FILE PREFIX   create PREFIX<topic> and produce the same records again
//! kafka-bench-client count   BOOTSTRAP TOPIC[,TOPIC…]    records in the topics (sum of end - start)
//! ```
//!
//! `BENCH_KAFKA_CONSUMER_CONFIG=key=value,…` sets more consumer settings on
//! top (scripts/bench-kafka uses it for librdkafka's default prefetch).
//!
//! Each prints one line `records=N bytes=B` (bytes: keys, values, header
//! names and values), except count (`records=N`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The source topics: name, partitions, share of the bytes (percent).
const TOPICS: [(&str, i32, u64); 3] = [("orders", 6, 50), ("events", 4, 25), ("documents", 2, 25)];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .context("usage: kafka-bench-client fill|consume|replay|count BOOTSTRAP …")
    };
    match arg(0)? {
        "fill" => fill(arg(1)?, arg(2)?.parse().context("MB")?, arg(3)?),
        "consume" => consume(arg(1)?, arg(2)?),
        "replay" => replay(arg(1)?, arg(2)?, arg(3)?),
        "count" => count(arg(1)?, arg(2)?),
        other => bail!("unknown command {other}; use fill, consume, replay or count"),
    }
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "kafka-bench-client")
        .set("socket.timeout.ms", TIMEOUT.as_millis().to_string())
        .set("log_level", "4");
    config
}

/// Counts failed deliveries (the producer is polled by send loops and flush).
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("delivery failed: {e}");
            }
        }
    }
}

/// The agent's restore producer (agent/src/engine/kafka/load.rs).
fn producer(bootstrap: &str, max_record_bytes: u64) -> Result<BaseProducer<Deliveries>> {
    let message_max = (max_record_bytes + (1 << 20)).max(1_000_000);
    base_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "32768")
        .set("message.max.bytes", message_max.to_string())
        .set("message.timeout.ms", TIMEOUT.as_millis().to_string())
        .create_with_context(Deliveries::default())
        .context("creating the producer")
}

fn create_topics(bootstrap: &str, topics: &[(String, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(bootstrap).create().context("admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for result in futures::executor::block_on(admin.create_topics(&new, &options))? {
        if let Err((topic, code)) = result {
            bail!("creating topic {topic}: {code}");
        }
    }
    Ok(())
}

/// One record as kept in the records file.
#[derive(Default)]
struct Rec {
    topic: u8,
    partition: i32,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Rec {
    fn bytes(&self) -> u64 {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len) as u64;
        len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() as u64 + len(v))
                .sum::<u64>()
    }

    fn write(&self, out: &mut impl Write) -> Result<()> {
        out.write_all(&[self.topic])?;
        out.write_all(&self.partition.to_le_bytes())?;
        out.write_all(&self.timestamp.to_le_bytes())?;
        write_opt(out, self.key.as_deref())?;
        write_opt(out, self.value.as_deref())?;
        out.write_all(&(self.headers.len() as u32).to_le_bytes())?;
        for (k, v) in &self.headers {
            write_opt(out, Some(k.as_bytes()))?;
            write_opt(out, v.as_deref())?;
        }
        Ok(())
    }

    /// Reads the next record into `self`; false at the end of the file.
    fn read(&mut self, input: &mut impl Read) -> Result<bool> {
        let mut topic = [0u8; 1];
        match input.read_exact(&mut topic) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.topic = topic[0];
        self.partition = read_u32(input)? as i32;
        let mut ts = [0u8; 8];
        input.read_exact(&mut ts)?;
        self.timestamp = i64::from_le_bytes(ts);
        self.key = read_opt(input)?;
        self.value = read_opt(input)?;
        let n = read_u32(input)?;
        self.headers.clear();
        for _ in 0..n {
            let k = read_opt(input)?.unwrap_or_default();
            let v = read_opt(input)?;
            self.headers.push((String::from_utf8(k)?, v));
        }
        Ok(true)
    }
}

fn write_opt(out: &mut impl Write, bytes: Option<&[u8]>) -> Result<()> {
    match bytes {
        None => out.write_all(&u32::MAX.to_le_bytes())?,
        Some(b) => {
            out.write_all(&(b.len() as u32).to_le_bytes())?;
            out.write_all(b)?;
        }
    }
    Ok(())
}

fn read_u32(input: &mut impl Read) -> Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_opt(input: &mut impl Read) -> Result<Option<Vec<u8>>> {
    let n = read_u32(input)?;
    if n == u32::MAX {
        return Ok(None);
    }
    let mut b = vec![0u8; n as usize];
    input.read_exact(&mut b)?;
    Ok(Some(b))
}

/// Sends one record, serving delivery reports while the local queue is full.
fn send(producer: &BaseProducer<Deliveries>, topic: &str, r: &Rec) -> Result<()> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (key, value) in &r.headers {
        headers = headers.insert(Header {
            key: key.as_str(),
            value: value.as_deref(),
        });
    }
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
        .partition(r.partition)
        .timestamp(r.timestamp)
        .headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        record = record.payload(v.as_slice());
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(10));
                record = back;
            }
            Err((e, _)) => bail!("producing to {topic}: {e}"),
        }
    }
}

fn finish(producer: &BaseProducer<Deliveries>) -> Result<()> {
    producer
        .flush(Duration::from_secs(600))
        .context("flushing the producer")?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} records were not delivered");
    }
    Ok(())
}

/// splitmix64: fast and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: [&str; 40] = [
    "delivery",
    "late",
    "great",
    "product",
    "return",
    "refund",
    "quality",
    "package",
    "damaged",
    "fast",
    "service",
    "again",
    "colour",
    "size",
    "fits",
    "perfect",
    "broken",
    "replacement",
    "order",
    "customer",
    "support",
    "thanks",
    "would",
    "recommend",
    "not",
    "very",
    "happy",
    "with",
    "the",
    "and",
    "arrived",
    "early",
    "box",
    "gift",
    "price",
    "cheap",
    "worth",
    "small",
    "large",
    "missing",
];
const CITIES: [&str; 12] = [
    "Berlin", "Tokyo", "Lagos", "Lima", "Oslo", "Austin", "Pune", "Porto", "Cairo", "Quito",
    "Seoul", "Perth",
];
const STATUS: [&str; 6] = [
    "new",
    "paid",
    "shipped",
    "delivered",
    "refunded",
    "cancelled",
];
const EVENTS: [&str; 6] = [
    "page_view",
    "add_to_cart",
    "search",
    "click",
    "checkout",
    "login",
];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15",
    "okhttp/4.12.0",
];

/// `min` to `min + spread - 1` words.
fn words(rng: &mut Rng, min: u64, spread: u64, out: &mut String) {
    let n = min + rng.below(spread);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(&WORDS));
    }
}

fn hex(rng: &mut Rng, digits: usize) -> String {
    let mut s = String::with_capacity(digits);
    while s.len() < digits {
        s.push_str(&format!("{:016x}", rng.next()));
    }
    s.truncate(digits);
    s
}

/// A record of source topic `topic` (index into TOPICS), number `n`.
fn generate(rng: &mut Rng, topic: u8, n: u64, base_ms: i64) -> Rec {
    use std::fmt::Write as _;
    let timestamp = base_ms + (n / 50) as i64;
    let mut headers = vec![("trace-id".to_string(), Some(hex(rng, 32).into_bytes()))];
    let mut v = String::new();
    let (partition, key) = match topic {
        0 => {
            // An order: JSON of ~0.5–1.5 KB, keyed by customer.
            let customer = rng.below(2_000_000);
            let _ = write!(
                v,
                r#"{{"order_id":"ord-{:016x}","customer_id":{customer},"created_at":{timestamp},"status":"{}","currency":"EUR","items":["#,
                rng.next(),
                rng.pick(&STATUS)
            );
            for i in 0..1 + rng.below(8) {
                let _ = write!(
                    v,
                    r#"{}{{"sku":"SKU-{:05}","qty":{},"unit_price":{}.{:02},"name":""#,
                    if i > 0 { "," } else { "" },
                    rng.below(99_999),
                    1 + rng.below(9),
                    rng.below(500),
                    rng.below(100)
                );
                words(rng, 2, 4, &mut v);
                v.push_str("\"}");
            }
            let _ = write!(
                v,
                r#"],"shipping":{{"city":"{}","zip":"{:05}","method":"standard"}},"comment":""#,
                rng.pick(&CITIES),
                rng.below(99_999)
            );
            words(rng, 4, 60, &mut v);
            v.push_str("\"}");
            headers.push(("content-type".into(), Some(b"application/json".to_vec())));
            headers.push(("producer".into(), Some(b"checkout-svc/4.2.1".to_vec())));
            (
                (customer % 6) as i32,
                format!("customer-{customer:08}").into_bytes(),
            )
        }
        1 => {
            // A click-stream event: ~200–400 bytes, keyed by session;
            // some carry a duplicate header and a null-valued one.
            let session = rng.next();
            let _ = write!(
                v,
                r#"{{"event":"{}","session":"{session:016x}","user":{},"url":"/products/{}?ref={}","ua":"{}","ts":{timestamp},"latency_ms":{}}}"#,
                rng.pick(&EVENTS),
                rng.below(5_000_000),
                rng.below(100_000),
                rng.pick(&WORDS),
                rng.pick(&AGENTS),
                rng.below(2_000)
            );
            headers.push(("schema".into(), Some(b"clickstream.v3".to_vec())));
            if rng.below(10) == 0 {
                headers.push(("retry".into(), None));
                headers.push(("retry".into(), Some(b"1".to_vec())));
            }
            (
                (session % 4) as i32,
                format!("session-{session:016x}").into_bytes(),
            )
        }
        _ => {
            // A document: 4–24 KB, text with an embedded base64 attachment
            // (about a third incompressible).
            let id = n;
            let size = 4096 + rng.below(20 * 1024) as usize;
            let _ = write!(v, "From: {}\nSubject: ", rng.pick(&CITIES));
            words(rng, 8, 1, &mut v);
            v.push_str("\n\n");
            let text_end = size * 2 / 3;
            while v.len() < text_end {
                words(rng, 12, 1, &mut v);
                v.push_str(".\n");
            }
            const B64: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut bits = 0u64;
            let mut left = 0;
            while v.len() < size {
                if left == 0 {
                    bits = rng.next();
                    left = 10;
                }
                v.push(B64[(bits & 63) as usize] as char);
                bits >>= 6;
                left -= 1;
            }
            headers.push((
                "content-type".into(),
                Some(b"text/plain; charset=utf-8".to_vec()),
            ));
            ((id % 2) as i32, format!("doc-{id:010}").into_bytes())
        }
    };
    Rec {
        topic,
        partition,
        timestamp,
        key: Some(key),
        value: Some(v.into_bytes()),
        headers,
    }
}

fn fill(bootstrap: &str, mb: u64, file: &str) -> Result<()> {
    let topics: Vec<(String, i32)> = TOPICS.iter().map(|(n, p, _)| (n.to_string(), *p)).collect();
    create_topics(bootstrap, &topics)?;
    let target = mb * 1_000_000;
    let producer = producer(bootstrap, 64 * 1024)?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(file)?);
    // Header: the topics and their partition counts.
    out.write_all(&[TOPICS.len() as u8])?;
    for (name, partitions, _) in TOPICS {
        write_opt(&mut out, Some(name.as_bytes()))?;
        out.write_all(&(partitions as u32).to_le_bytes())?;
    }
    let base_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 - 3_600_000;
    let mut rng = Rng(0x5eed);
    let mut per_topic = [0u64; 3];
    let (mut records, mut bytes) = (0u64, 0u64);
    while bytes < target {
        // The topic furthest below its share.
        let topic = (0..TOPICS.len())
            .min_by_key(|&t| per_topic[t] * 100 / TOPICS[t].2)
            .unwrap_or(0);
        let r = generate(&mut rng, topic as u8, records, base_ms);
        per_topic[topic] += r.bytes();
        bytes += r.bytes();
        records += 1;
        r.write(&mut out)?;
        send(&producer, TOPICS[topic].0, &r)?;
        if records % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    finish(&producer)?;
    out.flush()?;
    println!("records={records} bytes={bytes}");
    Ok(())
}

fn replay(bootstrap: &str, file: &str, prefix: &str) -> Result<()> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(file)?);
    let mut count = [0u8; 1];
    input.read_exact(&mut count)?;
    let mut topics = Vec::new();
    for _ in 0..count[0] {
        let name = String::from_utf8(read_opt(&mut input)?.unwrap_or_default())?;
        let partitions = read_u32(&mut input)? as i32;
        topics.push((format!("{prefix}{name}"), partitions));
    }
    create_topics(bootstrap, &topics)?;
    // The agent sizes message.max.bytes by the largest record (≤ 24 KiB
    // and its headers here).
    let producer = producer(bootstrap, 25 * 1024)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut r = Rec::default();
    while r.read(&mut input)? {
        send(&producer, &topics[r.topic as usize].0, &r)?;
        records += 1;
        bytes += r.bytes();
        if records % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    finish(&producer)?;
    println!("records={records} bytes={bytes}");
    Ok(())
}

/// The agent's backup consumer (agent/src/engine/kafka/backup.rs), but all
/// partitions of all topics assigned at once, as a plain consumer would.
fn consume(bootstrap: &str, topics: &str) -> Result<()> {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", "kafka-bench-client")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.max.bytes", "8388608")
        .set("receive.message.max.bytes", "268435456")
        .set("check.crcs", "true");
    // BENCH_KAFKA_CONSUMER_CONFIG=key=value,… on top.
    if let Ok(extra) = std::env::var("BENCH_KAFKA_CONSUMER_CONFIG") {
        for kv in extra.split(',').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .context("BENCH_KAFKA_CONSUMER_CONFIG: key=value,…")?;
            config.set(k, v);
        }
    }
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let mut open: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for name in topics.split(',') {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .with_context(|| format!("no topic {name}"))?;
        for p in topic.partitions() {
            let (low, high) = consumer.fetch_watermarks(name, p.id(), TIMEOUT)?;
            if low < high {
                open.insert((name.to_string(), p.id()), high);
                assignment.add_partition_offset(name, p.id(), Offset::Offset(low))?;
            }
        }
    }
    consumer.assign(&assignment)?;
    let mut sink = File::create("/dev/null")?;
    let mut buffer: Vec<u8> = Vec::with_capacity(320 * 1024);
    let (mut records, mut bytes) = (0u64, 0u64);
    let close = |open: &mut BTreeMap<(String, i32), i64>, topic: &str, partition: i32| {
        if open.remove(&(topic.to_string(), partition)).is_some() {
            let mut done = TopicPartitionList::new();
            done.add_partition(topic, partition);
            let _ = consumer.pause(&done);
        }
    };
    while !open.is_empty() {
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // The topic is not named; the positions tell which ended.
                let positions = consumer.position()?;
                for e in positions.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        let key = (e.topic().to_string(), e.partition());
                        if open.get(&key).is_some_and(|end| o >= *end) {
                            close(&mut open, e.topic(), e.partition());
                        }
                    }
                }
                continue;
            }
            Some(Err(e)) => bail!("consuming: {e}"),
            Some(Ok(m)) => m,
        };
        let key = (message.topic().to_string(), message.partition());
        let Some(&end) = open.get(&key) else {
            continue;
        };
        if message.offset() >= end {
            close(&mut open, message.topic(), message.partition());
            continue;
        }
        let before = buffer.len();
        buffer.extend_from_slice(message.key().unwrap_or_default());
        buffer.extend_from_slice(message.payload().unwrap_or_default());
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                buffer.extend_from_slice(h.key.as_bytes());
                buffer.extend_from_slice(h.value.unwrap_or_default());
            }
        }
        bytes += (buffer.len() - before) as u64;
        records += 1;
        if message.offset() + 1 >= end {
            close(&mut open, message.topic(), message.partition());
        }
        if buffer.len() >= 256 * 1024 {
            sink.write_all(&buffer)?;
            buffer.clear();
        }
    }
    sink.write_all(&buffer)?;
    println!("records={records} bytes={bytes}");
    Ok(())
}

fn count(bootstrap: &str, topics: &str) -> Result<()> {
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", "kafka-bench-client")
        .create()
        .context("creating the consumer")?;
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let mut records = 0i64;
    for name in topics.split(',') {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .with_context(|| format!("no topic {name}"))?;
        for p in topic.partitions() {
            let (low, high) = consumer.fetch_watermarks(name, p.id(), TIMEOUT)?;
            records += high - low;
        }
    }
    println!("records={records}");
    Ok(())
}
