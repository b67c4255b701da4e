//! The real API server is the authority on the CRDs: every CRD applies
//! (`deploy/base`, server-side), every good example of the schema and CEL
//! rules is accepted and every bad one refused with the message a user needs,
//! and `deploy/examples` and the example overlay apply cleanly.

use std::io::Write;
use std::process::Stdio;

use serde_json::{json, Value};
use vertice_tests::kube::cluster::workspace;
use vertice_tests::kube::TestCluster;

fn backup(spec: Value) -> Value {
    json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
           "metadata": {"name": "orders", "namespace": "cases"}, "spec": spec})
}

fn good_spec() -> Value {
    json!({
        "target": {"postgres": {"host": "db", "database": "orders", "user": "backup",
                                "passwordSecretRef": {"name": "db", "key": "password"}}},
        "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Berlin"},
        "store": {"s3": {"bucket": "backups", "prefix": "prod"}},
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut spec = good_spec();
    let mut at = &mut spec;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
    backup(spec)
}

fn scaler(min: i32, max: i32) -> Value {
    json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler",
           "metadata": {"name": "s", "namespace": "cases"},
           "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": min,
                    "maxReplicas": max, "metrics": [{"cpu": {"targetAverageUtilization": 70}}]}})
}

/// A valid scaler with `metric` as its only metric and `extra` merged into
/// the spec.
fn scaler_with(metric: Value, extra: Value) -> Value {
    let mut s = scaler(1, 5);
    s["spec"]["metrics"] = json!([metric]);
    s["spec"]["prometheus"] = json!({"url": "http://prometheus:9090"});
    if let (Some(spec), Some(extra)) = (s["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    s
}

fn failover(second: &str) -> Value {
    json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover",
           "metadata": {"name": "f", "namespace": "cases"},
           "spec": {"virtualService": {"name": "db"},
                    "replicas": [{"name": "a", "host": "pg-a", "priority": 10}, {"name": second, "host": "pg-b"}],
                    "check": {"postgres": {"requireRole": "Primary"}}}})
}

/// A backup of a Kafka cluster over TLS with SASL, `patch` merged into the
/// `kafka` target (a null removes the key) and `extra` into the spec.
fn kafka(patch: Value, extra: Value) -> Value {
    let mut spec = good_spec();
    let mut target = json!({
        "bootstrapServers": ["kafka-0.kafka.svc:9093", "[fd00::1]:9093"],
        "topics": ["orders", "audit.v1"], "topicRegex": "billing\\..*", "groups": "billing-.*",
        "tls": {"caSecretRef": {"name": "kafka-ca", "key": "ca.crt"},
                "certSecretRef": {"name": "kafka-client", "key": "tls.crt"},
                "keySecretRef": {"name": "kafka-client", "key": "tls.key"}},
        "sasl": {"mechanism": "SCRAM-SHA-256", "username": "vertice-backup",
                 "passwordSecretRef": {"name": "kafka", "key": "password"}},
    });
    if let (Some(t), Some(patch)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    spec["target"] = json!({"kafka": target});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    backup(spec)
}

/// The Kafka target's schema and CEL rules.
fn kafka_cases() -> Vec<(&'static str, Value, Option<&'static str>)> {
    let none = json!({});
    vec![
        ("a kafka backup", kafka(json!({}), json!({})), None),
        (
            "a plaintext kafka backup without SASL",
            kafka(
                json!({"tls": null, "sasl": null, "includeInternal": true}),
                json!({}),
            ),
            None,
        ),
        (
            "kafka and postgres",
            {
                let mut b = kafka(json!({}), json!({}));
                b["spec"]["target"]["postgres"] = good_spec()["target"]["postgres"].clone();
                b
            },
            Some("exactly one of target.postgres, target.redis, target.vault, target.kafka"),
        ),
        (
            "no bootstrap servers",
            kafka(json!({"bootstrapServers": []}), json!({})),
            Some("bootstrapServers"),
        ),
        (
            "a bootstrap server without a port",
            kafka(
                json!({"bootstrapServers": ["kafka-0.kafka.svc"]}),
                json!({}),
            ),
            Some("should match"),
        ),
        (
            "a bootstrap server as a URL",
            kafka(
                json!({"bootstrapServers": ["kafka://kafka-0:9092"]}),
                json!({}),
            ),
            Some("should match"),
        ),
        (
            "a topic list in one item",
            kafka(json!({"topics": ["orders,payments"]}), json!({})),
            Some("should match"),
        ),
        (
            "a SASL user with a password in it",
            kafka(
                json!({"sasl": {"username": "backup:hunter2",
                                "passwordSecretRef": {"name": "kafka", "key": "password"}}}),
                json!({}),
            ),
            Some("should match"),
        ),
        (
            "SASL without a password",
            kafka(json!({"sasl": {"username": "backup"}}), json!({})),
            Some("passwordSecretRef: Required value"),
        ),
        (
            "an unknown SASL mechanism",
            kafka(
                json!({"sasl": {"mechanism": "GSSAPI", "username": "backup",
                                "passwordSecretRef": {"name": "kafka", "key": "password"}}}),
                json!({}),
            ),
            Some("Unsupported value: \"GSSAPI\""),
        ),
        (
            "a client certificate without its key",
            kafka(
                json!({"tls": {"certSecretRef": {"name": "kafka-client", "key": "tls.crt"}}}),
                json!({}),
            ),
            Some("set tls.certSecretRef and tls.keySecretRef together"),
        ),
        (
            "TLS files with TLS off",
            kafka(
                json!({"tls": {"enabled": false, "caSecretRef": {"name": "kafka-ca", "key": "ca.crt"}}}),
                json!({}),
            ),
            Some("tls.enabled is false"),
        ),
        (
            "TLS off",
            kafka(json!({"tls": {"enabled": false}}), json!({})),
            None,
        ),
        (
            "an sql hook on kafka",
            kafka(
                json!({}),
                json!({"hooks": {"pre": [{"name": "x", "sql": {"statement": "select 1"}}]}}),
            ),
            Some("sql hooks run on PostgreSQL and Redis"),
        ),
        (
            "an http hook on kafka",
            kafka(
                json!({}),
                json!({"hooks": {"post": [{"name": "x", "http": {"url": "https://hc.example/ping"}}]}}),
            ),
            None,
        ),
        (
            "a kafka drill",
            kafka(
                json!({}),
                json!({"drill": {"schedule": {"cron": "@weekly"}}}),
            ),
            None,
        ),
        (
            "a drill target for a kafka backup",
            kafka(
                json!({}),
                json!({"drill": {"schedule": {"cron": "@weekly"}, "target": {"ephemeral": none}}}),
            ),
            Some("drill.target is for PostgreSQL backups"),
        ),
    ]
}

/// A backup of an Elasticsearch / OpenSearch cluster with basic auth,
/// `patch` merged into the `elasticsearch` target (a null removes the key)
/// and `extra` into the spec.
fn elasticsearch(patch: Value, extra: Value) -> Value {
    let mut b = kafka(json!({}), extra);
    let mut target = json!({
        "url": "https://logs-es-http.logging.svc:9200",
        "username": "vertice-backup",
        "passwordSecretRef": {"name": "es", "key": "password"},
        "caSecretRef": {"name": "es-ca", "key": "ca.crt"},
        "indices": ["shop-*", "logs-2026.12"],
        "mode": "export",
    });
    if let (Some(t), Some(patch)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    b["spec"]["target"] = json!({"elasticsearch": target});
    b
}

/// The Elasticsearch target's schema and CEL rules: each refusal names the
/// field.
fn elasticsearch_cases() -> Vec<(&'static str, Value, Option<&'static str>)> {
    let none = json!({});
    let api_key = json!({"name": "es", "key": "api-key"});
    vec![
        (
            "an elasticsearch backup",
            elasticsearch(none.clone(), none.clone()),
            None,
        ),
        (
            "an elasticsearch backup with an API key",
            elasticsearch(
                json!({"username": null, "passwordSecretRef": null, "apiKeySecretRef": api_key}),
                none.clone(),
            ),
            None,
        ),
        (
            "an elasticsearch backup without credentials, behind a path",
            elasticsearch(
                json!({"url": "http://proxy.svc:8080/es", "username": null,
                       "passwordSecretRef": null, "caSecretRef": null, "mode": null}),
                json!({"drill": {"schedule": {"cron": "@weekly"}}}),
            ),
            None,
        ),
        (
            "an elasticsearch user without a password",
            elasticsearch(json!({"passwordSecretRef": null}), none.clone()),
            Some("spec.target.elasticsearch: Invalid value: set elasticsearch.username and elasticsearch.passwordSecretRef together"),
        ),
        (
            "an elasticsearch password without a user",
            elasticsearch(json!({"username": null}), none.clone()),
            Some("spec.target.elasticsearch: Invalid value: set elasticsearch.username and elasticsearch.passwordSecretRef together"),
        ),
        (
            "an elasticsearch user and an API key",
            elasticsearch(json!({"apiKeySecretRef": api_key}), none.clone()),
            Some("spec.target.elasticsearch: Invalid value: elasticsearch: use basic auth (username and passwordSecretRef) or an API key (apiKeySecretRef), not both"),
        ),
        (
            "an elasticsearch URL with a user",
            elasticsearch(json!({"url": "http://u@h:9200"}), none.clone()),
            Some("spec.target.elasticsearch.url in body should match"),
        ),
        (
            "an elasticsearch URL with a query",
            elasticsearch(json!({"url": "https://es:9200/?api_key=x"}), none.clone()),
            Some("spec.target.elasticsearch.url in body should match"),
        ),
        (
            "an elasticsearch backup in snapshot mode",
            elasticsearch(json!({"mode": "snapshot", "repository": "nightly"}), none.clone()),
            None,
        ),
        (
            "elasticsearch snapshot mode into the agent's own repository",
            elasticsearch(json!({"mode": "snapshot", "repositoryClient": "backups"}), none.clone()),
            None,
        ),
        (
            "an elasticsearch repository in export mode",
            elasticsearch(json!({"repository": "nightly"}), none.clone()),
            Some("spec.target.elasticsearch: Invalid value: elasticsearch: repository is for mode snapshot only"),
        ),
        (
            "an elasticsearch repository client with a named repository",
            elasticsearch(json!({"mode": "snapshot", "repository": "nightly", "repositoryClient": "x"}), none.clone()),
            Some("spec.target.elasticsearch: Invalid value: elasticsearch: repositoryClient and repositorySettings are for mode snapshot into the agent's own repository"),
        ),
        (
            "elasticsearch repository settings that would move the repository",
            elasticsearch(json!({"mode": "snapshot", "repositorySettings": {"bucket": "elsewhere"}}), none.clone()),
            Some("elasticsearch.repositorySettings: where the repository lies"),
        ),
        (
            "elasticsearch repository settings of the agent's own repository",
            elasticsearch(json!({"mode": "snapshot", "repositorySettings": {"storage_class": "standard_ia"}}), none.clone()),
            None,
        ),
        (
            "an elasticsearch repository client that is no setting name",
            elasticsearch(json!({"mode": "snapshot", "repositoryClient": "a.b"}), none.clone()),
            Some("spec.target.elasticsearch.repositoryClient in body should match"),
        ),
        (
            "an unknown elasticsearch mode",
            elasticsearch(json!({"mode": "copy"}), none.clone()),
            Some("spec.target.elasticsearch.mode: Unsupported value: \"copy\""),
        ),
        (
            "elasticsearch and kafka",
            {
                let mut b = elasticsearch(none.clone(), none.clone());
                b["spec"]["target"]["kafka"] = kafka(none.clone(), none.clone())["spec"]["target"]["kafka"].clone();
                b
            },
            Some("set exactly one of target.postgres, target.redis, target.vault, target.kafka, target.elasticsearch"),
        ),
        (
            "an sql hook on elasticsearch",
            elasticsearch(
                none.clone(),
                json!({"hooks": {"pre": [{"name": "x", "sql": {"statement": "select 1"}}]}}),
            ),
            Some("sql hooks run on PostgreSQL and Redis"),
        ),
        (
            "a drill target for an elasticsearch backup",
            elasticsearch(
                none.clone(),
                json!({"drill": {"schedule": {"cron": "@weekly"}, "target": {"ephemeral": none}}}),
            ),
            Some("drill.target is for PostgreSQL backups"),
        ),
        (
            "an elasticsearch drill on another cluster",
            elasticsearch(
                none.clone(),
                json!({"drill": {"schedule": {"cron": "@weekly"}, "target": {"elasticsearch": {
                    "url": "https://drills.example:9200", "flavour": "opensearch",
                    "username": "drill", "passwordSecretRef": {"name": "drill-es", "key": "password"}}}}}),
            ),
            None,
        ),
        (
            "an elasticsearch drill target with a user but no password",
            elasticsearch(
                none.clone(),
                json!({"drill": {"schedule": {"cron": "@weekly"}, "target": {"elasticsearch": {
                    "url": "https://drills.example:9200", "username": "drill"}}}}),
            ),
            Some("set drill.target.elasticsearch.username and passwordSecretRef together"),
        ),
        (
            "an elasticsearch drill target with a user in its url",
            elasticsearch(
                none.clone(),
                json!({"drill": {"schedule": {"cron": "@weekly"}, "target": {"elasticsearch": {
                    "url": "https://drill:pw@drills.example:9200"}}}}),
            ),
            Some("spec.drill.target.elasticsearch.url"),
        ),
    ]
}

/// (what, object, None when accepted or Some(what the refusal says)).
fn cases() -> Vec<(&'static str, Value, Option<&'static str>)> {
    let age = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let mut cases = kafka_cases();
    cases.extend(elasticsearch_cases());
    cases.extend(vec![
        ("a minimal backup", backup(good_spec()), None),
        (
            "two stores",
            with(&["store", "gcs"], json!({"bucket": "other"})),
            Some("exactly one of store.s3"),
        ),
        (
            "no target",
            with(&["target"], json!({})),
            Some("exactly one of target.postgres"),
        ),
        (
            "two targets",
            with(&["target", "redis"], json!({"host": "cache"})),
            Some("exactly one of target.postgres"),
        ),
        (
            "zstd 19",
            with(&["compression"], json!({"algorithm": "zstd", "level": 19})),
            None,
        ),
        (
            "gzip 9",
            with(&["compression"], json!({"algorithm": "gzip", "level": 9})),
            None,
        ),
        (
            "gzip 10",
            with(&["compression"], json!({"algorithm": "gzip", "level": 10})),
            Some("gzip"),
        ),
        (
            "a level without compression",
            with(&["compression"], json!({"algorithm": "none", "level": 1})),
            Some("level"),
        ),
        (
            "an unknown algorithm",
            with(&["compression"], json!({"algorithm": "lz4"})),
            Some("Unsupported value: \"lz4\""),
        ),
        (
            "retention without a rule",
            with(&["retention"], json!({"minKeep": 2})),
            Some("at least one keep rule"),
        ),
        (
            "keepDaily 0",
            with(&["retention"], json!({"keepDaily": 0})),
            Some("should be greater than or equal to 1"),
        ),
        (
            "keepDaily and keepWithin",
            with(&["retention"], json!({"keepDaily": 7, "keepWithin": "36h"})),
            None,
        ),
        (
            "a hook with sql and http",
            with(
                &["hooks"],
                json!({"pre": [{"name": "both", "sql": {"statement": "select 1"}, "http": {"url": "http://x"}}]}),
            ),
            Some("exactly one of sql or http"),
        ),
        (
            "an http hook with a bad method",
            with(
                &["hooks"],
                json!({"post": [{"name": "ping", "http": {"url": "http://x", "method": "FETCH"}}]}),
            ),
            Some("should match"),
        ),
        (
            "notifications without a channel",
            with(&["notifications"], json!({"onSuccess": true})),
            Some("at least one of slack"),
        ),
        (
            "a slack notification",
            with(
                &["notifications"],
                json!({"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}}),
            ),
            None,
        ),
        (
            "an sql hook on vault",
            {
                let mut spec = good_spec();
                spec["target"] = json!({"vault": {"address": "https://vault:8200", "kubernetesAuth": {"role": "backup"}}});
                spec["hooks"] = json!({"pre": [{"name": "x", "sql": {"statement": "select 1"}}]});
                backup(spec)
            },
            Some("sql hooks run on PostgreSQL and Redis"),
        ),
        (
            "an http hook on vault",
            {
                let mut spec = good_spec();
                spec["target"] = json!({"vault": {"address": "https://vault:8200", "kubernetesAuth": {"role": "backup"}}});
                spec["hooks"] =
                    json!({"post": [{"name": "x", "http": {"url": "https://hc.example/ping"}}]});
                backup(spec)
            },
            None,
        ),
        (
            "a postgres drill with nowhere to restore",
            with(&["drill"], json!({"schedule": {"cron": "@weekly"}})),
            Some("drill.target.ephemeral (a server inside the drill pod)"),
        ),
        (
            "a postgres drill on an ephemeral server",
            with(
                &["drill"],
                json!({"schedule": {"cron": "@weekly"}, "target": {"ephemeral": {}}}),
            ),
            None,
        ),
        (
            "a postgres drill on a server of its own",
            with(
                &["drill"],
                json!({"schedule": {"cron": "@weekly"},
                       "target": {"postgres": {"host": "drill-db", "user": "drill"}}}),
            ),
            None,
        ),
        (
            "a drill target that is both",
            with(
                &["drill"],
                json!({"schedule": {"cron": "@weekly"},
                       "target": {"postgres": {"host": "drill-db", "user": "drill"}, "ephemeral": {}}}),
            ),
            Some("give exactly one of drill.target.postgres"),
        ),
        (
            "an elasticsearch drill target for a postgres backup",
            with(
                &["drill"],
                json!({"schedule": {"cron": "@weekly"},
                       "target": {"elasticsearch": {"url": "https://drills:9200"}}}),
            ),
            Some("drill.target is for PostgreSQL backups"),
        ),
        (
            "a drill target both postgres and elasticsearch",
            with(
                &["drill"],
                json!({"schedule": {"cron": "@weekly"},
                       "target": {"ephemeral": {}, "elasticsearch": {"url": "https://drills:9200"}}}),
            ),
            Some("give exactly one of drill.target.postgres"),
        ),
        (
            "a drill target for a redis backup",
            {
                let mut spec = good_spec();
                spec["target"] = json!({"redis": {"host": "cache"}});
                spec["drill"] =
                    json!({"schedule": {"cron": "@weekly"}, "target": {"ephemeral": {}}});
                backup(spec)
            },
            Some("drill.target is for PostgreSQL backups"),
        ),
        (
            "a private age key",
            with(
                &["encryption"],
                json!({"recipients": ["AGE-SECRET-KEY-1QQQ"]}),
            ),
            Some("should match"),
        ),
        (
            "an age recipient",
            with(&["encryption"], json!({"recipients": [age]})),
            None,
        ),
        (
            "an unknown field",
            with(&["schedul"], json!({"cron": "@daily"})),
            Some(".spec.schedul: field not declared in schema"),
        ),
        (
            "a port as a string",
            with(&["target", "postgres", "port"], json!("5432")),
            Some(".spec.target.postgres.port: expected numeric"),
        ),
        (
            "overdueAfter in words",
            with(&["schedule", "overdueAfter"], json!("1 hour")),
            Some("should match"),
        ),
        ("ordered scaler bounds", scaler(2, 5), None),
        (
            "reversed scaler bounds",
            scaler(6, 5),
            Some("minReplicas must not exceed maxReplicas"),
        ),
        (
            "a named prometheus metric with a fallback",
            scaler_with(
                json!({"name": "queue", "prometheus": {"query": "sum(q)", "targetValue": 10},
                       "onFailure": {"type": "Fallback", "replicas": 3}, "maxStaleness": "2m"}),
                json!({"schedules": [{"name": "day", "cron": "0 9 * * *", "duration": "8h", "minReplicas": 3}]}),
            ),
            None,
        ),
        (
            "an unnamed prometheus metric",
            scaler_with(
                json!({"prometheus": {"query": "sum(q)", "targetValue": 10}}),
                json!({}),
            ),
            Some("a prometheus metric needs a name"),
        ),
        (
            "a fallback without replicas",
            scaler_with(
                json!({"name": "q", "prometheus": {"query": "sum(q)", "targetValue": 10}, "onFailure": {"type": "Fallback"}}),
                json!({}),
            ),
            Some("Fallback needs replicas"),
        ),
        (
            "cpu with two targets",
            scaler_with(
                json!({"cpu": {"targetAverageUtilization": 50, "targetAverageValue": "200m"}}),
                json!({}),
            ),
            Some("set exactly one of targetAverageUtilization or targetAverageValue"),
        ),
        (
            "a window floor above the maximum",
            scaler_with(
                json!({"cpu": {"targetAverageUtilization": 50}}),
                json!({"schedules": [{"name": "day", "cron": "0 9 * * *", "duration": "8h", "minReplicas": 9}]}),
            ),
            Some("a schedule window's minReplicas must not exceed spec.maxReplicas"),
        ),
        (
            "prometheus metrics without a server",
            {
                let mut s = scaler_with(
                    json!({"name": "q", "prometheus": {"query": "q", "targetValue": 1}}),
                    json!({}),
                );
                s["spec"].as_object_mut().map(|o| o.remove("prometheus"));
                s
            },
            Some("prometheus metrics need spec.prometheus.url"),
        ),
        ("unique replica names", failover("b"), None),
        (
            "duplicate replica names",
            failover("a"),
            Some("replica names must be unique"),
        ),
        (
            "a tcp check without a port",
            with_check(json!({"tcp": {}})),
            Some("tcp and grpc checks need check.port"),
        ),
        (
            "a tcp check with a port",
            with_check(json!({"tcp": {}, "port": 5432})),
            None,
        ),
        (
            "two check kinds",
            with_check(json!({"tcp": {}, "http": {}, "port": 1})),
            Some("a check sets exactly one of"),
        ),
        (
            "a header with both a value and a Secret",
            with_check(json!({"http": {"headers": [{"name": "x", "value": "v",
                "valueFrom": {"name": "s", "key": "k"}}]}})),
            Some("a header sets exactly one of value, valueFrom"),
        ),
        (
            "an inverted status range",
            with_check(json!({"http": {"minStatus": 400, "maxStatus": 200}})),
            Some("minStatus must not exceed maxStatus"),
        ),
        (
            "a quorum above the vantages",
            {
                let mut f = failover("b");
                f["spec"]["policy"] = json!({"vantages": ["eu"], "quorum": 2});
                f
            },
            Some("policy.quorum cannot exceed"),
        ),
        (
            "a staleness limit within the runners' heartbeat",
            {
                let mut f = failover("b");
                f["spec"]["check"]["periodSeconds"] = json!(5);
                f["spec"]["check"]["timeoutSeconds"] = json!(3);
                f["spec"]["policy"] = json!({"observerStaleAfterSeconds": 13});
                f
            },
            Some("policy.observerStaleAfterSeconds must be greater than"),
        ),
        (
            "a staleness limit beyond the heartbeat of the default period",
            {
                // No periodSeconds or timeoutSeconds given: the rule must
                // read the schema's defaults, not fail on absent keys.
                let mut f = failover("b");
                f["spec"]["policy"] = json!({"observerStaleAfterSeconds": 60});
                f
            },
            None,
        ),
    ]);
    cases
}

fn with_check(check: Value) -> Value {
    let mut f = failover("b");
    f["spec"]["check"] = check;
    f
}

/// `kubectl apply --server-side --dry-run=server` of one object: the API
/// server's verdict (strict field validation, as kubectl does by default).
fn server_verdict(cluster: &TestCluster, object: &Value) -> Result<(), String> {
    let mut child = cluster
        .plane
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=vertice-cases",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object.to_string().as_bytes())
        .expect("write object");
    let out = child.wait_with_output().expect("kubectl");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_accepts_and_refuses_as_documented() {
    let cluster = TestCluster::start().await;
    cluster.plane.create_namespace("cases").await;
    let mut wrong = Vec::new();
    for (what, object, refusal) in cases() {
        match (server_verdict(&cluster, &object), refusal) {
            (Ok(()), None) => {}
            (Err(message), Some(needle)) if message.contains(needle) => {}
            (verdict, expected) => wrong.push(format!(
                "{what}: expected {}, the server said {verdict:?}",
                expected.map_or("acceptance".to_string(), |n| format!(
                    "a refusal mentioning {n:?}"
                ))
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn namespaces_in(yaml: &str) -> Vec<String> {
    let mut out: Vec<String> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("namespace: "))
        .map(|n| n.trim().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_and_overlay_applies_server_side() {
    let cluster = TestCluster::start().await;
    // The failover example names its VirtualService.
    vertice_tests::kube::istio::install_virtual_service_crd(&cluster);
    let examples = workspace().join("deploy/examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .expect("deploy/examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let yaml = std::fs::read_to_string(&file).expect("read example");
        for ns in namespaces_in(&yaml) {
            let _ = cluster
                .plane
                .kubectl()
                .args(["create", "namespace", &ns])
                .output();
        }
        let path = file.display().to_string();
        cluster.kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=vertice-examples",
            "-f",
            &path,
        ]);
    }
    // The overlay a user starts from, on top of the base.
    cluster.apply_kustomization("deploy/overlays/example");
}

/// The controller's Event recorder on the real events.k8s.io API: a repeat
/// raises the first Event's series, another note is another Event, and an
/// Event that is gone is made anew rather than failing the publish.
#[tokio::test(flavor = "multi_thread")]
async fn events_form_series_on_the_real_api_server() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::api::{DeleteParams, ListParams};
    use kube::Api;
    use vertice_controller::events::{Event, EventRecorder};

    let cluster = TestCluster::start().await;
    cluster.plane.create_namespace("events").await;
    let client = cluster.admin().await;
    let recorder = EventRecorder::new(client.clone(), "vertice-controller", "test-replica");
    let regarding = ObjectReference {
        api_version: Some("vertice.io/v1alpha1".into()),
        kind: Some("VerticeBackup".into()),
        namespace: Some("events".into()),
        name: Some("orders".into()),
        uid: Some("0b9e4f5c-0000-4000-8000-000000000001".into()),
        ..Default::default()
    };
    let failed = |note: &str| Event {
        warning: true,
        reason: "BackupFailed",
        note: note.into(),
    };
    let api: Api<K8sEvent> = Api::namespaced(client, "events");
    let listed = || async {
        let mut events = api.list(&ListParams::default()).await.expect("list").items;
        events.sort_by_key(|e| e.metadata.name.clone());
        events
    };

    for _ in 0..3 {
        recorder
            .publish(&regarding, &failed("auth: password rejected"))
            .await
            .expect("publish");
    }
    let events = listed().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let first = &events[0];
    assert_eq!(first.series.as_ref().map(|s| s.count), Some(3));
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.reporting_instance.as_deref(), Some("test-replica"));
    assert_eq!(
        first.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("orders")
    );

    recorder
        .publish(&regarding, &failed("store: connection refused"))
        .await
        .expect("publish");
    assert_eq!(listed().await.len(), 2);

    let name = first.metadata.name.clone().expect("name");
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    recorder
        .publish(&regarding, &failed("auth: password rejected"))
        .await
        .expect("a publish after the Event is gone makes a new one");
    let events = listed().await;
    assert_eq!(events.len(), 2, "{events:?}");
    let again = events
        .iter()
        .find(|e| e.note.as_deref() == Some("auth: password rejected"))
        .expect("the new Event");
    assert_ne!(again.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(again.series, None);
    assert_eq!(recorder.cached(), 2);
}
