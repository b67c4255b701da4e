//! A dynamic view of an Istio VirtualService (no Istio client): the HTTP
//! route we steer, its destinations matched to our replicas, and the JSON
//! Patch that changes only their weights. The patch first tests the route's
//! name, every destination's host (and subset) and the whole route as we
//! read it, so a concurrent hand edit makes it fail instead of being
//! clobbered; the caller reads again and decides again.

use serde_json::{json, Value};
use vertice_crds::failover::{FailoverReplica, ReplicaWeight};

#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    /// Index into `spec.http`.
    pub index: usize,
    pub name: Option<String>,
    /// The route's destinations as read (`spec.http[i].route`).
    pub route: Vec<Value>,
}

/// Finds the HTTP route `name` (default: the first).
pub fn route_view(vs: &Value, name: Option<&str>) -> Result<RouteView, String> {
    let http = vs["spec"]["http"]
        .as_array()
        .filter(|h| !h.is_empty())
        .ok_or("the VirtualService has no HTTP routes (spec.http)")?;
    let index = match name {
        None => 0,
        Some(wanted) => http
            .iter()
            .position(|r| r["name"].as_str() == Some(wanted))
            .ok_or_else(|| {
                let names: Vec<&str> = http.iter().filter_map(|r| r["name"].as_str()).collect();
                format!(
                    "the VirtualService has no HTTP route named {wanted:?} (routes: {})",
                    names.join(", ")
                )
            })?,
    };
    let route = http[index]["route"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("HTTP route {index} has no destinations"))?
        .clone();
    Ok(RouteView {
        index,
        name: http[index]["name"].as_str().map(String::from),
        route,
    })
}

/// Which destination index each replica is, in spec order. Every
/// destination must be exactly one replica and the other way round: weights
/// of a destination we do not manage would break the sum of 100.
pub fn match_replicas(
    view: &RouteView,
    replicas: &[FailoverReplica],
) -> Result<Vec<usize>, String> {
    let mut found = Vec::with_capacity(replicas.len());
    for replica in replicas {
        let hits: Vec<usize> = view
            .route
            .iter()
            .enumerate()
            .filter(|(_, d)| is_replica(d, replica))
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [one] => found.push(*one),
            [] => {
                return Err(format!(
                    "replica {:?} (host {}{}) is not a destination of the route",
                    replica.name,
                    replica.host,
                    replica
                        .subset
                        .as_ref()
                        .map(|s| format!(", subset {s}"))
                        .unwrap_or_default()
                ))
            }
            _ => {
                return Err(format!(
                    "replica {:?} matches several destinations of the route",
                    replica.name
                ))
            }
        }
    }
    if let Some((_, stray)) = view
        .route
        .iter()
        .enumerate()
        .find(|(i, _)| !found.contains(i))
    {
        return Err(format!(
            "destination {} of the route is not one of the replicas",
            stray["destination"]["host"].as_str().unwrap_or("?")
        ));
    }
    Ok(found)
}

fn is_replica(destination: &Value, replica: &FailoverReplica) -> bool {
    destination["destination"]["host"].as_str() == Some(replica.host.as_str())
        && destination["destination"]["subset"].as_str() == replica.subset.as_deref()
}

/// The weights as they are, per replica in spec order. A lone destination
/// without a weight takes all traffic (Istio's rule); otherwise a missing
/// weight is 0.
pub fn weights(
    view: &RouteView,
    replicas: &[FailoverReplica],
    indexes: &[usize],
) -> Vec<ReplicaWeight> {
    replicas
        .iter()
        .zip(indexes)
        .map(|(r, i)| ReplicaWeight {
            replica: r.name.clone(),
            weight: match view.route[*i]["weight"].as_u64() {
                Some(w) => u32::try_from(w.min(100)).unwrap_or(100),
                None if view.route.len() == 1 => 100,
                None => 0,
            },
        })
        .collect()
}

/// The guarded JSON Patch setting `weights` (spec order, as `indexes`).
pub fn patch(view: &RouteView, indexes: &[usize], weights: &[ReplicaWeight]) -> Value {
    let base = format!("/spec/http/{}", view.index);
    let mut ops = Vec::new();
    if let Some(name) = &view.name {
        ops.push(json!({"op": "test", "path": format!("{base}/name"), "value": name}));
    }
    for (j, d) in view.route.iter().enumerate() {
        ops.push(
            json!({"op": "test", "path": format!("{base}/route/{j}/destination/host"),
                        "value": d["destination"]["host"]}),
        );
        if let Some(subset) = d["destination"].get("subset") {
            ops.push(
                json!({"op": "test", "path": format!("{base}/route/{j}/destination/subset"),
                            "value": subset}),
            );
        }
    }
    ops.push(json!({"op": "test", "path": format!("{base}/route"), "value": view.route}));
    for (i, w) in indexes.iter().zip(weights) {
        // `add` sets a member whether it is there or not.
        ops.push(
            json!({"op": "add", "path": format!("{base}/route/{i}/weight"), "value": w.weight}),
        );
    }
    Value::Array(ops)
}
