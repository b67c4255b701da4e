//! A throwaway Apache Kafka 4.1 broker (KRaft: one JVM is broker and
//! controller) on free loopback ports, with a PLAINTEXT listener and a
//! SASL_PLAINTEXT one (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for
//! [`SASL_USER`]), its data in a temporary directory. The jars come from
//! `scripts/lib/kafka-jars` (run by `scripts/install-test-deps`).
//!
//! Beside the server, synchronous fixture helpers built on `rdkafka`: create
//! topics, produce records (idempotent, or in a committed or aborted
//! transaction) with exact keys, values, timestamps and headers, read a topic
//! back under `read_committed`, commit and read group offsets, and hold a
//! group member.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use crate::ports::free_port;
use crate::process::require_binary;

/// The Kafka version `scripts/lib/kafka-jars` fetches.
pub const KAFKA_VERSION: &str = "4.1.1";
/// The user of the SASL_PLAINTEXT listener (PLAIN and both SCRAM mechanisms).
pub const SASL_USER: &str = "backup";
/// Its password: distinctive, so tests can assert it never appears in output.
pub const SASL_PASSWORD: &str = "kafka-pw-Zq81xT";

/// Any fixed KRaft cluster id will do: every broker is a cluster of its own.
const CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qk";
const INSTALL: &str = "scripts/install-test-deps";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// A record to produce, to an explicit partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestRecord {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// CreateTime in milliseconds; `None` lets the producer stamp it.
    pub timestamp: Option<i64>,
    /// In order; duplicate keys and null values are kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    /// "create" or "log_append".
    pub timestamp_type: String,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record as a restore must keep it: everything but its offset (and, for
/// a LogAppendTime topic, the timestamp's type).
pub type Content = (
    i32,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    Vec<(String, Option<Vec<u8>>)>,
);

impl ReadRecord {
    pub fn content(&self) -> Content {
        (
            self.partition,
            self.key.clone(),
            self.value.clone(),
            self.timestamp,
            self.headers.clone(),
        )
    }
}

/// A subscribed consumer polling in a thread: the group has an active member
/// until this is dropped (the consumer then leaves the group).
pub struct GroupMember {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running broker; stopped (SIGTERM, then SIGKILL after 10 s) on drop.
pub struct Kafka {
    /// "127.0.0.1:<port>", the PLAINTEXT listener.
    pub bootstrap: String,
    /// "127.0.0.1:<port>", the SASL_PLAINTEXT listener.
    pub sasl_bootstrap: String,
    java: PathBuf,
    jars: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Kafka {
    /// Formats a fresh data directory and starts the broker; returns once it
    /// serves requests. Fails with the install command when the jars or java
    /// are missing.
    pub fn start() -> Kafka {
        let jars = jars_dir();
        let java = require_binary(
            "java",
            &[],
            "apt-get install -y openjdk-17-jre-headless; then scripts/install-test-deps",
        );
        let dir = tempfile::Builder::new()
            .prefix("vertice-kafka-")
            .tempdir()
            .expect("kafka tempdir");
        let port = free_port();
        let sasl_port = free_port();
        let controller_port = free_port();
        let data = dir.path().join("data");
        std::fs::write(
            dir.path().join("server.properties"),
            server_properties(port, sasl_port, controller_port, &data),
        )
        .expect("write server.properties");
        std::fs::write(
            dir.path().join("log4j2.properties"),
            log4j_properties(&dir.path().join("server.log")),
        )
        .expect("write log4j2.properties");
        let mut kafka = Kafka {
            bootstrap: format!("127.0.0.1:{port}"),
            sasl_bootstrap: format!("127.0.0.1:{sasl_port}"),
            java,
            jars,
            child: None,
            dir,
        };
        kafka.format();
        kafka.spawn_and_wait();
        kafka
    }

    /// The broker's log (log4j), for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Kills the broker with SIGKILL (a crash, for fault tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same ports and data (stopping it
    /// first if it still runs); returns once it serves requests.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// A client configuration for the PLAINTEXT listener.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("socket.timeout.ms", "10000")
            .set("log_level", "3");
        config
    }

    /// A client configuration for the SASL_PLAINTEXT listener.
    pub fn sasl_client_config(
        &self,
        mechanism: &str,
        username: &str,
        password: &str,
    ) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.sasl_bootstrap)
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", username)
            .set("sasl.password", password)
            .set("socket.timeout.ms", "10000")
            .set("log_level", "3");
        config
    }

    /// Connects to the SASL listener with `mechanism` ("PLAIN",
    /// "SCRAM-SHA-256" or "SCRAM-SHA-512") and fetches the cluster metadata;
    /// the error as text when authentication fails (reported as soon as the
    /// client sees it) or nothing answers within 15 s.
    pub fn sasl_check(
        &self,
        mechanism: &str,
        username: &str,
        password: &str,
    ) -> Result<(), String> {
        let client: BaseProducer<RecordingContext> = self
            .sasl_client_config(mechanism, username, password)
            .create_with_context(RecordingContext::default())
            .map_err(|e| format!("creating a SASL client: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let attempt = client
                .client()
                .fetch_metadata(None, Duration::from_millis(500));
            if attempt.is_ok() {
                return Ok(());
            }
            // Serves the error events (an authentication failure is one).
            client.poll(Duration::ZERO);
            let errors = client
                .context()
                .client_errors
                .lock()
                .expect("client errors lock")
                .clone();
            if let Some(auth) = errors.iter().find(|e| e.contains("uthentication")) {
                return Err(auth.clone());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no metadata within 15 s: {attempt:?}; errors {errors:?}"
                ));
            }
        }
    }

    /// Every topic the broker has.
    pub fn topics(&self) -> Vec<String> {
        let consumer: BaseConsumer = self.client_config().create().expect("consumer");
        let metadata = consumer
            .fetch_metadata(None, OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("metadata: {e}"));
        metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    /// Creates a topic with replication factor 1 and the given configs, and
    /// waits until every partition has a leader.
    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin = self.admin();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
        let results = futures::executor::block_on(admin.create_topics([&topic], &options))
            .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("creating topic {topic}: {code}");
            }
        }
        let consumer = self.consumer(&[]);
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            let ready = (0..partitions).all(|p| {
                consumer
                    .fetch_watermarks(name, p, Duration::from_secs(5))
                    .is_ok()
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} had no leaders within {OP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Produces `records` with an idempotent producer, in order, and flushes;
    /// panics on any delivery error.
    pub fn produce(&self, topic: &str, records: &[TestRecord]) {
        let producer = self.producer(&[("enable.idempotence", "true")]);
        send_all(&producer, topic, records);
        flush(&producer, topic);
    }

    /// Produces `records` in one transaction, then commits or aborts it.
    pub fn produce_transaction(&self, topic: &str, records: &[TestRecord], commit: bool) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "vertice-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let producer = self.producer(&[("transactional.id", id.as_str())]);
        producer
            .init_transactions(OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("init_transactions: {e}"));
        producer
            .begin_transaction()
            .unwrap_or_else(|e| panic!("begin_transaction: {e}"));
        send_all(&producer, topic, records);
        flush(&producer, topic);
        if commit {
            producer
                .commit_transaction(OP_TIMEOUT)
                .unwrap_or_else(|e| panic!("commit_transaction: {e}"));
        } else {
            producer
                .abort_transaction(OP_TIMEOUT)
                .unwrap_or_else(|e| panic!("abort_transaction: {e}"));
        }
    }

    /// Every record of every partition from the beginning up to the end
    /// (the last stable offset: read_committed, so aborted records are
    /// skipped), sorted by partition then offset.
    pub fn read_all(&self, topic: &str) -> Vec<ReadRecord> {
        let consumer = self.consumer(&[
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "true"),
        ]);
        // With read_committed the high watermark librdkafka reports is the
        // last stable offset.
        let mut ends = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in self.partitions(topic) {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, OP_TIMEOUT)
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
            if high > low {
                ends.insert(p, high);
                assignment
                    .add_partition_offset(topic, p, Offset::Offset(low))
                    .expect("add partition");
            }
        }
        let mut records = Vec::new();
        if ends.is_empty() {
            return records;
        }
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + OP_TIMEOUT;
        let mut pending: BTreeMap<i32, i64> = ends.clone();
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "reading {topic}: partitions (partition, end) {pending:?} did not reach their end \
                 within {OP_TIMEOUT:?}; read {} records",
                records.len()
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    let p = m.partition();
                    if m.offset() < ends.get(&p).copied().unwrap_or(0) {
                        records.push(read_record(&m));
                    }
                    if m.offset() + 1 >= ends.get(&p).copied().unwrap_or(0) {
                        pending.remove(&p);
                    }
                }
            }
            // The position passes control records and aborted batches too.
            if let Ok(position) = consumer.position() {
                for e in position.elements_for_topic(topic) {
                    if let Offset::Offset(o) = e.offset() {
                        if pending.get(&e.partition()).is_some_and(|end| o >= *end) {
                            pending.remove(&e.partition());
                        }
                    }
                }
            }
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// Commits offsets for `group` (which must have no active member) with a
    /// standalone consumer: assign and commit, no subscription.
    pub fn commit_offsets(&self, group: &str, offsets: &[(&str, i32, i64)]) {
        let consumer = self.consumer(&[("group.id", group)]);
        let mut tpl = TopicPartitionList::new();
        for (topic, p, o) in offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .expect("add partition");
        }
        consumer.assign(&tpl).expect("assign");
        consumer
            .commit(&tpl, CommitMode::Sync)
            .unwrap_or_else(|e| panic!("committing offsets for group {group}: {e}"));
    }

    /// The committed offsets of `group` on `topic`, (partition, offset),
    /// sorted; partitions without a committed offset are left out.
    pub fn committed(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        let consumer = self.consumer(&[("group.id", group)]);
        let mut tpl = TopicPartitionList::new();
        for p in self.partitions(topic) {
            tpl.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("committed offsets of group {group}: {e}"));
        let mut out: Vec<(i32, i64)> = committed
            .elements_for_topic(topic)
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// The group's state as the broker reports it ("Stable", "Empty",
    /// "Dead" for an unknown group, ...).
    pub fn group_state(&self, group: &str) -> Option<String> {
        let consumer = self.consumer(&[]);
        let list = consumer
            .fetch_group_list(Some(group), OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("describing group {group}: {e}"));
        list.groups()
            .iter()
            .find(|g| g.name() == group)
            .map(|g| g.state().to_string())
    }

    /// Starts a consumer subscribed to `topic` in `group`, polling in a
    /// thread until the handle is dropped; returns once the group is Stable
    /// with it as a member.
    pub fn hold_member(&self, group: &str, topic: &str) -> GroupMember {
        let config = {
            let mut c = self.client_config();
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000");
            c
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (assigned_tx, assigned_rx) = mpsc::channel::<Result<(), String>>();
        let thread_stop = stop.clone();
        let topic_name = topic.to_string();
        let thread = std::thread::spawn(move || {
            let consumer: BaseConsumer = match config.create() {
                Ok(c) => c,
                Err(e) => {
                    let _ = assigned_tx.send(Err(format!("creating the consumer: {e}")));
                    return;
                }
            };
            if let Err(e) = consumer.subscribe(&[&topic_name]) {
                let _ = assigned_tx.send(Err(format!("subscribing: {e}")));
                return;
            }
            let mut told = false;
            while !thread_stop.load(Ordering::SeqCst) {
                let _ = consumer.poll(Duration::from_millis(100));
                if !told && consumer.assignment().is_ok_and(|a| a.count() > 0) {
                    told = true;
                    let _ = assigned_tx.send(Ok(()));
                }
            }
            consumer.unsubscribe();
        });
        let member = GroupMember {
            stop,
            thread: Some(thread),
        };
        match assigned_rx.recv_timeout(OP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("group member of {group}: {e}"),
            Err(_) => panic!("group member of {group} had no assignment within {OP_TIMEOUT:?}"),
        }
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            let state = self.group_state(group);
            if state.as_deref() == Some("Stable") {
                return member;
            }
            assert!(
                Instant::now() < deadline,
                "group {group} was not Stable within {OP_TIMEOUT:?} (state {state:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A topic-level config override (describe_configs entries whose source
    /// is the topic); `None` when the topic does not set `key` (broker
    /// defaults are not reported).
    pub fn topic_config(&self, topic: &str, key: &str) -> Option<String> {
        let admin = self.admin();
        let options = AdminOptions::new().request_timeout(Some(OP_TIMEOUT));
        let results = futures::executor::block_on(
            admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options),
        )
        .unwrap_or_else(|e| panic!("describing the configs of {topic}: {e}"));
        let resource = results
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no config result for {topic}"))
            .unwrap_or_else(|e| panic!("describing the configs of {topic}: {e}"));
        resource
            .entries
            .into_iter()
            .find(|e| e.name == key && e.source == ConfigSource::DynamicTopic)
            .and_then(|e| e.value)
    }

    /// (partition, low watermark, high watermark) of every partition,
    /// sorted by partition (read_uncommitted: the high watermark includes
    /// open and aborted transactions).
    pub fn offsets(&self, topic: &str) -> Vec<(i32, i64, i64)> {
        let consumer = self.consumer(&[]);
        self.partitions(topic)
            .into_iter()
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, OP_TIMEOUT)
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
                (p, low, high)
            })
            .collect()
    }

    /// The topic's partition ids, sorted; empty when the topic does not
    /// exist (so `read_all`, `offsets` and `committed` of a missing topic are
    /// empty too).
    pub fn partitions(&self, topic: &str) -> Vec<i32> {
        let consumer = self.consumer(&[]);
        let metadata = consumer
            .fetch_metadata(Some(topic), OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Vec::new();
        };
        if let Some(e) = t.error() {
            match RDKafkaErrorCode::from(e) {
                RDKafkaErrorCode::UnknownTopicOrPartition => return Vec::new(),
                code => panic!("metadata of {topic}: {code:?}"),
            }
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort();
        ids
    }

    /// Deletes the records of `topic`/`partition` below `before` (Kafka's
    /// deleteRecords, as retention would), so the log starts there.
    pub fn delete_records(&self, topic: &str, partition: i32, before: i64) {
        let admin = self.admin();
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(before))
            .expect("offset");
        let options = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
        let result = futures::executor::block_on(admin.delete_records(&list, &options))
            .unwrap_or_else(|e| panic!("deleting records of {topic}/{partition}: {e}"));
        for e in result.elements() {
            if let Err(err) = e.error() {
                panic!("deleting records of {topic}/{partition}: {err}");
            }
        }
    }

    /// Deletes a topic and waits until the cluster no longer lists it, so
    /// it can be created again under the same name.
    pub fn delete_topic(&self, name: &str) {
        let admin = self.admin();
        let options = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
        let results = futures::executor::block_on(admin.delete_topics(&[name], &options))
            .unwrap_or_else(|e| panic!("deleting topic {name}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("deleting topic {topic}: {code}");
            }
        }
        let deadline = Instant::now() + OP_TIMEOUT;
        while self.topics().iter().any(|t| t == name) {
            assert!(
                Instant::now() < deadline,
                "topic {name} still listed {OP_TIMEOUT:?} after its deletion"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("kafka admin client")
    }

    /// A consumer without a subscription (a unique group id unless given).
    fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut config = self.client_config();
        config
            .set(
                "group.id",
                format!(
                    "vertice-test-reader-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                ),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config.create().expect("kafka consumer")
    }

    fn producer(&self, extra: &[(&str, &str)]) -> BaseProducer<RecordingContext> {
        let mut config = self.client_config();
        config.set("linger.ms", "0").set("acks", "all");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config
            .create_with_context(RecordingContext::default())
            .expect("kafka producer")
    }

    fn classpath(&self) -> String {
        format!("{}/*", self.jars.display())
    }

    fn format(&self) {
        let scram = |m: &str| format!("{m}=[name={SASL_USER},password={SASL_PASSWORD}]");
        let output = Command::new(&self.java)
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.tools.StorageTool")
            .arg("format")
            .arg("-t")
            .arg(CLUSTER_ID)
            .arg("-c")
            .arg(self.dir.path().join("server.properties"))
            .arg("--add-scram")
            .arg(scram("SCRAM-SHA-256"))
            .arg("--add-scram")
            .arg(scram("SCRAM-SHA-512"))
            .output()
            .expect("running kafka.tools.StorageTool format");
        assert!(
            output.status.success(),
            "kafka.tools.StorageTool format failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn spawn_and_wait(&mut self) {
        let log = self.log_path();
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let stdout_path = self.dir.path().join("stdout.log");
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_path)
            .expect("open kafka stdout.log");
        let stderr = stdout.try_clone().expect("clone stdout.log");
        let child = Command::new(&self.java)
            .args(["-Xmx256m", "-Xms256m", "-XX:+UseSerialGC"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.Kafka")
            .arg(self.dir.path().join("server.properties"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("starting kafka (java)");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if read_from(&log, from).contains("Kafka Server started") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "kafka exited with {status} while starting; {}",
                    self.diagnostics()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "kafka was not ready within {START_TIMEOUT:?}; {}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn diagnostics(&self) -> String {
        let tail = |p: &Path, n: usize| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "tail of {}:\n{}\nstdout/stderr:\n{}",
            self.log_path().display(),
            tail(&self.log_path(), 60),
            tail(&self.dir.path().join("stdout.log"), 30)
        )
    }

    /// SIGTERM, up to 10 s to exit, then SIGKILL.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::process::terminate(&mut child, STOP_TIMEOUT);
        }
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the jars are: `VERTICE_KAFKA_JARS`, or the cache
/// `scripts/lib/kafka-jars` fills; fails with the install command.
fn jars_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VERTICE_KAFKA_JARS") {
        return PathBuf::from(dir);
    }
    let home = PathBuf::from(format!("/var/cache/vertice/kafka-{KAFKA_VERSION}"));
    let jars = home.join("jars");
    let complete = home.join(".complete").is_file()
        && jars
            .join(format!("kafka_2.13-{KAFKA_VERSION}.jar"))
            .is_file();
    assert!(
        complete,
        "the Apache Kafka {KAFKA_VERSION} jars are not installed in {}; run `{INSTALL}` \
         (or scripts/lib/kafka-jars)",
        jars.display()
    );
    jars
}

fn server_properties(port: u16, sasl_port: u16, controller_port: u16, data: &Path) -> String {
    let jaas_plain = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required \
         user_{SASL_USER}=\"{SASL_PASSWORD}\";"
    );
    let jaas_scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas_plain}
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={jaas_scram}
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={jaas_scram}
log.dirs={data}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.check.interval.ms=5000
",
        data = data.display()
    )
}

/// Everything at INFO to a file (the readiness line is INFO); nothing on
/// stdout.
fn log4j_properties(file: &Path) -> String {
    format!(
        "status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
",
        file.display()
    )
}

fn read_from(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_string(&mut text);
        }
    }
    text
}

/// Collects delivery errors (the producer is polled by flush) and client
/// errors (authentication failures among them).
#[derive(Default)]
struct RecordingContext {
    errors: Mutex<Vec<String>>,
    client_errors: Mutex<Vec<String>>,
}

impl ClientContext for RecordingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.client_errors
            .lock()
            .expect("client errors lock")
            .push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            self.errors
                .lock()
                .expect("delivery errors lock")
                .push(format!("partition {}: {e}", m.partition()));
        }
    }
}

fn send_all(producer: &BaseProducer<RecordingContext>, topic: &str, records: &[TestRecord]) {
    for r in records {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: value.as_deref(),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(r.partition)
            .headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        if let Some(ts) = r.timestamp {
            record = record.timestamp(ts);
        }
        let mut pending = record;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                // The local queue is full: serve delivery reports and retry.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(100));
                    pending = back;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
}

fn flush(producer: &BaseProducer<RecordingContext>, topic: &str) {
    producer
        .flush(OP_TIMEOUT)
        .unwrap_or_else(|e| panic!("flushing to {topic}: {e}"));
    let errors = producer
        .context()
        .errors
        .lock()
        .expect("delivery errors lock")
        .clone();
    assert!(errors.is_empty(), "delivery to {topic} failed: {errors:?}");
}

fn read_record(m: &rdkafka::message::BorrowedMessage<'_>) -> ReadRecord {
    let (timestamp, timestamp_type) = match m.timestamp() {
        Timestamp::CreateTime(t) => (t, "create"),
        Timestamp::LogAppendTime(t) => (t, "log_append"),
        Timestamp::NotAvailable => (-1, "none"),
    };
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    ReadRecord {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp,
        timestamp_type: timestamp_type.to_string(),
        headers,
    }
}
