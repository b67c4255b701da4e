//! Failures must never lose data: a corrupted backup is refused before the
//! target is touched, and a dump that dies midway leaves no backup behind.

use std::time::{Duration, Instant};

use vertice_tests::fake_pg_dump::fake_pg_dump;
use vertice_tests::flaky_proxy::DyingProxy;
use vertice_tests::summary;
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

/// Nothing listens here: the fake pg_dump ignores it.
const NO_SERVER: &str = "postgres://app@127.0.0.1:1/app";
/// `--store-retry-for` of the outage tests, and how long after the store
/// died the agent may take to report it: the allowance, the attempt in
/// flight, an abort, and the slack of a loaded test machine.
const RETRY_FOR: Duration = Duration::from_secs(10);
const REPORTED_WITHIN: Duration = Duration::from_secs(30);
/// A hung upload is noticed only when its request times out (the idle
/// timeout, 5 s here, plus 10 s for a 5 MiB part), then retried once more.
const HUNG_UPLOAD_REPORTED_WITHIN: Duration = Duration::from_secs(60);

/// A proxy in front of the store that dies after `after` bytes; GCS gets it
/// on port 80 of its own loopback address, where its upload URLs point.
/// With `Fault::Hang` the store does not die but stops answering.
fn dying_proxy(store: &TestStore, after: u64) -> (DyingProxy, Vec<(&'static str, String)>) {
    faulty_proxy(store, after, Fault::Die)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// Connections are closed and refused.
    Die,
    /// Connections stay open and silent: only a timeout notices.
    Hang,
}

fn faulty_proxy(
    store: &TestStore,
    after: u64,
    fault: Fault,
) -> (DyingProxy, Vec<(&'static str, String)>) {
    let (host, port) = store.upstream().expect("a network store");
    let listen = match store {
        TestStore::Gcs { .. } => (vertice_tests::fake_gcs::loopback_address(), 80),
        _ => ("127.0.0.1".to_string(), 0),
    };
    let (listen, upstream) = ((listen.0.as_str(), listen.1), (host.as_str(), port));
    let proxy = match fault {
        Fault::Die => DyingProxy::start(listen, upstream, after),
        Fault::Hang => DyingProxy::start_freezing(listen, upstream, after),
    };
    let env = store.env_through_at(listen.0, proxy.port);
    (proxy, env)
}

/// A store that dies (or hangs) mid-upload is reported as the store's failure (exit 1,
/// category `store`) within `--store-retry-for`, not after minutes of
/// nested retries, and nothing of the run becomes a backup.
fn a_store_failing_mid_upload_is_reported_in_time(store: &TestStore, fault: Fault) {
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = fake_pg_dump(dir.path(), "head -c 40000000 /dev/urandom");
    let (proxy, env) = faulty_proxy(store, 12_000_000, fault);
    let summary = dir.path().join("summary.json");
    let retry_for = format!("{}s", RETRY_FOR.as_secs());
    let out = agent.run(
        &[
            "backup",
            "--source",
            NO_SERVER,
            "--to",
            &store.url("p"),
            "--pg-dump",
            &dump,
            "--compression",
            "none",
            "--part-size-mib",
            "5",
            "--store-retry-for",
            &retry_for,
            "--termination-log",
            &summary.display().to_string(),
        ],
        &env,
    );
    let ended = Instant::now();
    out.assert_code(1);
    let died = proxy.died_at().expect("the store died mid-upload");
    let took = ended - died;
    eprintln!("{}: reported {took:?} after the store died", store.kind());
    let within = match fault {
        Fault::Die => REPORTED_WITHIN,
        Fault::Hang => HUNG_UPLOAD_REPORTED_WITHIN,
    };
    assert!(
        took < within,
        "reported {took:?} after the store died:\n{}",
        out.stderr
    );
    let summary = summary::read(&summary);
    assert_eq!(summary["error_category"], "store", "{summary}");
    assert!(
        fault == Fault::Hang
            || out.stderr.contains("cannot reach the store")
            || out.stderr.contains("lost"),
        "{}",
        out.stderr
    );
    assert!(
        store
            .keys("p/")
            .iter()
            .all(|k| !k.ends_with("manifest.json")),
        "no backup: {:?}",
        store.keys("p/")
    );
}

#[test]
fn a_store_dying_mid_upload_is_reported_in_time_on_s3() {
    a_store_failing_mid_upload_is_reported_in_time(&TestStore::s3(), Fault::Die);
}

#[test]
fn a_store_dying_mid_upload_is_reported_in_time_on_azure() {
    a_store_failing_mid_upload_is_reported_in_time(&TestStore::azure(), Fault::Die);
}

#[test]
fn a_store_dying_mid_upload_is_reported_in_time_on_gcs() {
    a_store_failing_mid_upload_is_reported_in_time(&TestStore::gcs(), Fault::Die);
}

/// A store that hangs (accepts connections, then answers nothing) is
/// noticed by the idle timeout and reported like one that died, in time.
#[test]
fn a_store_hanging_mid_upload_is_reported_in_time_on_s3() {
    a_store_failing_mid_upload_is_reported_in_time(&TestStore::s3(), Fault::Hang);
}

#[test]
fn a_store_hanging_mid_upload_is_reported_in_time_on_azure() {
    a_store_failing_mid_upload_is_reported_in_time(&TestStore::azure(), Fault::Hang);
}

#[test]
fn a_store_hanging_mid_upload_is_reported_in_time_on_gcs() {
    a_store_failing_mid_upload_is_reported_in_time(&TestStore::gcs(), Fault::Hang);
}

/// A store that dies while a backup is read back is the store's failure
/// (exit 1, category `store`), never "corrupt" (`integrity`): an operator
/// must not start distrusting a good backup because the network failed.
fn a_store_failing_mid_read_is_not_called_corrupt(store: &TestStore, fault: Fault) {
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = fake_pg_dump(dir.path(), "head -c 30000000 /dev/urandom");
    let url = store.url("r");
    let backup = agent.run(
        &[
            "backup",
            "--source",
            NO_SERVER,
            "--to",
            &url,
            "--pg-dump",
            &dump,
            "--compression",
            "none",
        ],
        &store.env(),
    );
    backup.assert_ok();
    let id = backup.stdout.trim().to_string();

    let (proxy, env) = faulty_proxy(store, 8_000_000, fault);
    let summary = dir.path().join("verify.json");
    let retry_for = format!("{}s", RETRY_FOR.as_secs());
    let out = agent.run(
        &[
            "verify",
            "--from",
            &url,
            "--store-retry-for",
            &retry_for,
            "--termination-log",
            &summary.display().to_string(),
        ],
        &env,
    );
    let ended = Instant::now();
    out.assert_code(1);
    let took = ended - proxy.died_at().expect("the store died mid-read");
    eprintln!("{}: reported {took:?} after the store died", store.kind());
    assert!(
        took < REPORTED_WITHIN,
        "reported {took:?} after the store died:\n{}",
        out.stderr
    );
    let summary = summary::read(&summary);
    assert_eq!(summary["error_category"], "store", "{summary}");
    assert!(
        out.stderr.contains("the store failed, not the backup") && !out.stderr.contains("corrupt"),
        "{}",
        out.stderr
    );
    // And the backup is as good as it was.
    agent
        .run(&["verify", "--from", &url, "--backup", &id], &store.env())
        .assert_ok();
}

#[test]
fn a_store_dying_mid_read_is_not_called_corrupt_on_s3() {
    a_store_failing_mid_read_is_not_called_corrupt(&TestStore::s3(), Fault::Die);
}

#[test]
fn a_store_dying_mid_read_is_not_called_corrupt_on_azure() {
    a_store_failing_mid_read_is_not_called_corrupt(&TestStore::azure(), Fault::Die);
}

#[test]
fn a_store_dying_mid_read_is_not_called_corrupt_on_gcs() {
    a_store_failing_mid_read_is_not_called_corrupt(&TestStore::gcs(), Fault::Die);
}

#[test]
fn a_store_hanging_mid_read_is_not_called_corrupt_on_s3() {
    a_store_failing_mid_read_is_not_called_corrupt(&TestStore::s3(), Fault::Hang);
}

#[test]
fn a_store_hanging_mid_read_is_not_called_corrupt_on_azure() {
    a_store_failing_mid_read_is_not_called_corrupt(&TestStore::azure(), Fault::Hang);
}

#[test]
fn a_store_hanging_mid_read_is_not_called_corrupt_on_gcs() {
    a_store_failing_mid_read_is_not_called_corrupt(&TestStore::gcs(), Fault::Hang);
}

/// GCS forgets a resumable upload session when it restarts (the emulator
/// keeps them in memory; real GCS expires them): the upload fails as a
/// store failure (exit 1), not as a configuration error (exit 2).
#[test]
fn a_lost_gcs_upload_session_is_a_store_failure() {
    let mut store = TestStore::gcs();
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("half-way");
    let dump = fake_pg_dump(
        dir.path(),
        &format!(
            "head -c 12000000 /dev/urandom\ntouch '{}'\nsleep 4\nhead -c 12000000 /dev/urandom",
            marker.display()
        ),
    );
    let summary = dir.path().join("summary.json");
    let mut command = agent.command();
    command
        .args(["backup", "--source", NO_SERVER, "--to", &store.url("s")])
        .args(["--pg-dump", &dump, "--compression", "none"])
        .args(["--part-size-mib", "5", "--store-retry-for", "20s"])
        .arg("--termination-log")
        .arg(&summary)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in store.env() {
        command.env(k, v);
    }
    let child = command.spawn().expect("agent");
    vertice_tests::process::wait_until("the dump half-way", Duration::from_secs(60), || {
        marker.exists()
    });
    if let TestStore::Gcs { server, bucket } = &mut store {
        server.restart();
        server.create_bucket(bucket);
    }
    let out = child.wait_with_output().expect("agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let summary = summary::read(&summary);
    assert_eq!(summary["error_category"], "store", "{summary}");
    assert!(
        stderr.contains("lost the resumable upload session"),
        "{stderr}"
    );
}

/// Backs up 20 MB through a proxy that cuts the upload's connection midway,
/// twice; returns the agent's output and how many cuts the proxy made. The
/// cut comes 3 MB into a connection, inside the first 5 MiB part it carries,
/// so it happens whether the client reuses one connection for several parts
/// or opens one per part (a cut at 7 MB never came when each part had a
/// connection of its own).
fn upload_through_cuts(store: &TestStore, url: &str) -> (vertice_tests::agent::RunOutput, u32) {
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = fake_pg_dump(dir.path(), "head -c 20000000 /dev/urandom");
    let (host, port) = store.upstream().expect("a network store");
    let proxy =
        vertice_tests::flaky_proxy::FlakyProxy::start_cutting_requests(&host, port, 3_000_000, 2);
    let out = agent.run(
        &[
            "backup",
            "--source",
            NO_SERVER,
            "--to",
            url,
            "--pg-dump",
            &dump,
            "--compression",
            "none",
            "--part-size-mib",
            "5",
        ],
        &store.env_through(proxy.port),
    );
    (out, proxy.cuts_made(2))
}

/// An upload whose connection is cut midway, twice, resumes and stores the
/// whole backup, which then verifies.
fn a_dropped_connection_during_upload_is_resumed(store: &TestStore) {
    let url = store.url("u");
    let (out, cuts) = upload_through_cuts(store, &url);
    out.assert_ok();
    assert_eq!(cuts, 2, "the proxy did cut the upload");
    let id = out.stdout.trim().to_string();
    Agent::new()
        .run(&["verify", "--from", &url, "--backup", &id], &store.env())
        .assert_ok();
}

#[test]
fn a_dropped_connection_during_upload_is_resumed_on_s3() {
    a_dropped_connection_during_upload_is_resumed(&TestStore::s3());
}

#[test]
fn a_dropped_connection_during_upload_is_resumed_on_azure() {
    a_dropped_connection_during_upload_is_resumed(&TestStore::azure());
}

/// GCS resumes a cut chunk by asking the service what it has (proven
/// against the documented protocol in `store/gcs/upload.rs`). The emulator
/// answers that status query by finalizing the object with what it has, so
/// here the promise is the weaker one that still matters: a cut upload
/// never becomes a backup with the wrong bytes. It fails as the store's
/// failure, or it succeeds and verifies.
#[test]
fn a_dropped_connection_during_upload_never_stores_wrong_bytes_on_gcs() {
    let store = TestStore::gcs();
    let url = store.url("u");
    let (out, cuts) = upload_through_cuts(&store, &url);
    assert!(cuts >= 1, "the proxy did cut the upload");
    if out.code == 0 {
        let id = out.stdout.trim().to_string();
        Agent::new()
            .run(&["verify", "--from", &url, "--backup", &id], &store.env())
            .assert_ok();
    } else {
        out.assert_code(1);
        assert!(
            store
                .keys("u/")
                .iter()
                .all(|k| !k.ends_with("manifest.json")),
            "{:?}",
            store.keys("u/")
        );
    }
}

/// A store that dies while a PostgreSQL restore reads the backup is the
/// store's failure (exit 1, category `store`), never "corrupt": psql's
/// transaction is rolled back and nothing was restored. A drill, whose
/// store dies after its full verifying read, reports the same and still
/// drops its scratch database.
fn a_store_dying_mid_postgres_restore_restores_nothing(store: &TestStore) {
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g, md5(g::text) || md5((g * 7)::text) AS a FROM generate_series(1, 300000) g",
    );
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store.url("pg");
    let backed_up = dir.path().join("backup.json");
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
                "--termination-log",
                &backed_up.display().to_string(),
            ],
            &store.env_with("PGPASSWORD", &pg.password),
        )
        .assert_ok();
    let stored = summary::read(&backed_up)["stored_bytes"]
        .as_u64()
        .expect("stored bytes");
    let retry_for = format!("{}s", RETRY_FOR.as_secs());

    pg.create_database("copy");
    let (proxy, mut env) = dying_proxy(store, stored / 3);
    env.push(("PGPASSWORD", pg.password.clone()));
    let summary = dir.path().join("restore.json");
    let out = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--to",
            &pg.url("copy"),
            "--store-retry-for",
            &retry_for,
            "--termination-log",
            &summary.display().to_string(),
        ],
        &env,
    );
    out.assert_code(1);
    assert!(proxy.died_at().is_some(), "the store died mid-restore");
    drop(proxy);
    assert_eq!(
        summary::read(&summary)["error_category"],
        "store",
        "{}",
        out.stderr
    );
    for part in ["the store failed, not the backup", "nothing was restored"] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("corrupt"), "{}", out.stderr);
    assert_eq!(pg.public_tables("copy"), "", "nothing was restored");

    // The drill reads the backup whole first (verify), then restores it:
    // the store dies halfway through that second read.
    let (proxy, mut env) = dying_proxy(store, stored + stored / 2);
    env.push(("PGPASSWORD", pg.password.clone()));
    let summary = dir.path().join("drill.json");
    let out = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--restore-to",
            &pg.url("postgres"),
            "--checks-json",
            r#"{"postgres": {"objects": false}}"#,
            "--store-retry-for",
            &retry_for,
            "--termination-log",
            &summary.display().to_string(),
        ],
        &env,
    );
    out.assert_code(1);
    assert!(proxy.died_at().is_some(), "the store died mid-drill");
    let summary = summary::read(&summary);
    assert_eq!(summary["error_category"], "store", "{summary}");
    let checks = summary["drill"]["checks"].as_array().expect("checks");
    let outcome = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["ok"].clone())
    };
    assert_eq!(outcome("verify"), Some(true.into()), "{summary}");
    assert_eq!(outcome("restore"), Some(false.into()), "{summary}");
    assert_eq!(summary["drill"]["cleaned_up"], true, "{summary}");
    assert!(
        out.stderr.contains("nothing was restored") && !out.stderr.contains("corrupt"),
        "{}",
        out.stderr
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE starts_with(datname, 'vertice_drill')"
        ),
        "0"
    );
}

#[test]
fn a_store_dying_mid_postgres_restore_restores_nothing_on_s3() {
    a_store_dying_mid_postgres_restore_restores_nothing(&TestStore::s3());
}

#[test]
fn a_store_dying_mid_postgres_restore_restores_nothing_on_azure() {
    a_store_dying_mid_postgres_restore_restores_nothing(&TestStore::azure());
}

#[test]
fn a_store_dying_mid_postgres_restore_restores_nothing_on_gcs() {
    a_store_dying_mid_postgres_restore_restores_nothing(&TestStore::gcs());
}
