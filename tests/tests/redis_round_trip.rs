//! Redis backups over the replication protocol, restored into a running
//! instance (RESTORE with TTLs) and as an RDB file for a fresh instance.

use vertice_tests::fixtures::{assert_same_redis, fill_redis, redis_snapshot};
use vertice_tests::{Agent, RedisServer, TestStore};

const PASSWORD: &str = "redis-Secret-pw-5d1e";

fn round_trip(store: &TestStore) {
    let source = RedisServer::start(Some(PASSWORD));
    let mut conn = source.connection();
    fill_redis(&mut conn);
    let expected = redis_snapshot(&mut conn);
    assert!(expected.len() > 20, "fixture loaded");
    let agent = Agent::new();
    let env = store.env_with("REDIS_PASSWORD", PASSWORD);
    let url = store.url("cache");

    let backup = agent.run(
        &[
            "backup",
            "--source",
            &source.url(),
            "--to",
            &url,
            "--name",
            "sessions",
        ],
        &env,
    );
    backup.assert_ok();
    let id = backup.stdout.trim().to_string();
    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &env);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(rows[0]["source_kind"], "redis");
    assert!(rows[0]["server_version"].as_str().is_some(), "{rows}");
    agent.run(&["verify", "--from", &url], &env).assert_ok();

    // Into a running instance (no password on this one).
    let live = RedisServer::start(None);
    let restore_env = store.env();
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--backup",
                &id,
                "--to",
                &live.url(),
            ],
            &restore_env,
        )
        .assert_ok();
    let mut live_conn = live.connection();
    assert_same_redis(&redis_snapshot(&mut live_conn), &expected, "live restore");
    let echoed: String = redis::cmd("FCALL")
        .arg("vertice_echo")
        .arg(0)
        .arg("hi")
        .query(&mut live_conn)
        .expect("function restored");
    assert_eq!(echoed, "hi");

    // A second restore into the now non-empty instance is refused…
    let refused = agent.run(
        &["restore", "--from", &url, "--to", &live.url()],
        &restore_env,
    );
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("not empty") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    // …unless forced, which replaces same-named keys.
    redis::cmd("SET")
        .arg("string:small")
        .arg("changed")
        .exec(&mut live_conn)
        .expect("set");
    agent
        .run(
            &["restore", "--from", &url, "--to", &live.url(), "--force"],
            &restore_env,
        )
        .assert_ok();
    assert_same_redis(&redis_snapshot(&mut live_conn), &expected, "forced restore");

    // As an RDB file for a fresh instance (the init-container way).
    let dir = tempfile::tempdir().expect("tempdir");
    let rdb = dir.path().join("data/dump.rdb");
    let to = format!("file://{}", rdb.display());
    agent
        .run(&["restore", "--from", &url, "--to", &to], &restore_env)
        .assert_ok();
    let again = agent.run(&["restore", "--from", &url, "--to", &to], &restore_env);
    again.assert_code(2);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let fresh = RedisServer::start_with(None, Some(&rdb));
    assert_same_redis(
        &redis_snapshot(&mut fresh.connection()),
        &expected,
        "RDB file restore",
    );
}

#[test]
fn wrong_redis_password_is_a_configuration_error() {
    let source = RedisServer::start(Some(PASSWORD));
    let store = TestStore::file();
    let agent = Agent::new();
    let out = agent.run(
        &["backup", "--source", &source.url(), "--to", &store.url("x")],
        &[("REDIS_PASSWORD", "not-the-password".to_string())],
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("rejected the credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.all().contains("not-the-password"), "{}", out.all());
    let missing = agent.run(
        &["backup", "--source", &source.url(), "--to", &store.url("x")],
        &[],
    );
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("requires a password"),
        "{}",
        missing.stderr
    );
    assert!(store.keys("").is_empty(), "failed runs leave nothing");
}

#[test]
fn a_least_privilege_acl_user_can_back_up() {
    let source = RedisServer::start(Some(PASSWORD));
    let mut conn = source.connection();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .exec(&mut conn)
        .expect("set");
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "backup",
            "on",
            ">backup-Secret-1",
            "-@all",
            "+psync",
            "+replconf",
            "+info",
            "+ping",
        ])
        .exec(&mut conn)
        .expect("acl");
    let store = TestStore::file();
    let agent = Agent::new();
    let url = format!("redis://backup@127.0.0.1:{}", source.port);
    agent
        .run(
            &["backup", "--source", &url, "--to", &store.url("")],
            &[("REDIS_PASSWORD", "backup-Secret-1".into())],
        )
        .assert_ok();
    let listed = agent.run(&["list", "--from", &store.url(""), "--output", "json"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(
        rows[0]["source"],
        url.as_str(),
        "the user is recorded, the password is not"
    );

    // Without +psync the user cannot replicate: a configuration error.
    redis::cmd("ACL")
        .arg(&["SETUSER", "backup", "-psync"])
        .exec(&mut conn)
        .expect("acl");
    let refused = agent.run(
        &["backup", "--source", &url, "--to", &store.url("")],
        &[("REDIS_PASSWORD", "backup-Secret-1".into())],
    );
    refused.assert_code(2);
    assert!(refused.stderr.contains("+psync"), "{}", refused.stderr);
}

#[test]
fn a_restore_that_fails_midway_removes_what_it_restored() {
    let source = RedisServer::start(None);
    let mut conn = source.connection();
    let value = "v".repeat(1024);
    for chunk in 0..50 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET")
                .arg(format!("key:{chunk}:{i}"))
                .arg(&value)
                .ignore();
        }
        pipe.exec(&mut conn).expect("fill");
    }
    let store = TestStore::file();
    let agent = Agent::new();
    agent
        .run(
            &["backup", "--source", &source.url(), "--to", &store.url("")],
            &[],
        )
        .assert_ok();

    // A target with room for only part of the data: RESTORE fails with OOM midway.
    let target = RedisServer::start(None);
    let mut target_conn = target.connection();
    redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "3mb"])
        .exec(&mut target_conn)
        .expect("config");
    redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction"])
        .exec(&mut target_conn)
        .expect("config");
    let failed = agent.run(
        &["restore", "--from", &store.url(""), "--to", &target.url()],
        &[],
    );
    failed.assert_code(1);
    let error: Vec<&str> = failed
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(error.len(), 1, "{}", failed.stderr);
    assert!(
        error[0].contains("the target was not changed")
            && error[0].contains("maxmemory")
            && error[0].contains("RESTORE failed for ")
            && error[0].len() < 1000,
        "one line with a count: {}",
        failed.stderr
    );
    let keyspace: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(&mut target_conn)
        .expect("info");
    assert!(
        !keyspace.contains("keys="),
        "no half-restore, no staging left behind: {keyspace}"
    );
}

vertice_tests::on_every_store!(round_trip);

/// A source with `n` keys of 1 KiB, backed up into a new file store.
fn backed_up_redis(n: usize) -> (RedisServer, TestStore) {
    let source = RedisServer::start(None);
    let mut conn = source.connection();
    redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(n)
        .arg("key")
        .arg(1024)
        .exec(&mut conn)
        .expect("populate");
    let store = TestStore::file();
    Agent::new()
        .run(
            &["backup", "--source", &source.url(), "--to", &store.url("")],
            &[],
        )
        .assert_ok();
    (source, store)
}

/// Waits until a staged restore is filling its scratch database (db15);
/// returns the deadline the rest of the test keeps to.
fn wait_for_staging(conn: &mut redis::Connection) -> std::time::Instant {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !keyspace(conn).contains("db15:keys=") {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    deadline
}

fn keyspace(conn: &mut redis::Connection) -> String {
    redis::cmd("INFO")
        .arg("keyspace")
        .query::<String>(conn)
        .expect("info")
        .lines()
        .filter(|l| l.starts_with("db"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_read_only_replica_is_refused_before_anything_is_sent() {
    let (_source, store) = backed_up_redis(100);
    let primary = RedisServer::start(None);
    let replica = RedisServer::start(None);
    let mut conn = replica.connection();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .exec(&mut conn)
        .expect("replicaof");
    let out = Agent::new().run(
        &["restore", "--from", &store.url(""), "--to", &replica.url()],
        &[],
    );
    out.assert_code(2);
    assert!(out.stderr.contains("read-only replica"), "{}", out.stderr);
    assert_eq!(keyspace(&mut conn), "");

    // A replica whose primary is gone cannot serve a snapshot: said so.
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(vertice_tests::ports::free_port())
        .exec(&mut conn)
        .expect("replicaof");
    let orphan = Agent::new().run(
        &["backup", "--source", &replica.url(), "--to", &store.url("")],
        &[],
    );
    orphan.assert_code(1);
    assert!(
        orphan.stderr.contains("lost its link to its primary"),
        "{}",
        orphan.stderr
    );
}

#[test]
fn sigterm_midway_drops_the_staged_copy() {
    let (_source, store) = backed_up_redis(300_000);
    let target = RedisServer::start(None);
    let mut conn = target.connection();
    let log = tempfile::NamedTempFile::new().expect("log");
    let child = Agent::new()
        .command()
        .args(["restore", "--from", &store.url(""), "--to", &target.url()])
        .arg("--termination-log")
        .arg(log.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for_staging(&mut conn);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("the target was not changed"), "{stderr}");
    assert_eq!(keyspace(&mut conn), "", "target untouched, staging removed");
    let summary = vertice_tests::summary::read(log.path());
    assert_eq!(summary["outcome"], "interrupted", "{summary}");
}

#[test]
fn a_writer_during_the_restore_loses_nothing() {
    let (_source, store) = backed_up_redis(200_000);
    let target = RedisServer::start(None);
    let mut writer = target.connection();
    let mut child = Agent::new()
        .command()
        .args(["restore", "--from", &store.url(""), "--to", &target.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Another client writes into the target while the restore runs.
    let deadline = wait_for_staging(&mut writer);
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        redis::cmd("SET")
            .arg("theirs")
            .arg("keep me")
            .exec(&mut writer)
            .expect("set");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("restore");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let theirs: Option<String> = redis::cmd("GET")
        .arg("theirs")
        .query(&mut writer)
        .expect("get");
    assert_eq!(theirs.as_deref(), Some("keep me"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the target was not changed"), "{stderr}");
    assert_eq!(
        keyspace(&mut writer),
        "db0:keys=1,expires=0,avg_ttl=0",
        "{stderr}"
    );
}

#[test]
fn sigkill_midway_leaves_the_target_as_it_was() {
    let (_source, store) = backed_up_redis(300_000);
    let target = RedisServer::start(None);
    let mut conn = target.connection();
    let mut child = Agent::new()
        .command()
        .args(["restore", "--from", &store.url(""), "--to", &target.url()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the staged copy is filling, then kill the agent outright.
    wait_for_staging(&mut conn);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let db0: u64 = redis::cmd("DBSIZE").query(&mut conn).expect("dbsize");
    assert_eq!(db0, 0, "the target database was touched");
    // The next run names the interrupted staging instead of merging into it.
    let again = Agent::new().run(
        &["restore", "--from", &store.url(""), "--to", &target.url()],
        &[],
    );
    again.assert_code(2);
    assert!(
        again.stderr.contains("interrupted restore"),
        "{}",
        again.stderr
    );
    redis::cmd("SELECT")
        .arg(15)
        .exec(&mut conn)
        .expect("select");
    redis::cmd("FLUSHDB").exec(&mut conn).expect("flush");
    Agent::new()
        .run(
            &["restore", "--from", &store.url(""), "--to", &target.url()],
            &[],
        )
        .assert_ok();
    redis::cmd("SELECT").arg(0).exec(&mut conn).expect("select");
    let restored: u64 = redis::cmd("DBSIZE").query(&mut conn).expect("dbsize");
    assert_eq!(restored, 300_000);
}

/// Pseudo-random bytes (xorshift): incompressible, so a value stays its
/// size in the RDB and in the backup, and reproducible without a crate.
fn noise(seed: &mut u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Runs the agent to its end, sampling its peak resident set (VmHWM) as it
/// goes; returns its exit code, stderr and the peak in MiB.
fn run_measured(args: &[&str]) -> (Option<i32>, String, f64) {
    let mut child = Agent::new()
        .command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut peak_kib = 0;
    while child.try_wait().expect("wait").is_none() {
        peak_kib = peak_kib.max(vertice_tests::procfs::status_kib(child.id(), "VmHWM:"));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_kib as f64 / 1024.0,
    )
}

/// What must survive a restore exactly, key by key: type, encoding, expiry
/// and a digest of the value (`DEBUG DIGEST-VALUE`), plus the dataset digest.
fn fingerprint(conn: &mut redis::Connection, keys: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(key).query(conn).expect("type");
            let encoding: String = redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(key)
                .query(conn)
                .expect("encoding");
            let expiry: i64 = redis::cmd("PEXPIRETIME").arg(key).query(conn).expect("ttl");
            let digest: Vec<String> = redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(key)
                .query(conn)
                .expect("digest");
            format!("{key} {kind} {encoding} expires {expiry} {digest:?}")
        })
        .collect();
    let all: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(conn)
        .expect("digest");
    out.push(format!("dataset {all}"));
    out
}

/// A 64 MiB string and aggregates of more than one part each (a hash, a
/// list with integers and long items, a set, a zset), two with expiries;
/// and large single elements: a 64 MiB list item and a 16 MiB compressed one
/// after the list's first part, a set member, zset members before and after
/// a first part, a hash whose only field name is large (its value large and
/// compressed): restored byte for byte while the agent's resident set stays
/// far below the size of the large string or item (the restore held four
/// copies of a value, then three of a large element, before).
#[test]
fn large_values_restore_exactly_in_bounded_memory() {
    let source = RedisServer::start(None);
    let mut conn = source.connection();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..64 {
        redis::cmd("APPEND")
            .arg("big:string")
            .arg(noise(&mut seed, 1 << 20))
            .exec(&mut conn)
            .expect("append");
    }
    let in_a_day = chrono::Utc::now().timestamp_millis() + 86_400_000;
    for chunk in 0..200 {
        let mut hset = redis::cmd("HSET");
        hset.arg("big:hash");
        let mut rpush = redis::cmd("RPUSH");
        rpush.arg("big:list");
        let mut sadd = redis::cmd("SADD");
        sadd.arg("big:set");
        let mut zadd = redis::cmd("ZADD");
        zadd.arg("big:zset");
        for i in 0..2000u64 {
            let n = chunk * 2000 + i;
            hset.arg(format!("field:{n}"))
                .arg(noise(&mut seed, 24 + (n % 40) as usize));
            // Small and large integers, short and long items (incompressible,
            // as LZF would shrink the list's nodes below a part).
            match n % 4 {
                0 => rpush.arg(n),
                1 => rpush.arg(-(n as i64) * 1_000_003),
                2 => rpush.arg(format!("item-{n}")),
                _ => rpush.arg(noise(&mut seed, (n % 300) as usize)),
            };
            sadd.arg(format!("member-{n:08}-of-a-set"));
            zadd.arg(n as f64 / 7.0 - 1000.0)
                .arg(format!("member-{n:08}"));
        }
        redis::pipe()
            .add_command(hset)
            .add_command(rpush)
            .add_command(sadd)
            .add_command(zadd)
            .exec(&mut conn)
            .expect("fill");
    }
    redis::cmd("ZADD")
        .arg("big:zset")
        .arg("+inf")
        .arg("top")
        .arg("-inf")
        .arg("bottom")
        .exec(&mut conn)
        .expect("zadd");
    // Large elements. A list item goes into a listpack node of its own; one
    // above the packed threshold into a plain node. Repeating 4 KiB of noise
    // gives a value LZF compresses, as Redis does when saving.
    let repeated = noise(&mut seed, 4096).repeat(4096);
    redis::cmd("RPUSH")
        .arg("big:list")
        .arg(noise(&mut seed, 64 << 20))
        .exec(&mut conn)
        .expect("rpush");
    redis::cmd("DEBUG")
        .arg(&["QUICKLIST-PACKED-THRESHOLD", "1mb"])
        .exec(&mut conn)
        .expect("debug");
    redis::cmd("RPUSH")
        .arg("big:list")
        .arg(&repeated)
        .arg("tail")
        .exec(&mut conn)
        .expect("rpush");
    redis::cmd("SADD")
        .arg("big:set")
        .arg(noise(&mut seed, 2 << 20))
        .exec(&mut conn)
        .expect("sadd");
    // Saved from the highest score down: this member follows the first part.
    redis::cmd("ZADD")
        .arg("big:zset")
        .arg(-1e9)
        .arg(noise(&mut seed, 2 << 20))
        .exec(&mut conn)
        .expect("zadd");
    // …and this one comes first, before two small ones.
    redis::cmd("ZADD")
        .arg("big:member")
        .arg(1e9)
        .arg(noise(&mut seed, 2 << 20))
        .arg(1)
        .arg("a")
        .arg(2)
        .arg("b")
        .exec(&mut conn)
        .expect("zadd");
    redis::cmd("HSET")
        .arg("big:field")
        .arg(noise(&mut seed, 2 << 20))
        .arg(&repeated[..3 << 20])
        .exec(&mut conn)
        .expect("hset");
    redis::cmd("SADD")
        .arg("big:one")
        .arg(noise(&mut seed, 2 << 20))
        .exec(&mut conn)
        .expect("sadd");
    for key in ["big:string", "big:hash", "big:field"] {
        redis::cmd("PEXPIREAT")
            .arg(key)
            .arg(in_a_day)
            .exec(&mut conn)
            .expect("expire");
    }
    redis::cmd("SET")
        .arg("small")
        .arg("v")
        .exec(&mut conn)
        .expect("set");
    let keys = [
        "big:string",
        "big:hash",
        "big:list",
        "big:set",
        "big:zset",
        "big:member",
        "big:field",
        "big:one",
        "small",
    ];
    let expected = fingerprint(&mut conn, &keys);
    let store = TestStore::file();
    Agent::new()
        .run(
            &["backup", "--source", &source.url(), "--to", &store.url("")],
            &[],
        )
        .assert_ok();

    let target = RedisServer::start(None);
    let (code, stderr, peak_mib) =
        run_measured(&["restore", "--from", &store.url(""), "--to", &target.url()]);
    eprintln!("peak RSS of the restore: {peak_mib:.1} MiB");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("restored in parts").count(),
        6,
        "every aggregate but the one-member set in parts: {stderr}"
    );
    assert_eq!(fingerprint(&mut target.connection(), &keys), expected);
    assert!(
        peak_mib < 64.0,
        "the agent peaked at {peak_mib:.1} MiB restoring a 64 MiB value"
    );

    // Forced over changed keys (straight in, REPLACE): each value in parts
    // replaces the whole key, none is merged into what was there.
    let mut conn = target.connection();
    redis::cmd("HSET")
        .arg("big:hash")
        .arg("stray")
        .arg("field")
        .exec(&mut conn)
        .expect("hset");
    redis::cmd("RPUSH")
        .arg("big:list")
        .arg("stray")
        .exec(&mut conn)
        .expect("rpush");
    let (code, stderr, _) = run_measured(&[
        "restore",
        "--from",
        &store.url(""),
        "--to",
        &target.url(),
        "--force",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fingerprint(&mut conn, &keys), expected, "forced restore");
}

/// SIGTERM while a large value streams to the server: the command already
/// announced its full length, so the agent completes it with a payload the
/// server refuses (a RESTORE) or discards it (a list item after the list's
/// first part, sent inside MULTI), and the connection stays in step for the
/// cleanup — the staged copy is dropped and the target is left as it was.
#[test]
fn sigterm_in_the_middle_of_a_large_value_leaves_the_target_as_it_was() {
    for list in [false, true] {
        let source = RedisServer::start(None);
        let mut conn = source.connection();
        let mut seed = 7u64;
        if list {
            // 10 MiB of items (a first part and more), then a 64 MiB one.
            for _ in 0..40 {
                redis::cmd("RPUSH")
                    .arg("big:list")
                    .arg(noise(&mut seed, 256 << 10))
                    .exec(&mut conn)
                    .expect("rpush");
            }
            redis::cmd("RPUSH")
                .arg("big:list")
                .arg(noise(&mut seed, 64 << 20))
                .exec(&mut conn)
                .expect("rpush");
        } else {
            for _ in 0..64 {
                redis::cmd("APPEND")
                    .arg("big:string")
                    .arg(noise(&mut seed, 1 << 20))
                    .exec(&mut conn)
                    .expect("append");
            }
        }
        let store = TestStore::file();
        Agent::new()
            .run(
                &["backup", "--source", &source.url(), "--to", &store.url("")],
                &[],
            )
            .assert_ok();

        let target = RedisServer::start(None);
        let mut conn = target.connection();
        let child = Agent::new()
            .command()
            .args(["restore", "--from", &store.url(""), "--to", &target.url()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // The server reserves the whole argument once its length is
        // announced; while the key is not there yet (the string) or has not
        // its last item (the list), the value is still arriving.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let memory: String = redis::cmd("INFO")
                .arg("memory")
                .query(&mut conn)
                .expect("info");
            let used: u64 = memory
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let arriving = if list {
                keyspace(&mut conn) == "db15:keys=2,expires=0,avg_ttl=0" && {
                    redis::cmd("SELECT")
                        .arg(15)
                        .exec(&mut conn)
                        .expect("select");
                    let items: u64 = redis::cmd("LLEN")
                        .arg("big:list")
                        .query(&mut conn)
                        .expect("llen");
                    items == 40
                }
            } else {
                keyspace(&mut conn) == "db15:keys=1,expires=0,avg_ttl=0"
            };
            if used > 48 << 20 && arriving {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the value never started: {}",
                keyspace(&mut conn)
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "{stderr}");
        let key = if list {
            "list key big:list"
        } else {
            "string key big:string"
        };
        assert!(
            stderr.contains(key) && stderr.contains("the target was not changed"),
            "stopped inside the value, cleaned up: {stderr}"
        );
        assert_eq!(keyspace(&mut conn), "", "target untouched, staging removed");
    }
}

/// A value restored in parts keeps its LRU idle time: the parts after the
/// first RESTORE are sent with `CLIENT NO-TOUCH` (Valkey, Redis 7.2+), so
/// writing them does not make the key look freshly used to eviction.
#[test]
fn a_value_restored_in_parts_keeps_its_idle_time() {
    let source = RedisServer::start_valkey();
    let mut conn = source.connection();
    // Under an LRU policy the RDB records each key's idle time.
    redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"])
        .exec(&mut conn)
        .expect("config");
    let mut seed = 11u64;
    for chunk in 0..100 {
        let mut hset = redis::cmd("HSET");
        hset.arg("big:hash");
        for i in 0..2000 {
            hset.arg(format!("field:{chunk}:{i}"))
                .arg(noise(&mut seed, 48));
        }
        hset.exec(&mut conn).expect("hset");
    }
    redis::cmd("SET")
        .arg("small")
        .arg("v")
        .exec(&mut conn)
        .expect("set");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let store = TestStore::file();
    Agent::new()
        .run(
            &["backup", "--source", &source.url(), "--to", &store.url("")],
            &[],
        )
        .assert_ok();
    let target = RedisServer::start_valkey();
    let out = Agent::new().run(
        &["restore", "--from", &store.url(""), "--to", &target.url()],
        &[],
    );
    out.assert_ok();
    assert!(out.stderr.contains("restored in parts"), "{}", out.stderr);
    let mut conn = target.connection();
    for key in ["big:hash", "small"] {
        let idle: u64 = redis::cmd("OBJECT")
            .arg("IDLETIME")
            .arg(key)
            .query(&mut conn)
            .expect("idletime");
        assert!(idle >= 2, "{key} idle for {idle} s after the restore");
    }
    let fields: u64 = redis::cmd("HLEN")
        .arg("big:hash")
        .query(&mut conn)
        .expect("hlen");
    assert_eq!(fields, 200_000);
}
