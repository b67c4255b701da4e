//! The Redis-protocol servers users run beyond the machine's Redis 7:
//! Valkey 8 backed up over the replication protocol and restored live, and
//! Redis 7 backups restored into Valkey 8.

use vertice_tests::fixtures::{fill_redis, redis_snapshot};
use vertice_tests::{Agent, RedisServer, TestStore};

#[test]
fn valkey_8_backs_up_and_restores_live() {
    let source = RedisServer::start_valkey();
    let mut conn = source.connection();
    fill_redis(&mut conn);
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("");
    agent
        .run(&["backup", "--source", &source.url(), "--to", &url], &[])
        .assert_ok();
    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert!(
        rows[0]["server_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("valkey 8.")),
        "{rows}"
    );
    let target = RedisServer::start_valkey();
    agent
        .run(&["restore", "--from", &url, "--to", &target.url()], &[])
        .assert_ok();
    let expected = redis_snapshot(&mut conn);
    let actual = redis_snapshot(&mut target.connection());
    vertice_tests::fixtures::assert_same_redis(&actual, &expected, "valkey 8 → valkey 8");
}

#[test]
fn redis_7_backups_restore_into_valkey_8() {
    let source = RedisServer::start(None);
    let mut conn = source.connection();
    fill_redis(&mut conn);
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("");
    agent
        .run(&["backup", "--source", &source.url(), "--to", &url], &[])
        .assert_ok();
    let target = RedisServer::start_valkey();
    agent
        .run(&["restore", "--from", &url, "--to", &target.url()], &[])
        .assert_ok();
    let expected = redis_snapshot(&mut conn);
    let actual = redis_snapshot(&mut target.connection());
    vertice_tests::fixtures::assert_same_redis(&actual, &expected, "redis 7 → valkey 8");
}
