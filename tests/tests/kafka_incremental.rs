//! `--incremental` Kafka backups on a real Apache Kafka 4.1 broker: a
//! chain of three runs restores (and drills) to exactly what one full
//! backup of the same moment restores; retention keeps a kept backup's
//! parents and lets a chain go once a full backup follows; records
//! deleted between runs, or a topic deleted and created again, fail the
//! run and leave no backup behind.

use serde_json::Value;
use vertice_tests::kafka::{Content, Kafka, ReadRecord, TestRecord};
use vertice_tests::{Agent, TestStore};

fn record(partition: i32, key: &str, value: &str) -> TestRecord {
    TestRecord {
        partition,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![
            ("h".into(), Some(value.as_bytes().to_vec())),
            ("h".into(), None),
        ],
        ..TestRecord::default()
    }
}

fn batch(tag: &str, partitions: i32, count: usize) -> Vec<TestRecord> {
    (0..count)
        .map(|i| {
            record(
                (i as i32) % partitions,
                &format!("{tag}-key-{}", i % 7),
                &format!("{tag}-value-{i}"),
            )
        })
        .collect()
}

fn contents(records: &[ReadRecord]) -> Vec<Content> {
    records.iter().map(ReadRecord::content).collect()
}

/// The manifests of a series, oldest first.
fn manifests(store: &TestStore, name: &str) -> Vec<Value> {
    store.manifests(&format!("kafka/default/{name}/"))
}

fn partition<'a>(m: &'a Value, topic: &str, p: i64) -> &'a Value {
    m["source"]["kafka"]["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == topic)
        .unwrap_or_else(|| panic!("{topic} in {m}"))["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|x| x["partition"] == p)
        .expect("partition")
}

struct Runner<'a> {
    agent: &'a Agent,
    env: Vec<(&'static str, String)>,
    url: String,
    address: String,
}

impl<'a> Runner<'a> {
    fn new(kafka: &Kafka, store: &TestStore, agent: &'a Agent) -> Runner<'a> {
        Runner {
            agent,
            env: store.env(),
            url: store.url("kafka"),
            address: format!("kafka://{}", kafka.bootstrap),
        }
    }

    fn backup(&self, name: &str, extra: &[&str]) -> vertice_tests::agent::RunOutput {
        let mut args = vec![
            "backup",
            "--source",
            &self.address,
            "--topic-regex",
            "orders|payments|gappy",
            "--to",
            &self.url,
            "--name",
            name,
        ];
        args.extend_from_slice(extra);
        self.agent.run(&args, &self.env)
    }

    fn restore(&self, name: &str, map: &str) -> vertice_tests::agent::RunOutput {
        self.agent.run(
            &[
                "restore",
                "--from",
                &self.url,
                "--name",
                name,
                "--to",
                &self.address,
                "--topic-map",
                map,
            ],
            &self.env,
        )
    }

    fn verify(&self, name: &str) -> vertice_tests::agent::RunOutput {
        self.agent
            .run(&["verify", "--from", &self.url, "--name", name], &self.env)
    }

    fn prune_keep_last_one(&self, name: &str) -> String {
        let out = self.agent.run(
            &[
                "prune",
                "--from",
                &self.url,
                "--namespace",
                "default",
                "--name",
                name,
                "--keep-last",
                "1",
            ],
            &self.env,
        );
        out.assert_ok();
        out.all()
    }
}

#[test]
fn a_chain_of_three_runs_restores_and_drills_like_one_full_backup() {
    let kafka = Kafka::start();
    let store = TestStore::file();
    let agent = Agent::new();
    let run = Runner::new(&kafka, &store, &agent);
    let incremental = ["--incremental", "--full-every", "3"];

    kafka.create_topic("orders", 3, &[]);
    kafka.produce("orders", &batch("a", 3, 30));
    kafka.commit_offsets("billing", &[("orders", 0, 4), ("orders", 1, 10)]);
    run.backup("chain", &incremental).assert_ok();

    // Between runs: more records, a committed and an aborted transaction,
    // a new topic, a group that moved on.
    kafka.produce("orders", &batch("b", 3, 20));
    kafka.produce_transaction("orders", &batch("tx", 3, 3), true);
    kafka.produce_transaction("orders", &batch("aborted", 3, 3), false);
    kafka.create_topic("payments", 2, &[]);
    kafka.produce("payments", &batch("p", 2, 8));
    kafka.commit_offsets("billing", &[("orders", 0, 14), ("payments", 1, 2)]);
    run.backup("chain", &incremental).assert_ok();

    kafka.produce("orders", &batch("c", 3, 12));
    kafka.produce("payments", &batch("q", 2, 5));
    run.backup("chain", &incremental).assert_ok();
    // A full backup of the same moment, to compare with.
    run.backup("full", &[]).assert_ok();

    let chain = manifests(&store, "chain");
    assert_eq!(chain.len(), 3);
    assert!(chain[0].get("parent").is_none(), "{}", chain[0]);
    assert_eq!(chain[1]["parent"], chain[0]["backup_id"]);
    // Agents that know only format 1 refuse a chain member rather than
    // restore it without its parents.
    assert_eq!(chain[0]["format_version"], 1);
    assert_eq!(chain[1]["format_version"], 2);
    assert_eq!(chain[2]["parent"], chain[1]["backup_id"]);
    assert_eq!(chain[2]["source"]["kafka"]["chain_length"], 3);
    let orders_id = &chain[0]["source"]["kafka"]["topics"][0]["topic_id"];
    assert!(
        orders_id.as_str().is_some_and(|id| id.len() >= 22),
        "the topic id is recorded: {}",
        chain[0]
    );
    for p in 0..3 {
        let (first, second) = (
            partition(&chain[0], "orders", p),
            partition(&chain[1], "orders", p),
        );
        assert_eq!(second["start_offset"], first["end_offset"], "{second}");
    }
    assert!(
        partition(&chain[1], "payments", 0)
            .get("start_offset")
            .is_none(),
        "a new topic is read in full"
    );
    let records = |m: &Value| -> u64 {
        m["source"]["kafka"]["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .flat_map(|t| t["partitions"].as_array().expect("partitions").iter())
            .map(|p| p["records"].as_u64().expect("records"))
            .sum()
    };
    assert_eq!(records(&chain[0]), 30);
    assert_eq!(records(&chain[1]), 20 + 3 + 8, "only what came after");
    assert_eq!(records(&chain[2]), 12 + 5);

    // Retention keeps the whole chain of the backup it keeps.
    let pruned = run.prune_keep_last_one("chain");
    assert!(pruned.contains("needed to restore"), "{pruned}");
    assert_eq!(manifests(&store, "chain").len(), 3, "{pruned}");

    let verified = run.verify("chain");
    verified.assert_ok();
    assert!(
        verified.all().contains("whole chain verified"),
        "{}",
        verified.all()
    );
    run.restore("chain", "orders=orders-chain,payments=payments-chain")
        .assert_ok();
    run.restore("full", "orders=orders-full,payments=payments-full")
        .assert_ok();
    for topic in ["orders", "payments"] {
        let source = contents(&kafka.read_all(topic));
        let from_chain = contents(&kafka.read_all(&format!("{topic}-chain")));
        let from_full = contents(&kafka.read_all(&format!("{topic}-full")));
        assert_eq!(
            from_chain, source,
            "{topic}: the chain restores every record"
        );
        assert_eq!(
            from_chain, from_full,
            "{topic}: chain and full backup agree"
        );
    }
    for topic in ["orders", "payments"] {
        let mut a = kafka.committed("billing", &format!("{topic}-chain"));
        let mut b = kafka.committed("billing", &format!("{topic}-full"));
        a.sort();
        b.sort();
        assert!(!a.is_empty(), "billing is committed on {topic}-chain");
        assert_eq!(a, b, "{topic}: the group's offsets translate alike");
    }

    let drill = agent.run(
        &[
            "drill",
            "--from",
            &run.url,
            "--name",
            "chain",
            "--restore-to",
            &run.address,
        ],
        &run.env,
    );
    drill.assert_ok();
    assert!(drill.all().contains("passed"), "{}", drill.all());

    // The chain is at --full-every: the next run starts a new one, and
    // retention can then let the old chain go.
    kafka.produce("orders", &batch("d", 3, 3));
    run.backup("chain", &incremental).assert_ok();
    let chain = manifests(&store, "chain");
    assert!(chain[3].get("parent").is_none(), "{}", chain[3]);
    run.prune_keep_last_one("chain");
    let left = manifests(&store, "chain");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["backup_id"], chain[3]["backup_id"]);
}

#[test]
fn records_deleted_between_runs_or_a_topic_created_again_fail_the_run() {
    let kafka = Kafka::start();
    let store = TestStore::file();
    let agent = Agent::new();
    let run = Runner::new(&kafka, &store, &agent);
    let incremental = ["--incremental"];
    kafka.create_topic("gappy", 1, &[]);
    kafka.produce("gappy", &batch("a", 1, 10));
    run.backup("gappy", &incremental).assert_ok();

    // Retention (here deleteRecords) took records the previous run never read.
    kafka.produce("gappy", &batch("b", 1, 10));
    kafka.delete_records("gappy", 0, 15);
    let failed = run.backup("gappy", &incremental);
    assert_ne!(failed.code, 0, "{}", failed.all());
    assert!(
        failed
            .all()
            .contains("records 10..15 of gappy/0 were deleted"),
        "{}",
        failed.all()
    );
    assert!(
        failed.all().contains("without --incremental"),
        "{}",
        failed.all()
    );
    assert_eq!(
        manifests(&store, "gappy").len(),
        1,
        "a failed run stores no backup"
    );

    // A full run starts over; the next incremental one continues it.
    run.backup("gappy", &[]).assert_ok();
    kafka.produce("gappy", &batch("c", 1, 2));
    run.backup("gappy", &incremental).assert_ok();
    let series = manifests(&store, "gappy");
    assert_eq!(series.len(), 3);
    assert_eq!(series[2]["parent"], series[1]["backup_id"]);

    // Deleted and created again, with more records than before: only the
    // topic id tells it is not the same topic.
    kafka.delete_topic("gappy");
    kafka.create_topic("gappy", 1, &[]);
    kafka.produce("gappy", &batch("new", 1, 40));
    let failed = run.backup("gappy", &incremental);
    assert_ne!(failed.code, 0, "{}", failed.all());
    assert!(
        failed.all().contains("gappy was deleted and created again"),
        "{}",
        failed.all()
    );
    assert_eq!(manifests(&store, "gappy").len(), 3);

    // Incremental restores of the series' newest backup still restore the
    // chain that existed.
    run.restore("gappy", "gappy=gappy-restored").assert_ok();
    let restored = kafka.read_all("gappy-restored");
    assert_eq!(restored.len(), 5 + 2, "the full run's 5 records and 2 more");

    // Damage at rest in the chain's full backup (a lifecycle rule, a hand
    // deletion): the newest backup no longer verifies, and a restore of it
    // fails before it writes anything.
    let full_id = series[1]["backup_id"].as_str().expect("id");
    let artifact = store
        .keys(&format!("kafka/default/gappy/{full_id}/"))
        .into_iter()
        .find(|k| !k.ends_with("manifest.json"))
        .expect("the full backup's artifact");
    store.overwrite(&artifact, b"damaged");
    let verified = run.verify("gappy");
    assert_ne!(verified.code, 0, "{}", verified.all());
    assert!(verified.all().contains(full_id), "{}", verified.all());
    let restored = run.restore("gappy", "gappy=gappy-again");
    assert_ne!(restored.code, 0, "{}", restored.all());
    assert!(restored.all().contains(full_id), "{}", restored.all());
    assert!(
        kafka.partitions("gappy-again").is_empty(),
        "nothing was written"
    );

    // The next scheduled incremental run does not continue the broken
    // chain: it takes a full backup, says why, and that one restores.
    let next = run.backup("gappy", &incremental);
    next.assert_ok();
    assert!(next.all().contains("cannot be restored"), "{}", next.all());
    let series = manifests(&store, "gappy");
    assert!(series[3].get("parent").is_none(), "{}", series[3]);
    run.restore("gappy", "gappy=gappy-again").assert_ok();
    assert_eq!(kafka.read_all("gappy-again").len(), 40);
}
