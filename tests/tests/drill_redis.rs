//! `vertice-agent drill` of Redis backups against real servers: the RDB
//! loads into a throwaway redis-server (or, without one, parses whole), and
//! a missing or mistyped key fails the drill by name.

use serde_json::Value;
use vertice_tests::agent::RunOutput;
use vertice_tests::drill::{check, passed};
use vertice_tests::summary;
use vertice_tests::{Agent, RedisServer, TestStore};

fn backed_up_redis() -> (RedisServer, TestStore) {
    let source = RedisServer::start(None);
    let mut conn = source.connection();
    vertice_tests::fixtures::fill_redis(&mut conn);
    redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(5000)
        .arg("bulk")
        .arg(64)
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

fn redis_drill(store: &TestStore, extra: &[&str]) -> (RunOutput, Value) {
    let log = tempfile::NamedTempFile::new().expect("log");
    let log_path = log.path().to_string_lossy().into_owned();
    let url = store.url("");
    let mut args = vec!["drill", "--from", &url, "--termination-log", &log_path];
    args.extend_from_slice(extra);
    let out = Agent::new().run(&args, &[]);
    (out, summary::read(log.path()))
}

const REDIS_CHECKS: &str = r#"{"redis": {"keys": [
    {"key": "list:big", "type": "list"},
    {"key": "set:small", "type": "set"},
    {"key": "bulk:17"}
]}}"#;

#[test]
fn a_redis_backup_loads_into_a_throwaway_server() {
    let (_source, store) = backed_up_redis();
    let (out, summary) = redis_drill(&store, &["--checks-json", REDIS_CHECKS]);
    out.assert_ok();
    passed(
        &summary,
        &[
            "verify",
            "restore",
            "key count",
            "load into redis-server",
            "keys loaded",
        ],
    );
    assert_eq!(check(&summary, "key db0/list:big")["ok"], true, "{summary}");
    assert!(
        summary["drill"]["target"]
            .as_str()
            .is_some_and(|t| t.contains("ephemeral")),
        "{summary}"
    );
    assert_eq!(summary["drill"]["cleaned_up"], true);
}

#[test]
fn a_redis_drill_without_a_server_parses_the_whole_rdb() {
    let (_source, store) = backed_up_redis();
    let (out, summary) = redis_drill(
        &store,
        &["--checks-json", REDIS_CHECKS, "--redis-server", "none"],
    );
    out.assert_ok();
    assert_eq!(check(&summary, "key count")["ok"], true, "{summary}");
    assert_eq!(
        check(&summary, "key db0/set:small")["ok"],
        true,
        "{summary}"
    );
    assert!(
        summary["drill"]["target"]
            .as_str()
            .is_some_and(|t| t.contains("streaming parse")),
        "{summary}"
    );
}

#[test]
fn a_missing_or_mistyped_redis_key_fails_by_name() {
    let (_source, store) = backed_up_redis();
    let checks = r#"{"redis": {"keys": [
        {"key": "orders:queue"},
        {"key": "list:big", "type": "hash"}
    ]}}"#;
    for server in ["auto", "none"] {
        let (out, summary) =
            redis_drill(&store, &["--checks-json", checks, "--redis-server", server]);
        out.assert_code(1);
        assert!(out.stderr.contains("orders:queue"), "{}", out.stderr);
        assert_eq!(summary["error_category"], "check");
        let mistyped = check(&summary, "key db0/list:big");
        assert!(
            mistyped["detail"]
                .as_str()
                .is_some_and(|d| d.contains("expected a hash")),
            "{server}: {mistyped}"
        );
    }
}
