//! The Kafka harness itself against a real broker: records come back field
//! by field (duplicate and null headers, null and empty keys, tombstones,
//! explicit timestamps), aborted transactions are skipped, group offsets
//! round-trip, a held member makes the group Stable, SASL accepts the right
//! password and refuses a wrong one, and data survives a crash and restart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vertice_tests::kafka::{Kafka, ReadRecord, TestRecord, SASL_PASSWORD, SASL_USER};
use vertice_tests::process::wait_until;

const TOPIC: &str = "fixtures";
const OLD_TS: i64 = 1_600_000_000_000;

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("milliseconds fit i64")
}

fn b(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

fn record(partition: i32, key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> TestRecord {
    TestRecord {
        partition,
        key,
        value,
        ..TestRecord::default()
    }
}

fn headers() -> Vec<(String, Option<Vec<u8>>)> {
    vec![
        ("h".to_string(), b("1")),
        ("n".to_string(), None),
        ("h".to_string(), b("2")),
        ("e".to_string(), b("")),
        ("n".to_string(), None),
    ]
}

/// Fills TOPIC: partition 0 plain records, 1 and 2 a committed and an
/// aborted transaction (2 ends with the aborted one and its marker).
fn fill(kafka: &Kafka) {
    kafka.create_topic(TOPIC, 3, &[("retention.ms", "-1")]);
    let mut first = record(0, b("k1"), b("v1"));
    first.timestamp = Some(OLD_TS);
    first.headers = headers();
    kafka.produce(
        TOPIC,
        &[
            first,
            record(0, None, b("no key")),
            record(0, Some(Vec::new()), b("empty key")),
            record(0, b("k1"), None),
        ],
    );
    let mut tx1 = record(1, b("t1"), b("tx-1"));
    tx1.headers = vec![("tx".to_string(), None)];
    kafka.produce_transaction(TOPIC, &[tx1, record(2, b("t2"), b("tx-2"))], true);
    kafka.produce_transaction(
        TOPIC,
        &[
            record(1, b("a1"), b("aborted-1")),
            record(2, b("a2"), b("aborted-2")),
        ],
        false,
    );
    kafka.produce(TOPIC, &[record(1, b("after"), b("after-abort"))]);
}

/// (partition, offset, key, value, headers).
type Row = (
    i32,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

/// What `fill` wrote, as (partition, offset, key, value, headers); the
/// offsets skip transaction markers and the aborted records.
fn expected() -> Vec<Row> {
    vec![
        (0, 0, b("k1"), b("v1"), headers()),
        (0, 1, None, b("no key"), vec![]),
        (0, 2, Some(Vec::new()), b("empty key"), vec![]),
        (0, 3, b("k1"), None, vec![]),
        (1, 0, b("t1"), b("tx-1"), vec![("tx".to_string(), None)]),
        (1, 4, b("after"), b("after-abort"), vec![]),
        (2, 0, b("t2"), b("tx-2"), vec![]),
    ]
}

fn check_records(read: &[ReadRecord], started_ms: i64) {
    let got: Vec<Row> = read
        .iter()
        .map(|r| {
            (
                r.partition,
                r.offset,
                r.key.clone(),
                r.value.clone(),
                r.headers.clone(),
            )
        })
        .collect();
    assert_eq!(got, expected(), "records read back: {read:#?}");
    for r in read {
        assert_eq!(r.timestamp_type, "create", "{r:?}");
        if r.partition == 0 && r.offset == 0 {
            assert_eq!(r.timestamp, OLD_TS, "the explicit timestamp: {r:?}");
        } else {
            assert!(
                r.timestamp >= started_ms - 1000 && r.timestamp <= now_ms() + 1000,
                "a producer timestamp from this run: {r:?}"
            );
        }
    }
}

#[test]
fn records_transactions_and_offsets_round_trip() {
    let started_ms = now_ms();
    let kafka = Kafka::start();
    fill(&kafka);

    check_records(&kafka.read_all(TOPIC), started_ms);
    // Raw offsets include the transaction markers and aborted records.
    assert_eq!(kafka.offsets(TOPIC), vec![(0, 0, 4), (1, 0, 5), (2, 0, 4)]);
    assert_eq!(
        kafka.topic_config(TOPIC, "retention.ms").as_deref(),
        Some("-1")
    );
    assert_eq!(
        kafka.topic_config(TOPIC, "cleanup.policy"),
        None,
        "a broker default"
    );

    // An empty topic reads as nothing, without waiting for a record.
    kafka.create_topic("empty", 2, &[]);
    assert!(kafka.read_all("empty").is_empty());
    // A missing topic has no partitions and reads as nothing.
    assert!(kafka.partitions("missing").is_empty());
    assert!(kafka.read_all("missing").is_empty());

    // Group offsets: committed for a group without members, read back.
    assert!(kafka.committed("restored", TOPIC).is_empty());
    kafka.commit_offsets("restored", &[(TOPIC, 0, 2), (TOPIC, 2, 4)]);
    assert_eq!(kafka.committed("restored", TOPIC), vec![(0, 2), (2, 4)]);
    kafka.commit_offsets("restored", &[(TOPIC, 0, 3)]);
    assert_eq!(kafka.committed("restored", TOPIC), vec![(0, 3), (2, 4)]);

    // A held member makes the group Stable; dropping it empties the group.
    let member = kafka.hold_member("live", TOPIC);
    assert_eq!(kafka.group_state("live").as_deref(), Some("Stable"));
    drop(member);
    wait_until("the group to be empty", Duration::from_secs(30), || {
        kafka.group_state("live").as_deref() == Some("Empty")
    });
}

#[test]
fn sasl_and_restart() {
    let started_ms = now_ms();
    let start = std::time::Instant::now();
    let mut kafka = Kafka::start();
    eprintln!("broker started in {:?}", start.elapsed());
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        kafka
            .sasl_check(mechanism, SASL_USER, SASL_PASSWORD)
            .unwrap_or_else(|e| panic!("{mechanism} with the right password: {e}"));
        let wrong = kafka.sasl_check(mechanism, SASL_USER, "not-the-password");
        assert!(wrong.is_err(), "{mechanism} accepted a wrong password");
        let nobody = kafka.sasl_check(mechanism, "nobody", SASL_PASSWORD);
        assert!(nobody.is_err(), "{mechanism} accepted an unknown user");
    }

    fill(&kafka);
    kafka.kill();
    let start = std::time::Instant::now();
    kafka.restart();
    eprintln!("broker restarted after SIGKILL in {:?}", start.elapsed());
    check_records(&kafka.read_all(TOPIC), started_ms);
    kafka.restart();
    kafka
        .sasl_check("SCRAM-SHA-512", SASL_USER, SASL_PASSWORD)
        .expect("SCRAM after a restart");
    check_records(&kafka.read_all(TOPIC), started_ms);
}
