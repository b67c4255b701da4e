//! `deploy/examples/` must parse into the controller's types and carry every
//! Secret they reference. Whether the API server accepts them is proven
//! against the real server (`tests/tests/kube_api.rs`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use vertice_crds::{VerticeBackup, VerticeFailover, VerticeScaler};

fn examples() -> Vec<(String, Vec<Value>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut out: Vec<(String, Vec<Value>)> = std::fs::read_dir(&dir)
        .expect("deploy/examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read example");
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string(),
                docs,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `(secret, key)` pairs a backup references.
fn secret_refs(value: &Value, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k.ends_with("SecretRef") {
                    out.insert((
                        v["name"].as_str().unwrap_or_default().into(),
                        v["key"].as_str().unwrap_or_default().into(),
                    ));
                } else if k == "credentials" && v.get("secretName").is_some() {
                    let name = v["secretName"].as_str().unwrap_or_default().to_string();
                    let id = v
                        .get("accessKeyIdKey")
                        .and_then(Value::as_str)
                        .unwrap_or("AWS_ACCESS_KEY_ID");
                    let secret = v
                        .get("secretAccessKeyKey")
                        .and_then(Value::as_str)
                        .unwrap_or("AWS_SECRET_ACCESS_KEY");
                    out.insert((name.clone(), id.into()));
                    out.insert((name, secret.into()));
                } else {
                    secret_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| secret_refs(i, out)),
        _ => {}
    }
}

/// Fails unless every Secret key `resource` references is in `docs`.
fn assert_secrets_present(file: &str, docs: &[Value], resource: &Value, namespace: &str) {
    let mut refs = BTreeSet::new();
    secret_refs(&resource["spec"], &mut refs);
    for (name, key) in refs {
        let found = docs.iter().any(|d| {
            d["kind"] == "Secret"
                && d["metadata"]["name"] == name.as_str()
                && d["metadata"]["namespace"] == namespace
                && (d["stringData"].get(&key).is_some() || d["data"].get(&key).is_some())
        });
        assert!(
            found,
            "{file}: Secret {namespace}/{name} with key {key} is referenced but not in the example"
        );
    }
}

#[test]
fn examples_are_valid_and_self_contained() {
    let mut covered = BTreeSet::new();
    let mut scalers = 0;
    let mut failovers = 0;
    for (file, docs) in examples() {
        let resources: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                matches!(
                    d["kind"].as_str(),
                    Some("VerticeBackup" | "VerticeScaler" | "VerticeFailover")
                )
            })
            .collect();
        assert!(
            !resources.is_empty(),
            "{file}: no VerticeBackup, VerticeScaler or VerticeFailover"
        );
        for resource in resources {
            let namespace = resource["metadata"]["namespace"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: give every resource a namespace"))
                .to_string();
            if resource["kind"] == "VerticeFailover" {
                let _: VerticeFailover = serde_json::from_value(resource.clone())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                failovers += 1;
                assert_secrets_present(&file, &docs, resource, &namespace);
                continue;
            }
            if resource["kind"] == "VerticeScaler" {
                let _: VerticeScaler = serde_json::from_value(resource.clone())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                scalers += 1;
                assert_secrets_present(&file, &docs, resource, &namespace);
                continue;
            }
            let _: VerticeBackup =
                serde_json::from_value(resource.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
            let target = resource["spec"]["target"]
                .as_object()
                .and_then(|t| t.keys().next().cloned())
                .unwrap_or_default();
            let store = resource["spec"]["store"]
                .as_object()
                .and_then(|s| s.keys().next().cloned())
                .unwrap_or_default();
            covered.insert(format!("{target}->{store}"));
            assert_secrets_present(&file, &docs, resource, &namespace);
        }
    }
    for pair in [
        "postgres->s3",
        "redis->gcs",
        "vault->azure",
        "kafka->s3",
        "elasticsearch->s3",
    ] {
        assert!(
            covered.contains(pair),
            "no example backs up {pair}: {covered:?}"
        );
    }
    assert!(scalers > 0, "no VerticeScaler example");
    assert!(failovers > 0, "no VerticeFailover example");
}
