//! Hostile and careless input, tried against the real binary and real
//! servers: options that would take over pg_dump, secrets in URLs, names that
//! climb out of the store, and the exit codes and messages each one gets.

use vertice_tests::summary;
use vertice_tests::{write_script, Agent, Postgres, TestStore};

#[test]
fn pg_dump_options_cannot_take_over_the_dump() {
    let store = TestStore::file();
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql("app", "CREATE TABLE t AS SELECT 1 AS x");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let scratch = tempfile::tempdir().expect("tempdir");
    let escaped = scratch.path().join("x");
    let escaped_arg = escaped.display().to_string();
    for arg in [
        format!("--pg-dump-arg=--fil={escaped_arg}"),
        "--pg-dump-arg=--forma=plain".to_string(),
        "--pg-dump-arg=-vFp".to_string(),
        format!("--pg-dump-arg=-f{escaped_arg}"),
        "--pg-dump-arg=otherdb".to_string(),
    ] {
        let run = agent.run(
            &["backup", "--source", &pg.url("app"), "--to", &url, &arg],
            &env,
        );
        run.assert_code(2);
        assert!(
            run.stderr.contains("--pg-dump-arg"),
            "{arg}: {}",
            run.stderr
        );
        assert!(!escaped.exists(), "{arg} wrote the dump elsewhere");
    }
    assert!(store.keys("").is_empty(), "{:?}", store.keys(""));

    // Whatever gets past the options, a stream that is not a custom-format
    // archive is never a backup.
    let plain = write_script(
        scratch.path(),
        "pg_dump",
        "printf 'SET statement_timeout = 0;\\nCREATE TABLE x ();\\n'",
    );
    let run = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--pg-dump",
            &plain.display().to_string(),
        ],
        &env,
    );
    run.assert_code(1);
    assert!(run.stderr.contains("custom-format"), "{}", run.stderr);
    assert!(store.keys("").is_empty(), "{:?}", store.keys(""));

    // Safe options still work, in getopt's spellings.
    agent
        .run(
            &[
                "backup",
                "--source",
                &pg.url("app"),
                "--to",
                &url,
                "--pg-dump-arg=-n",
                "--pg-dump-arg=public",
                "--pg-dump-arg=-vO",
            ],
            &env,
        )
        .assert_ok();
}

#[test]
fn secrets_in_urls_are_never_echoed() {
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("termination-log");
    let log_arg = log.display().to_string();
    let junk = dir.path().join("recipients.txt");
    std::fs::write(&junk, "JUNKSECRETLINE-0123456789abcdef\n").expect("junk");
    let junk_arg = junk.display().to_string();
    let pg = "postgres://app@127.0.0.1:1/app";
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "backup".into(),
                "--source".into(),
                pg.into(),
                "--to".into(),
                "s3://AKIDLEAK:SECRETLEAK@bucket/p".into(),
            ],
            "SECRETLEAK",
        ),
        (
            vec![
                "backup".into(),
                "--source".into(),
                pg.into(),
                "--to".into(),
                "s3://bucket/p?X-Amz-Signature=SIGLEAK&X-Amz-Credential=CREDLEAK".into(),
            ],
            "SIGLEAK",
        ),
        (
            vec![
                "list".into(),
                "--from".into(),
                "azblob://acct/c/p?sv=1&sig=AZSIGLEAK".into(),
            ],
            "AZSIGLEAK",
        ),
        (
            vec![
                "backup".into(),
                "--source".into(),
                "postgres://app:pa/ssLEAK@db/app".into(),
            ],
            "ssLEAK",
        ),
        (
            vec![
                "backup".into(),
                "--source".into(),
                "postgres://app@db/app?sslpassword=SSLLEAK".into(),
            ],
            "SSLLEAK",
        ),
        (
            vec![
                "backup".into(),
                "--source".into(),
                pg.into(),
                "--pushgateway-url".into(),
                "ftp://u:PGWLEAK@gw/?token=TOKLEAK".into(),
            ],
            "PGWLEAK",
        ),
        (
            vec![
                "backup".into(),
                "--source".into(),
                pg.into(),
                "--encrypt-to".into(),
                junk_arg.clone(),
            ],
            "JUNKSECRET",
        ),
    ];
    for (args, secret) in cases {
        let _ = std::fs::remove_file(&log);
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--log-level", "trace", "--termination-log", &log_arg]);
        let run = agent.run(&all, &[]);
        run.assert_code(2);
        let summary = std::fs::read_to_string(&log).unwrap_or_default();
        for (what, text) in [("output", run.all()), ("termination log", summary)] {
            assert!(
                !text.contains(secret),
                "{secret} in the {what} of {args:?}:\n{text}"
            );
        }
    }
}

#[test]
fn a_secret_pushgateway_url_is_redacted_in_warnings() {
    let store = TestStore::file();
    let pg = Postgres::start();
    pg.create_database("app");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let gateway = format!(
        "http://user:PGWPASS@127.0.0.1:{}/?token=PGWTOKEN",
        vertice_tests::ports::free_port()
    );
    let run = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--pushgateway-url",
            &gateway,
            "--log-level",
            "trace",
        ],
        &env,
    );
    run.assert_ok();
    assert!(run.stderr.contains("Pushgateway"), "{}", run.stderr);
    assert!(
        !run.all().contains("PGWPASS") && !run.all().contains("PGWTOKEN"),
        "{}",
        run.all()
    );
}

#[test]
fn names_cannot_leave_the_store_on_any_command() {
    let outer = tempfile::tempdir().expect("tempdir");
    let root = outer.path().join("store");
    std::fs::create_dir_all(root.join("default/app")).expect("mkdir");
    // A file right outside the store root that a `..` would reach.
    let victim = outer.path().join("20200101T000000Z-dead");
    std::fs::create_dir_all(&victim).expect("victim");
    std::fs::write(victim.join("dump.pgdump.zst"), b"not yours").expect("victim file");
    let url = format!("file://{}", root.display());
    let agent = Agent::new();
    for args in [
        vec![
            "prune",
            "--from",
            &url,
            "--namespace",
            "..",
            "--name",
            "store",
            "--keep-last",
            "1",
        ],
        vec![
            "prune",
            "--from",
            &url,
            "--namespace",
            "..",
            "--keep-last",
            "1",
            "--unfinished-after",
            "1h",
        ],
        vec!["list", "--from", &url, "--namespace", "", "--name", ""],
        vec!["list", "--from", &url, "--namespace", "../.."],
        vec!["verify", "--from", &url, "--name", "../x"],
        vec![
            "restore",
            "--from",
            &url,
            "--namespace",
            "..",
            "--to",
            "file:///tmp/never.rdb",
        ],
    ] {
        let run = agent.run(&args, &[]);
        run.assert_code(2);
        assert!(
            run.stderr.contains("--namespace") || run.stderr.contains("--name"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(
        victim.join("dump.pgdump.zst").exists(),
        "a file outside the store was deleted"
    );
}

#[test]
fn database_names_that_need_mapping_ask_for_a_name() {
    let store = TestStore::file();
    let pg = Postgres::start();
    pg.create_database("coll_a");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let run = agent.run(
        &["backup", "--source", &pg.url("coll_a"), "--to", &url],
        &env,
    );
    run.assert_code(2);
    assert!(run.stderr.contains("--name coll-a"), "{}", run.stderr);
    agent
        .run(
            &[
                "backup",
                "--source",
                &pg.url("coll_a"),
                "--to",
                &url,
                "--name",
                "coll-a",
            ],
            &env,
        )
        .assert_ok();
}

#[test]
fn exit_codes_name_what_to_fix() {
    let store = TestStore::file();
    let pg = Postgres::start();
    pg.create_database("app");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("termination-log");
    let log_arg = log.display().to_string();

    let missing_tool = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--pg-dump",
            "/nonexistent/bin/pg_dump",
        ],
        &env,
    );
    missing_tool.assert_code(2);
    assert!(
        missing_tool.stderr.contains("/nonexistent/bin/pg_dump"),
        "{}",
        missing_tool.stderr
    );

    let bad_gateway = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--pushgateway-url",
            "pushgateway:9091",
        ],
        &env,
    );
    bad_gateway.assert_code(2);
    assert!(
        bad_gateway.stderr.contains("--pushgateway-url"),
        "{}",
        bad_gateway.stderr
    );

    // A command line clap refuses still writes its summary where asked.
    let unparsable = agent.run(
        &["backup", "--no-such-flag", "--termination-log", &log_arg],
        &[],
    );
    unparsable.assert_code(2);
    let summary = summary::read(&log);
    assert_eq!(summary["exit_code"], 2);
    assert_eq!(summary["error_category"], "config");

    let no_role = agent.run(
        &[
            "backup",
            "--source",
            &format!("postgres://nobody@127.0.0.1:{}/app", pg.port),
            "--to",
            &url,
        ],
        &env,
    );
    no_role.assert_code(2);
    assert!(no_role.stderr.contains("USER@"), "{}", no_role.stderr);

    // The same for the target of a restore, which is left untouched.
    agent
        .run(&["backup", "--source", &pg.url("app"), "--to", &url], &env)
        .assert_ok();
    let no_target = agent.run(
        &["restore", "--from", &url, "--to", &pg.url("missing-db")],
        &env,
    );
    no_target.assert_code(2);
    assert!(
        no_target.stderr.contains("database name")
            && no_target.stderr.contains("nothing was restored"),
        "{}",
        no_target.stderr
    );
}
