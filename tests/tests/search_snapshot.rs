//! Snapshot mode on a real OpenSearch 2.19 server with an `fs` repository:
//! the cluster writes its own snapshot, the agent follows it and records
//! it; restore and drill go through the cluster's restore API under other
//! names; a shard the repository cannot take makes a PARTIAL snapshot that
//! fails the run; a repository damaged by hand fails the drill, which still
//! leaves no throwaway index behind; bad flags are refused before anything
//! runs.

use serde_json::json;
use vertice_tests::agent::RunOutput;
use vertice_tests::search::{one_at_a_time, Flavour, S3Client, SearchServer};
use vertice_tests::seaweedfs::{ACCESS_KEY, SECRET_KEY};
use vertice_tests::{Agent, TestStore};

const REPOSITORY: &str = "vertice-fs";

fn fill(server: &SearchServer) {
    server.put_index("orders", &json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0},
        "mappings": {"_source": {"enabled": false}, "properties": {"n": {"type": "long", "store": true}}}}));
    server.put_index(
        "logs",
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}),
    );
    let mut bulk = String::new();
    for i in 0..500 {
        bulk.push_str(&format!(
            "{}\n{}\n",
            json!({"index": {"_index": "orders", "_id": format!("o-{i}")}}),
            json!({"n": i})
        ));
    }
    for i in 0..120 {
        bulk.push_str(&format!(
            "{}\n{}\n",
            json!({"index": {"_index": "logs", "_id": format!("l-{i}")}}),
            json!({"m": format!("line {i} é")})
        ));
    }
    server.bulk(&bulk);
    server.refresh("orders");
    server.refresh("logs");
}

/// `restore` of the series `snap` into `address` under `--index-map map`.
fn run_restore(
    agent: &Agent,
    url: &str,
    address: &str,
    map: &str,
    env: &[(&str, String)],
) -> RunOutput {
    run_restore_with(agent, url, address, map, env, &[])
}

fn run_restore_with(
    agent: &Agent,
    url: &str,
    address: &str,
    map: &str,
    env: &[(&str, String)],
    extra: &[&str],
) -> RunOutput {
    let mut args = vec![
        "restore",
        "--from",
        url,
        "--name",
        "snap",
        "--to",
        address,
        "--target-kind",
        "elasticsearch",
        "--index-map",
        map,
    ];
    args.extend_from_slice(extra);
    agent.run(&args, env)
}

/// A drill of the series `snap` into throwaway indices on `address`.
fn run_drill(agent: &Agent, url: &str, address: &str, env: &[(&str, String)]) -> RunOutput {
    run_drill_with(agent, url, address, env, &[])
}

fn run_drill_with(
    agent: &Agent,
    url: &str,
    address: &str,
    env: &[(&str, String)],
    extra: &[&str],
) -> RunOutput {
    let mut args = vec![
        "drill",
        "--from",
        url,
        "--name",
        "snap",
        "--restore-to",
        address,
    ];
    args.extend_from_slice(extra);
    agent.run(&args, env)
}

/// A drill that passes, with checks beyond counts: the restored mappings,
/// and documents drawn before the snapshot and unchanged after it, read
/// back one by one (`orders` has no `_source`: its ids are compared).
fn drill_checked_beyond_counts(
    agent: &Agent,
    url: &str,
    address: &str,
    env: &[(&str, String)],
) -> RunOutput {
    let log = tempfile::NamedTempFile::new().expect("log");
    let log_path = log.path().to_string_lossy().into_owned();
    let drill = run_drill_with(agent, url, address, env, &["--termination-log", &log_path]);
    drill.assert_ok();
    let summary = vertice_tests::summary::read(log.path());
    vertice_tests::drill::passed(
        &summary,
        &[
            "documents of logs",
            "mappings of logs",
            "sampled documents of logs",
            "mappings of orders",
            "sampled documents of orders",
        ],
    );
    drill
}

fn drill_indices(server: &SearchServer) -> Vec<String> {
    let (_, rows) = server.request("GET", "/_cat/indices/vertice-drill-*?format=json", None);
    rows.as_array()
        .map(|r| {
            r.iter()
                .filter_map(|i| i["index"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_clusters_own_snapshot_is_taken_recorded_restored_and_drilled() {
    let _one = one_at_a_time();
    let server = SearchServer::start(Flavour::OpenSearch);
    let store = TestStore::file();
    let agent = Agent::new();
    let location = server.repo_path();
    let (status, answer) = server.request(
        "PUT",
        &format!("/_snapshot/{REPOSITORY}"),
        Some(&json!({"type": "fs", "settings": {"location": location.to_string_lossy()}})),
    );
    assert_eq!(status, 200, "{answer}");
    fill(&server);
    let (env, url, address) = (store.env(), store.url("search"), server.url());
    let backup = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--source",
            &address,
            "--source-kind",
            "elasticsearch",
            "--indices",
            "orders,logs",
            "--name",
            "snap",
            "--to",
            &url,
        ];
        args.extend_from_slice(extra);
        agent.run(&args, &env)
    };

    // Refused before anything runs, naming what would fix it.
    let no_repo = backup(&["--search-mode", "snapshot"]);
    no_repo.assert_code(2);
    assert!(
        no_repo.stderr.contains("--search-repository"),
        "{}",
        no_repo.all()
    );
    let unknown = backup(&["--search-mode", "snapshot", "--search-repository", "nope"]);
    unknown.assert_code(2);
    assert!(
        unknown.stderr.contains("\"nope\" is not registered"),
        "{}",
        unknown.all()
    );
    // An export cannot read an index without _source; a snapshot can.
    let export = backup(&[]);
    export.assert_code(2);
    assert!(
        export.stderr.contains("disables _source"),
        "{}",
        export.all()
    );
    // A flavour that is not the cluster's: refused before anything is read.
    let wrong = backup(&["--search-flavour", "elasticsearch"]);
    wrong.assert_code(2);
    assert!(
        wrong.stderr.contains("the cluster is opensearch 2.19")
            && wrong.stderr.contains("not elasticsearch"),
        "{}",
        wrong.all()
    );
    assert!(store.manifests("search/default/snap/").is_empty());

    backup(&[
        "--search-flavour",
        "opensearch",
        "--search-mode",
        "snapshot",
        "--search-repository",
        REPOSITORY,
    ])
    .assert_ok();
    let manifest = store
        .manifests("search/default/snap/")
        .pop()
        .expect("manifest");
    let facts = &manifest["source"]["search"];
    assert_eq!(facts["mode"], "snapshot", "{facts}");
    assert_eq!(facts["snapshot"]["state"], "SUCCESS", "{facts}");
    assert_eq!(facts["snapshot"]["repository_type"], "fs", "{facts}");
    let snapshot = facts["snapshot"]["snapshot"]
        .as_str()
        .expect("name")
        .to_string();
    let (status, listed) =
        server.request("GET", &format!("/_snapshot/{REPOSITORY}/{snapshot}"), None);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["snapshots"][0]["state"], "SUCCESS");
    agent
        .run(&["verify", "--from", &url, "--name", "snap"], &env)
        .assert_ok();

    let restore = |map: &str| run_restore(&agent, &url, &address, map, &env);
    let refused = restore("logs=logs");
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("already exist"),
        "{}",
        refused.all()
    );
    restore("orders=orders-copy,logs=logs-copy").assert_ok();
    assert_eq!(server.count("orders-copy"), 500);
    let logs = server.all_docs("logs");
    assert!(server.all_docs("logs-copy") == logs, "logs-copy differs");

    // --search-replace over indices that exist (one the original, one an
    // earlier restore): restored under staging names through the restore
    // API, then swapped in with the aliases they had.
    let mut deletes = String::new();
    for id in logs.keys().take(20) {
        deletes.push_str(&format!(
            "{}\n",
            json!({"delete": {"_index": "logs", "_id": id}})
        ));
    }
    server.bulk(&deletes);
    server.refresh("logs");
    server.add_alias("logs", "logs-read");
    let replace =
        |map: &str| run_restore_with(&agent, &url, &address, map, &env, &["--search-replace"]);
    replace("orders=orders-copy").assert_ok();
    assert!(
        server.all_docs("logs") == logs,
        "logs differs after the replace"
    );
    assert_eq!(server.count("logs-read"), 120);
    assert_eq!(server.count("orders-copy"), 500);
    let (_, staging) = server.request("GET", "/_cat/indices/vertice-replace-*?format=json", None);
    assert_eq!(staging, json!([]), "staging copies left: {staging}");
    // An alias is no index to replace: refused before anything is written.
    let onto_alias = replace("logs=logs-read,orders=orders-x");
    assert_eq!(onto_alias.code, 2, "{}", onto_alias.all());
    assert!(
        onto_alias
            .stderr
            .contains("logs-read is an alias or a data stream"),
        "{}",
        onto_alias.all()
    );
    let (status, _) = server.request("HEAD", "/orders-x", None);
    assert_eq!(status, 404, "nothing restored before the refusal");

    // Per index: the snapshot's shard and file statistics and the
    // mappings' digest; the witness documents' ids stay out of the
    // (unencrypted) manifest.
    for (index, shards) in [("orders", 2), ("logs", 1)] {
        let recorded = facts["indices"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["name"] == index))
            .expect("index facts");
        assert_eq!(recorded["snapshot"]["shards"], shards, "{recorded}");
        assert_eq!(recorded["snapshot"]["shards_failed"], 0, "{recorded}");
        assert!(
            recorded["snapshot"]["bytes"].as_u64() > Some(0),
            "{recorded}"
        );
        assert!(
            recorded["snapshot"]["files"].as_u64() > Some(0),
            "{recorded}"
        );
        assert_eq!(
            recorded["mappings_digest"].as_str().map(str::len),
            Some(64),
            "{recorded}"
        );
        assert!(recorded.get("witnesses").is_none(), "{recorded}");
    }
    let drill = drill_checked_beyond_counts(&agent, &url, &address, &env);
    assert!(drill.all().contains("passed"), "{}", drill.all());
    assert!(
        drill_indices(&server).is_empty(),
        "{:?}",
        drill_indices(&server)
    );

    // Retention: a prune that cannot reach the cluster keeps snapshot-mode
    // backups and says why; the backup's own --keep-* run deletes their
    // snapshots through the cluster, never by deleting blobs.
    backup(&[
        "--search-mode",
        "snapshot",
        "--search-repository",
        REPOSITORY,
    ])
    .assert_ok();
    assert_eq!(store.manifests("search/default/snap/").len(), 2);
    let prune = agent.run(
        &[
            "prune",
            "--from",
            &url,
            "--name",
            "snap",
            "--keep-last",
            "1",
            "--output",
            "json",
        ],
        &env,
    );
    prune.assert_ok();
    assert!(
        prune.stdout.contains("deleted only through the cluster"),
        "{}",
        prune.all()
    );
    assert_eq!(store.manifests("search/default/snap/").len(), 2);
    backup(&[
        "--search-mode",
        "snapshot",
        "--search-repository",
        REPOSITORY,
        "--keep-last",
        "1",
    ])
    .assert_ok();
    assert_eq!(store.manifests("search/default/snap/").len(), 1);
    let (status, gone) =
        server.request("GET", &format!("/_snapshot/{REPOSITORY}/{snapshot}"), None);
    assert_eq!(status, 404, "the first snapshot is deleted: {gone}");
    let (_, all) = server.request("GET", &format!("/_snapshot/{REPOSITORY}/_all"), None);
    assert_eq!(all["snapshots"].as_array().map(Vec::len), Some(1), "{all}");
    let drill = run_drill(&agent, &url, &address, &env);
    drill.assert_ok();

    // A shard the repository cannot take: the snapshot ends with a failed
    // shard (PARTIAL), the run fails naming it, the snapshot is deleted and
    // the previous backup stays the newest. The repository keeps an index's
    // directory across snapshots; `orders` is the one with two shards. Its
    // shard 0 directory is made read-only for the server's user, and new
    // documents make the next snapshot write there.
    let orders_dir = std::fs::read_dir(location.join("indices"))
        .expect("repository indices")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|dir| dir.join("1").is_dir())
        .expect("the two-shard index's directory");
    let shard = orders_dir.join("0");
    let mode = |m: u32| {
        std::fs::set_permissions(&shard, std::os::unix::fs::PermissionsExt::from_mode(m))
            .expect("chmod");
    };
    mode(0o555);
    let mut bulk = String::new();
    for i in 500..700 {
        bulk.push_str(&format!(
            "{}\n{}\n",
            json!({"index": {"_index": "orders", "_id": format!("o-{i}")}}),
            json!({"n": i})
        ));
    }
    server.bulk(&bulk);
    server.refresh("orders");
    let partial = backup(&[
        "--search-mode",
        "snapshot",
        "--search-repository",
        REPOSITORY,
    ]);
    mode(0o755);
    assert_ne!(partial.code, 0, "{}", partial.all());
    assert!(
        partial.stderr.contains("ended PARTIAL")
            && partial.stderr.contains("orders shard 0")
            && partial.stderr.contains("was deleted"),
        "{}",
        partial.all()
    );
    assert_eq!(store.manifests("search/default/snap/").len(), 1);
    let (_, all) = server.request("GET", &format!("/_snapshot/{REPOSITORY}/_all"), None);
    assert_eq!(all["snapshots"].as_array().map(Vec::len), Some(1), "{all}");

    // Someone deletes the repository's index data: the drill fails and
    // still cleans up.
    let indices_dir = location.join("indices");
    assert!(indices_dir.is_dir(), "no {}", indices_dir.display());
    std::fs::remove_dir_all(&indices_dir).expect("damage the repository");
    let damaged = run_drill(&agent, &url, &address, &env);
    assert_ne!(damaged.code, 0, "{}", damaged.all());
    assert!(
        drill_indices(&server).is_empty(),
        "{:?}",
        drill_indices(&server)
    );
}

fn snapshot_facts(manifest: &serde_json::Value) -> serde_json::Value {
    manifest["source"]["search"]["snapshot"].clone()
}

/// Without `--search-repository` the agent registers its own repository in
/// the store (here an `fs` one: the file store lies under the node's
/// `path.repo`), reads the snapshot's blobs back into the manifest, and
/// `verify`, restore and the drill check them.
#[test]
fn the_agents_own_repository_in_the_store_is_checked_blob_by_blob() {
    own_repository_in_a_file_store(Flavour::OpenSearch);
}

/// Elasticsearch writes its repository metadata in its own hand.
#[test]
fn the_agents_own_repository_on_elasticsearch_7() {
    own_repository_in_a_file_store(Flavour::Elasticsearch);
}

fn own_repository_in_a_file_store(flavour: Flavour) {
    let _one = one_at_a_time();
    let server = SearchServer::start(flavour);
    let agent = Agent::new();
    let (root, url) = server.shared_store();
    let env: Vec<(&str, String)> = Vec::new();
    fill(&server);
    let address = server.url();
    let backup = |indices: &str, extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--source",
            &address,
            "--source-kind",
            "elasticsearch",
            "--indices",
            indices,
            "--name",
            "snap",
            "--to",
            &url,
            "--search-mode",
            "snapshot",
        ];
        args.extend_from_slice(extra);
        agent.run(&args, &env)
    };
    let manifests = || {
        let mut found: Vec<serde_json::Value> = walkdir(&root.join("default/snap"))
            .into_iter()
            .filter(|p| p.ends_with("manifest.json"))
            .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json"))
            .collect();
        found.sort_by_key(|m| m["backup_id"].as_str().unwrap_or_default().to_string());
        found
    };

    backup("orders,logs", &[]).assert_ok();
    let first = manifests().pop().expect("a manifest");
    let snapshot = snapshot_facts(&first);
    assert_eq!(snapshot["managed"]["type"], "fs", "{snapshot}");
    assert_eq!(snapshot["managed"]["store_path"], "default/snap/repository");
    let repository = snapshot["repository"].as_str().expect("name").to_string();
    assert!(repository.starts_with("vertice-"), "{repository}");
    let blobs: Vec<String> = snapshot["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| b["key"].as_str().expect("key").to_string())
        .collect();
    let uuid = snapshot["uuid"].as_str().expect("uuid");
    assert!(blobs.contains(&format!("snap-{uuid}.dat")), "{blobs:?}");
    assert!(
        blobs.iter().filter(|b| b.contains("/__")).count() >= 3,
        "every shard's data blobs: {blobs:?}"
    );
    assert!(
        !blobs.iter().any(|b| b.starts_with("index")),
        "generation files are never recorded: {blobs:?}"
    );
    let (status, registered) = server.request("GET", &format!("/_snapshot/{repository}"), None);
    assert_eq!(status, 200, "{registered}");
    let verified = agent.run(&["verify", "--from", &url, "--name", "snap"], &env);
    verified.assert_ok();
    assert!(
        verified
            .all()
            .contains("repository blobs are all in the store"),
        "{}",
        verified.all()
    );

    // A cluster that lost the registration gets it back read-only for the
    // restore, and loses it again after.
    let (status, _) = server.request("DELETE", &format!("/_snapshot/{repository}"), None);
    assert_eq!(status, 200);
    run_restore(&agent, &url, &address, "orders=orders-1,logs=logs-1", &env).assert_ok();
    assert_eq!(server.count("orders-1"), 500);
    assert!(server.all_docs("logs-1") == server.all_docs("logs"));
    let (status, _) = server.request("GET", &format!("/_snapshot/{repository}"), None);
    assert_eq!(
        status, 404,
        "the restore's read-only registration is removed"
    );

    // An index without a started primary: the cluster refuses a complete
    // snapshot, the run fails naming it, and nothing new is a backup.
    let (status, created) = server.request(
        "PUT",
        "/broken?wait_for_active_shards=0",
        Some(
            &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0,
            "index.routing.allocation.require._name": "no-such-node"}}),
        ),
    );
    assert_eq!(status, 200, "{created}");
    let started = std::time::Instant::now();
    let partial = backup("orders,broken", &[]);
    eprintln!(
        "a red index refused in {:?}: {}",
        started.elapsed(),
        partial.stderr.lines().last().unwrap_or_default()
    );
    assert_ne!(partial.code, 0, "{}", partial.all());
    assert!(
        partial.stderr.contains("index broken on") && partial.stderr.contains("is red"),
        "{}",
        partial.all()
    );
    assert_eq!(manifests().len(), 1);
    server.delete_index("broken");

    // Retention through the cluster keeps the repository restorable.
    backup("orders,logs", &["--keep-last", "1"]).assert_ok();
    let all = manifests();
    assert_eq!(all.len(), 1);
    let second = snapshot_facts(&all[0]);
    let (_, listed) = server.request("GET", &format!("/_snapshot/{repository}/_all"), None);
    assert_eq!(
        listed["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    agent
        .run(&["verify", "--from", &url, "--name", "snap"], &env)
        .assert_ok();

    // A data blob deleted by hand: verify names it, the drill fails and
    // cleans up.
    let victim = second["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .filter_map(|b| b["key"].as_str())
        .find(|k| k.contains("/__"))
        .expect("a data blob")
        .to_string();
    std::fs::remove_file(root.join("default/snap/repository").join(&victim))
        .expect("delete a blob");
    let damaged = agent.run(&["verify", "--from", &url, "--name", "snap"], &env);
    assert_ne!(damaged.code, 0, "{}", damaged.all());
    assert!(
        damaged
            .stderr
            .contains(&format!("snap/repository/{victim}")),
        "{}",
        damaged.all()
    );
    let listed = agent.run(
        &["list", "--from", &url, "--name", "snap", "--output", "json"],
        &env,
    );
    listed.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(rows[0]["status"], "damaged", "{rows}");
    let drill = run_drill(&agent, &url, &address, &env);
    assert_ne!(drill.code, 0, "{}", drill.all());
    assert!(
        drill.stderr.contains("is damaged") && drill.stderr.contains(&victim),
        "{}",
        drill.all()
    );
    // Restore refuses it too: nothing is asked of the cluster.
    let refused = run_restore(&agent, &url, &address, "orders=orders-9,logs=logs-9", &env);
    assert_ne!(refused.code, 0, "{}", refused.all());
    assert!(refused.stderr.contains(&victim), "{}", refused.all());
    let (status, _) = server.request("GET", "/logs-9", None);
    assert_eq!(status, 404, "nothing restored from a damaged repository");
    assert!(drill_indices(&server).is_empty());
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walkdir(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// OpenSearch 3 with `repository-s3`: snapshot mode into the agent's own
/// repository in an S3 store (SeaweedFS), read back blob by blob; list,
/// verify, restore and drill; retention through the cluster keeps it
/// restorable; a data blob deleted in the bucket is found by verify and by
/// the drill.
#[test]
fn opensearch3_snapshots_into_the_s3_store_and_a_deleted_blob_is_found() {
    let _one = one_at_a_time();
    let store = TestStore::s3();
    let (host, port) = store.upstream().expect("an S3 server");
    let server = SearchServer::start_with_s3(
        Flavour::OpenSearch3,
        &S3Client {
            endpoint: format!("{host}:{port}"),
            access_key: ACCESS_KEY.to_string(),
            secret_key: SECRET_KEY.to_string(),
        },
    );
    fill(&server);
    let agent = Agent::new();
    let (env, url, address) = (store.env(), store.url("team"), server.url());
    let backup = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--source",
            &address,
            "--source-kind",
            "elasticsearch",
            "--indices",
            "orders,logs",
            "--name",
            "snap",
            "--to",
            &url,
            "--search-mode",
            "snapshot",
            // This SeaweedFS has no SSE-S3 keys; OpenSearch 3 asks for
            // AES256 by default.
            "--search-repository-setting",
            "server_side_encryption_type=bucket_default",
        ];
        args.extend_from_slice(extra);
        agent.run(&args, &env)
    };
    backup(&[]).assert_ok();
    let first = store
        .manifests("team/default/snap/")
        .pop()
        .expect("manifest");
    let snapshot = snapshot_facts(&first);
    assert_eq!(snapshot["managed"]["type"], "s3", "{snapshot}");
    assert_eq!(
        snapshot["managed"]["settings"]["base_path"],
        "team/default/snap/repository"
    );
    assert!(
        snapshot["blobs"].as_array().map_or(0, Vec::len) >= 6,
        "{snapshot}"
    );
    let listed = agent.run(&["list", "--from", &url, "--name", "snap"], &env);
    listed.assert_ok();
    agent
        .run(&["verify", "--from", &url, "--name", "snap"], &env)
        .assert_ok();
    let restore = |map: &str| run_restore(&agent, &url, &address, map, &env);
    restore("orders=orders-1,logs=logs-1").assert_ok();
    assert_eq!(server.count("orders-1"), 500);
    assert!(server.all_docs("logs-1") == server.all_docs("logs"));
    let drill = || run_drill(&agent, &url, &address, &env);
    drill_checked_beyond_counts(&agent, &url, &address, &env);

    backup(&["--keep-last", "1"]).assert_ok();
    let kept = store.manifests("team/default/snap/");
    assert_eq!(kept.len(), 1);
    let second = snapshot_facts(&kept[0]);
    let repository = second["repository"].as_str().expect("name");
    let (_, all) = server.request("GET", &format!("/_snapshot/{repository}/_all"), None);
    assert_eq!(all["snapshots"].as_array().map(Vec::len), Some(1), "{all}");
    agent
        .run(&["verify", "--from", &url, "--name", "snap"], &env)
        .assert_ok();
    restore("orders=orders-2,logs=logs-2").assert_ok();
    assert!(server.all_docs("logs-2") == server.all_docs("logs"));

    let victim = second["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .filter_map(|b| b["key"].as_str())
        .find(|k| k.contains("/__"))
        .expect("a data blob")
        .to_string();
    store.remove(&format!("team/default/snap/repository/{victim}"));
    let damaged = agent.run(&["verify", "--from", &url, "--name", "snap"], &env);
    assert_ne!(damaged.code, 0, "{}", damaged.all());
    assert!(damaged.stderr.contains(&victim), "{}", damaged.all());
    let failed = drill();
    assert_ne!(failed.code, 0, "{}", failed.all());
    assert!(failed.stderr.contains(&victim), "{}", failed.all());
    assert!(drill_indices(&server).is_empty());
}
