//! The server majors users run beyond the machine's own: PostgreSQL 15 →
//! 17, 17 with its own client tools, an older pg_dump refused clearly, and
//! Valkey 8 backed up over the replication protocol and restored live.

use vertice_tests::fixtures::{fill_redis, redis_snapshot, RICH_POSTGRES_SCHEMA};
use vertice_tests::{trixie, Agent, Postgres, RedisServer, TestStore};

/// What the comparison of two databases across majors looks at: each
/// table's name, row count and an md5 of its rows in a stable order.
fn fingerprint(pg: &Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(t, ';' ORDER BY t) FROM (
           SELECT format('%s.%s', schemaname, tablename) AS t FROM pg_tables
           WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) x",
    ) + &pg.psql(db, "SELECT count(*)::text FROM pg_largeobject_metadata")
}

fn tool(name: &str) -> String {
    trixie::bin().join(name).display().to_string()
}

#[test]
fn postgres_15_backups_restore_into_17() {
    let old = Postgres::start();
    old.create_database("shop");
    old.script("shop", RICH_POSTGRES_SCHEMA);
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("");
    agent
        .run(
            &["backup", "--source", &old.url("shop"), "--to", &url],
            &store.env_with("PGPASSWORD", &old.password),
        )
        .assert_ok();
    let new = Postgres::start_17();
    new.create_database("shop");
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--to",
                &new.url("shop"),
                "--pg-restore",
                &tool("pg_restore"),
            ],
            &store.env_with("PGPASSWORD", &new.password),
        )
        .assert_ok();
    assert_eq!(fingerprint(&new, "shop"), fingerprint(&old, "shop"));
    assert!(new
        .psql("postgres", "SHOW server_version")
        .starts_with("17."));
}

#[test]
fn postgres_17_round_trips_with_its_own_tools_and_refuses_an_older_pg_dump() {
    let pg = Postgres::start_17();
    pg.create_database("shop");
    pg.script("shop", RICH_POSTGRES_SCHEMA);
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("");
    let env = store.env_with("PGPASSWORD", &pg.password);

    // The machine's pg_dump 15 cannot dump a 17 server: said plainly, exit 2.
    let old_tool = agent.run(&["backup", "--source", &pg.url("shop"), "--to", &url], &env);
    old_tool.assert_code(2);
    assert!(
        old_tool.stderr.contains("server version mismatch")
            && old_tool
                .stderr
                .contains("at least the server's major version"),
        "{}",
        old_tool.stderr
    );

    agent
        .run(
            &[
                "backup",
                "--source",
                &pg.url("shop"),
                "--to",
                &url,
                "--pg-dump",
                &tool("pg_dump"),
            ],
            &env,
        )
        .assert_ok();
    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert!(
        rows[0]["server_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("17.")),
        "{rows}"
    );
    pg.create_database("copy");
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--to",
                &pg.url("copy"),
                "--pg-restore",
                &tool("pg_restore"),
            ],
            &env,
        )
        .assert_ok();
    assert_eq!(pg.schema_and_data("copy"), pg.schema_and_data("shop"));
}

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
