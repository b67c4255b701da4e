//! Bad configuration against real servers: each gets a clear message, the
//! right exit code, a summary, and leaves no backup behind.

use vertice_tests::ports::free_port;
use vertice_tests::seaweedfs::SECRET_KEY;
use vertice_tests::{Agent, Postgres, SeaweedFs, TestStore};

fn with(
    env: &[(&'static str, String)],
    key: &'static str,
    value: String,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> =
        env.iter().filter(|(k, _)| *k != key).cloned().collect();
    env.push((key, value));
    env
}

#[test]
fn store_problems_are_reported_clearly() {
    let weed = SeaweedFs::start();
    weed.create_bucket("exists");
    let pg = Postgres::start();
    pg.create_database("app");
    let agent = Agent::new();
    let env = with(&weed.env(), "PGPASSWORD", pg.password.clone());
    let source = pg.url("app");

    let missing = agent.run(
        &[
            "backup",
            "--source",
            &source,
            "--to",
            "s3://no-such-bucket/x",
        ],
        &env,
    );
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );

    let wrong_key = with(&env, "AWS_SECRET_ACCESS_KEY", "wrong-secret-value".into());
    let denied = agent.run(
        &["backup", "--source", &source, "--to", "s3://exists/x"],
        &wrong_key,
    );
    denied.assert_code(2);
    assert!(denied.stderr.contains("access denied"), "{}", denied.stderr);
    assert!(
        !denied.all().contains("wrong-secret-value") && !denied.all().contains(SECRET_KEY),
        "{}",
        denied.all()
    );

    let nowhere = with(
        &env,
        "VERTICE_S3_ENDPOINT",
        format!("http://127.0.0.1:{}", free_port()),
    );
    let unreachable = agent.run(
        &["backup", "--source", &source, "--to", "s3://exists/x"],
        &nowhere,
    );
    unreachable.assert_code(1);
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{}",
        unreachable.stderr
    );

    let bad_endpoint = with(&env, "VERTICE_S3_ENDPOINT", "not a url".into());
    agent
        .run(&["list", "--from", "s3://exists/x"], &bad_endpoint)
        .assert_code(2);

    let no_id = agent.run(
        &[
            "restore",
            "--from",
            "s3://exists/x",
            "--backup",
            "20260101T000000Z-abcd",
            "--to",
            &pg.url("app"),
        ],
        &env,
    );
    no_id.assert_code(2);
    assert!(
        no_id.stderr.contains("no backups found") || no_id.stderr.contains("does not exist"),
        "{}",
        no_id.stderr
    );
    assert!(
        weed.list_keys("exists").is_empty(),
        "failed runs leave nothing"
    );
}

#[test]
fn database_problems_fail_the_run_and_write_a_summary() {
    let store = TestStore::file();
    let pg = Postgres::start();
    pg.create_database("app");
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = dir.path().join("termination-log");
    let summary_arg = summary.to_string_lossy().into_owned();
    let url = store.url("");

    let down = format!("postgres://postgres@127.0.0.1:{}/app", free_port());
    let unreachable = agent.run(
        &[
            "backup",
            "--source",
            &down,
            "--to",
            &url,
            "--termination-log",
            &summary_arg,
        ],
        &[("PGPASSWORD", pg.password.clone())],
    );
    unreachable.assert_code(1);
    assert!(
        unreachable.stderr.contains("pg_dump failed"),
        "{}",
        unreachable.stderr
    );
    let line = vertice_tests::summary::read(&summary);
    assert_eq!(line["outcome"], "failed");
    assert_eq!(line["exit_code"], 1);
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("pg_dump failed")),
        "{line}"
    );

    // Logs are JSON lines when asked; the final error line stays plain for people.
    let json_logs = agent.run(
        &[
            "backup",
            "--source",
            &down,
            "--to",
            &url,
            "--log-format",
            "json",
        ],
        &[("PGPASSWORD", pg.password.clone())],
    );
    json_logs.assert_code(1);
    let log_lines: Vec<&str> = json_logs
        .stderr
        .lines()
        .filter(|l| !l.starts_with("error: "))
        .collect();
    assert!(!log_lines.is_empty(), "{}", json_logs.stderr);
    for line in log_lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        assert!(parsed["level"].is_string(), "{line}");
    }

    // A database that does not exist is the URL's fault: exit 2, naming it.
    let no_db = agent.run(
        &["backup", "--source", &pg.url("missing-db"), "--to", &url],
        &[("PGPASSWORD", pg.password.clone())],
    );
    no_db.assert_code(2);
    assert!(
        no_db.stderr.contains("missing-db") && no_db.stderr.contains("database name"),
        "{}",
        no_db.stderr
    );

    let wrong_password = agent.run(
        &["backup", "--source", &pg.url("app"), "--to", &url],
        &[("PGPASSWORD", "nope-nope".into())],
    );
    wrong_password.assert_code(2);
    assert!(
        wrong_password
            .stderr
            .contains("password authentication failed"),
        "{}",
        wrong_password.stderr
    );
    assert!(
        store.keys("").is_empty(),
        "failed runs leave nothing: {:?}",
        store.keys("")
    );

    let ok = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--termination-log",
            &summary_arg,
        ],
        &[("PGPASSWORD", pg.password.clone())],
    );
    ok.assert_ok();
    let line = vertice_tests::summary::read(&summary);
    assert_eq!(line["outcome"], "succeeded");
    assert_eq!(line["backup_id"], ok.stdout.trim());
    assert!(
        line["stored_bytes"].as_u64().is_some_and(|n| n > 0),
        "{line}"
    );

    // Restoring a PostgreSQL backup into Redis is a usage error, before anything is touched.
    let mismatch = agent.run(
        &["restore", "--from", &url, "--to", "redis://127.0.0.1:1"],
        &[],
    );
    mismatch.assert_code(2);
    assert!(
        mismatch.stderr.contains("postgres backup"),
        "{}",
        mismatch.stderr
    );
}

/// The same questions for the Azure and GCS stores: a missing container or
/// bucket, rejected credentials, an unreachable endpoint.
fn cloud_store_problems(store: &TestStore) {
    let pg = Postgres::start();
    pg.create_database("app");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let source = pg.url("app");
    let (missing_url, endpoint_var) = match store {
        TestStore::Azure { .. } => (
            "azblob://devstoreaccount1/no-such-container/x".to_string(),
            "VERTICE_AZURE_ENDPOINT",
        ),
        _ => ("gs://no-such-bucket/x".to_string(), "VERTICE_GCS_ENDPOINT"),
    };
    let missing = agent.run(&["backup", "--source", &source, "--to", &missing_url], &env);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );

    if let TestStore::Azure { .. } = store {
        let wrong = with(
            &env,
            "AZURE_STORAGE_KEY",
            "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=".into(),
        );
        let denied = agent.run(
            &["backup", "--source", &source, "--to", &store.url("x")],
            &wrong,
        );
        denied.assert_code(2);
        assert!(denied.stderr.contains("access denied"), "{}", denied.stderr);
        let none = with(&env, "AZURE_STORAGE_KEY", String::new());
        let out = agent.run(&["list", "--from", &store.url("x")], &none);
        out.assert_code(2);
        assert!(
            out.stderr.contains("AZURE_STORAGE_SAS_TOKEN"),
            "{}",
            out.stderr
        );
    }

    let nowhere = with(
        &env,
        endpoint_var,
        match store {
            TestStore::Azure { .. } => format!("http://127.0.0.1:{}/devstoreaccount1", free_port()),
            _ => format!("http://127.0.0.1:{}", free_port()),
        },
    );
    let unreachable = agent.run(
        &["backup", "--source", &source, "--to", &store.url("x")],
        &nowhere,
    );
    unreachable.assert_code(1);
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{}",
        unreachable.stderr
    );
    assert!(store.keys("x/").is_empty(), "failed runs leave nothing");
}

#[test]
fn azure_store_problems_are_reported_clearly() {
    cloud_store_problems(&TestStore::azure());
}

#[test]
fn gcs_store_problems_are_reported_clearly() {
    cloud_store_problems(&TestStore::gcs());
}

/// A flag the source's engine cannot use is refused first: before a name
/// is derived, a secret file read or the store touched.
#[test]
fn a_flag_the_engine_cannot_use_is_refused_before_any_secret_is_read() {
    let agent = Agent::new();
    let store = tempfile::tempdir().expect("tempdir");
    let to = format!("file://{}", store.path().display());
    let refused = agent.run(
        &[
            "backup",
            "--source",
            "postgres://app@127.0.0.1:9/app",
            "--to",
            &to,
            "--incremental",
            "--password-file",
            "/nonexistent/password",
        ],
        &[],
    );
    refused.assert_code(2);
    assert!(
        refused
            .stderr
            .contains("--incremental is for Kafka sources"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.all().contains("/nonexistent/password"),
        "the password file was read first: {}",
        refused.all()
    );
    assert_eq!(
        std::fs::read_dir(store.path()).expect("store").count(),
        0,
        "nothing is written"
    );
}
