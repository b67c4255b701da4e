//! Every API call the controller makes, as RBAC sees it. The deploy/ RBAC is
//! checked against this list (nothing more is granted) and the mock-API tests
//! check every request against it (nothing less is needed).

/// `(API group, resource, verb)`; `""` is the core group.
pub const REQUIRED: &[(&str, &str, &str)] = &[
    ("vertice.io", "verticebackups", "list"),
    ("vertice.io", "verticebackups", "watch"),
    ("vertice.io", "verticebackups/status", "patch"),
    ("batch", "cronjobs", "get"),
    ("batch", "cronjobs", "list"),
    ("batch", "cronjobs", "watch"),
    ("batch", "cronjobs", "patch"),
    // A server-side apply that creates the object is authorized as a create
    // as well (the real API server showed this; a mock did not).
    ("batch", "cronjobs", "create"),
    ("batch", "cronjobs", "delete"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    ("batch", "jobs", "create"),
    ("", "pods", "list"),
    // The scaler: its resources, Deployments, StatefulSets and pods from
    // watch caches (count, selector, rollout state, readiness), any other
    // kind's /scale (read), every target's /scale (written),
    // their pods' metrics, and a Prometheus bearer token when one is named.
    ("vertice.io", "verticescalers", "list"),
    ("vertice.io", "verticescalers", "watch"),
    ("vertice.io", "verticescalers/status", "patch"),
    ("apps", "deployments", "list"),
    ("apps", "deployments", "watch"),
    ("apps", "statefulsets", "list"),
    ("apps", "statefulsets", "watch"),
    ("apps", "deployments/scale", "patch"),
    ("apps", "statefulsets/scale", "patch"),
    ("apps", "replicasets/scale", "get"),
    ("apps", "replicasets/scale", "patch"),
    ("", "pods", "watch"),
    ("metrics.k8s.io", "pods", "list"),
    // Upstream HPAs, only their scale target: a target an HPA scales is
    // not ours to scale (the two would fight over spec.replicas).
    ("autoscaling", "horizontalpodautoscalers", "list"),
    ("autoscaling", "horizontalpodautoscalers", "watch"),
    ("", "secrets", "get"),
    // The failover: its resources, its status fields (never the probe
    // runners' observations), and the VirtualServices it steers (read,
    // then a guarded JSON patch of route weights).
    ("vertice.io", "verticefailovers", "list"),
    ("vertice.io", "verticefailovers", "watch"),
    ("vertice.io", "verticefailovers/status", "patch"),
    ("networking.istio.io", "virtualservices", "get"),
    ("networking.istio.io", "virtualservices", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "patch"),
];

/// The RBAC `(group, resource, verb)` of a request to the API server.
pub fn classify(method: &str, path_and_query: &str) -> Option<(String, String, &'static str)> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, mut rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        rest = &rest[2..];
    }
    let (resource, name, sub) = (rest.first()?, rest.get(1), rest.get(2));
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((group.to_string(), resource, verb))
}

/// Whether `REQUIRED` covers the request.
pub fn is_required(method: &str, path_and_query: &str) -> bool {
    classify(method, path_and_query).is_some_and(|(g, r, v)| {
        REQUIRED
            .iter()
            .any(|(rg, rr, rv)| *rg == g && *rr == r && *rv == v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_rbac_terms() {
        let c = |m, p| classify(m, p).map(|(g, r, v)| format!("{g}|{r}|{v}"));
        assert_eq!(
            c("GET", "/api/v1/namespaces/shop/pods?labelSelector=a%3Db").as_deref(),
            Some("|pods|list")
        );
        assert_eq!(
            c(
                "GET",
                "/apis/batch/v1/cronjobs?watch=true&resourceVersion=1"
            )
            .as_deref(),
            Some("batch|cronjobs|watch")
        );
        assert_eq!(
            c("PATCH", "/apis/vertice.io/v1alpha1/namespaces/shop/verticebackups/orders/status?fieldManager=x").as_deref(),
            Some("vertice.io|verticebackups/status|patch")
        );
        assert_eq!(
            c("DELETE", "/apis/batch/v1/namespaces/shop/cronjobs/old").as_deref(),
            Some("batch|cronjobs|delete")
        );
        assert_eq!(
            c(
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/vertice-system/leases/vertice"
            )
            .as_deref(),
            Some("coordination.k8s.io|leases|get")
        );
        assert_eq!(c("GET", "/healthz"), None);
    }
}
