//! A real Kubernetes control plane on loopback: etcd, kube-apiserver (secure
//! port, client certificates, RBAC, service-account tokens) and
//! kube-controller-manager (CronJob, Job, garbage collector, namespace and
//! service-account controllers). Built from Go modules by
//! `scripts/lib/kube-control-plane`; stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use super::certs::Pki;
use crate::ports::free_port;
use crate::process::Server;

const BUILD: &str = "scripts/lib/kube-control-plane";

/// Where the control-plane binaries are: `VERTICE_KUBE_BIN` or the cache the
/// build script links.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("VERTICE_KUBE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/vertice/kube"))
}

/// A control-plane binary, or a failure naming the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing; build the control plane with `{BUILD}` (or scripts/install-test-deps)",
        path.display()
    );
    path
}

pub struct ControlPlane {
    pub api_port: u16,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    admin_kubeconfig: PathBuf,
    /// How the API server was started, to start it again the same way.
    apiserver_command: (PathBuf, Vec<String>),
    // Stopped in reverse order of start: controllers, API server, etcd.
    _controller_manager: Server,
    /// None while stopped by [`ControlPlane::stop_apiserver`].
    apiserver: Option<Server>,
    _etcd: Server,
}

fn log_file(dir: &Path, name: &str) -> (PathBuf, std::fs::File) {
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&path).expect("create log");
    (path, file)
}

fn spawn_logged(name: &'static str, dir: &Path, command: &mut Command) -> (Server, PathBuf) {
    let (path, file) = log_file(dir, name);
    let err = file.try_clone().expect("log handle");
    let server = Server::spawn(name, command.stdin(Stdio::null()).stdout(file).stderr(err));
    (server, path)
}

/// A kubeconfig with embedded credentials: a client certificate or a token.
pub fn kubeconfig_yaml(api_port: u16, ca: &Path, user: &serde_json::Value) -> String {
    let ca_data = base64_file(ca);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "vertice-test", "cluster": {
            "server": format!("https://127.0.0.1:{api_port}"),
            "certificate-authority-data": ca_data,
        }}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "vertice-test", "context": {"cluster": "vertice-test", "user": "user"}}],
        "current-context": "vertice-test",
    })
    .to_string()
}

fn base64_file(path: &Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

pub async fn client_from_kubeconfig(path: &Path) -> Client {
    // kube and the stores share rustls; pick the provider once per process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("kube client")
}

impl ControlPlane {
    /// Starts the whole plane and waits until the API server is ready and
    /// the controllers have created the `default` service account.
    pub async fn start() -> ControlPlane {
        let etcd_bin = binary("etcd");
        let apiserver_bin = binary("kube-apiserver");
        let kcm_bin = binary("kube-controller-manager");
        let dir = tempfile::Builder::new()
            .prefix("vertice-kube-")
            .tempdir()
            .expect("tempdir");
        let pki = Pki::create(dir.path());

        let (client_port, peer_port) = (free_port(), free_port());
        let started = Instant::now();
        let (mut etcd, etcd_log) = spawn_logged(
            "etcd",
            dir.path(),
            Command::new(etcd_bin).args([
                "--name=vertice-test".to_string(),
                format!("--data-dir={}", dir.path().join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=vertice-test=http://127.0.0.1:{peer_port}"),
                "--listen-metrics-urls=".into(),
                // Test data: durability across a power cut is not wanted.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ]),
        );

        // Every request the controller makes, for the benchmark and tests
        // that count API calls.
        let audit_policy = dir.path().join("audit-policy.yaml");
        std::fs::write(
            &audit_policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
             - level: Metadata\n  users: [\"system:serviceaccount:vertice-system:vertice-controller\"]\n\
             - level: None\n",
        )
        .expect("audit policy");
        let api_port = free_port();
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{client_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!(
                "--cert-dir={}",
                dir.path().join("apiserver-certs").display()
            ),
            format!("--tls-cert-file={}", pki.server_cert.display()),
            format!("--tls-private-key-file={}", pki.server_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            // The aggregation layer, for metrics.k8s.io served by a test
            // server behind an APIService: the API server proxies with
            // this client certificate and the request-header identity.
            format!("--proxy-client-cert-file={}", pki.admin_cert.display()),
            format!("--proxy-client-key-file={}", pki.admin_key.display()),
            format!("--requestheader-client-ca-file={}", pki.ca_cert.display()),
            "--requestheader-allowed-names=vertice-admin".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // No Service endpoints to keep: nothing routes to 127.0.0.1.
            "--endpoint-reconciler-type=none".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!(
                "--audit-log-path={}",
                dir.path().join("audit.log").display()
            ),
            "--audit-log-mode=batch".into(),
            "--audit-log-batch-max-wait=1s".into(),
            "--v=1".into(),
        ];
        let (mut apiserver, apiserver_log) = spawn_logged(
            "kube-apiserver",
            dir.path(),
            Command::new(&apiserver_bin).args(&apiserver_args),
        );

        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        std::fs::write(
            &admin_kubeconfig,
            kubeconfig_yaml(
                api_port,
                &pki.ca_cert,
                &serde_json::json!({
                    "client-certificate-data": base64_file(&pki.admin_cert),
                    "client-key-data": base64_file(&pki.admin_key),
                }),
            ),
        )
        .expect("write kubeconfig");

        // kube-controller-manager exits at once when the API server does
        // not answer yet (it reads its request-header CA first): on a loaded
        // machine the API server can be that slow, so it starts after /readyz.
        {
            let client = client_from_kubeconfig(&admin_kubeconfig).await;
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                etcd.assert_running(&etcd_log);
                apiserver.assert_running(&apiserver_log);
                let ready = api_ready(&client).await;
                if ready {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "kube-apiserver did not become ready; log:\n{}",
                    std::fs::read_to_string(&apiserver_log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let (controller_manager, kcm_log) = spawn_logged(
            "kube-controller-manager",
            dir.path(),
            Command::new(kcm_bin).args([
                format!("--kubeconfig={}", admin_kubeconfig.display()),
                format!("--authentication-kubeconfig={}", admin_kubeconfig.display()),
                format!("--authorization-kubeconfig={}", admin_kubeconfig.display()),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()),
                format!("--cert-dir={}", dir.path().join("kcm-certs").display()),
                "--controllers=cronjob-controller,job-controller,deployment-controller,replicaset-controller,statefulset-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller".into(),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                format!("--service-account-private-key-file={}", pki.sa_key.display()),
                "--use-service-account-credentials=false".into(),
                "--leader-elect=false".into(),
                "--v=1".into(),
            ]),
        );

        let mut plane = ControlPlane {
            api_port,
            dir,
            pki,
            admin_kubeconfig,
            apiserver_command: (apiserver_bin, apiserver_args),
            _controller_manager: controller_manager,
            apiserver: Some(apiserver),
            _etcd: etcd,
        };
        let client = plane.admin_client().await;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            plane._etcd.assert_running(&etcd_log);
            if let Some(apiserver) = plane.apiserver.as_mut() {
                apiserver.assert_running(&apiserver_log);
            }
            plane._controller_manager.assert_running(&kcm_log);
            let default_sa = api_ready(&client).await
                && Api::<ServiceAccount>::namespaced(client.clone(), "default")
                    .get_opt("default")
                    .await
                    .is_ok_and(|sa| sa.is_some());
            if default_sa {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the control plane was not ready within 90 s; logs in {}:\n{}",
                plane.dir.path().display(),
                tail(&apiserver_log, 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "control plane ready in {:.1} s on https://127.0.0.1:{api_port}",
            started.elapsed().as_secs_f64()
        );
        plane
    }

    /// Kills the API server (SIGKILL: it is gone at once, like a crashed
    /// or partitioned one, so a test can time what follows from here) and
    /// waits until its port refuses connections. etcd and the other
    /// processes keep running; [`ControlPlane::start_apiserver`] brings it
    /// back.
    pub async fn stop_apiserver(&mut self) {
        if let Some(server) = self.apiserver.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(server.pid() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            // Dropping reaps it.
            drop(server);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.api_port))
            .await
            .is_ok()
        {
            assert!(
                Instant::now() < deadline,
                "kube-apiserver still answers on port {} after it was stopped",
                self.api_port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the API server again with the same port, certificates and
    /// etcd, and waits until its /readyz says ok. Its log goes on in the
    /// same file.
    pub async fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "the API server is running");
        let path = self.dir.path().join("kube-apiserver.log");
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .expect("open the API server's log");
        let err = file.try_clone().expect("log handle");
        let (bin, args) = &self.apiserver_command;
        let mut server = Server::spawn(
            "kube-apiserver",
            Command::new(bin)
                .args(args)
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err),
        );
        let client = self.admin_client().await;
        let deadline = Instant::now() + Duration::from_secs(90);
        while !api_ready(&client).await {
            server.assert_running(&path);
            assert!(
                Instant::now() < deadline,
                "kube-apiserver did not become ready again; log:\n{}",
                tail(&path, 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.apiserver = Some(server);
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    pub async fn admin_client(&self) -> Client {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    /// A kubeconfig that authenticates as a ServiceAccount with a real
    /// bound token from the TokenRequest API, as a pod would.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let client = self.admin_client().await;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        let request = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: Some(TokenRequestSpec {
                audiences: Some(vec!["https://kubernetes.default.svc".into()]),
                attestations: None,
                expiration_seconds: Some(3600 * 6),
                bound_object_ref: None,
            }),
            status: None,
        };
        let response: TokenRequest = accounts
            .create_subresource::<TokenRequest, TokenRequest>(
                "token",
                name,
                &PostParams::default(),
                &request,
            )
            .await
            .unwrap_or_else(|e| panic!("token for {namespace}/{name}: {e}"));
        let token = response.status.expect("token status").token;
        let path = self
            .dir
            .path()
            .join(format!("sa-{namespace}-{name}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig_yaml(
                self.api_port,
                &self.pki.ca_cert,
                &serde_json::json!({"token": token}),
            ),
        )
        .expect("write kubeconfig");
        path
    }

    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        client_from_kubeconfig(&self.service_account_kubeconfig(namespace, name).await).await
    }

    /// Creates a namespace and waits for its `default` ServiceAccount (pods
    /// are refused until it exists).
    pub async fn create_namespace(&self, name: &str) {
        let client = self.admin_client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let accounts: Api<ServiceAccount> = Api::namespaced(client, name);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !accounts
            .get_opt("default")
            .await
            .is_ok_and(|sa| sa.is_some())
        {
            assert!(
                Instant::now() < deadline,
                "namespace {name} got no default ServiceAccount"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kubectl` against this plane as admin.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(kubectl_binary());
        command.arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()));
        command
    }

    /// The controller's API requests so far, from the audit log: (verb,
    /// resource) per request.
    pub fn controller_requests(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|e| {
                let resource = e["objectRef"]["resource"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let sub = e["objectRef"]["subresource"].as_str().unwrap_or("");
                let resource = if sub.is_empty() {
                    resource
                } else {
                    format!("{resource}/{sub}")
                };
                (e["verb"].as_str().unwrap_or("").to_string(), resource)
            })
            .collect()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// The kubectl built with the control plane (same version), else PATH's.
/// The API server answers `/readyz` with `ok`.
async fn api_ready(client: &Client) -> bool {
    client
        .request_text(
            http::Request::get("/readyz")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .is_ok_and(|body| body.trim() == "ok")
}

pub fn kubectl_binary() -> PathBuf {
    let built = bin_dir().join("kubectl");
    if built.is_file() {
        return built;
    }
    crate::process::require_binary("kubectl", &[], BUILD)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
