//! Kafka runs that do not go to plan, on a real broker: the broker killed
//! or the agent signalled mid-backup (the run fails, nothing becomes the
//! latest backup) and mid-restore (the run fails and says exactly which
//! partitions are complete).
//!
//! The agent is paused (SIGSTOP) at the log line that starts the step, the
//! fault is made, and the agent resumed: the fault always lands in the
//! middle of the step, whatever the machine's speed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vertice_tests::kafka::{Kafka, TestRecord};
use vertice_tests::{Agent, TestStore};

/// 40 MiB over 4 partitions: more than the agent buffers, so a step that
/// has started cannot already be done.
fn fill(kafka: &Kafka, topic: &str) {
    kafka.create_topic(topic, 4, &[]);
    let records: Vec<TestRecord> = (0..40_000u32)
        .map(|i| TestRecord {
            partition: (i % 4) as i32,
            key: Some(format!("key-{i}").into_bytes()),
            // Little to compress: bytes that vary.
            value: Some(
                (0..1024u32)
                    .map(|j| (i.wrapping_mul(2_654_435_761).wrapping_add(j * 40_503) >> 13) as u8)
                    .collect(),
            ),
            ..TestRecord::default()
        })
        .collect();
    kafka.produce(topic, &records);
}

/// Starts the agent and returns it paused once its stderr shows `line`,
/// with the rest of its stderr collected by a thread.
fn paused_at(
    agent: &Agent,
    args: &[&str],
    env: &[(&str, String)],
    line: &str,
) -> (Child, std::thread::JoinHandle<String>) {
    let mut command = agent.command();
    command
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn agent");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = line.to_string();
    let pid = Pid::from_raw(child.id() as i32);
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut told = false;
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !told && l.contains(&wanted) {
                let _ = kill(pid, Signal::SIGSTOP);
                told = true;
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("the agent never logged {line:?}"));
    (child, reader)
}

fn resume_and_wait(mut child: Child, reader: std::thread::JoinHandle<String>) -> (i32, String) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT).expect("SIGCONT");
    let status = child.wait().expect("wait");
    let stderr = reader.join().expect("stderr reader");
    (status.code().unwrap_or(-1), stderr)
}

fn backups(agent: &Agent, url: &str, env: &[(&str, String)]) -> usize {
    let out = agent.run(&["list", "--from", url, "--output", "json"], env);
    out.assert_ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .expect("json")
        .as_array()
        .map_or(0, Vec::len)
}

/// Waits until `topic` holds at least `count` records: a restore is midway.
fn wait_for_records(kafka: &Kafka, topic: &str, count: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let held: i64 = kafka
            .offsets(topic)
            .iter()
            .map(|(_, low, high)| high - low)
            .sum();
        if held >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} never held {count} records ({held})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CUT_TAKEN: &str = "Kafka cut taken";
const LOADING: &str = "retention suspended while the topic is loaded";

#[test]
fn a_broker_killed_mid_backup_fails_the_run_and_nothing_becomes_latest() {
    let mut kafka = Kafka::start();
    fill(&kafka, "big");
    let (store, agent) = (TestStore::file(), Agent::new());
    let (env, url) = (store.env(), store.url("kafka"));
    let address = format!("kafka://{}", kafka.bootstrap);
    let (child, reader) = paused_at(
        &agent,
        &[
            "backup",
            "--source",
            &address,
            "--to",
            &url,
            "--kafka-timeout",
            "5s",
        ],
        &env,
        CUT_TAKEN,
    );
    kafka.kill();
    let (code, stderr) = resume_and_wait(child, reader);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("big/"),
        "names what it was reading: {stderr}"
    );
    assert_eq!(backups(&agent, &url, &env), 0, "nothing listed");
    assert!(
        !store.keys("").iter().any(|k| k.ends_with("manifest.json")),
        "no manifest: {:?}",
        store.keys("")
    );
}

#[test]
fn sigterm_mid_backup_stops_it_and_nothing_becomes_latest() {
    let kafka = Kafka::start();
    fill(&kafka, "big");
    let (store, agent) = (TestStore::file(), Agent::new());
    let (env, url) = (store.env(), store.url("kafka"));
    let address = format!("kafka://{}", kafka.bootstrap);
    let (child, reader) = paused_at(
        &agent,
        &["backup", "--source", &address, "--to", &url],
        &env,
        CUT_TAKEN,
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let (code, stderr) = resume_and_wait(child, reader);
    assert_eq!(code, 143, "{stderr}");
    assert_eq!(backups(&agent, &url, &env), 0);
    assert!(
        store.keys("").is_empty(),
        "nothing left behind: {:?}",
        store.keys("")
    );
}

/// A backup of `big`, and the topic counts a complete restore has.
fn backed_up(kafka: &Kafka, agent: &Agent, store: &TestStore) -> String {
    fill(kafka, "big");
    let url = store.url("kafka");
    agent
        .run(
            &[
                "backup",
                "--source",
                &format!("kafka://{}", kafka.bootstrap),
                "--to",
                &url,
            ],
            &store.env(),
        )
        .assert_ok();
    url
}

/// `restore` of the backup at `url` into `big-copy`, with `extra` flags.
fn restore_args<'a>(url: &'a str, address: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "restore",
        "--from",
        url,
        "--to",
        address,
        "--topic-map",
        "big=big-copy",
    ];
    args.extend_from_slice(extra);
    args
}

/// Starts a restore of `big` into `big-copy`, lets it write at least 2,000
/// records, makes `fault` happen (to the broker or the agent's pid) and
/// returns the agent's exit code and stderr.
fn restore_until_fault(
    kafka: &mut Kafka,
    agent: &Agent,
    store: &TestStore,
    url: &str,
    extra: &[&str],
    fault: impl FnOnce(&mut Kafka, Pid),
) -> (i32, String) {
    let address = format!("kafka://{}", kafka.bootstrap);
    let (child, reader) = paused_at(
        agent,
        &restore_args(url, &address, extra),
        &store.env(),
        LOADING,
    );
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    wait_for_records(kafka, "big-copy", 2_000);
    fault(kafka, pid);
    resume_and_wait(child, reader)
}

/// Every record of `copy` is `source`'s, in the same order, once.
fn same_records(kafka: &Kafka, source: &str, copy: &str) {
    let strip = |records: Vec<vertice_tests::kafka::ReadRecord>| {
        records
            .into_iter()
            .map(|r| (r.partition, r.key, r.value, r.timestamp, r.headers))
            .collect::<Vec<_>>()
    };
    let (a, b) = (strip(kafka.read_all(source)), strip(kafka.read_all(copy)));
    assert_eq!(a.len(), b.len(), "record counts");
    assert!(a == b, "records differ");
}

#[test]
fn a_broker_killed_mid_restore_is_reported_partition_by_partition() {
    let mut kafka = Kafka::start();
    let (store, agent) = (TestStore::file(), Agent::new());
    let url = backed_up(&kafka, &agent, &store);
    let (code, stderr) = restore_until_fault(
        &mut kafka,
        &agent,
        &store,
        &url,
        &["--kafka-timeout", "5s"],
        |kafka, _| kafka.kill(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("partly written: big-copy/"), "{stderr}");
    assert!(stderr.contains("complete: "), "{stderr}");
    assert!(
        stderr.contains("retention suspended"),
        "says what it left: {stderr}"
    );

    // Without --resume the half-written topic is refused; with it, the
    // restore completes without a duplicate.
    kafka.restart();
    let (env, address) = (store.env(), format!("kafka://{}", kafka.bootstrap));
    let again = agent.run(&restore_args(&url, &address, &[]), &env);
    again.assert_code(2);
    assert!(again.stderr.contains("--resume"), "{}", again.all());
    agent
        .run(&restore_args(&url, &address, &["--resume"]), &env)
        .assert_ok();
    same_records(&kafka, "big", "big-copy");
}

#[test]
fn sigterm_mid_restore_stops_it_and_says_what_is_there() {
    let mut kafka = Kafka::start();
    let (store, agent) = (TestStore::file(), Agent::new());
    let url = backed_up(&kafka, &agent, &store);
    let (code, stderr) = restore_until_fault(&mut kafka, &agent, &store, &url, &[], |_, pid| {
        kill(pid, Signal::SIGTERM).expect("SIGTERM")
    });
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(
        stderr.contains("complete: ") && stderr.contains("big-copy/"),
        "{stderr}"
    );
    // What it says it wrote is there: at most the backup's records.
    let restored = kafka.read_all("big-copy").len();
    assert!(
        (2_000..40_000).contains(&restored),
        "stopped midway: {restored}"
    );
    let address = format!("kafka://{}", kafka.bootstrap);
    agent
        .run(&restore_args(&url, &address, &["--resume"]), &store.env())
        .assert_ok();
    same_records(&kafka, "big", "big-copy");
    assert_eq!(
        kafka.topic_config("big-copy", "retention.ms"),
        None,
        "the suspension is lifted"
    );
}

#[test]
fn resume_refuses_a_topic_another_writer_filled() {
    let kafka = Kafka::start();
    let (store, agent) = (TestStore::file(), Agent::new());
    let one = |key: &[u8], value: &[u8]| TestRecord {
        key: Some(key.to_vec()),
        value: Some(value.to_vec()),
        ..TestRecord::default()
    };
    kafka.create_topic("small", 1, &[]);
    kafka.produce("small", &[one(b"a", b"1"), one(b"b", b"2")]);
    let url = store.url("kafka");
    let address = format!("kafka://{}", kafka.bootstrap);
    agent
        .run(
            &["backup", "--source", &address, "--to", &url],
            &store.env(),
        )
        .assert_ok();
    kafka.create_topic("other", 1, &[]);
    kafka.produce("other", &[one(b"x", b"not from the backup")]);
    let refused = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &address,
            "--topic-map",
            "small=other",
            "--resume",
        ],
        &store.env(),
    );
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("not this backup's"),
        "{}",
        refused.all()
    );
    assert_eq!(kafka.read_all("other").len(), 1, "nothing added");
}
