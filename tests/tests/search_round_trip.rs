//! Elasticsearch and OpenSearch exports on real servers (OpenSearch 2.19,
//! Elasticsearch 7.17, started from Maven Central jars): every document
//! (nested objects, routing, non-ASCII text, large documents, numbers past
//! 2^53), settings with a custom analyzer, mappings, aliases, templates and
//! an ingest pipeline survive a backup and restore field by field; an
//! encrypted export restores with the identity only; a restore never
//! writes into an existing index; a drill restores into throwaway indices
//! it always deletes. One server at a time (`one_at_a_time`).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use vertice_tests::fixtures::age_keypair;
use vertice_tests::search::{one_at_a_time, Flavour, SearchServer};
use vertice_tests::{Agent, TestStore};

const INDICES: [&str; 3] = ["logs", "shop-orders", "shop-products"];

/// The fixture: three selected indices and one left out, two templates, a
/// legacy template and an ingest pipeline.
fn fill(server: &SearchServer) {
    let put = |path: &str, body: Value| {
        let (status, answer) = server.request("PUT", path, Some(&body));
        assert_eq!(status, 200, "PUT {path}: {answer}");
    };
    // No processor: the jar-built servers have no ingest-common module;
    // the pipeline is still a definition to carry and an index setting to
    // put back.
    put(
        "/_ingest/pipeline/vertice-stamp",
        json!({"description": "stamps nothing here", "processors": []}),
    );
    put(
        "/_component_template/vertice-shop-dates",
        json!({"template": {"mappings": {"properties": {"created": {"type": "date"}}}}}),
    );
    put(
        "/_index_template/vertice-shop",
        json!({"index_patterns": ["shop-*"], "composed_of": ["vertice-shop-dates"], "priority": 500,
            "template": {"settings": {"number_of_replicas": 0}}}),
    );
    put(
        "/_template/vertice-legacy",
        json!({"index_patterns": ["legacy-*"], "order": 1, "settings": {"number_of_shards": 1}}),
    );
    server.put_index(
        "shop-orders",
        &json!({
            "settings": {"number_of_shards": 3, "number_of_replicas": 0,
                "default_pipeline": "vertice-stamp",
                "analysis": {"analyzer": {"folded": {"type": "custom", "tokenizer": "standard",
                    "filter": []}}}},
            "mappings": {"_routing": {"required": true}, "properties": {
                "customer": {"properties": {"name": {"type": "text", "analyzer": "folded"},
                    "region": {"type": "keyword"}}},
                "lines": {"type": "nested", "properties": {"sku": {"type": "keyword"}, "qty": {"type": "integer"}}},
                "total": {"type": "double"},
                "big": {"type": "long"}}},
            "aliases": {"orders": {}, "orders-eu": {"filter": {"term": {"customer.region": "eu"}}, "routing": "eu"}}
        }),
    );
    let mut bulk = String::new();
    for i in 0..300 {
        let region = if i % 3 == 0 { "us" } else { "eu" };
        let action =
            json!({"index": {"_index": "shop-orders", "_id": format!("o-{i}"), "routing": region}});
        let doc = json!({"customer": {"name": format!("Zoë Ångström-{i} 東京 🚀"), "region": region},
            "lines": [{"sku": format!("s-{i}"), "qty": i}, {"sku": "gift", "qty": 1}],
            "total": i as f64 * 1.25, "big": 9_007_199_254_740_993u64 - i as u64,
            "created": "2026-12-06T08:00:00Z", "note": null, "tags": ["a", "b"], "empty": {}});
        bulk.push_str(&format!("{action}\n{doc}\n"));
    }
    server.bulk(&bulk);

    server.put_index(
        "shop-products",
        &json!({"settings": {"number_of_shards": 1}}),
    );
    let large = "x".repeat(3 << 20);
    let mut bulk = String::new();
    for (id, doc) in [
        ("p-1", json!({"name": "עברית ومرحبا", "body": large})),
        (
            "p-2",
            json!({"name": "emoji 👩‍👩‍👧 and \u{0}nul", "price": 1e-7, "neg": -0.0}),
        ),
        (
            "p 3/ü?#",
            json!({"name": "an _id with a space, slash and ü", "nested": {"a": {"b": {"c": [1, [2, 3]]}}}}),
        ),
    ] {
        bulk.push_str(&format!(
            "{}\n{doc}\n",
            json!({"index": {"_index": "shop-products", "_id": id}})
        ));
    }
    server.bulk(&bulk);

    server.put_index(
        "logs",
        &json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}}),
    );
    for chunk in 0..4 {
        let mut bulk = String::new();
        for i in chunk * 600..(chunk + 1) * 600 {
            bulk.push_str(&format!(
                "{}\n{}\n",
                json!({"index": {"_index": "logs", "_id": format!("l-{i}")}}),
                json!({"message": format!("line {i} of the log"), "level": if i % 7 == 0 { "warn" } else { "info" }, "n": i})
            ));
        }
        server.bulk(&bulk);
    }
    server.put_index("other", &json!({}));
    server.bulk(&format!(
        "{}\n{}\n",
        json!({"index": {"_index": "other", "_id": "1"}}),
        json!({"left": "out"})
    ));
    for index in INDICES.iter().chain(&["other"]) {
        server.refresh(index);
    }
}

type Docs = BTreeMap<String, (Option<String>, Value)>;

fn snapshot(server: &SearchServer) -> BTreeMap<&'static str, (Docs, Value)> {
    INDICES
        .iter()
        .map(|&i| (i, (server.all_docs(i), server.mapping(i))))
        .collect()
}

/// Every selected index has the documents and mappings it had in `before`.
fn same_as_before(server: &SearchServer, before: &BTreeMap<&str, (Docs, Value)>, after_what: &str) {
    let now = snapshot(server);
    for index in INDICES {
        assert!(
            now[index].0 == before[index].0,
            "{index}: documents differ after {after_what}"
        );
        assert_eq!(
            now[index].1, before[index].1,
            "{index}'s mappings after {after_what}"
        );
    }
}

fn drill_indices(server: &SearchServer) -> Vec<String> {
    let (status, rows) = server.request("GET", "/_cat/indices/vertice-drill-*?format=json", None);
    assert_eq!(status, 200, "{rows}");
    rows.as_array()
        .map(|r| {
            r.iter()
                .filter_map(|i| i["index"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn round_trip(flavour: Flavour) {
    let _one = one_at_a_time();
    let server = SearchServer::start(flavour);
    let store = TestStore::file();
    let agent = Agent::new();
    let keys = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = age_keypair(keys.path(), "search");
    let identity = identity.to_string_lossy().into_owned();
    fill(&server);
    let before = snapshot(&server);
    assert_eq!(before["shop-orders"].0.len(), 300);
    assert_eq!(before["logs"].0.len(), 2400);
    let (env, url, address) = (store.env(), store.url("search"), server.url());

    let backup = agent.run(
        &[
            "backup",
            "--source",
            &address,
            "--source-kind",
            "elasticsearch",
            "--indices",
            "shop-*,logs",
            "--name",
            "shop",
            "--to",
            &url,
            "--encrypt-to",
            &recipient,
        ],
        &env,
    );
    backup.assert_ok();
    let manifest = store
        .manifests("search/default/shop/")
        .pop()
        .expect("manifest");
    let facts = &manifest["source"]["search"];
    assert_eq!(facts["flavour"], flavour.distribution(), "{facts}");
    let counts: BTreeMap<String, u64> = facts["indices"]
        .as_array()
        .expect("indices")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().expect("name").to_string(),
                i["documents"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("logs".into(), 2400),
            ("shop-orders".into(), 300),
            ("shop-products".into(), 3)
        ])
    );
    let expected_consistency = match flavour {
        Flavour::OpenSearch => "per_index",
        // Point in time with _shard_doc: Elasticsearch 7.12+, OpenSearch 3.3+.
        Flavour::Elasticsearch | Flavour::OpenSearch3 => "point_in_time",
    };
    assert_eq!(facts["consistency"], expected_consistency);
    agent
        .run(
            &[
                "verify",
                "--from",
                &url,
                "--name",
                "shop",
                "--identity",
                &identity,
            ],
            &env,
        )
        .assert_ok();

    // Encrypted: no identity, no restore; nothing is created.
    let locked = agent.run(
        &[
            "restore",
            "--from",
            &url,
            "--name",
            "shop",
            "--to",
            &address,
            "--target-kind",
            "elasticsearch",
            "--index-map",
            "shop-orders=copy-orders",
        ],
        &env,
    );
    assert_eq!(locked.code, 2, "{}", locked.all());
    assert!(locked.stderr.contains("--identity"), "{}", locked.all());
    // A restore of the series into the server, with the identity.
    let restore_shop = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--from",
            &url,
            "--name",
            "shop",
            "--to",
            &address,
            "--target-kind",
            "elasticsearch",
            "--identity",
            &identity,
        ];
        args.extend_from_slice(extra);
        agent.run(&args, &env)
    };
    // Every index exists: refused before anything is written, naming them.
    let refused = restore_shop(&[]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("logs, shop-orders, shop-products already exist"),
        "{}",
        refused.all()
    );
    assert!(refused.stderr.contains("--index-map"), "{}", refused.all());
    assert_eq!(server.all_docs("logs").len(), 2400);

    // Under other names beside the originals: every field of every document.
    let renamed = restore_shop(&[
        "--index-map",
        "shop-orders=copy-orders,shop-products=copy-products,logs=copy-logs",
    ]);
    renamed.assert_ok();
    for (from, to) in [
        ("shop-orders", "copy-orders"),
        ("shop-products", "copy-products"),
        ("logs", "copy-logs"),
    ] {
        assert!(
            server.all_docs(to) == before[from].0,
            "{to}: the documents differ from {from}'s"
        );
        assert_eq!(server.mapping(to), before[from].1, "{to}'s mappings");
    }
    let settings = server.settings("copy-orders");
    assert_eq!(settings["index"]["number_of_shards"], "3");
    assert_eq!(settings["index"]["default_pipeline"], "vertice-stamp");
    assert_eq!(
        settings["index"]["analysis"]["analyzer"]["folded"]["filter"],
        json!([])
    );
    // A renamed index does not take its source's aliases.
    let (_, aliases) = server.request("GET", "/copy-orders/_alias", None);
    assert_eq!(aliases["copy-orders"]["aliases"], json!({}), "{aliases}");

    // The originals gone with their templates and pipeline: all comes back.
    // (Elasticsearch keeps a pipeline an index names as its default.)
    for index in INDICES
        .iter()
        .chain(&["copy-orders", "copy-products", "copy-logs"])
    {
        server.delete_index(index);
    }
    for path in [
        "/_index_template/vertice-shop",
        "/_component_template/vertice-shop-dates",
        "/_template/vertice-legacy",
        "/_ingest/pipeline/vertice-stamp",
    ] {
        let (status, answer) = server.request("DELETE", path, None);
        assert_eq!(status, 200, "DELETE {path}: {answer}");
    }
    restore_shop(&[]).assert_ok();
    same_as_before(&server, &before, "the restore");
    let (_, aliases) = server.request("GET", "/shop-orders/_alias", None);
    assert_eq!(
        aliases["shop-orders"]["aliases"]["orders-eu"]["filter"]["term"]["customer.region"], "eu",
        "{aliases}"
    );
    assert_eq!(server.count("orders-eu"), 200);
    for path in [
        "/_index_template/vertice-shop",
        "/_component_template/vertice-shop-dates",
        "/_template/vertice-legacy",
        "/_ingest/pipeline/vertice-stamp",
    ] {
        let (status, answer) = server.request("GET", path, None);
        assert_eq!(status, 200, "GET {path} after the restore: {answer}");
    }
    assert_eq!(
        server.settings("shop-orders")["index"]["default_pipeline"],
        "vertice-stamp"
    );
    assert_eq!(
        server.settings("shop-orders")["index"]["number_of_replicas"],
        "0"
    );

    // --search-replace over indices that exist: each is restored under a
    // staging name, then swapped in with the aliases it had; what was
    // written to them since the backup is gone.
    let mut deletes = String::new();
    for (id, (routing, _)) in before["logs"].0.iter().take(100) {
        let mut meta = json!({"_index": "logs", "_id": id});
        if let Some(r) = routing {
            meta["routing"] = json!(r);
        }
        deletes.push_str(&format!("{}\n", json!({ "delete": meta })));
    }
    server.bulk(&deletes);
    server.refresh("logs");
    server.add_alias("logs", "logs-read");
    assert_eq!(server.count("logs"), 2300);
    restore_shop(&["--search-replace"]).assert_ok();
    same_as_before(&server, &before, "the replace");
    assert_eq!(server.count("logs-read"), 2400);
    assert_eq!(server.count("orders-eu"), 200);
    let (_, staging) = server.request("GET", "/_cat/indices/vertice-replace-*?format=json", None);
    assert_eq!(staging, json!([]), "staging copies left: {staging}");
    // The replaced index takes writes again.
    let (status, answer) = server.request(
        "PUT",
        "/logs/_doc/after-replace?refresh=true",
        Some(&json!({"m": "written after the replace"})),
    );
    assert!(status == 200 || status == 201, "{status} {answer}");
    let (status, answer) = server.request("DELETE", "/logs/_doc/after-replace?refresh=true", None);
    assert_eq!(status, 200, "{answer}");

    // A drill: throwaway indices, checked document by document, deleted.
    let drill = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--name",
            "shop",
            "--restore-to",
            &address,
            "--identity",
            &identity,
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
    // The user's count assertions run on the restored copies: one that
    // holds passes, one that does not fails the drill, which still cleans up.
    let checks = |min: u64| {
        json!({"search": {"assertions": [{"name": "eu orders", "index": "shop-orders",
            "query": r#"{"term": {"customer.region": "eu"}}"#, "minCount": min}]}})
        .to_string()
    };
    let drill = |min: u64| {
        agent.run(
            &[
                "drill",
                "--from",
                &url,
                "--name",
                "shop",
                "--restore-to",
                &address,
                "--identity",
                &identity,
                "--checks-json",
                &checks(min),
            ],
            &env,
        )
    };
    drill(200).assert_ok();
    let short = drill(201);
    assert_ne!(short.code, 0, "{}", short.all());
    assert!(
        short
            .all()
            .contains("200 documents of shop-orders match, at least 201 expected"),
        "{}",
        short.all()
    );
    assert!(
        drill_indices(&server).is_empty(),
        "{:?}",
        drill_indices(&server)
    );
    let missing = agent.run(
        &[
            "drill",
            "--from",
            &url,
            "--name",
            "shop",
            "--identity",
            &identity,
        ],
        &env,
    );
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("--restore-to is needed"),
        "{}",
        missing.all()
    );
}

#[test]
fn opensearch_2_exports_restore_field_by_field_and_drill() {
    round_trip(Flavour::OpenSearch);
}

#[test]
fn opensearch_3_exports_restore_field_by_field_and_drill() {
    round_trip(Flavour::OpenSearch3);
}

#[test]
fn elasticsearch_7_exports_restore_field_by_field_and_drill() {
    round_trip(Flavour::Elasticsearch);
}
