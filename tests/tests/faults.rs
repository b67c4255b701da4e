//! Failures must never lose data: a corrupted backup is refused before the
//! target is touched, and a dump that dies midway leaves no backup behind.

use vertice_tests::{write_script, Agent, Postgres, TestStore};

fn corrupted_backup_is_refused(store: &TestStore, compression: &str, flip_at_end: bool) {
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql(
        "app",
        "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
    );
    pg.psql(
        "app",
        "SELECT lo_from_bytea(0, decode(repeat('abcd', 4000), 'hex'))",
    );
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let backup = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--compression",
            compression,
        ],
        &env,
    );
    backup.assert_ok();
    let id = backup.stdout.trim();
    let key = store
        .keys("default/app/")
        .into_iter()
        .find(|k| k.contains(id) && k.contains("dump.pgdump"))
        .expect("artifact");
    let mut bytes = store.read(&key);
    // Near the end (the large object's data) or in the middle.
    let at = if flip_at_end {
        bytes.len() - 200
    } else {
        bytes.len() / 2
    };
    bytes[at] ^= 0x55;
    store.overwrite(&key, &bytes);

    let verify = agent.run(&["verify", "--from", &url, "--backup", id], &env);
    verify.assert_code(1);
    assert!(verify.stderr.contains("corrupt"), "{}", verify.stderr);

    pg.create_database("target");
    pg.psql(
        "target",
        "CREATE TABLE keep_me (v int); INSERT INTO keep_me VALUES (42)",
    );
    let restore = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--backup",
            id,
            "--to",
            &pg.url("target"),
        ],
        &env,
    );
    restore.assert_code(1);
    assert!(
        restore.stderr.contains("corrupt") && restore.stderr.contains("nothing was restored"),
        "{}",
        restore.stderr
    );
    assert_eq!(
        pg.public_tables("target"),
        "keep_me",
        "the target must be untouched"
    );
    assert_eq!(
        pg.psql("target", "SELECT count(*) FROM pg_largeobject_metadata"),
        "0"
    );
}

/// Damage at the very end of an uncompressed archive on every store; the
/// other codecs once, where only the bytes matter, not the store.
fn corrupted_uncompressed_backup_is_refused(store: &TestStore) {
    corrupted_backup_is_refused(store, "none", true);
}

vertice_tests::on_every_store!(corrupted_uncompressed_backup_is_refused);

#[test]
fn corrupted_compressed_backups_are_refused() {
    let store = TestStore::file();
    corrupted_backup_is_refused(&store, "zstd", false);
    corrupted_backup_is_refused(&store, "gzip", true);
}

fn killed_dump_leaves_no_backup(store: &TestStore) {
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql("app", "CREATE TABLE t (v int); INSERT INTO t VALUES (1)");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("p");
    let good = agent.run(&["backup", "--source", &pg.url("app"), "--to", &url], &env);
    good.assert_ok();
    let good_id = good.stdout.trim().to_string();

    // ~25 MB of incompressible-ish rows, so the upload is multipart by the time the dump dies.
    pg.psql("app", "CREATE TABLE big AS SELECT g, md5(g::text) a, md5((g * 7)::text) b FROM generate_series(1, 300000) g");
    let tools = tempfile::tempdir().expect("tempdir");
    let killer = write_script(
        tools.path(),
        "pg_dump",
        &format!(
            "'{}' \"$@\" | head -c 12000000\nkill -9 $$",
            pg.pg_bin("pg_dump").display()
        ),
    );
    let killer = killer.to_string_lossy().into_owned();
    let failed = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--compression",
            "none",
            "--part-size-mib",
            "5",
            "--pg-dump",
            &killer,
        ],
        &env,
    );
    failed.assert_code(1);
    assert!(
        failed
            .stderr
            .contains("pg_dump failed (killed by signal 9)"),
        "{}",
        failed.stderr
    );

    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &env);
    listed.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(
        rows.as_array().map(Vec::len),
        Some(1),
        "only the good backup is listed: {rows}"
    );
    assert_eq!(
        rows[0]["id"],
        good_id.as_str(),
        "latest is still the good backup"
    );
    let keys = store.keys("p/");
    assert!(
        keys.iter().all(|k| k.contains(&good_id)),
        "nothing of the failed run remains: {keys:?}"
    );
    assert!(
        store.dangling_uploads().is_empty(),
        "multipart upload aborted: {:?}",
        store.dangling_uploads()
    );
}

/// Downloads through a proxy that cuts the connection after 2 MB, twice:
/// the restore resumes where it was cut (S3: our ranged reader; Azure and
/// GCS: their SDKs' ranged, resuming reads).
fn dropped_connection_during_restore_is_resumed(store: &TestStore) {
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS a FROM generate_series(1, 200000) g",
    );
    let agent = Agent::new();
    let url = store.url("");
    agent
        .run(
            &[
                "backup",
                "--source",
                &pg.url("app"),
                "--to",
                &url,
                "--compression",
                "none",
            ],
            &store.env_with("PGPASSWORD", &pg.password),
        )
        .assert_ok();

    let (host, port) = store.upstream().expect("a network store");
    let proxy = vertice_tests::flaky_proxy::FlakyProxy::start_to(&host, port, 2_000_000, 2);
    let mut flaky = store.env_through(proxy.port);
    flaky.push(("PGPASSWORD", pg.password.clone()));
    pg.create_database("copy");
    let restored = agent.run(
        &["restore", "--from", &url, "--to", &pg.url("copy")],
        &flaky,
    );
    restored.assert_ok();
    assert_eq!(proxy.cuts_made(2), 2, "the proxy did cut the download");
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM t"), "200000");
}

#[test]
fn a_dropped_connection_during_restore_is_resumed_on_s3() {
    let store = TestStore::s3();
    dropped_connection_during_restore_is_resumed(&store);
}

#[test]
fn a_dropped_connection_during_restore_is_resumed_on_azure() {
    dropped_connection_during_restore_is_resumed(&TestStore::azure());
}

#[test]
fn a_dropped_connection_during_restore_is_resumed_on_gcs() {
    dropped_connection_during_restore_is_resumed(&TestStore::gcs());
}

vertice_tests::on_every_store!(killed_dump_leaves_no_backup);
