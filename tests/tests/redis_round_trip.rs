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
