//! Golden JSON Patches for VirtualServices with several routes and
//! destinations, applied with a JSON Patch implementation: to the document
//! they were made from they apply; after a hand edit they fail.

use serde_json::{json, Value};
use vertice_crds::failover::{FailoverReplica, ReplicaWeight};

use crate::failover::virtual_service::{match_replicas, patch, route_view, weights};

fn vs() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "db", "namespace": "prod"},
        "spec": {"hosts": ["db.prod.svc"], "http": [
            {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
             "route": [{"destination": {"host": "admin.prod.svc"}}]},
            {"name": "primary", "route": [
                {"destination": {"host": "pg.prod.svc", "subset": "east"}, "weight": 100},
                {"destination": {"host": "pg.prod.svc", "subset": "west"}, "weight": 0, "headers": {"request": {"set": {"x-region": "west"}}}}]}]}})
}

fn replicas() -> Vec<FailoverReplica> {
    serde_json::from_value(json!([
        {"name": "west", "host": "pg.prod.svc", "subset": "west"},
        {"name": "east", "host": "pg.prod.svc", "subset": "east", "priority": 10}]))
    .expect("replicas")
}

fn apply(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch = serde_json::from_value(ops.clone()).map_err(|e| e.to_string())?;
    let mut doc = doc.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| e.to_string())?;
    Ok(doc)
}

fn w(pairs: &[(&str, u32)]) -> Vec<ReplicaWeight> {
    pairs
        .iter()
        .map(|(r, w)| ReplicaWeight {
            replica: (*r).into(),
            weight: *w,
        })
        .collect()
}

#[test]
fn the_named_route_is_found_and_matched_by_host_and_subset() {
    let view = route_view(&vs(), Some("primary")).expect("route");
    assert_eq!(view.index, 1);
    let indexes = match_replicas(&view, &replicas()).expect("match");
    assert_eq!(indexes, vec![1, 0]);
    assert_eq!(
        weights(&view, &replicas(), &indexes),
        w(&[("west", 0), ("east", 100)])
    );
}

#[test]
fn golden_patch_of_a_named_route() {
    let view = route_view(&vs(), Some("primary")).expect("route");
    let indexes = match_replicas(&view, &replicas()).expect("match");
    let ops = patch(&view, &indexes, &w(&[("west", 100), ("east", 0)]));
    let expected = json!([
        {"op": "test", "path": "/spec/http/1/name", "value": "primary"},
        {"op": "test", "path": "/spec/http/1/route/0/destination/host", "value": "pg.prod.svc"},
        {"op": "test", "path": "/spec/http/1/route/0/destination/subset", "value": "east"},
        {"op": "test", "path": "/spec/http/1/route/1/destination/host", "value": "pg.prod.svc"},
        {"op": "test", "path": "/spec/http/1/route/1/destination/subset", "value": "west"},
        {"op": "test", "path": "/spec/http/1/route", "value": vs()["spec"]["http"][1]["route"]},
        {"op": "add", "path": "/spec/http/1/route/1/weight", "value": 100},
        {"op": "add", "path": "/spec/http/1/route/0/weight", "value": 0},
    ]);
    assert_eq!(ops, expected);
    let patched = apply(&vs(), &ops).expect("applies");
    let route = &patched["spec"]["http"][1]["route"];
    assert_eq!(
        (route[0]["weight"].clone(), route[1]["weight"].clone()),
        (json!(0), json!(100))
    );
    // Nothing else changed: the other route, headers, hosts.
    assert_eq!(patched["spec"]["http"][0], vs()["spec"]["http"][0]);
    assert_eq!(
        route[1]["headers"],
        vs()["spec"]["http"][1]["route"][1]["headers"]
    );
}

#[test]
fn the_first_route_by_default_and_missing_weights_are_added() {
    let doc = json!({"spec": {"http": [{"route": [
        {"destination": {"host": "a"}}, {"destination": {"host": "b"}}]}]}});
    let replicas: Vec<FailoverReplica> =
        serde_json::from_value(json!([{"name": "a", "host": "a"}, {"name": "b", "host": "b"}]))
            .expect("r");
    let view = route_view(&doc, None).expect("route");
    let indexes = match_replicas(&view, &replicas).expect("match");
    assert_eq!(
        weights(&view, &replicas, &indexes),
        w(&[("a", 0), ("b", 0)])
    );
    let ops = patch(&view, &indexes, &w(&[("a", 100), ("b", 0)]));
    assert!(ops
        .as_array()
        .expect("ops")
        .iter()
        .all(|op| op["path"] != "/spec/http/0/name"));
    let patched = apply(&doc, &ops).expect("applies");
    assert_eq!(patched["spec"]["http"][0]["route"][0]["weight"], json!(100));
    // A lone destination without a weight has all traffic.
    let lone = json!({"spec": {"http": [{"route": [{"destination": {"host": "a"}}]}]}});
    let view = route_view(&lone, None).expect("route");
    assert_eq!(weights(&view, &replicas[..1], &[0]), w(&[("a", 100)]));
}

#[test]
fn a_hand_edit_between_read_and_patch_makes_the_patch_fail() {
    let view = route_view(&vs(), Some("primary")).expect("route");
    let indexes = match_replicas(&view, &replicas()).expect("match");
    let ops = patch(&view, &indexes, &w(&[("west", 100), ("east", 0)]));
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "route renamed",
            Box::new(|d: &mut Value| d["spec"]["http"][1]["name"] = json!("main")),
        ),
        (
            "host changed",
            Box::new(|d: &mut Value| {
                d["spec"]["http"][1]["route"][0]["destination"]["host"] = json!("pg2.prod.svc")
            }),
        ),
        (
            "weights set by hand",
            Box::new(|d: &mut Value| {
                d["spec"]["http"][1]["route"][0]["weight"] = json!(50);
                d["spec"]["http"][1]["route"][1]["weight"] = json!(50);
            }),
        ),
        (
            "a destination added",
            Box::new(|d: &mut Value| {
                if let Some(r) = d["spec"]["http"][1]["route"].as_array_mut() {
                    r.push(json!({"destination": {"host": "canary"}, "weight": 0}));
                }
            }),
        ),
        (
            "routes reordered",
            Box::new(|d: &mut Value| {
                if let Some(h) = d["spec"]["http"].as_array_mut() {
                    h.swap(0, 1);
                }
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut edited = vs();
        edit(&mut edited);
        assert!(
            apply(&edited, &ops).is_err(),
            "{what}: the patch must not apply"
        );
    }
}

#[test]
fn routes_that_do_not_match_the_replicas_are_named() {
    let view = route_view(&vs(), Some("primary")).expect("route");
    let mut r = replicas();
    r[0].subset = Some("north".into());
    let e = match_replicas(&view, &r).expect_err("no north");
    assert!(e.contains("\"west\"") && e.contains("subset north"), "{e}");
    let e = match_replicas(&view, &r[1..]).expect_err("stray");
    assert!(e.contains("not one of the replicas"), "{e}");
    assert!(route_view(&vs(), Some("nope"))
        .expect_err("no route")
        .contains("routes: admin, primary"));
    assert!(route_view(&json!({"spec": {}}), None).is_err());
}
