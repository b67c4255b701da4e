//! Kafka on a real Apache Kafka 4.1 broker (KRaft): a backup takes every
//! committed record exactly (null and empty keys, tombstones, duplicate and
//! null headers, timestamps), never an aborted one and never one produced
//! after its cut; a restore recreates topics with their configs and
//! translates consumer-group offsets; preflight refusals write nothing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use vertice_tests::kafka::{Kafka, ReadRecord, TestRecord, SASL_PASSWORD, SASL_USER};
use vertice_tests::{Agent, TestStore};

/// Produces to `topic` from another thread until `stop` is set.
fn keep_producing(
    kafka: &Kafka,
    topic: &'static str,
    partition: i32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = kafka.client_config().create().expect("producer");
    std::thread::spawn(move || {
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let record = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .key(b"late")
                .payload(b"late");
            if producer.send(record).is_ok() {
                sent += 1;
            }
            producer.poll(Duration::from_millis(5));
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        sent
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn record(partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> TestRecord {
    TestRecord {
        partition,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        ..TestRecord::default()
    }
}

/// The manifest of the newest backup under `name`.
fn manifest(store: &TestStore, name: &str) -> Value {
    store
        .manifests(&format!("kafka/default/{name}/"))
        .pop()
        .expect("a manifest")
}

fn end_offsets(manifest: &Value, topic: &str) -> BTreeMap<i32, i64> {
    manifest["source"]["kafka"]["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == topic)
        .expect("topic in manifest")["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().expect("partition") as i32,
                p["end_offset"].as_i64().expect("end"),
            )
        })
        .collect()
}

/// The orders topic: every kind of record Kafka can hold, across three
/// partitions (one left empty), with a committed and an aborted transaction.
fn fill_orders(kafka: &Kafka) {
    kafka.create_topic("orders", 3, &[("retention.ms", "259200000")]);
    let day_ago = now_ms() - 24 * 3600 * 1000;
    let mut first = record(0, Some(b"k1"), Some(b"v1"));
    first.timestamp = Some(day_ago);
    first.headers = vec![
        ("trace".into(), Some(b"a".to_vec())),
        ("trace".into(), None),
        ("trace".into(), Some(b"b".to_vec())),
        ("".into(), Some(Vec::new())),
    ];
    let mut binary = record(0, Some(&[0, 255, 10]), Some(&[0, 0, 0, 10, 13]));
    binary.timestamp = Some(day_ago + 1);
    kafka.produce(
        "orders",
        &[
            first,
            record(0, None, Some(b"no key")),
            record(0, Some(b""), Some(b"empty key")),
            record(0, Some(b"k1"), None),
            record(0, Some(b"k2"), Some(b"")),
            binary,
        ],
    );
    let many: Vec<TestRecord> = (0..40)
        .map(|i| {
            record(
                1,
                Some(format!("key-{i}").as_bytes()),
                Some(format!("value-{i}").as_bytes()),
            )
        })
        .collect();
    kafka.produce("orders", &many[..20]);
    kafka.produce_transaction(
        "orders",
        &[
            record(1, Some(b"tx"), Some(b"committed-1")),
            record(1, Some(b"tx"), Some(b"committed-2")),
        ],
        true,
    );
    kafka.produce_transaction(
        "orders",
        &[
            record(0, Some(b"tx"), Some(b"aborted-0")),
            record(1, Some(b"tx"), Some(b"aborted-1")),
        ],
        false,
    );
    kafka.produce("orders", &many[20..]);
}

#[test]
fn every_record_group_offset_and_config_survives_a_round_trip() {
    let kafka = Kafka::start();
    let store = TestStore::s3();
    let agent = Agent::new();
    fill_orders(&kafka);
    kafka.create_topic("events", 1, &[("message.timestamp.type", "LogAppendTime")]);
    kafka.produce(
        "events",
        &(0..5)
            .map(|i| record(0, Some(b"e"), Some(format!("{i}").as_bytes())))
            .collect::<Vec<_>>(),
    );
    kafka.create_topic("ignored", 1, &[]);
    kafka.produce("ignored", &[record(0, None, Some(b"not taken"))]);
    let source = kafka.read_all("orders");
    let p1: Vec<&ReadRecord> = source.iter().filter(|r| r.partition == 1).collect();
    assert!(
        p1[22].offset - p1[21].offset > 1,
        "the aborted transaction left a gap"
    );
    // Committed mid-partition, inside the gap the aborted transaction left, and at the end.
    kafka.commit_offsets(
        "billing",
        &[
            ("orders", 0, 2),
            ("orders", 1, p1[22].offset - 1),
            ("events", 0, 5),
        ],
    );
    let env = store.env();
    let url = store.url("kafka");
    let address = format!("kafka://{}", kafka.bootstrap);

    // Records produced while the backup runs are not in it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = keep_producing(&kafka, "orders", 2, stop.clone());
    let backup = agent.run(
        &[
            "backup",
            "--source",
            &address,
            "--topics",
            "orders,events",
            "--to",
            &url,
            "--name",
            "kafka-rt",
        ],
        &env,
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let late = writer.join().expect("writer");
    backup.assert_ok();
    assert!(late > 0, "the writer produced during the backup");

    let m = manifest(&store, "kafka-rt");
    assert_eq!(m["source"]["kind"], "kafka", "{m}");
    let topics: Vec<&str> = m["source"]["kafka"]["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(topics, ["events", "orders"]);
    let orders = &m["source"]["kafka"]["topics"][1];
    assert_eq!(
        orders["configs"],
        serde_json::json!({"retention.ms": "259200000"}),
        "only the topic's own configs: {orders}"
    );
    assert_eq!(m["source"]["kafka"]["groups"][0]["group"], "billing", "{m}");
    let ends = end_offsets(&m, "orders");
    // What the backup must hold: every committed record below each end.
    let after = kafka.read_all("orders");
    let expected: Vec<&ReadRecord> = after
        .iter()
        .filter(|r| r.offset < ends[&r.partition])
        .collect();
    assert!(
        kafka
            .read_all("orders")
            .iter()
            .any(|r| r.partition == 2 && r.offset >= ends[&2]),
        "records were produced after the cut (and are not in the backup)"
    );
    let late_taken = expected
        .iter()
        .filter(|r| r.value.as_deref() == Some(&b"late"[..]))
        .count();
    assert_eq!(
        expected.len() - late_taken,
        6 + 42,
        "source records below the cut"
    );
    let partition_counts: Vec<u64> = orders["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["records"].as_u64().expect("records"))
        .collect();
    assert_eq!(partition_counts.iter().sum::<u64>(), expected.len() as u64);
    agent
        .run(&["verify", "--from", &url, "--name", "kafka-rt"], &env)
        .assert_ok();

    let restore = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--name",
            "kafka-rt",
            "--to",
            &address,
            "--topic-map",
            "orders=orders-restored,events=events-restored",
        ],
        &env,
    );
    restore.assert_ok();
    let restored = kafka.read_all("orders-restored");
    assert_eq!(
        restored.iter().map(ReadRecord::content).collect::<Vec<_>>(),
        expected.iter().map(|r| r.content()).collect::<Vec<_>>(),
        "every field of every record, in order"
    );
    assert!(!restored.iter().any(|r| r
        .value
        .as_deref()
        .is_some_and(|v| v.starts_with(b"aborted"))));
    let events = kafka.read_all("events");
    let events_restored = kafka.read_all("events-restored");
    assert_eq!(
        events_restored
            .iter()
            .map(ReadRecord::content)
            .collect::<Vec<_>>(),
        events.iter().map(ReadRecord::content).collect::<Vec<_>>(),
        "LogAppendTime timestamps are kept"
    );
    assert!(events.iter().all(|r| r.timestamp_type == "log_append"));

    // Configs: the topic's own ones back in place, retention no longer suspended.
    assert_eq!(
        kafka
            .topic_config("orders-restored", "retention.ms")
            .as_deref(),
        Some("259200000")
    );
    assert_eq!(
        kafka
            .topic_config("events-restored", "message.timestamp.type")
            .as_deref(),
        Some("LogAppendTime")
    );
    assert_eq!(kafka.partitions("orders-restored").len(), 3);

    // Group offsets: the position of the first restored record at or after
    // the committed one (restored offsets have no gaps: its index).
    let translated = |partition: i32, committed: i64| {
        restored
            .iter()
            .filter(|r| r.partition == partition)
            .zip(expected.iter().filter(|r| r.partition == partition))
            .find(|(_, source)| source.offset >= committed)
            .map(|(r, _)| r.offset)
            .unwrap_or_else(|| restored.iter().filter(|r| r.partition == partition).count() as i64)
    };
    let mut committed = kafka.committed("billing", "orders-restored");
    committed.sort();
    assert_eq!(
        committed,
        vec![(0, translated(0, 2)), (1, translated(1, p1[22].offset - 1))]
    );
    assert_eq!(kafka.committed("billing", "events-restored"), vec![(0, 5)]);

    // Again into the same (now full) topics: refused before writing.
    let again = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--name",
            "kafka-rt",
            "--to",
            &address,
            "--topic-map",
            "orders=orders-restored,events=events-restored",
        ],
        &env,
    );
    again.assert_code(2);
    assert!(
        again.stderr.contains("orders-restored is not empty")
            || again.stderr.contains("events-restored is not empty"),
        "{}",
        again.all()
    );
    assert_eq!(kafka.read_all("orders-restored").len(), restored.len());
}

#[test]
fn a_group_with_members_or_a_wrong_partition_count_is_refused_before_writing() {
    let kafka = Kafka::start();
    let store = TestStore::file();
    let agent = Agent::new();
    kafka.create_topic("jobs", 2, &[]);
    kafka.produce(
        "jobs",
        &[
            record(0, Some(b"a"), Some(b"1")),
            record(1, Some(b"b"), Some(b"2")),
        ],
    );
    kafka.commit_offsets("workers", &[("jobs", 0, 1)]);
    let (env, url, address) = (
        store.env(),
        store.url("kafka"),
        format!("kafka://{}", kafka.bootstrap),
    );
    agent
        .run(&["backup", "--source", &address, "--to", &url], &env)
        .assert_ok();

    let member = kafka.hold_member("workers", "jobs");
    let refused = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &address,
            "--topic-map",
            "jobs=jobs-copy",
        ],
        &env,
    );
    refused.assert_code(2);
    assert!(
        refused
            .stderr
            .contains("consumer group workers has 1 active member"),
        "{}",
        refused.all()
    );
    assert!(
        kafka.partitions("jobs-copy").is_empty(),
        "nothing was created"
    );
    drop(member);

    kafka.create_topic("jobs-one", 1, &[]);
    let refused = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &address,
            "--topic-map",
            "jobs=jobs-one",
            "--groups",
            "none",
        ],
        &env,
    );
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("jobs-one has 1 partitions"),
        "{}",
        refused.all()
    );
    assert!(kafka.read_all("jobs-one").is_empty());

    // An empty topic of the right shape is taken.
    kafka.create_topic("jobs-empty", 2, &[("cleanup.policy", "compact")]);
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--to",
                &address,
                "--topic-map",
                "jobs=jobs-empty",
                "--groups",
                "none",
            ],
            &env,
        )
        .assert_ok();
    assert_eq!(kafka.read_all("jobs-empty").len(), 2);
    assert_eq!(
        kafka
            .topic_config("jobs-empty", "cleanup.policy")
            .as_deref(),
        Some("compact")
    );
}

#[test]
fn old_records_survive_the_restore_and_their_fate_is_said() {
    let kafka = Kafka::start();
    let store = TestStore::file();
    let agent = Agent::new();
    kafka.create_topic("archive", 1, &[]);
    let month_ago = now_ms() - 30 * 24 * 3600 * 1000;
    kafka.produce(
        "archive",
        &(0..3)
            .map(|i| TestRecord {
                timestamp: Some(month_ago + i),
                ..record(0, Some(b"k"), Some(b"old"))
            })
            .collect::<Vec<_>>(),
    );
    let (env, url, address) = (
        store.env(),
        store.url("kafka"),
        format!("kafka://{}", kafka.bootstrap),
    );
    agent
        .run(&["backup", "--source", &address, "--to", &url], &env)
        .assert_ok();

    let kept = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &address,
            "--topic-map",
            "archive=archive-kept",
            "--kafka-keep-retention-suspended",
        ],
        &env,
    );
    kept.assert_ok();
    assert_eq!(
        kafka
            .topic_config("archive-kept", "retention.ms")
            .as_deref(),
        Some("-1")
    );
    let expiring = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &address,
            "--topic-map",
            "archive=archive-default",
        ],
        &env,
    );
    expiring.assert_ok();
    assert!(
        expiring.stderr.contains("older than the topic's retention"),
        "{}",
        expiring.all()
    );
    // The broker checks retention every 5 s here.
    std::thread::sleep(Duration::from_secs(12));
    let kept_records = kafka.read_all("archive-kept");
    assert_eq!(kept_records.len(), 3, "still there after retention checks");
    assert!(kept_records
        .iter()
        .all(|r| r.timestamp >= month_ago && r.timestamp < month_ago + 3));
}

#[test]
fn sasl_logins_work_and_a_wrong_password_is_refused_and_never_shown() {
    let kafka = Kafka::start();
    let store = TestStore::file();
    let agent = Agent::new();
    kafka.create_topic("secret-topic", 1, &[]);
    kafka.produce("secret-topic", &[record(0, Some(b"k"), Some(b"v"))]);
    let mut env = store.env();
    let url = store.url("kafka");
    let wrong = "wrong-pw-Lk29x";
    env.push(("KAFKA_PASSWORD", wrong.to_string()));
    let address = format!(
        "kafka://{SASL_USER}@{}?mechanism=SCRAM-SHA-256",
        kafka.sasl_bootstrap
    );
    let refused = agent.run(
        &[
            "backup",
            "--source",
            &address,
            "--to",
            &url,
            "--kafka-timeout",
            "20s",
        ],
        &env,
    );
    refused.assert_code(2);
    assert!(refused.stderr.contains("refused"), "{}", refused.all());
    assert!(!refused.all().contains(wrong), "{}", refused.all());

    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let mut env = store.env();
        env.push(("KAFKA_PASSWORD", SASL_PASSWORD.to_string()));
        let address = format!(
            "kafka://{SASL_USER}@{}?mechanism={mechanism}",
            kafka.sasl_bootstrap
        );
        let out = agent.run(&["backup", "--source", &address, "--to", &url], &env);
        out.assert_ok();
        assert!(!out.all().contains(SASL_PASSWORD), "{}", out.all());
    }
    let m = manifest(&store, "kafka");
    assert!(!m.to_string().contains(SASL_PASSWORD));
    assert_eq!(
        m["source"]["address"],
        format!("kafka://{SASL_USER}@{}", kafka.sasl_bootstrap)
    );
}

#[test]
fn a_drill_restores_into_scratch_topics_and_always_removes_them() {
    let kafka = Kafka::start();
    let store = TestStore::file();
    let agent = Agent::new();
    fill_orders(&kafka);
    kafka.commit_offsets("billing", &[("orders", 1, 3)]);
    let (env, url, address) = (
        store.env(),
        store.url("kafka"),
        format!("kafka://{}", kafka.bootstrap),
    );
    agent
        .run(&["backup", "--source", &address, "--to", &url], &env)
        .assert_ok();

    let drill = agent.run(&["drill", "--from", &url, "--restore-to", &address], &env);
    drill.assert_ok();
    assert!(drill.all().contains("passed"), "{}", drill.all());
    assert!(
        !kafka
            .topics()
            .iter()
            .any(|t| t.starts_with("vertice-drill-")),
        "scratch topics removed: {:?}",
        kafka.topics()
    );
    let missing = agent.run(&["drill", "--from", &url], &env);
    missing.assert_code(2);
    assert!(
        missing
            .stderr
            .contains("--restore-to is needed for a Kafka drill"),
        "{}",
        missing.all()
    );

    // A damaged artifact fails the drill before any scratch topic exists.
    let artifact = store
        .keys("kafka/default/kafka/")
        .into_iter()
        .find(|k| k.contains("records.jsonl"))
        .expect("artifact");
    let mut bytes = store.read(&artifact);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    store.overwrite(&artifact, &bytes);
    let damaged = agent.run(&["drill", "--from", &url, "--restore-to", &address], &env);
    assert_ne!(damaged.code, 0, "{}", damaged.all());
    assert!(damaged.all().contains("corrupt"), "{}", damaged.all());
    assert!(!kafka
        .topics()
        .iter()
        .any(|t| t.starts_with("vertice-drill-")));
}
