//! Parallel PostgreSQL backups and restores (`--jobs`): one snapshot, parts
//! per table and block range, a restore that replaces the target database
//! only once everything loaded — round trips on PostgreSQL 15 and 17, a
//! restore with stock tools alone, and the failures: SIGTERM mid-backup and
//! mid-restore, a worker's session killed, a corrupt part, a target that is
//! not empty.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use vertice_tests::fixtures::RICH_POSTGRES_SCHEMA;
use vertice_tests::{Agent, Postgres, TestStore};

/// Beside the rich fixture: a table large enough to be split into block
/// ranges (generated column, NULLs, tabs, newlines, backslashes, non-ASCII),
/// an inheritance parent with rows of its own, a partitioned table, and an
/// unlogged table.
const BIG_TABLES: &str = r#"
CREATE TABLE sales.events (
    id bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    body text,
    payload jsonb,
    amount numeric(12,2),
    ratio double precision,
    twice bigint GENERATED ALWAYS AS (id * 2) STORED
);
INSERT INTO sales.events (id, at, kind, body, payload, amount, ratio)
SELECT g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second',
       (ARRAY['view', 'buy', E'tab\there', E'new\nline', E'back\\slash'])[1 + g % 5],
       CASE WHEN g % 7 = 0 THEN NULL ELSE md5(g::text) || ' Þór 🚀 ' || md5((g * 7)::text) END,
       jsonb_build_object('g', g, 's', md5((g * 3)::text)),
       (g % 100000) / 100.0, g / 3.0
FROM generate_series(1, 600000) g;
CREATE INDEX events_kind ON sales.events (kind);
CREATE TABLE sales.notes (id int, note text);
CREATE TABLE sales.notes_2026 () INHERITS (sales.notes);
INSERT INTO sales.notes SELECT g, repeat('n', 100) || g FROM generate_series(1, 60000) g;
INSERT INTO sales.notes_2026 SELECT g, 'child ' || g FROM generate_series(1, 1000) g;
CREATE TABLE sales.ledger (id int, at date, v text) PARTITION BY RANGE (at);
CREATE TABLE sales.ledger_2025 PARTITION OF sales.ledger FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sales.ledger_2026 PARTITION OF sales.ledger FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO sales.ledger SELECT g, date '2025-06-01' + (g % 400), repeat('x', 60) FROM generate_series(1, 120000) g;
CREATE UNLOGGED TABLE sales.cache (k text PRIMARY KEY, v text);
INSERT INTO sales.cache SELECT 'k' || g, repeat('v', 80) FROM generate_series(1, 60000) g;
"#;

fn fill(pg: &Postgres, db: &str) {
    pg.create_database(db);
    pg.script(db, RICH_POSTGRES_SCHEMA);
    pg.script(db, BIG_TABLES);
}

/// A database's dump as sorted lines: parts load side by side, so rows land
/// in another physical order than the source's, and only the order may
/// differ.
fn sorted_dump(pg: &Postgres, db: &str) -> Vec<String> {
    let mut lines: Vec<String> = pg.schema_and_data(db).lines().map(String::from).collect();
    lines.sort();
    lines
}

fn assert_same(pg: &Postgres, source: &str, restored: &str) {
    let (a, b) = (sorted_dump(pg, source), sorted_dump(pg, restored));
    assert!(a.len() > 700_000, "the fixture is what we think");
    if a != b {
        let (sa, sb): (BTreeSet<&String>, BTreeSet<&String>) =
            (a.iter().collect(), b.iter().collect());
        let missing: Vec<_> = sa.difference(&sb).take(5).collect();
        let extra: Vec<_> = sb.difference(&sa).take(5).collect();
        panic!(
            "{restored} differs from {source} ({} and {} lines): missing {missing:?}, extra {extra:?}",
            a.len(),
            b.len()
        );
    }
    assert_eq!(
        pg.psql(restored, "SELECT count(*) FROM pg_largeobject_metadata"),
        "2"
    );
    // Sequences are in the dump (`setval`), compared above.
}

/// Databases a parallel restore left behind (staging or replaced ones).
fn leftovers(pg: &Postgres) -> String {
    pg.psql(
        "postgres",
        "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database WHERE datname LIKE 'vertice\\_re%'",
    )
}

fn manifest(store: &TestStore, prefix: &str) -> serde_json::Value {
    let manifests = store.manifests(prefix);
    assert_eq!(manifests.len(), 1, "one backup under {prefix}");
    manifests[0].clone()
}

fn round_trip(pg: &Postgres, stock_tools: bool) {
    // The server's own major's tools (pg_dump refuses a newer server).
    let (pg_dump, pg_restore) = (pg.pg_bin("pg_dump"), pg.pg_bin("pg_restore"));
    let (pg_dump, pg_restore) = (
        pg_dump.display().to_string(),
        pg_restore.display().to_string(),
    );
    let dumping = |args: &[&str]| {
        [args, &["--pg-dump", &pg_dump]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<String>>()
    };
    let restoring = |args: &[&str]| {
        [args, &["--pg-restore", &pg_restore]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<String>>()
    };
    let run = |args: Vec<String>, env: &[(&'static str, String)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Agent::new().run(&args, env)
    };
    fill(pg, "shop");
    let store = TestStore::file();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let agent = Agent::new();
    let url = store.url("par");
    let backup = run(
        dumping(&[
            "backup",
            "--source",
            &pg.url("shop"),
            "--to",
            &url,
            "--jobs",
            "4",
        ]),
        &env,
    );
    backup.assert_ok();
    let id = backup.stdout.trim().to_string();

    // The default, --jobs auto: a database this small (on an agent with
    // fewer than 4 CPUs, too) stays one pg_dump stream, and the log says
    // why.
    if stock_tools {
        let auto_url = store.url("auto");
        let auto = run(
            dumping(&["backup", "--source", &pg.url("shop"), "--to", &auto_url]),
            &env,
        );
        auto.assert_ok();
        assert!(auto.stderr.contains("--jobs auto: 1 ("), "{}", auto.all());
        let m = manifest(&store, "auto/");
        assert_eq!(m["format_version"], 1, "{m}");
        assert!(m["source"]["postgres"].is_null(), "{m}");
    }

    let m = manifest(&store, "par/");
    assert_eq!(m["format_version"], 3, "older agents must refuse it");
    let artifacts = m["artifacts"].as_array().expect("artifacts");
    assert_eq!(artifacts[0]["name"], "dump.pgdump.zst");
    let parts = m["source"]["postgres"]["parts"].as_array().expect("parts");
    assert_eq!(parts.len() + 1, artifacts.len(), "{m}");
    let events: Vec<_> = parts.iter().filter(|p| p["table"] == "events").collect();
    assert!(events.len() >= 2, "the big table is split: {parts:?}");
    assert!(events.iter().all(|p| p["blocks"]["from"].is_u64()));
    let rows: u64 = events
        .iter()
        .map(|p| p["rows"].as_u64().expect("rows"))
        .sum();
    assert_eq!(rows, 600_000);
    assert!(
        events.iter().all(|p| !p["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .any(|c| c == "twice")),
        "generated columns are not copied"
    );
    let notes = parts
        .iter()
        .find(|p| p["table"] == "notes")
        .expect("notes part");
    assert_eq!(
        notes["rows"], 60_000,
        "a parent's own rows, not its children's"
    );

    assert!(
        !backup.stderr.contains(&pg.password) && !m.to_string().contains(&pg.password),
        "the password is nowhere"
    );
    agent
        .run(&["verify", "--from", &url, "--backup", &id], &env)
        .assert_ok();

    // A drill loads it with as many sessions, into its scratch database.
    let log = tempfile::NamedTempFile::new().expect("log");
    let log_path = log.path().display().to_string();
    let drill = run(
        restoring(&[
            "drill",
            "--from",
            &url,
            "--backup",
            &id,
            "--restore-to",
            &pg.url("postgres"),
            "--jobs",
            "4",
            "--termination-log",
            &log_path,
        ]),
        &env,
    );
    drill.assert_ok();
    let summary = vertice_tests::summary::read(log.path());
    let report = &summary["drill"];
    assert_eq!(report["checks_failed"], 0, "{report}");
    assert_eq!(report["cleaned_up"], true, "{report}");
    assert!(
        report["restore_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{report}"
    );
    assert!(!drill.stderr.contains(&pg.password) && !summary.to_string().contains(&pg.password));

    pg.create_database("shop_j4");
    run(
        restoring(&[
            "restore",
            "--from",
            &url,
            "--backup",
            &id,
            "--to",
            &pg.url("shop_j4"),
            "--jobs",
            "4",
        ]),
        &env,
    )
    .assert_ok();
    assert_same(pg, "shop", "shop_j4");
    assert_eq!(leftovers(pg), "", "no staging database is left");

    // One session restores it too.
    pg.create_database("shop_j1");
    run(
        restoring(&[
            "restore",
            "--from",
            &url,
            "--backup",
            &id,
            "--to",
            &pg.url("shop_j1"),
        ]),
        &env,
    )
    .assert_ok();
    assert_same(pg, "shop", "shop_j1");

    // A database that is not empty is never replaced.
    let refused = run(
        restoring(&[
            "restore",
            "--from",
            &url,
            "--backup",
            &id,
            "--to",
            &pg.url("shop_j1"),
            "--jobs",
            "2",
        ]),
        &env,
    );
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("is not empty") && refused.stderr.contains("--jobs 1"),
        "{}",
        refused.stderr
    );
    assert_same(pg, "shop", "shop_j1");
    assert_eq!(leftovers(pg), "");

    // Options that choose tables cannot be half honoured.
    let selecting = run(
        dumping(&[
            "backup",
            "--source",
            &pg.url("shop"),
            "--to",
            &url,
            "--jobs",
            "4",
            "--pg-dump-arg=--exclude-table=sales.cache",
        ]),
        &env,
    );
    selecting.assert_code(2);
    assert!(
        selecting.stderr.contains("--exclude-table"),
        "{}",
        selecting.stderr
    );

    if stock_tools {
        restore_with_stock_tools(pg, &store, &m, &id);
    }
}

/// The README's recipe: pg_restore for the archive's sections, and each
/// part through `zstd -d` into psql's `COPY … FROM STDIN`.
fn restore_with_stock_tools(pg: &Postgres, store: &TestStore, m: &serde_json::Value, id: &str) {
    pg.create_database("shop_stock");
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("par/default/shop/{id}");
    let mut script = String::from("set -euo pipefail\n");
    let archive = dir.path().join("dump.pgdump.zst");
    std::fs::write(&archive, store.read(&format!("{prefix}/dump.pgdump.zst"))).expect("write");
    let target = pg.url("shop_stock");
    // pg_restore stops reading where its sections end: from a file, not a pipe.
    script.push_str(&format!(
        "zstd -dq {a} -o {d}\npg_restore --section=pre-data --section=data -d '{target}' {d}\n",
        a = archive.display(),
        d = dir.path().join("dump.pgdump").display()
    ));
    for part in m["source"]["postgres"]["parts"].as_array().expect("parts") {
        let name = part["artifact"].as_str().expect("artifact");
        let file = dir.path().join(name);
        std::fs::write(&file, store.read(&format!("{prefix}/{name}"))).expect("write");
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let columns: Vec<String> = part["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| quote(c.as_str().expect("column")))
            .collect();
        let copy = format!(
            "COPY {}.{} ({}) FROM STDIN",
            quote(part["schema"].as_str().expect("schema")),
            quote(part["table"].as_str().expect("table")),
            columns.join(", ")
        );
        script.push_str(&format!(
            "zstd -dc {f} | psql -X -q -v ON_ERROR_STOP=1 -d '{target}' -c '{copy}'\n",
            f = file.display()
        ));
    }
    script.push_str(&format!(
        "pg_restore --section=post-data -d '{target}' {d}\n",
        d = dir.path().join("dump.pgdump").display()
    ));
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "stock tools ({:?}): {}{}\n{script}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(pg, "shop", "shop_stock");
}

#[test]
fn a_parallel_backup_round_trips_on_15_and_restores_with_stock_tools() {
    round_trip(&Postgres::start(), true);
}

#[test]
fn a_parallel_backup_round_trips_on_17() {
    round_trip(&Postgres::start_17(), false);
}

fn spawn(agent: &Agent, args: &[&str], env: &[(&'static str, String)]) -> Child {
    let mut command = agent.command();
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().expect("spawn")
}

fn sigterm(child: Child) -> (Option<i32>, String) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped in {:?}",
        started.elapsed()
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn parallel_runs_fail_whole_and_leave_nothing() {
    let pg = Postgres::start();
    fill(&pg, "shop");
    let store = TestStore::file();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let agent = Agent::new();
    let url = store.url("f");
    let good = agent.run(
        &[
            "backup",
            "--source",
            &pg.url("shop"),
            "--to",
            &url,
            "--jobs",
            "4",
        ],
        &env,
    );
    good.assert_ok();
    let id = good.stdout.trim().to_string();
    let keys_after_good = store.keys("f/");
    let copying = |pg: &Postgres| {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vertice-backup' AND query ILIKE 'COPY%'",
        ) != "0"
    };

    // SIGTERM while the workers copy (zstd at level 19 keeps them busy).
    let slow = [
        "backup",
        "--source",
        &pg.url("shop"),
        "--to",
        &url,
        "--jobs",
        "4",
        "--compression-level",
        "19",
    ];
    let child = spawn(&agent, &slow, &env);
    wait_for("the workers copying", || copying(&pg));
    std::thread::sleep(Duration::from_millis(300));
    let (code, stderr) = sigterm(child);
    assert_eq!(code, Some(143), "{stderr}");
    assert_eq!(
        store.keys("f/"),
        keys_after_good,
        "nothing of the stopped run is left"
    );

    // A worker's session killed by the server: the run fails, nothing stays.
    let child = spawn(&agent, &slow, &env);
    wait_for("the workers copying", || copying(&pg));
    pg.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vertice-backup' AND query ILIKE 'COPY%'",
    );
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sales.") && !stderr.contains("interrupted"),
        "the failing part is named, not the stop it caused: {stderr}"
    );
    assert_eq!(
        store.keys("f/"),
        keys_after_good,
        "nothing of the failed run is left"
    );
    let listed = agent.run(&["list", "--from", &url, "--output", "json"], &env);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("list JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["id"], id.as_str(), "the good backup stays latest");

    // The snapshot's holder (idle in its transaction) killed: its locks are
    // gone, so the copies prove nothing and the run fails.
    let child = spawn(&agent, &slow, &env);
    wait_for("the workers copying", || copying(&pg));
    pg.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vertice-backup-snapshot'",
    );
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Whether a worker was still taking the snapshot up or all were copying.
    assert!(
        stderr.contains("snapshot and table locks") || stderr.contains("holding connection drop"),
        "{stderr}"
    );
    assert_eq!(
        store.keys("f/"),
        keys_after_good,
        "nothing of the failed run is left"
    );

    // An ALTER TABLE queued behind the backup's locks: the worker reaching
    // that table stops the backup at once instead of waiting on it (and
    // making the application wait behind both).
    let two = [
        "backup",
        "--source",
        &pg.url("shop"),
        "--to",
        &url,
        "--jobs",
        "2",
        "--compression-level",
        "6",
    ];
    let child = spawn(&agent, &two, &env);
    wait_for("the workers copying", || copying(&pg));
    let alter = pg.spawn_psql("shop", "ALTER TABLE sales.notes ADD COLUMN extra int");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sales.notes: another session waits for an exclusive lock"),
        "{stderr}"
    );
    let altered = alter.wait_with_output().expect("psql");
    assert!(
        altered.status.success(),
        "the ALTER went through once the backup let go"
    );
    pg.psql("shop", "ALTER TABLE sales.notes DROP COLUMN extra");
    assert_eq!(
        store.keys("f/"),
        keys_after_good,
        "nothing of the failed run is left"
    );

    // SIGTERM mid-restore: the target stays empty, the staging database goes.
    pg.create_database("target");
    let restore = [
        "restore",
        "--from",
        &url,
        "--backup",
        &id,
        "--to",
        &pg.url("target"),
        "--jobs",
        "4",
    ];
    let child = spawn(&agent, &restore, &env);
    wait_for("the parts loading", || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE starts_with(datname, 'vertice_restore_') AND query ILIKE 'COPY%'",
        ) != "0"
    });
    let (code, stderr) = sigterm(child);
    assert_eq!(code, Some(143), "{stderr}");
    assert_eq!(pg.public_tables("target"), "");
    assert_eq!(
        pg.psql(
            "target",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'sales'"
        ),
        "0"
    );
    wait_for("the staging database dropped", || leftovers(&pg).is_empty());

    // A corrupt part: refused, the target untouched, nothing left.
    let m = manifest(&store, "f/");
    let part = m["source"]["postgres"]["parts"][0]["artifact"]
        .as_str()
        .expect("artifact")
        .to_string();
    let key = format!("f/default/shop/{id}/{part}");
    let mut bytes = store.read(&key);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    store.overwrite(&key, &bytes);
    let corrupt = agent.run(&restore, &env);
    assert_eq!(corrupt.code, 1, "{}", corrupt.stderr);
    assert!(
        corrupt.stderr.contains("corrupt") && corrupt.stderr.contains("was not changed"),
        "{}",
        corrupt.stderr
    );
    assert_eq!(pg.public_tables("target"), "");
    assert_eq!(
        pg.psql(
            "target",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'sales'"
        ),
        "0"
    );
    assert_eq!(leftovers(&pg), "");

    // Anything a user made counts, not only tables.
    pg.create_database("with_function");
    pg.psql(
        "with_function",
        "CREATE FUNCTION public.answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
    );
    let refused = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--backup",
            &id,
            "--to",
            &pg.url("with_function"),
            "--jobs",
            "2",
        ],
        &env,
    );
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("function answer"),
        "{}",
        refused.stderr
    );
    assert_eq!(pg.psql("with_function", "SELECT public.answer()"), "42");
}
