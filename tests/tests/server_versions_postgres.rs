//! The PostgreSQL majors users run beyond the machine's own: 15 → 17, 17
//! with its own client tools, an older pg_dump refused clearly, and a 17
//! backup refused by 15 naming both versions.

use vertice_tests::fixtures::RICH_POSTGRES_SCHEMA;
use vertice_tests::{trixie, Agent, Postgres, TestStore};

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
    let out = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &new.url("shop"),
            "--pg-restore",
            &tool("pg_restore"),
            // Allowed or not, a newer server is nothing to warn about.
            "--allow-older-server",
        ],
        &store.env_with("PGPASSWORD", &new.password),
    );
    out.assert_ok();
    assert!(
        !out.stderr.contains("older major") && !out.stderr.contains("--allow-older-server:"),
        "{}",
        out.stderr
    );
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

/// Tables outside the system schemas: what a refused restore must not add.
fn user_tables(pg: &Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
}

#[test]
fn a_postgres_17_backup_is_refused_by_15_naming_both_versions() {
    let new = Postgres::start_17();
    new.create_database("shop");
    new.script("shop", RICH_POSTGRES_SCHEMA);
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("");
    agent
        .run(
            &[
                "backup",
                "--source",
                &new.url("shop"),
                "--to",
                &url,
                "--pg-dump",
                &tool("pg_dump"),
            ],
            &store.env_with("PGPASSWORD", &new.password),
        )
        .assert_ok();
    let old = Postgres::start();
    old.create_database("shop");
    let env = store.env_with("PGPASSWORD", &old.password);
    let to = old.url("shop");

    // The machine's pg_restore 15 cannot read what pg_dump 17 wrote.
    let out = agent.run(&["restore", "--from", &url, "--to", &to], &env);
    out.assert_code(2);
    for part in [
        "--pg-restore pg_restore: pg_restore 15.",
        "(format 1.16) was written by pg_dump 17.",
        "needs pg_restore 17 or newer",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }

    // pg_restore 17 reads it, but the server is older than the source.
    let pg_restore_17 = tool("pg_restore");
    let out = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &to,
            "--pg-restore",
            &pg_restore_17,
        ],
        &env,
    );
    out.assert_code(2);
    for part in [
        "--to: backup ",
        "was taken from PostgreSQL 17.",
        "the target runs PostgreSQL 15.",
        "--allow-older-server",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert_eq!(user_tables(&old, "shop"), "0");

    // Overridden: tried, whatever SQL 15 then refuses.
    let out = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &to,
            "--pg-restore",
            &pg_restore_17,
            "--allow-older-server",
        ],
        &env,
    );
    assert!(
        !out.stderr.contains("older major is refused"),
        "{}",
        out.stderr
    );
    // ...but not silently: the log names both versions and the override.
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("--allow-older-server: backup "))
        .unwrap_or_else(|| panic!("no warning: {}", out.stderr));
    for part in [
        "was taken from PostgreSQL 17.",
        "the target runs PostgreSQL 15.",
        "an older major; trying anyway",
    ] {
        assert!(warning.contains(part), "{part}: {warning}");
    }

    // A drill names its own flags: the ephemeral server is 15.
    let server_15 = old.pg_bin("postgres");
    let server_15 = server_15.parent().expect("bin dir").display().to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let out = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--restore-to",
            "ephemeral",
            "--pg-restore",
            &pg_restore_17,
            "--postgres-bin",
            &server_15,
        ],
        &[("TMPDIR", tmp.path().display().to_string())],
    );
    out.assert_code(2);
    for part in [
        "--restore-to: backup ",
        "the drill's ephemeral server runs PostgreSQL 15.",
        "give --postgres-bin the server binaries of PostgreSQL 17 or newer",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }

    // Overridden, the drill's report says what it restored into.
    let log = tmp.path().join("summary.json");
    let out = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--restore-to",
            "ephemeral",
            "--pg-restore",
            &pg_restore_17,
            "--postgres-bin",
            &server_15,
            "--allow-older-server",
            "--termination-log",
            &log.display().to_string(),
        ],
        &[("TMPDIR", tmp.path().display().to_string())],
    );
    assert!(
        out.stderr.contains("--allow-older-server: backup "),
        "{}",
        out.stderr
    );
    let summary = vertice_tests::summary::read(&log);
    let target = summary["drill"]["target"].as_str().unwrap_or_default();
    assert!(
        target.contains("the server runs PostgreSQL 15.")
            && target.contains("older than the backup's 17.")
            && target.contains("(--allow-older-server)"),
        "{summary}"
    );
}
