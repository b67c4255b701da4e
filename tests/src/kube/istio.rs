//! Istio's VirtualService on the test control plane: its CRD exactly as
//! Istio publishes it (the fixture from the Go module istio.io/api), and a
//! dynamic API for the objects (no Istio client).

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use super::cluster::{workspace, TestCluster};

/// Applies the VirtualService CRD and waits until it is served.
pub fn install_virtual_service_crd(cluster: &TestCluster) {
    let fixture = workspace().join("tests/fixtures/istio-virtualservice-crd.yaml");
    cluster.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &fixture.display().to_string(),
    ]);
    // `kubectl wait` fails outright while the new CRD has no conditions yet.
    crate::process::wait_until(
        "the VirtualService CRD is established",
        Duration::from_secs(60),
        || {
            cluster
                .plane
                .kubectl()
                .args([
                    "wait",
                    "--for=condition=Established",
                    "--timeout=10s",
                    "crd/virtualservices.networking.istio.io",
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        },
    );
}

pub fn virtual_services(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk))
}

/// The weights of HTTP route `route` (an index), in destination order.
pub async fn route_weights(client: &Client, namespace: &str, name: &str, route: usize) -> Vec<u64> {
    let vs = virtual_services(client, namespace)
        .get(name)
        .await
        .expect("VirtualService");
    vs.data["spec"]["http"][route]["route"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["weight"].as_u64().unwrap_or(0))
        .collect()
}
