//! The whole product on a real control plane: the API server and
//! controllers, the local kubelet running the agent, `deploy/base` applied,
//! and the controller binary started as its own ServiceAccount, so it has
//! exactly the RBAC `deploy/base` grants.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Client;

use super::control_plane::ControlPlane;
use super::kubelet::{KubeletConfig, LocalKubelet};
use crate::ports::free_port;

/// The agent image `deploy/base` names; the local kubelet runs the agent
/// binary for any image containing this.
pub const AGENT_IMAGE: &str = "ghcr.io/vertice/agent:0.1.0";
pub const AGENT_IMAGE_MARKER: &str = "vertice/agent";
pub const CONTROLLER_NAMESPACE: &str = "vertice-system";
pub const CONTROLLER_ACCOUNT: &str = "vertice-controller";
pub const PROBE_ACCOUNT: &str = "vertice-probe";

pub struct TestCluster {
    // The kubelet stops before the plane it talks to.
    pub kubelet: LocalKubelet,
    pub plane: ControlPlane,
}

/// The workspace root (for `deploy/`).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A binary cargo built next to this test.
/// helm, as scripts/lib/go-tools builds it (or `VERTICE_HELM`).
pub fn helm_binary() -> PathBuf {
    let path = std::env::var_os("VERTICE_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/vertice/tools/helm"));
    assert!(
        path.is_file(),
        "{} is missing; scripts/lib/go-tools builds it (scripts/install-test-deps runs it)",
        path.display()
    );
    path
}

pub fn built_binary(name: &str) -> PathBuf {
    let agent = crate::Agent::default().bin;
    let path = agent.parent().map(|d| d.join(name)).unwrap_or_default();
    assert!(
        path.is_file(),
        "{} is missing; build it with `cargo build --workspace`",
        path.display()
    );
    path
}

impl TestCluster {
    /// Starts the plane and the kubelet and applies `deploy/base`.
    pub async fn start() -> TestCluster {
        let cluster = TestCluster::start_bare().await;
        cluster.apply_kustomization("deploy/base");
        cluster.after_install().await;
        cluster
    }

    /// Starts the plane and the kubelet and installs the Helm chart
    /// `deploy/helm/vertice` as release `vertice` in `vertice-system`, with
    /// `helm_args` added (e.g. `--set k=v`).
    pub async fn start_with_helm(helm_args: &[&str]) -> TestCluster {
        let cluster = TestCluster::start_bare().await;
        let out = Command::new(helm_binary())
            .arg("install")
            .arg("vertice")
            .arg(workspace().join("deploy/helm/vertice"))
            .args([
                "--namespace",
                CONTROLLER_NAMESPACE,
                "--create-namespace",
                "--wait=false",
            ])
            .arg("--kubeconfig")
            .arg(cluster.plane.admin_kubeconfig())
            .args(helm_args)
            .output()
            .expect("helm");
        assert!(
            out.status.success(),
            "helm install: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.after_install().await;
        cluster
    }

    async fn start_bare() -> TestCluster {
        let plane = ControlPlane::start().await;
        let mut extra_env = BTreeMap::new();
        extra_env.insert(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        );
        let kubelet = LocalKubelet::start(
            plane.admin_client().await,
            KubeletConfig {
                agent_image_marker: AGENT_IMAGE_MARKER.into(),
                agent_bin: crate::Agent::default().bin,
                extra_env,
            },
            plane.dir.path(),
        )
        .await;
        TestCluster { plane, kubelet }
    }

    async fn after_install(&self) {
        // Tests start the probe runner as a process (with a kubeconfig);
        // the local kubelet gives pods no in-cluster API access.
        self.kubectl(&[
            "scale",
            "deployment/vertice-probe",
            "--namespace",
            CONTROLLER_NAMESPACE,
            "--replicas=0",
        ]);
        self.wait_established().await;
    }

    pub async fn admin(&self) -> Client {
        self.plane.admin_client().await
    }

    /// `kubectl apply --server-side -k <dir>` (relative to the workspace).
    pub fn apply_kustomization(&self, dir: &str) {
        let out = self
            .plane
            .kubectl()
            .args([
                "apply",
                "--server-side",
                "--field-manager=vertice-install",
                "-k",
            ])
            .arg(workspace().join(dir))
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl apply -k {dir}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl` output, failing the test on a non-zero exit.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.plane.kubectl().args(args).output().expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn wait_established(&self) {
        let out = self
            .plane
            .kubectl()
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/verticebackups.vertice.io",
                "crd/verticescalers.vertice.io",
                "crd/verticefailovers.vertice.io",
            ])
            .output()
            .expect("kubectl wait");
        assert!(
            out.status.success(),
            "CRDs not established: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every pod of a namespace with its status and its container's output,
    /// for a failing test's message.
    pub async fn describe_pods(&self, namespace: &str) -> String {
        use k8s_openapi::api::core::v1::Pod;
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.admin().await, namespace);
        let mut out = String::new();
        for pod in pods
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            out += &format!(
                "pod {}:\n  status: {}\n  output:\n{}\n",
                pod.metadata.name.clone().unwrap_or_default(),
                serde_json::to_string(&pod.status).unwrap_or_default(),
                self.kubelet.container_log(&pod)
            );
        }
        out
    }

    /// Starts the controller binary as the `deploy/base` ServiceAccount.
    pub async fn start_controller(&self, identity: &str, extra_args: &[&str]) -> Controller {
        let kubeconfig = self
            .plane
            .service_account_kubeconfig(CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT)
            .await;
        let port = free_port();
        // Its own directory: the log outlives the plane when a test fails.
        let log_dir = tempfile::Builder::new()
            .prefix("vertice-controller-")
            .tempdir()
            .expect("tempdir");
        let log = log_dir.path().join(format!("controller-{identity}.log"));
        let file = std::fs::File::create(&log).expect("log");
        let err = file.try_clone().expect("log");
        // Another build (e.g. an older one, to compare) when named.
        let binary = std::env::var_os("VERTICE_CONTROLLER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| built_binary("vertice-controller"));
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("NO_COLOR", "1")
            .env("POD_NAMESPACE", CONTROLLER_NAMESPACE)
            .env("POD_NAME", identity)
            .args([
                format!("--agent-image={AGENT_IMAGE}"),
                format!("--listen=127.0.0.1:{port}"),
                "--log-format=text".into(),
                "--log-level=info,vertice_controller=debug".into(),
            ])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start the controller");
        let mut controller = Controller {
            child,
            port,
            log,
            _log_dir: log_dir,
            ready_path: "/readyz",
        };
        controller.wait_ready().await;
        controller
    }

    /// Starts `vertice-agent probe serve` as the `deploy/base` probe runner
    /// ServiceAccount (exactly its RBAC), observing as `vantage`.
    pub async fn start_probe_runner(&self, vantage: &str) -> Controller {
        let kubeconfig = self
            .plane
            .service_account_kubeconfig(CONTROLLER_NAMESPACE, PROBE_ACCOUNT)
            .await;
        let port = free_port();
        let log_dir = tempfile::Builder::new()
            .prefix("vertice-probe-")
            .tempdir()
            .expect("tempdir");
        let log = log_dir.path().join(format!("probe-{vantage}.log"));
        let file = std::fs::File::create(&log).expect("log");
        let err = file.try_clone().expect("log");
        let child = Command::new(crate::Agent::default().bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("VERTICE_VANTAGE", vantage)
            .env("VERTICE_LISTEN", format!("127.0.0.1:{port}"))
            .env("VERTICE_LOG", "info")
            .args(["probe", "serve"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start the probe runner");
        let mut runner = Controller {
            child,
            port,
            log,
            _log_dir: log_dir,
            ready_path: "/readyz",
        };
        runner.wait_ready().await;
        runner
    }
}

/// A running controller (or probe runner) process, killed when dropped.
pub struct Controller {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    _log_dir: tempfile::TempDir,
    /// Answers 200 once the process is ready.
    ready_path: &'static str,
}

impl Controller {
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            if self
                .get(self.ready_path)
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready; log:\n{}",
                self.log.display(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A GET on the controller's HTTP port: (status, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = reqwest_get(&url).await?;
        Some(response)
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (a crash, not a graceful stop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for it to exit.
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the controller saw.
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- {} (last 60 lines) ---\n{}",
                self.log.display(),
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// A plain HTTP/1.1 GET over a TCP stream (the controller serves plain HTTP).
async fn reqwest_get(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Reasons of the Events in `namespace` about the object named `name`.
pub async fn event_reasons(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), namespace);
    events
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Creates a Secret in `namespace` with `string_data`, labelled
/// `vertice.io/allow-reference=true` when `opted_in` (the label a Secret's
/// owner adds so that Vertice resources may use it).
pub async fn create_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    string_data: serde_json::Value,
    opted_in: bool,
) {
    use k8s_openapi::api::core::v1::Secret;
    let labels = if opted_in {
        serde_json::json!({vertice_crds::tenancy::ALLOW_REFERENCE_LABEL: "true"})
    } else {
        serde_json::json!({})
    };
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "stringData": string_data}))
    .expect("secret");
    kube::Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create Secret {namespace}/{name}: {e}"));
}
