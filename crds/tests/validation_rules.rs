//! The CRD schemas accept good resources and reject bad ones with the
//! message a user needs, as the API server would (structure, then CEL).

mod support;

use kube::CustomResourceExt;
use serde_json::{json, Value};
use vertice_crds::{VerticeBackup, VerticeFailover, VerticeScaler};

fn backup(spec: Value) -> Value {
    json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeBackup",
           "metadata": {"name": "orders", "namespace": "shop"}, "spec": spec})
}

fn good_spec() -> Value {
    json!({
        "target": {"postgres": {"host": "db", "database": "orders", "user": "backup",
                                "passwordSecretRef": {"name": "db", "key": "password"}}},
        "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Berlin"},
        "store": {"s3": {"bucket": "backups", "prefix": "prod"}},
    })
}

fn problems_of_backup(spec: Value) -> Vec<String> {
    support::problems(&support::schema_of(&VerticeBackup::crd()), &backup(spec))
}

fn assert_rejected(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem mentioning {needle:?}, got {problems:?}"
    );
}

#[test]
fn a_minimal_backup_is_valid_and_parses() {
    assert_eq!(problems_of_backup(good_spec()), Vec::<String>::new());
    let parsed: VerticeBackup = serde_json::from_value(backup(good_spec())).expect("parses");
    assert_eq!(parsed.spec.job.backoff_limit, 1);
    assert_eq!(
        parsed.spec.compression.algorithm,
        vertice_crds::Compression::Zstd
    );
}

#[test]
fn exactly_one_target_and_one_store() {
    let mut spec = good_spec();
    spec["store"]["gcs"] = json!({"bucket": "other"});
    assert_rejected(&problems_of_backup(spec), "exactly one of store.s3");
    let mut spec = good_spec();
    spec["target"] = json!({});
    assert_rejected(&problems_of_backup(spec), "exactly one of target.postgres");
    let mut spec = good_spec();
    spec["target"]["redis"] = json!({"host": "cache"});
    assert_rejected(&problems_of_backup(spec), "exactly one of target.postgres");
}

#[test]
fn compression_levels_follow_the_algorithm() {
    for (algorithm, level, ok) in [
        ("zstd", 19, true),
        ("gzip", 9, true),
        ("gzip", 10, false),
        ("none", 1, false),
    ] {
        let mut spec = good_spec();
        spec["compression"] = json!({"algorithm": algorithm, "level": level});
        let problems = problems_of_backup(spec);
        assert_eq!(problems.is_empty(), ok, "{algorithm} {level}: {problems:?}");
    }
    let mut spec = good_spec();
    spec["compression"] = json!({"algorithm": "lz4"});
    assert_rejected(&problems_of_backup(spec), "is not one of");
}

#[test]
fn retention_needs_a_rule_and_positive_counts() {
    let mut spec = good_spec();
    spec["retention"] = json!({"minKeep": 2});
    assert_rejected(&problems_of_backup(spec), "at least one keep rule");
    let mut spec = good_spec();
    spec["retention"] = json!({"keepDaily": 0});
    assert_rejected(&problems_of_backup(spec), "below the minimum");
    let mut spec = good_spec();
    spec["retention"] = json!({"keepDaily": 7, "keepWithin": "36h"});
    assert!(problems_of_backup(spec).is_empty());
}

#[test]
fn hooks_and_notifications_are_checked() {
    let mut spec = good_spec();
    spec["hooks"] = json!({"pre": [{"name": "both", "sql": {"statement": "select 1"},
                                      "http": {"url": "http://x"}}]});
    assert_rejected(&problems_of_backup(spec), "exactly one of sql or http");
    let mut spec = good_spec();
    spec["hooks"] =
        json!({"post": [{"name": "ping", "http": {"url": "http://x", "method": "FETCH"}}]});
    assert_rejected(&problems_of_backup(spec), "does not match");
    let mut spec = good_spec();
    spec["notifications"] = json!({"onSuccess": true});
    assert_rejected(&problems_of_backup(spec), "at least one of slack");
    let mut spec = good_spec();
    spec["notifications"] =
        json!({"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}});
    assert!(problems_of_backup(spec).is_empty());
}

#[test]
fn sql_hooks_need_a_database_target() {
    let mut spec = good_spec();
    spec["target"] =
        json!({"vault": {"address": "https://vault:8200", "kubernetesAuth": {"role": "backup"}}});
    spec["hooks"] = json!({"pre": [{"name": "x", "sql": {"statement": "select 1"}}]});
    assert_rejected(
        &problems_of_backup(spec.clone()),
        "sql hooks run on PostgreSQL and Redis",
    );
    spec["hooks"] = json!({"post": [{"name": "x", "http": {"url": "https://hc.example/ping"}}]});
    assert!(problems_of_backup(spec).is_empty());
}

#[test]
fn encryption_takes_public_keys_only() {
    let mut spec = good_spec();
    spec["encryption"] = json!({"recipients": ["AGE-SECRET-KEY-1QQQ"]});
    assert_rejected(&problems_of_backup(spec), "does not match");
    let mut spec = good_spec();
    spec["encryption"] =
        json!({"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]});
    assert!(problems_of_backup(spec).is_empty());
}

#[test]
fn unknown_and_mistyped_fields_are_reported() {
    let mut spec = good_spec();
    spec["schedul"] = json!({"cron": "@daily"});
    assert_rejected(&problems_of_backup(spec), ".spec.schedul: unknown field");
    let mut spec = good_spec();
    spec["target"]["postgres"]["port"] = json!("5432");
    assert_rejected(
        &problems_of_backup(spec),
        ".spec.target.postgres.port: expected",
    );
    let mut spec = good_spec();
    spec["schedule"]["overdueAfter"] = json!("1 hour");
    assert_rejected(&problems_of_backup(spec), "does not match");
}

#[test]
fn scaler_bounds_must_be_ordered() {
    let schema = support::schema_of(&VerticeScaler::crd());
    let scaler = |min: i32, max: i32| {
        json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeScaler", "metadata": {"name": "s"},
               "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": min, "maxReplicas": max,
                        "metrics": [{"cpu": {"targetAverageUtilization": 70}}]}})
    };
    assert!(support::problems(&schema, &scaler(2, 5)).is_empty());
    assert_rejected(
        &support::problems(&schema, &scaler(6, 5)),
        "minReplicas must not exceed maxReplicas",
    );
}

#[test]
fn failover_replica_names_are_unique() {
    let schema = support::schema_of(&VerticeFailover::crd());
    let failover = |second: &str| {
        json!({"apiVersion": "vertice.io/v1alpha1", "kind": "VerticeFailover", "metadata": {"name": "f"},
               "spec": {"virtualService": {"name": "db"},
                        "replicas": [{"name": "a", "host": "pg-a", "priority": 10}, {"name": second, "host": "pg-b"}],
                        "check": {"postgres": {"requirePrimary": true}}}})
    };
    assert!(support::problems(&schema, &failover("b")).is_empty());
    assert_rejected(
        &support::problems(&schema, &failover("a")),
        "replica names must be unique",
    );
}
