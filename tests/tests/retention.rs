//! Retention: `prune` plans, dry-runs and deletes by policy on every store,
//! removes old unfinished uploads, never touches the newest backup or a
//! backup whose manifest it cannot read, and runs after a successful backup.

use vertice_tests::fake_pg_dump::fake_pg_dump;
use vertice_tests::{Agent, Postgres, TestStore};

fn manifests(store: &TestStore, prefix: &str) -> Vec<String> {
    store
        .keys(prefix)
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect()
}

fn prune_by_policy(store: &TestStore) {
    let pg = Postgres::start();
    pg.create_database("app");
    pg.psql("app", "CREATE TABLE t (v int); INSERT INTO t VALUES (1)");
    let agent = Agent::new();
    let env = store.env_with("PGPASSWORD", &pg.password);
    let url = store.url("r");
    let source = pg.url("app");
    let backup = |extra: &[&str]| {
        let mut args = vec!["backup", "--source", &source, "--to", &url];
        args.extend_from_slice(extra);
        let out = agent.run(&args, &env);
        out.assert_ok();
        out.stdout.trim().to_string()
    };
    let ids: Vec<String> = (0..4).map(|_| backup(&[])).collect();
    // Leftovers of a crashed run long ago, and a backup whose manifest is damaged.
    store.overwrite(
        "r/default/app/20200101T000000Z-dead/dump.pgdump.zst",
        b"partial",
    );
    store.overwrite(
        "r/default/app/20200102T000000Z-beef/manifest.json",
        b"{not json",
    );
    store.overwrite(
        "r/default/app/20200102T000000Z-beef/dump.pgdump.zst",
        b"data",
    );

    // Another series' leftovers are not a `--name app` prune's business.
    store.overwrite(
        "r/default/other/20200101T000000Z-cafe/dump.pgdump.zst",
        b"partial",
    );
    // No policy: refused.
    let out = agent.run(&["prune", "--from", &url], &env);
    out.assert_code(2);
    assert!(out.stderr.contains("--keep-last"), "{}", out.stderr);

    // Dry run: the plan, with reasons, and nothing deleted.
    let before = store.keys("r/");
    let plan = agent.run(
        &[
            "prune",
            "--from",
            &url,
            "--keep-last",
            "2",
            "--dry-run",
            "--output",
            "json",
        ],
        &env,
    );
    plan.assert_ok();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan json");
    let action = |id: &str| {
        plan["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .find(|a| a["backup_id"] == id)
            .map(|a| a["action"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(action(&ids[3]).as_deref(), Some("keep"), "{plan}");
    assert_eq!(action(&ids[2]).as_deref(), Some("keep"));
    assert_eq!(action(&ids[1]).as_deref(), Some("delete"));
    assert_eq!(action(&ids[0]).as_deref(), Some("delete"));
    assert_eq!(
        action("20200101T000000Z-dead").as_deref(),
        Some("delete-unfinished")
    );
    assert_eq!(
        action("20200102T000000Z-beef"),
        None,
        "a damaged manifest is left alone"
    );
    let newest = plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["backup_id"] == ids[3].as_str())
        .expect("newest");
    assert!(
        newest["reasons"].to_string().contains("newest backup"),
        "{newest}"
    );
    assert_eq!(store.keys("r/"), before, "a dry run deletes nothing");

    // For real.
    let table = agent.run(
        &["prune", "--from", &url, "--name", "app", "--keep-last", "2"],
        &env,
    );
    table.assert_ok();
    assert!(
        table
            .stdout
            .contains("deleted 2 backup(s) and 1 unfinished"),
        "{}",
        table.stdout
    );
    let left = store.keys("r/");
    for gone in [&ids[0], &ids[1], &"20200101T000000Z-dead".to_string()] {
        assert!(
            left.iter().all(|k| !k.contains(gone.as_str())),
            "{gone} still there: {left:?}"
        );
    }
    for kept in [
        &ids[2],
        &ids[3],
        &"20200102T000000Z-beef".to_string(),
        &"20200101T000000Z-cafe".to_string(),
    ] {
        assert!(
            left.iter().any(|k| k.contains(kept.as_str())),
            "{kept} gone: {left:?}"
        );
    }
    // What is kept still restores.
    pg.create_database("copy");
    agent
        .run(&["restore", "--from", &url, "--to", &pg.url("copy")], &env)
        .assert_ok();
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM t"), "1");

    // After a successful backup the configured policy runs by itself.
    let newest = backup(&["--keep-last", "1"]);
    let remaining = manifests(store, "r/default/app/");
    assert_eq!(
        remaining,
        vec![
            "r/default/app/20200102T000000Z-beef/manifest.json".to_string(),
            format!("r/default/app/{newest}/manifest.json")
        ]
    );

    // A failed backup never prunes: the last good one stays.
    let missing = pg.url("missing_db");
    let failed = agent.run(
        &[
            "backup",
            "--source",
            &missing,
            "--to",
            &url,
            "--name",
            "app",
            "--keep-last",
            "1",
        ],
        &env,
    );
    assert_ne!(failed.code, 0);
    assert_eq!(manifests(store, "r/default/app/").len(), 2);
}

vertice_tests::on_every_store!(prune_by_policy);

#[test]
fn prune_flags_are_checked() {
    let store = TestStore::file();
    let agent = Agent::new();
    let url = store.url("");
    for (args, needle) in [
        (vec!["--keep-within", "soon"], "--keep-within"),
        (vec!["--keep-last", "0"], "--keep-last 0"),
        (
            vec!["--keep-daily", "7", "--unfinished-after", "5m"],
            "--unfinished-after",
        ),
        (vec!["--keep-daily", "7", "--min-keep", "0"], "min-keep"),
    ] {
        let mut full = vec!["prune", "--from", &url];
        full.extend(args);
        let out = agent.run(&full, &[]);
        out.assert_code(2);
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
}

/// A node whose clock went back an hour takes a backup while a newer-id
/// backup exists: it is still the newest (`latest`, `list`) and
/// `--keep-last 1` keeps it. And where ids and the order the store wrote
/// the manifests in disagree (backups of agents that did not keep ids in
/// order), prune keeps both the newest id and the one written last.
fn a_clock_that_went_back_never_loses_the_last_backup(store: &TestStore) {
    let agent = Agent::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = fake_pg_dump(dir.path(), "head -c 100000 /dev/urandom");
    let url = store.url("c");
    let backup = |env: &[(&'static str, String)], extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--source",
            "postgres://app@127.0.0.1:1/app",
            "--to",
            &url,
            "--pg-dump",
            &dump,
        ];
        args.extend_from_slice(extra);
        let out = agent.run(&args, env);
        out.assert_ok();
        out
    };
    let first = backup(&store.env(), &[]).stdout.trim().to_string();
    let mut behind = store.env();
    behind.push(("VERTICE_TESTING_CLOCK_OFFSET", "-1h".to_string()));
    let out = backup(&behind, &[]);
    let second = out.stdout.trim().to_string();
    assert!(
        out.stderr.contains("clock is behind the newest backup"),
        "{}",
        out.stderr
    );
    assert!(second > first, "{second} must sort after {first}");

    let list = agent.run(&["list", "--from", &url, "--output", "json"], &store.env());
    list.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).expect("json");
    assert_eq!(rows[0]["id"], second.as_str(), "newest first: {rows}");
    let summary = dir.path().join("verify.json");
    agent
        .run(
            &[
                "verify",
                "--from",
                &url,
                "--termination-log",
                &summary.display().to_string(),
            ],
            &store.env(),
        )
        .assert_ok();
    let verified = vertice_tests::summary::read(&summary);
    assert_eq!(verified["backup_id"], second.as_str(), "latest");

    // The node whose clock is behind keeps what it took last (and whatever
    // is dated after its clock, which it cannot place in time).
    let plan = agent.run(
        &[
            "prune",
            "--from",
            &url,
            "--keep-last",
            "1",
            "--dry-run",
            "--output",
            "json",
        ],
        &behind,
    );
    plan.assert_ok();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan");
    let kept_second = plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .any(|a| a["backup_id"] == second.as_str() && a["action"] == "keep");
    assert!(kept_second, "{plan}");
    // A node with a good clock: --keep-last 1 keeps the one taken last.
    agent
        .run(&["prune", "--from", &url, "--keep-last", "1"], &store.env())
        .assert_ok();
    assert_eq!(
        manifests(store, "c/default/app/"),
        vec![format!("c/default/app/{second}/manifest.json")]
    );

    // A backup an older agent filed under an earlier id, written after the
    // newest: the store's clock says it is the last one written.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let older = "20200101T000000Z-0123";
    for key in store.keys(&format!("c/default/app/{second}/")) {
        let data = store.read(&key);
        let data = if key.ends_with("manifest.json") {
            let mut m: serde_json::Value = serde_json::from_slice(&data).expect("manifest");
            m["backup_id"] = older.into();
            m["started_at"] = "2020-01-01T00:00:00Z".into();
            serde_json::to_vec(&m).expect("json")
        } else {
            data
        };
        store.overwrite(&key.replace(&second, older), &data);
    }
    let plan = agent.run(
        &[
            "prune",
            "--from",
            &url,
            "--keep-last",
            "1",
            "--dry-run",
            "--output",
            "json",
        ],
        &store.env(),
    );
    plan.assert_ok();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan");
    let reasons = |id: &str| {
        plan["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .find(|a| a["backup_id"] == id)
            .map(|a| (a["action"].clone(), a["reasons"].to_string()))
            .expect("planned")
    };
    assert_eq!(reasons(&second).0, "keep", "{plan}");
    let (action, why) = reasons(older);
    assert_eq!(action, "keep", "{plan}");
    assert!(why.contains("written last"), "{why}");
}

vertice_tests::on_every_store!(a_clock_that_went_back_never_loses_the_last_backup);
