//! Snapshot mode on a real OpenSearch 2.19 server with an `fs` repository:
//! the cluster writes its own snapshot, the agent follows it and records
//! it; restore and drill go through the cluster's restore API under other
//! names; a repository damaged by hand fails the drill, which still leaves
//! no throwaway index behind; bad flags are refused before anything runs.

use serde_json::json;
use vertice_tests::search::{one_at_a_time, Flavour, SearchServer};
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
    assert!(store.manifests("search/default/snap/").is_empty());

    backup(&[
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

    let restore = |map: &str| {
        agent.run(
            &[
                "restore",
                "--from",
                &url,
                "--name",
                "snap",
                "--to",
                &address,
                "--target-kind",
                "elasticsearch",
                "--index-map",
                map,
            ],
            &env,
        )
    };
    let refused = restore("logs=logs");
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("already exist"),
        "{}",
        refused.all()
    );
    restore("orders=orders-copy,logs=logs-copy").assert_ok();
    assert_eq!(server.count("orders-copy"), 500);
    assert!(
        server.all_docs("logs-copy") == server.all_docs("logs"),
        "logs-copy differs"
    );

    let drill = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--name",
            "snap",
            "--restore-to",
            &address,
        ],
        &env,
    );
    drill.assert_ok();
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
    let drill = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--name",
            "snap",
            "--restore-to",
            &address,
        ],
        &env,
    );
    drill.assert_ok();

    // Someone deletes the repository's index data: the drill fails and
    // still cleans up.
    let indices_dir = location.join("indices");
    assert!(indices_dir.is_dir(), "no {}", indices_dir.display());
    std::fs::remove_dir_all(&indices_dir).expect("damage the repository");
    let damaged = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--name",
            "snap",
            "--restore-to",
            &address,
        ],
        &env,
    );
    assert_ne!(damaged.code, 0, "{}", damaged.all());
    assert!(
        drill_indices(&server).is_empty(),
        "{:?}",
        drill_indices(&server)
    );
}
