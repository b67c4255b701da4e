//! The search harness itself against real servers, OpenSearch 2.19 and then
//! Elasticsearch 7.17: an index with a mapping, documents with custom
//! routing and non-ASCII text bulk-loaded, counted and read back with their
//! routing, an `fs` snapshot repository accepted at `repo_path()`, and the
//! data still there after a clean restart and after a crash (SIGKILL).
//!
//! Both flavours run in one test, one after the other: each JVM takes most of
//! a core and about 300 MB while it starts, and the machine has two cores.
//!
//! Then OpenSearch 3.8 with the `repository-s3` plugin: a snapshot written
//! to SeaweedFS and restored from it (holding the same lock).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use vertice_tests::search::{one_at_a_time, Flavour, S3Client, SearchServer};
use vertice_tests::seaweedfs::{SeaweedFs, ACCESS_KEY, SECRET_KEY};

const INDEX: &str = "books";
const DOCS: usize = 100;

fn expected() -> BTreeMap<String, (Option<String>, Value)> {
    (0..DOCS)
        .map(|i| {
            let id = format!("doc-{i:03}");
            // Every third document keeps the default routing (its _id).
            let routing = (i % 3 != 0).then(|| format!("shelf-{}", i % 7));
            let source = json!({
                "title": format!("Ünïcødé tïtle {i}: 日本語のテキスト, emoji 🦀, Ωmega"),
                "n": i,
                "tags": ["ß", format!("t{}", i % 5)],
            });
            (id, (routing, source))
        })
        .collect()
}

fn bulk_body(docs: &BTreeMap<String, (Option<String>, Value)>) -> String {
    let mut body = String::new();
    for (id, (routing, source)) in docs {
        let mut action = json!({"index": {"_index": INDEX, "_id": id}});
        if let Some(r) = routing {
            action["index"]["routing"] = json!(r);
        }
        body.push_str(&format!("{action}\n{source}\n"));
    }
    body
}

fn check_data(server: &SearchServer, expected: &BTreeMap<String, (Option<String>, Value)>) {
    assert_eq!(server.count(INDEX), DOCS as u64);
    let docs = server.all_docs(INDEX);
    assert_eq!(&docs, expected);
    let mapping = server.mapping(INDEX);
    assert_eq!(mapping["properties"]["title"]["type"], "text", "{mapping}");
    assert_eq!(mapping["properties"]["n"]["type"], "integer", "{mapping}");
    let settings = server.settings(INDEX);
    assert_eq!(settings["index"]["number_of_shards"], "3", "{settings}");
}

fn exercise(flavour: Flavour) {
    let started = Instant::now();
    let mut server = SearchServer::start(flavour);
    eprintln!(
        "{flavour:?} up at {} in {:?}",
        server.url(),
        started.elapsed()
    );
    assert_eq!(server.url(), format!("http://127.0.0.1:{}", server.port()));
    let (distribution, version) = server.version();
    assert_eq!(
        (distribution.as_str(), version.as_str()),
        (flavour.distribution(), flavour.version())
    );

    server.put_index(
        INDEX,
        &json!({
            "settings": {"number_of_shards": 3, "number_of_replicas": 0},
            "mappings": {"properties": {
                "title": {"type": "text"},
                "n": {"type": "integer"},
                "tags": {"type": "keyword"},
            }},
        }),
    );
    let expected = expected();
    server.bulk(&bulk_body(&expected));
    server.refresh(INDEX);
    check_data(&server, &expected);

    // The snapshot tests' repository location is inside path.repo.
    let location = server.repo_path().join("snapshots");
    let (status, response) = server.request(
        "PUT",
        "/_snapshot/harness",
        Some(&json!({"type": "fs", "settings": {"location": location}})),
    );
    assert_eq!(status, 200, "registering an fs repository: {response}");

    let restarted = Instant::now();
    server.restart();
    eprintln!("{flavour:?} restarted in {:?}", restarted.elapsed());
    check_data(&server, &expected);

    server.kill();
    assert_eq!(server.pid(), None);
    server.restart();
    check_data(&server, &expected);

    server.delete_index(INDEX);
    let (status, _) = server.request("GET", &format!("/{INDEX}"), None);
    assert_eq!(status, 404);
    server.delete_index(INDEX);
}

#[test]
fn opensearch_and_elasticsearch_servers_keep_their_data() {
    let _one_jvm = one_at_a_time();
    exercise(Flavour::OpenSearch);
    exercise(Flavour::Elasticsearch);
}

#[test]
fn opensearch3_snapshots_to_s3_and_restores() {
    let _one_jvm = one_at_a_time();
    let weed = SeaweedFs::start();
    let bucket = "vertice-os3-snapshots";
    weed.create_bucket(bucket);
    let s3 = S3Client {
        endpoint: weed.endpoint().trim_start_matches("http://").to_string(),
        access_key: ACCESS_KEY.to_string(),
        secret_key: SECRET_KEY.to_string(),
    };
    let started = Instant::now();
    let mut server = SearchServer::start_with_s3(Flavour::OpenSearch3, &s3);
    eprintln!(
        "OpenSearch3 up at {} in {:?}, pid {:?}",
        server.url(),
        started.elapsed(),
        server.pid()
    );
    let (distribution, version) = server.version();
    assert_eq!(
        (distribution.as_str(), version.as_str()),
        ("opensearch", Flavour::OpenSearch3.version())
    );

    let (status, response) = server.request(
        "PUT",
        "/_snapshot/r",
        // OpenSearch 3 asks for SSE-S3 (AES256) on every upload by default,
        // which this SeaweedFS answers with a 500 (no SSE-S3 key manager
        // configured): leave encryption to the bucket.
        Some(&json!({"type": "s3", "settings": {
            "bucket": bucket,
            "base_path": "some/prefix/repository",
            "server_side_encryption_type": "bucket_default",
        }})),
    );
    assert_eq!(status, 200, "registering an s3 repository: {response}");

    server.put_index(
        INDEX,
        &json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}}),
    );
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&format!(
            "{}\n{}\n",
            json!({"index": {"_index": INDEX, "_id": format!("b-{i}")}}),
            json!({"title": format!("book {i} – ünïcødé"), "n": i}),
        ));
    }
    server.bulk(&body);
    server.refresh(INDEX);
    assert_eq!(server.count(INDEX), 20);

    let (status, response) = server.request(
        "PUT",
        "/_snapshot/r/s1?wait_for_completion=true",
        Some(&json!({"indices": INDEX})),
    );
    assert_eq!(status, 200, "snapshot: {response}");
    assert_eq!(response["snapshot"]["state"], "SUCCESS", "{response}");
    let keys = weed.list_keys(bucket);
    assert!(
        keys.iter()
            .any(|k| k.starts_with("some/prefix/repository/")),
        "no snapshot objects under the base path: {keys:?}"
    );

    server.delete_index(INDEX);
    let (status, _) = server.request("GET", &format!("/{INDEX}"), None);
    assert_eq!(status, 404);
    let (status, response) = server.request(
        "POST",
        "/_snapshot/r/s1/_restore?wait_for_completion=true",
        Some(&json!({"indices": INDEX})),
    );
    assert_eq!(status, 200, "restore: {response}");
    assert_eq!(
        response["snapshot"]["shards"]["failed"], 0,
        "restore: {response}"
    );
    server.refresh(INDEX);
    assert_eq!(server.count(INDEX), 20);

    // The keystore and S3 settings live in the home: a restart keeps them.
    server.restart();
    let (status, response) = server.request("POST", "/_snapshot/r/_verify", None);
    assert_eq!(status, 200, "verify after restart: {response}");
    assert_eq!(server.count(INDEX), 20);
}
