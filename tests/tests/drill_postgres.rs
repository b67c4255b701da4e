//! `vertice-agent drill` of PostgreSQL backups against real servers, into a
//! scratch database on a server the user names and into an ephemeral server
//! the drill starts: a good backup passes, a failed assertion is named, a
//! corrupted backup is refused before anything is restored, the scratch
//! database (or the ephemeral server) is gone afterwards in every case
//! (SIGTERM included) and nothing outside the drill's prefix is touched.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use vertice_tests::agent::RunOutput;
use vertice_tests::drill::{check, left_in, passed};
use vertice_tests::fixtures::RICH_POSTGRES_SCHEMA;
use vertice_tests::summary;
use vertice_tests::{Agent, Postgres, TestStore};

const PREFIX: &str = "vertice_drill_";

/// Every check a PostgreSQL drill with `GOOD_CHECKS` runs.
const PG_CHECKS: &[&str] = &[
    "verify",
    "restore",
    "tables",
    "sequences",
    "large objects",
    "sql: orders",
    "sql: fresh",
];

/// The databases on the server whose names start with the prefix.
fn drill_databases(pg: &Postgres) -> Vec<String> {
    let out = pg.psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE starts_with(datname, 'vertice_drill') ORDER BY 1",
    );
    out.lines().map(str::to_string).collect()
}

/// A backup large enough (3M rows, uncompressed) that a signal lands
/// while its restore is copying.
fn backed_up_big(pg: &Postgres, store: &TestStore) {
    pg.create_database("big");
    pg.psql(
        "big",
        "CREATE TABLE rows AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 3000000) g",
    );
    let source = pg.url("big");
    let url = store.url("");
    Agent::new()
        .run(
            &[
                "backup",
                "--source",
                &source,
                "--to",
                &url,
                "--compression",
                "none",
            ],
            &store.env_with("PGPASSWORD", &pg.password),
        )
        .assert_ok();
}

/// Sends SIGTERM to a running drill: it must exit 143, report the run
/// interrupted and say its target was cleaned up.
fn sigterm_and_expect_cleanup(child: std::process::Child, log: &std::path::Path) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    let summary = summary::read(log);
    assert_eq!(summary["outcome"], "interrupted", "{summary}");
    assert_eq!(summary["drill"]["cleaned_up"], true, "{summary}");
}

fn backed_up_postgres(pg: &Postgres, store: &TestStore) {
    backed_up_postgres_with(pg, store, &[]);
}

fn backed_up_postgres_with(pg: &Postgres, store: &TestStore, extra: &[&str]) {
    pg.create_database("shop");
    pg.script("shop", RICH_POSTGRES_SCHEMA);
    pg.psql(
        "shop",
        "CREATE TABLE public.orders AS SELECT g AS id, now() - g * interval '1 minute' AS created_at FROM generate_series(1, 2000) g",
    );
    let env = store.env_with("PGPASSWORD", &pg.password);
    let source = pg.url("shop");
    let url = store.url("");
    let mut args = vec!["backup", "--source", &source, "--to", &url];
    args.extend_from_slice(extra);
    Agent::new().run(&args, &env).assert_ok();
}

fn drill(pg: &Postgres, store: &TestStore, extra: &[&str]) -> (RunOutput, Value) {
    let log = tempfile::NamedTempFile::new().expect("log");
    let log_path = log.path().to_string_lossy().into_owned();
    let target = pg.url("postgres");
    let url = store.url("");
    let mut args = vec![
        "drill",
        "--from",
        &url,
        "--restore-to",
        &target,
        "--termination-log",
        &log_path,
    ];
    args.extend_from_slice(extra);
    let out = Agent::new().run(&args, &store.env_with("PGPASSWORD", &pg.password));
    let summary = summary::read(log.path());
    (out, summary)
}

const GOOD_CHECKS: &str = r#"{"postgres": {"assertions": [
    {"name": "orders", "sql": "SELECT count(*) >= 2000 FROM public.orders"},
    {"name": "fresh", "sql": "SELECT max(created_at) > current_setting('vertice.backup_time')::timestamptz - interval '1 day' FROM public.orders", "timeoutSeconds": 10}
]}}"#;

#[test]
fn a_good_postgres_backup_passes_and_leaves_nothing_behind() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    // Ours by prefix but not by shape, another database, and a leftover of
    // a drill killed a day ago: only the last may go.
    pg.create_database("vertice_drill_mine");
    pg.create_database("vertice_drill_1700000000_notours!");
    let old = format!(
        "{PREFIX}{}_0badc0de",
        chrono::Utc::now().timestamp() - 86_400
    );
    pg.create_database(&old);
    pg.psql("vertice_drill_mine", "CREATE TABLE keep (v int)");

    let (out, summary) = drill(&pg, &store, &["--checks-json", GOOD_CHECKS]);
    out.assert_ok();
    assert_eq!(summary["outcome"], "succeeded", "{summary}");
    let report = &summary["drill"];
    passed(&summary, PG_CHECKS);
    assert_eq!(report["checks_failed"], 0, "{report}");
    assert_eq!(report["cleaned_up"], true, "{report}");
    assert!(
        report["restore_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{report}"
    );
    assert!(
        report["backup_age_seconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.0),
        "{report}"
    );
    assert!(
        report["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("scratch database vertice_drill_")),
        "{report}"
    );
    assert_eq!(
        drill_databases(&pg),
        vec![
            "vertice_drill_1700000000_notours!".to_string(),
            "vertice_drill_mine".into()
        ],
        "the scratch database and the stale leftover are gone; nothing else is"
    );
    assert_eq!(
        pg.psql("vertice_drill_mine", "SELECT count(*) FROM keep"),
        "0"
    );
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM public.orders"),
        "2000"
    );
    // The password went in by PGPASSWORD and comes out nowhere.
    assert!(!out.all().contains(&pg.password), "{}", out.all());
    assert!(!summary.to_string().contains(&pg.password));
}

/// libpq's `hostaddr=` and `options=` in `--restore-to`: psql restores at
/// that address with those settings, and the drill's own checks and its
/// DROP go there too (the host name resolves nowhere).
#[test]
fn hostaddr_and_options_take_the_drill_where_psql_goes() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    let log = tempfile::NamedTempFile::new().expect("log");
    let target = format!(
        "{}?hostaddr=127.0.0.1&options=-c%20vertice.probe%3Dyes",
        pg.url("postgres").replace("127.0.0.1", "db.invalid")
    );
    let checks = r#"{"postgres": {"assertions": [
        {"name": "options", "sql": "SELECT current_setting('vertice.probe', true) = 'yes'"}
    ]}}"#;
    let out = Agent::new().run(
        &[
            "drill",
            "--from",
            &store.url(""),
            "--restore-to",
            &target,
            "--checks-json",
            checks,
            "--termination-log",
            &log.path().to_string_lossy(),
        ],
        &store.env_with("PGPASSWORD", &pg.password),
    );
    out.assert_ok();
    let summary = summary::read(log.path());
    passed(&summary, &["restore", "tables", "sql: options"]);
    assert_eq!(summary["drill"]["cleaned_up"], true, "{summary}");
    let port = pg
        .url("")
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    assert!(
        summary["drill"]["target"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("on db.invalid (127.0.0.1):{port}"))),
        "{summary}"
    );
    assert!(
        drill_databases(&pg).is_empty(),
        "{:?}",
        drill_databases(&pg)
    );
}

#[test]
fn a_failed_assertion_is_named_and_the_scratch_database_still_goes() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    let checks = r#"{"postgres": {"assertions": [
        {"name": "orders", "sql": "SELECT count(*) >= 2000 FROM public.orders"},
        {"name": "enough orders", "sql": "SELECT count(*) >= 1000000 FROM public.orders"},
        {"name": "writes refused", "sql": "CREATE TABLE public.sneaky (v int)"}
    ]}}"#;
    let (out, summary) = drill(&pg, &store, &["--checks-json", checks]);
    out.assert_code(1);
    assert!(out.stderr.contains("enough orders"), "{}", out.stderr);
    assert!(out.stderr.contains("2 of"), "{}", out.stderr);
    assert_eq!(summary["outcome"], "failed", "{summary}");
    assert_eq!(summary["error_category"], "check", "{summary}");
    assert_eq!(check(&summary, "sql: orders")["ok"], true);
    assert_eq!(check(&summary, "sql: enough orders")["ok"], false);
    let refused = check(&summary, "sql: writes refused");
    assert_eq!(refused["ok"], false);
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("read-only")),
        "{refused}"
    );
    // Failed checks come first, so a shortened summary keeps them.
    assert_eq!(summary["drill"]["checks"][0]["ok"], false, "{summary}");
    assert_eq!(summary["drill"]["cleaned_up"], true);
    assert!(drill_databases(&pg).is_empty());
}

#[test]
fn an_assertion_must_return_one_boolean_and_object_checks_can_be_skipped() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    // With the objects check off and a bad assertion type, the outcome names
    // the assertion's shape.
    let checks = r#"{"postgres": {"objects": false, "assertions": [
        {"name": "shape", "sql": "SELECT count(*) FROM public.orders"}
    ]}}"#;
    let (out, summary) = drill(&pg, &store, &["--checks-json", checks]);
    out.assert_code(1);
    let shape = check(&summary, "sql: shape");
    assert!(
        shape["detail"]
            .as_str()
            .is_some_and(|d| d.contains("boolean")),
        "{shape}"
    );
    assert!(
        summary["drill"]["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["name"] != "tables")),
        "objects: false skips the object checks: {summary}"
    );
    assert!(drill_databases(&pg).is_empty());
}

#[test]
fn a_corrupted_backup_fails_verification_before_any_restore() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    let key = store
        .keys("default/shop/")
        .into_iter()
        .find(|k| k.contains("dump.pgdump"))
        .expect("artifact");
    let mut bytes = store.read(&key);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    store.overwrite(&key, &bytes);

    let (out, summary) = drill(&pg, &store, &[]);
    out.assert_code(1);
    assert_eq!(summary["error_category"], "integrity", "{summary}");
    let checks = summary["drill"]["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 1, "only the verification ran: {summary}");
    assert_eq!(checks[0]["name"], "verify");
    assert_eq!(checks[0]["ok"], false);
    assert!(
        summary["drill"]["target"].is_null(),
        "no target was made: {summary}"
    );
    assert!(drill_databases(&pg).is_empty());
}

#[test]
fn sigterm_mid_restore_drops_the_scratch_database() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_big(&pg, &store);
    let env = store.env_with("PGPASSWORD", &pg.password);
    let agent = Agent::new();

    let log = tempfile::NamedTempFile::new().expect("log");
    let mut command = agent.command();
    command
        .args([
            "drill",
            "--from",
            &store.url(""),
            "--restore-to",
            &pg.url("postgres"),
        ])
        .arg("--termination-log")
        .arg(log.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        command.env(k, v);
    }
    let child = command.spawn().expect("spawn");
    // Wait until the restore is copying rows into the scratch database.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let copying = pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE starts_with(datname, 'vertice_drill_') AND query ILIKE 'COPY%'",
        );
        if copying != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restore never started copying"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        drill_databases(&pg).len(),
        1,
        "the scratch database exists mid-restore"
    );
    sigterm_and_expect_cleanup(child, log.path());
    assert!(drill_databases(&pg).is_empty(), "dropped after SIGTERM");
}

#[test]
fn postgres_17_drills_its_own_archives() {
    let pg = Postgres::start_17();
    let store = TestStore::file();
    let pg_dump = vertice_tests::trixie::bin().join("pg_dump");
    backed_up_postgres_with(&pg, &store, &["--pg-dump", &pg_dump.to_string_lossy()]);
    let pg_restore = vertice_tests::trixie::bin().join("pg_restore");
    let pg_restore = pg_restore.to_string_lossy();
    let (out, summary) = drill(
        &pg,
        &store,
        &["--checks-json", GOOD_CHECKS, "--pg-restore", &pg_restore],
    );
    out.assert_ok();
    // pg_dump 17 writes large objects as BLOB METADATA entries.
    assert_eq!(check(&summary, "large objects")["ok"], true, "{summary}");
    assert!(drill_databases(&pg).is_empty());
}

#[test]
fn bad_drill_input_is_refused_naming_the_flag() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let no_target = agent.run(&["drill", "--from", &url], &env);
    no_target.assert_code(2);
    assert!(
        no_target.stderr.contains("--restore-to"),
        "{}",
        no_target.stderr
    );

    let target = pg.url("postgres");
    let bad_prefix = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--restore-to",
            &target,
            "--scratch-prefix",
            "shop",
        ],
        &env,
    );
    bad_prefix.assert_code(2);
    assert!(
        bad_prefix.stderr.contains("--scratch-prefix"),
        "{}",
        bad_prefix.stderr
    );

    let bad_checks = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--restore-to",
            &target,
            "--checks-json",
            r#"{"postgres": {"asertions": []}}"#,
        ],
        &env,
    );
    bad_checks.assert_code(2);
    assert!(
        bad_checks.stderr.contains("asertions"),
        "{}",
        bad_checks.stderr
    );

    let wrong_password = agent.run(
        &["drill", "--from", &url, "--restore-to", &target],
        &store.env_with("PGPASSWORD", "not-the-password"),
    );
    assert_ne!(wrong_password.code, 0);
    assert!(
        wrong_password.stderr.contains("--restore-to"),
        "{}",
        wrong_password.stderr
    );
    assert!(!wrong_password.all().contains("not-the-password"));
    assert!(drill_databases(&pg).is_empty());
    // Nothing of the source was touched either.
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM public.orders"),
        "2000"
    );
}

/// Processes whose command line mentions `needle` (a drill's directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

fn ephemeral_drill(store: &TestStore, tmp: &std::path::Path, extra: &[&str]) -> (RunOutput, Value) {
    let log = tempfile::NamedTempFile::new().expect("log");
    let log_path = log.path().to_string_lossy().into_owned();
    let url = store.url("");
    let mut args = vec![
        "drill",
        "--from",
        &url,
        "--restore-to",
        "ephemeral",
        "--termination-log",
        &log_path,
    ];
    args.extend_from_slice(extra);
    let out = Agent::new().run(&args, &[("TMPDIR", tmp.display().to_string())]);
    (out, summary::read(log.path()))
}

#[test]
fn an_ephemeral_postgres_takes_the_restore_and_is_gone_after() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    let tmp = tempfile::tempdir().expect("tmp");
    // No server named, no password: the drill brings its own server (the
    // newest /usr/lib/postgresql/<major>/bin here).
    let (out, summary) = ephemeral_drill(&store, tmp.path(), &["--checks-json", GOOD_CHECKS]);
    out.assert_ok();
    passed(&summary, PG_CHECKS);
    let report = &summary["drill"];
    assert!(
        report["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("scratch database vertice_drill_")
                && t.contains("an ephemeral PostgreSQL 1")),
        "{report}"
    );
    assert_eq!(report["cleaned_up"], true, "{report}");
    assert!(left_in(tmp.path()).is_empty(), "{:?}", left_in(tmp.path()));
    let tmp_path = tmp.path().display().to_string();
    assert!(
        processes_mentioning(&tmp_path).is_empty(),
        "the ephemeral server stopped: {:?}",
        processes_mentioning(&tmp_path)
    );
    assert!(
        drill_databases(&pg).is_empty(),
        "the source server was not used"
    );

    // A failed assertion on the ephemeral server: named, and still cleaned.
    let failing = r#"{"postgres": {"assertions": [
        {"name": "too many", "sql": "SELECT count(*) > 1000000 FROM public.orders"}]}}"#;
    let (out, summary) = ephemeral_drill(&store, tmp.path(), &["--checks-json", failing]);
    out.assert_code(1);
    assert!(out.stderr.contains("too many"), "{}", out.stderr);
    assert_eq!(check(&summary, "sql: too many")["ok"], false, "{summary}");
    assert_eq!(summary["drill"]["cleaned_up"], true, "{summary}");
    assert!(left_in(tmp.path()).is_empty());

    // Server binaries that are not there: the flag is named, exit 2.
    let (out, _) = ephemeral_drill(&store, tmp.path(), &["--postgres-bin", "/nonexistent"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("--postgres-bin /nonexistent"),
        "{}",
        out.stderr
    );
}

#[test]
fn sigterm_mid_restore_stops_the_ephemeral_postgres_and_removes_it() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_big(&pg, &store);
    let agent = Agent::new();
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tempfile::NamedTempFile::new().expect("log");
    let mut command = agent.command();
    command
        .args([
            "drill",
            "--from",
            &store.url(""),
            "--restore-to",
            "ephemeral",
        ])
        .arg("--termination-log")
        .arg(log.path())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn");
    // Wait until the ephemeral server is copying rows.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let copying = left_in(tmp.path()).first().is_some_and(|dir| {
            std::process::Command::new("psql")
                .args(["-h", &tmp.path().join(dir).display().to_string()])
                .args(["-U", "vertice", "-d", "postgres", "-A", "-t", "-c"])
                .arg("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY%'")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
        });
        if copying {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restore never started copying"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm_and_expect_cleanup(child, log.path());
    assert!(left_in(tmp.path()).is_empty(), "{:?}", left_in(tmp.path()));
    let tmp_path = tmp.path().display().to_string();
    assert!(
        processes_mentioning(&tmp_path).is_empty(),
        "{:?}",
        processes_mentioning(&tmp_path)
    );
}

/// libpq variables a shell, CI job or pod may carry, all pointing
/// elsewhere: every tool the agent starts must ignore them.
fn hostile_libpq_env() -> Vec<(&'static str, String)> {
    [
        ("PGHOST", "/nonexistent"),
        ("PGPORT", "1"),
        ("PGDATABASE", "not_a_database"),
        ("PGUSER", "not_a_user"),
        ("PGOPTIONS", "-c default_transaction_read_only=on"),
        ("PGSSLMODE", "require"),
        ("PGSERVICE", "not_a_service"),
        ("PGTARGETSESSIONATTRS", "standby"),
        ("PGDATA", "/nonexistent"),
    ]
    .map(|(k, v)| (k, v.to_string()))
    .to_vec()
}

#[test]
fn a_hostile_libpq_environment_changes_nothing() {
    let pg = Postgres::start();
    let store = TestStore::file();
    let agent = Agent::new();
    let mut env = store.env_with("PGPASSWORD", &pg.password);
    env.extend(hostile_libpq_env());
    pg.create_database("shop");
    pg.psql(
        "shop",
        "CREATE TABLE public.orders AS SELECT g AS id, now() AS created_at FROM generate_series(1, 2000) g",
    );
    let url = store.url("");
    agent
        .run(&["backup", "--source", &pg.url("shop"), "--to", &url], &env)
        .assert_ok();
    pg.create_database("copy");
    agent
        .run(&["restore", "--from", &url, "--to", &pg.url("copy")], &env)
        .assert_ok();
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM orders"), "2000");

    let log = tempfile::NamedTempFile::new().expect("log");
    let log_path = log.path().to_string_lossy().into_owned();
    let target = pg.url("postgres");
    let scratch = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--restore-to",
            &target,
            "--checks-json",
            GOOD_CHECKS,
            "--termination-log",
            &log_path,
        ],
        &env,
    );
    scratch.assert_ok();
    // No large objects in this database.
    let checks = &PG_CHECKS[..PG_CHECKS.len() - 3];
    let checks = [checks, &["sql: orders", "sql: fresh"]].concat();
    passed(&summary::read(log.path()), &checks);
    assert!(drill_databases(&pg).is_empty());

    // The ephemeral server's URL names its socket directory and port; the
    // agent's PGPORT, PGHOST and PGDATA reach neither psql nor initdb.
    let tmp = tempfile::tempdir().expect("tmp");
    let mut ephemeral_env = env.clone();
    ephemeral_env.push(("TMPDIR", tmp.path().display().to_string()));
    let ephemeral = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--restore-to",
            "ephemeral",
            "--checks-json",
            GOOD_CHECKS,
            "--termination-log",
            &log_path,
        ],
        &ephemeral_env,
    );
    ephemeral.assert_ok();
    passed(&summary::read(log.path()), &checks);
    assert!(left_in(tmp.path()).is_empty(), "{:?}", left_in(tmp.path()));
}

/// A database whose objects and data name roles: a policy `TO app_role`,
/// a grant, default privileges, and `aclitem[]` data naming `app_role` and
/// `data_only` (named nowhere else). Backed up into `store`; the database
/// and the roles are then dropped from the server.
fn backed_up_with_roles(pg: &Postgres, store: &TestStore) {
    pg.psql("postgres", "CREATE ROLE app_role NOLOGIN");
    pg.psql("postgres", "CREATE ROLE data_only NOLOGIN");
    pg.create_database("rls");
    pg.script(
        "rls",
        "CREATE TABLE public.accounts (id int, owner text);
         INSERT INTO public.accounts SELECT g, 'u' || g FROM generate_series(1, 10) g;
         ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON public.accounts FOR SELECT TO app_role USING (owner = current_user);
         GRANT SELECT ON public.accounts TO app_role;
         ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO app_role;
         CREATE TABLE public.acls (a aclitem[]);
         INSERT INTO public.acls VALUES ('{app_role=r/postgres}'), ('{data_only=r/postgres}');",
    );
    Agent::new()
        .run(
            &["backup", "--source", &pg.url("rls"), "--to", &store.url("")],
            &store.env_with("PGPASSWORD", &pg.password),
        )
        .assert_ok();
    pg.psql("postgres", "DROP DATABASE rls");
    pg.psql("postgres", "DROP ROLE app_role");
    pg.psql("postgres", "DROP ROLE data_only");
}

#[test]
fn an_ephemeral_drill_creates_the_roles_the_backup_names() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_with_roles(&pg, &store);
    let checks = r#"{"postgres": {"assertions": [
        {"name": "acl data", "sql": "SELECT string_agg(a::text, ' ' ORDER BY a::text) = '{app_role=r/postgres} {data_only=r/postgres}' FROM public.acls"},
        {"name": "policy", "sql": "SELECT count(*) = 1 FROM pg_policies WHERE 'app_role' = ANY (roles)"}
    ]}}"#;
    let tmp = tempfile::tempdir().expect("tmp");
    for extra in [&[][..], &["--with-owner"][..]] {
        let mut args = vec!["--checks-json", checks];
        args.extend_from_slice(extra);
        let (out, summary) = ephemeral_drill(&store, tmp.path(), &args);
        out.assert_ok();
        passed(
            &summary,
            &["restore", "tables", "sql: acl data", "sql: policy"],
        );
        let target = summary["drill"]["target"].as_str().unwrap_or_default();
        assert!(
            target
                .ends_with("; created the backup's roles (NOLOGIN): app_role, data_only, postgres"),
            "{extra:?}: {summary}"
        );
        assert!(left_in(tmp.path()).is_empty());
    }

    // On a server the user names, the drill creates no roles: the failure
    // names psql's error, the drill's own flag and both ways out.
    let (out, summary) = drill(&pg, &store, &["--checks-json", checks]);
    out.assert_code(2);
    for part in [
        "--restore-to:",
        "psql stopped at ",
        "\" does not exist",
        "CREATE ROLE \"",
        "--restore-to ephemeral",
        "nothing was restored",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert!(
        !out.stderr.contains("--to:") && !out.stderr.contains("URL"),
        "{}",
        out.stderr
    );
    assert_eq!(check(&summary, "restore")["ok"], false, "{summary}");
    assert!(drill_databases(&pg).is_empty());

    // A backup from before the manifest recorded roles: the table of
    // contents still names app_role (policy, grant) and postgres (owner),
    // but not data_only, named only in data.
    let manifest_key = store
        .keys("default/rls/")
        .into_iter()
        .find(|k| k.ends_with("manifest.json"))
        .expect("manifest");
    let mut manifest: Value = serde_json::from_slice(&store.read(&manifest_key)).expect("json");
    assert_eq!(
        manifest["source"]["roles"],
        serde_json::json!(["app_role", "data_only", "postgres"]),
        "{manifest}"
    );
    manifest["source"]
        .as_object_mut()
        .expect("source")
        .remove("roles");
    store.overwrite(&manifest_key, manifest.to_string().as_bytes());
    let (out, summary) = ephemeral_drill(&store, tmp.path(), &["--checks-json", checks]);
    out.assert_code(2);
    for part in [
        "--restore-to:",
        "psql stopped at TABLE DATA public.acls",
        "role \"data_only\" does not exist",
        "take a new backup",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("URL"), "{}", out.stderr);
    assert_eq!(summary["drill"]["cleaned_up"], true, "{summary}");
    assert!(left_in(tmp.path()).is_empty());
}

/// Starts a drill whose one assertion sleeps ten minutes, waits until the
/// sleep runs (`running` asks the server), sends SIGTERM and returns how
/// long the agent took to exit, after checking it reported a cleanup.
fn sigterm_during_a_sleeping_assertion(
    mut command: std::process::Command,
    log: &std::path::Path,
    running: impl Fn() -> bool,
) -> Duration {
    let checks = r#"{"postgres": {"objects": false, "assertions": [
        {"name": "slow", "sql": "SELECT pg_sleep(600) IS NOT NULL", "timeoutSeconds": 900}]}}"#;
    command
        .args(["--checks-json", checks])
        .arg("--termination-log")
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !running() {
        assert!(Instant::now() < deadline, "the assertion never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    sigterm_and_expect_cleanup(child, log);
    started.elapsed()
}

#[test]
fn sigterm_during_an_assertion_cancels_it_and_drops_the_scratch_database() {
    let pg = Postgres::start();
    let store = TestStore::file();
    backed_up_postgres(&pg, &store);
    let agent = Agent::new();
    let log = tempfile::NamedTempFile::new().expect("log");
    let mut command = agent.command();
    command.args([
        "drill",
        "--from",
        &store.url(""),
        "--restore-to",
        &pg.url("postgres"),
    ]);
    command.envs(store.env_with("PGPASSWORD", &pg.password));
    let took = sigterm_during_a_sleeping_assertion(command, log.path(), || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE starts_with(datname, 'vertice_drill_') AND query LIKE '%pg_sleep%'",
        ) == "1"
    });
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    assert!(drill_databases(&pg).is_empty(), "dropped after SIGTERM");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()"
        ),
        "0",
        "the assertion's statement was cancelled"
    );

    // The same on the drill's ephemeral server, which is stopped and removed.
    let tmp = tempfile::tempdir().expect("tmp");
    let mut command = agent.command();
    command
        .args([
            "drill",
            "--from",
            &store.url(""),
            "--restore-to",
            "ephemeral",
        ])
        .env("TMPDIR", tmp.path());
    let took = sigterm_during_a_sleeping_assertion(command, log.path(), || {
        left_in(tmp.path()).first().is_some_and(|dir| {
            std::process::Command::new("psql")
                .args(["-h", &tmp.path().join(dir).display().to_string()])
                .args(["-U", "vertice", "-d", "postgres", "-A", "-t", "-c"])
                .arg("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
        })
    });
    assert!(took < Duration::from_secs(8), "took {took:?} to stop");
    assert!(left_in(tmp.path()).is_empty(), "{:?}", left_in(tmp.path()));
}
