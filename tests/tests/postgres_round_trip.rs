//! PostgreSQL backup → restore round trips on every store, compared by a fresh
//! `pg_dump` of source and target.

use vertice_tests::fixtures::RICH_POSTGRES_SCHEMA;
use vertice_tests::{Agent, Postgres, TestStore};

fn round_trip(store: &TestStore) {
    let pg = Postgres::start();
    pg.create_database("shop");
    pg.script("shop", RICH_POSTGRES_SCHEMA);
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("team-a");

    let backup = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("shop"),
            "--to",
            &url,
            "--namespace",
            "prod",
        ],
        &env,
    );
    backup.assert_ok();
    let id = backup.stdout.trim().to_string();
    assert!(id.len() == 21, "backup prints its id, got {id:?}");

    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &env);
    listed.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("list JSON");
    let row = &rows[0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["namespace"], "prod");
    assert_eq!(row["name"], "shop");
    assert_eq!(row["source_kind"], "postgres");
    assert!(
        row["server_version"]
            .as_str()
            .is_some_and(|v| v.starts_with(char::is_numeric)),
        "{row}"
    );
    assert!(
        row["raw_bytes"].as_u64() > row["stored_bytes"].as_u64(),
        "zstd compresses: {row}"
    );

    let keys = store.keys("team-a/prod/shop/");
    assert_eq!(
        keys,
        vec![
            format!("team-a/prod/shop/{id}/dump.pgdump.zst"),
            format!("team-a/prod/shop/{id}/manifest.json")
        ],
        "object layout"
    );
    // The stored artifact is open format: zstd-compressed pg_dump custom archive.
    let stored = store.read(&format!("team-a/prod/shop/{id}/dump.pgdump.zst"));
    assert_eq!(&stored[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");

    agent
        .run(&["verify", "--from", &url, "--backup", &id], &env)
        .assert_ok();

    pg.create_database("shop_restored");
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--backup",
                "latest",
                "--to",
                &pg.url("shop_restored"),
            ],
            &env,
        )
        .assert_ok();
    let source = pg.schema_and_data("shop");
    let restored = pg.schema_and_data("shop_restored");
    assert!(
        source.contains("Ólafur 🚀 Þór") && source.contains("lo_open"),
        "the fixture is what we think"
    );
    assert!(
        source == restored,
        "restored database differs from the source"
    );
    assert_eq!(
        pg.psql(
            "shop_restored",
            "SELECT count(*) FROM pg_largeobject_metadata"
        ),
        "2"
    );
    assert_eq!(
        pg.psql("shop_restored", "SELECT nextval('sales.invoice_no')"),
        "100006"
    );
}

#[test]
fn restore_picks_by_id_and_time_and_stock_tools_can_read_the_backup() {
    let store = TestStore::file();
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql("app", "CREATE TABLE t (v int); INSERT INTO t VALUES (1)");
    let agent = Agent::new();
    let env = vec![("PGPASSWORD", pg.password.clone())];
    let url = store.url("");
    let first = agent.run(&["backup", "--source", &pg.url("app"), "--to", &url], &env);
    first.assert_ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    pg.psql("app", "INSERT INTO t VALUES (2)");
    let second = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("app"),
            "--to",
            &url,
            "--compression",
            "gzip",
        ],
        &env,
    );
    second.assert_ok();
    let first_id = first.stdout.trim();
    let second_id = second.stdout.trim();

    let table = agent.run(&["list", "--from", &url], &env);
    table.assert_ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{}", table.stdout);
    assert!(
        lines[1].starts_with(second_id) && lines[2].starts_with(first_id),
        "newest first:\n{}",
        table.stdout
    );

    pg.create_database("by_id");
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--backup",
                first_id,
                "--to",
                &pg.url("by_id"),
            ],
            &env,
        )
        .assert_ok();
    assert_eq!(
        pg.psql("by_id", "SELECT string_agg(v::text, ',') FROM t"),
        "1"
    );

    let second_time = agent.run(&["list", "--from", &url, "--output", "json"], &env);
    let rows: serde_json::Value = serde_json::from_str(&second_time.stdout).expect("json");
    let t = rows[0]["time"].as_str().expect("time").to_string();
    pg.create_database("by_time");
    agent
        .run(
            &[
                "restore",
                "--from",
                &url,
                "--backup",
                &format!("before:{t}"),
                "--to",
                &pg.url("by_time"),
            ],
            &env,
        )
        .assert_ok();
    assert_eq!(
        pg.psql("by_time", "SELECT count(*) FROM t"),
        "1",
        "before: the second backup's time is the first backup"
    );

    // No lock-in: gzip -d | pg_restore works without the agent.
    let TestStore::File { dir } = &store else {
        unreachable!()
    };
    let artifact = dir
        .path()
        .join(format!("default/app/{second_id}/dump.pgdump.gz"));
    pg.create_database("stock");
    let script = format!(
        "gzip -dc '{}' | '{}' --single-transaction -h 127.0.0.1 -p {} -U postgres -d stock",
        artifact.display(),
        pg.pg_bin("pg_restore").display(),
        pg.port
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pg.psql("stock", "SELECT string_agg(v::text, ',' ORDER BY v) FROM t"),
        "1,2"
    );
}

vertice_tests::on_every_store!(round_trip);

#[test]
fn a_refused_restore_reports_psql_s_own_error_and_restores_nothing() {
    let store = TestStore::file();
    let pg = Postgres::start();
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("");
    // Far more SQL than the pipes hold on both sides of the failing
    // statement: psql is still busy with `a_rows` when pg_restore is
    // blocked, and pg_restore dies of SIGPIPE writing `c_rows` once psql
    // stopped at `b_acl`, whose data names a role the target lacks.
    pg.psql("postgres", "CREATE ROLE gone NOLOGIN");
    pg.create_database("big");
    pg.script(
        "big",
        "CREATE TABLE public.a_rows AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g;
         CREATE TABLE public.b_acl (a aclitem[]);
         INSERT INTO public.b_acl VALUES ('{gone=r/postgres}');
         CREATE TABLE public.c_rows AS SELECT * FROM public.a_rows;",
    );
    agent
        .run(&["backup", "--source", &pg.url("big"), "--to", &url], &env)
        .assert_ok();
    pg.psql("postgres", "DROP DATABASE big");
    pg.psql("postgres", "DROP ROLE gone");

    pg.create_database("empty");
    let out = agent.run(&["restore", "--from", &url, "--to", &pg.url("empty")], &env);
    out.assert_code(2);
    for part in [
        "--to: psql stopped at TABLE DATA public.b_acl: ",
        "ERROR:  role \"gone\" does not exist",
        "CREATE ROLE \"gone\" NOLOGIN",
        "nothing was restored",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert!(
        !out.stderr.contains("signal 13") && !out.stderr.contains("backup itself is intact"),
        "{}",
        out.stderr
    );
    assert_eq!(pg.public_tables("empty"), "");

    // A table the target already has: psql's error names it.
    pg.create_database("taken");
    pg.psql(
        "taken",
        "CREATE TABLE public.c_rows (mine text); INSERT INTO public.c_rows VALUES ('keep')",
    );
    pg.psql("postgres", "CREATE ROLE gone NOLOGIN");
    let out = agent.run(&["restore", "--from", &url, "--to", &pg.url("taken")], &env);
    out.assert_code(1);
    for part in [
        "psql stopped at TABLE public.c_rows: ",
        "ERROR:  relation \"c_rows\" already exists",
        "nothing was restored",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert_eq!(pg.public_tables("taken"), "c_rows");
    assert_eq!(
        pg.psql("taken", "SELECT string_agg(mine, ',') FROM c_rows"),
        "keep"
    );
}
