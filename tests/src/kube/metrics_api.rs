//! A `metrics.k8s.io` server for tests, registered with the real API server
//! through an `APIService`, so the controller reads PodMetrics over the real
//! aggregation path. It reports, for every Running pod a selector matches,
//! the CPU usage the test sets for its namespace.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::control_plane::ControlPlane;

#[derive(Default)]
struct State {
    /// Namespace → CPU usage per container (a quantity).
    cpu: BTreeMap<String, String>,
    /// Answer 503 to every metrics request.
    failing: bool,
}

pub struct MetricsApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsApi {
    /// Serves on 127.0.0.1 with the plane's serving certificate and
    /// registers `v1beta1.metrics.k8s.io`, waiting until it is Available.
    pub async fn start(plane: &ControlPlane) -> MetricsApi {
        let acceptor = super::certs::tls_acceptor(&plane.pki.server_cert, &plane.pki.server_key);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let client = plane.admin_client().await;
        let task = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, state, client) =
                        (acceptor.clone(), state.clone(), client.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve_connection(tls, state, client).await;
                        }
                    });
                }
            })
        };
        let api = MetricsApi { port, state, task };
        api.register(plane).await;
        api
    }

    /// Every container of every pod in `namespace` uses `cpu` from now on.
    pub fn set_cpu(&self, namespace: &str, cpu: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.cpu.insert(namespace.into(), cpu.into());
        }
    }

    pub fn set_failing(&self, failing: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.failing = failing;
        }
    }

    async fn register(&self, plane: &ControlPlane) {
        let client = plane.admin_client().await;
        let pp = PatchParams::apply("vertice-tests").force();
        // The aggregator resolves an ExternalName Service to its name and
        // the APIService port: loopback, no cluster network needed.
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(client.clone(), "kube-system");
        services
            .patch(
                "vertice-test-metrics",
                &pp,
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "vertice-test-metrics", "namespace": "kube-system"},
                    "spec": {"type": "ExternalName", "externalName": "localhost",
                             "ports": [{"name": "https", "port": self.port}]}})),
            )
            .await
            .expect("metrics Service");
        let resource = kube::api::ApiResource {
            group: "apiregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiregistration.k8s.io/v1".into(),
            kind: "APIService".into(),
            plural: "apiservices".into(),
        };
        let api_services: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
        api_services
            .patch(
                "v1beta1.metrics.k8s.io",
                &pp,
                &Patch::Apply(json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                    "metadata": {"name": "v1beta1.metrics.k8s.io"},
                    "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                             "service": {"namespace": "kube-system", "name": "vertice-test-metrics", "port": self.port},
                             // The serving certificate names 127.0.0.1, not the
                             // Service's DNS name the aggregator would check.
                             "insecureSkipTLSVerify": true,
                             "groupPriorityMinimum": 100, "versionPriority": 100}})),
            )
            .await
            .expect("APIService");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let available = api_services
                .get("v1beta1.metrics.k8s.io")
                .await
                .ok()
                .is_some_and(|a| {
                    a.data["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Available" && c["status"] == "True")
                });
            if available {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "APIService v1beta1.metrics.k8s.io did not become Available: {:?}",
                api_services
                    .get("v1beta1.metrics.k8s.io")
                    .await
                    .map(|a| a.data["status"].clone())
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn serve_connection<S>(mut stream: S, state: Arc<Mutex<State>>, client: Client)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buffer = Vec::new();
    loop {
        // One request head at a time; GETs carry no body.
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        buffer.drain(..head_end);
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (status, body) = respond(&target, &state, &client).await;
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn respond(target: &str, state: &Mutex<State>, client: &Client) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["apis", "metrics.k8s.io", "v1beta1"] => (
            "200 OK",
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1",
                   "resources": [
                       {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
                       {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]}]})
            .to_string(),
        ),
        ["apis", "metrics.k8s.io", "v1beta1", "namespaces", namespace, "pods"] => {
            let (failing, cpu) = match state.lock() {
                Ok(s) => (s.failing, s.cpu.get(*namespace).cloned()),
                Err(_) => (true, None),
            };
            if failing {
                return ("503 Service Unavailable", json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "metrics unavailable", "code": 503}).to_string());
            }
            let selector = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "labelSelector")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let list = pods.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let items: Vec<_> = list
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .filter_map(|p| {
                    let cpu = cpu.clone()?;
                    let containers: Vec<_> = p
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter())
                        .map(|c| json!({"name": c.name, "usage": {"cpu": cpu, "memory": "16Mi"}}))
                        .collect();
                    Some(json!({"metadata": {"name": p.name_any(), "namespace": namespace, "creationTimestamp": now},
                                "timestamp": now, "window": "1s", "containers": containers}))
                })
                .collect();
            (
                "200 OK",
                json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}).to_string(),
            )
        }
        _ => ("404 Not Found", json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}).to_string()),
    }
}
