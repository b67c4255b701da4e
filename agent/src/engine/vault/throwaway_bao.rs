//! A throwaway single-node OpenBao (or Vault) for a drill: raft storage in
//! a private directory, a listener on a random loopback port, initialised
//! with one key share that never leaves this process, unsealed, and then
//! handed the backup's snapshot with `snapshot-force` — the real restore
//! path. A snapshot from another cluster brings that cluster's keyring, so
//! the node seals itself afterwards: that, too, is checked, as proof that
//! the snapshot's state (not the throwaway's own) is what is now installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Deserialize;
use url::Url;

use crate::engine::throwaway::{self, last_lines, PrivateDir};
use crate::engine::vault::client::VaultClient;
use crate::error::{Error, Result};
use crate::pipeline::codec::BoxRead;

/// Initialising bootstraps raft; on two busy cores that takes a while.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct ThrowawayBao {
    base: Url,
    http: reqwest::Client,
    root_token: String,
    child: tokio::process::Child,
    log: PathBuf,
    // Dropped last: the server must be gone before its directory is.
    dir: PrivateDir,
}

/// `auto`: `bao`, else `vault`, on PATH; `none`; or a path.
pub fn find_server(setting: &str) -> Result<Option<PathBuf>> {
    throwaway::find_binary(setting, "--bao-server", &["bao", "vault"])
}

/// The server's configuration: nothing but loopback, no mlock (a pod
/// cannot), no UI. The test harness starts its OpenBao with it too.
pub fn config(raft: &Path, port: u16, cluster_port: u16) -> String {
    format!(
        r#"storage "raft" {{
  path = "{raft}"
  node_id = "vertice-drill"
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
ui = false
"#,
        raft = raft.display()
    )
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::target(format!("finding a free loopback port: {e}")))
}

#[derive(Deserialize)]
struct Init {
    keys_base64: Vec<String>,
    root_token: String,
}

#[derive(Deserialize)]
struct SealStatus {
    initialized: bool,
    sealed: bool,
}

#[derive(Deserialize)]
struct Leader {
    #[serde(default)]
    is_self: bool,
}

impl ThrowawayBao {
    pub async fn start(bin: &Path) -> Result<Self> {
        let dir = PrivateDir::create(None)?;
        let raft = dir.path.join("raft");
        std::fs::create_dir(&raft)
            .map_err(|e| Error::target(format!("creating {}: {e}", raft.display())))?;
        let (port, cluster_port) = (free_port()?, free_port()?);
        let config_path = dir.path.join("bao.hcl");
        std::fs::write(&config_path, config(&raft, port, cluster_port))
            .map_err(|e| Error::target(format!("writing {}: {e}", config_path.display())))?;
        let log = dir.path.join("bao.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| Error::target(format!("creating {}: {e}", log.display())))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| Error::target(format!("{}: {e}", log.display())))?;
        // The source's token and addresses are not the throwaway's.
        let child = crate::pipeline::process::server_command(bin)
            .arg("server")
            .arg(format!("-config={}", config_path.display()))
            .env("HOME", &dir.path)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::usage(format!("--bao-server {}: {e}", bin.display())))?;
        let base = Url::parse(&format!("http://127.0.0.1:{port}/"))
            .map_err(|e| Error::target(format!("throwaway OpenBao address: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(STEP_TIMEOUT)
            .build()
            .map_err(|e| Error::target(format!("setting up the HTTP client: {e}")))?;
        let mut bao = Self {
            base,
            http,
            root_token: String::new(),
            child,
            log,
            dir,
        };
        bao.initialise().await?;
        Ok(bao)
    }

    async fn initialise(&mut self) -> Result<()> {
        self.wait_for("answer", async |s: &Self| s.seal_status().await.is_some())
            .await?;
        let init: Init = self
            .call(
                reqwest::Method::PUT,
                "v1/sys/init",
                Some(serde_json::json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .await?;
        let key = init
            .keys_base64
            .first()
            .cloned()
            .ok_or_else(|| Error::target("the throwaway OpenBao returned no unseal key"))?;
        self.root_token = init.root_token;
        let _: serde_json::Value = self
            .call(
                reqwest::Method::PUT,
                "v1/sys/unseal",
                Some(serde_json::json!({ "key": key })),
            )
            .await?;
        self.wait_for("lead its raft cluster", async |s: &Self| {
            s.get::<Leader>("v1/sys/leader")
                .await
                .is_some_and(|l| l.is_self)
                && s.get::<serde_json::Value>("v1/sys/mounts").await.is_some()
        })
        .await
    }

    /// Installs the snapshot the way `vertice-agent restore --force` does.
    pub async fn restore(&self, snapshot: BoxRead) -> Result<()> {
        VaultClient::with_token(self.base.clone(), self.root_token.clone())?
            .restore(snapshot, true)
            .await
            .map_err(|e| e.map_message(|m| format!("{m}; log: {}", last_lines(&self.log, 3))))
    }

    /// After another cluster's snapshot: initialised, and sealed by that
    /// cluster's keys, which the drill does not hold.
    pub async fn check_installed(&self) -> std::result::Result<(), String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match self.seal_status().await {
                Some(s) if s.initialized && s.sealed => return Ok(()),
                Some(s) if !s.initialized => {
                    return Err("the server is not initialised after the restore".into())
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the server still answers with its own keyring {}s after the restore: the snapshot's state was not installed ({})",
                    STEP_TIMEOUT.as_secs(),
                    last_lines(&self.log, 3)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn stop(self) -> std::result::Result<(), String> {
        throwaway::stop_and_remove(self.child, self.dir, Signal::SIGTERM, STOP_GRACE).await
    }

    async fn seal_status(&self) -> Option<SealStatus> {
        self.get("v1/sys/seal-status").await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        let response = self
            .http
            .get(self.base.join(path).ok()?)
            .header("X-Vault-Token", &self.root_token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::target(format!("{path}: {e}")))?;
        let mut request = self.http.request(method, url);
        if !self.root_token.is_empty() {
            request = request.header("X-Vault-Token", &self.root_token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            Error::target(format!("the throwaway OpenBao did not answer {path}: {e}"))
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Error::target(format!(
                "the throwaway OpenBao refused {path} (HTTP {status}): {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| Error::target(format!("the throwaway OpenBao's answer to {path}: {e}")))
    }

    async fn wait_for(&mut self, what: &str, ready: impl AsyncFn(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if crate::interrupt::received().is_some() {
                return Err(Error::target(
                    "interrupted while the throwaway OpenBao was starting",
                ));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::target(format!(
                    "the throwaway OpenBao exited ({status}): {}",
                    last_lines(&self.log, 5)
                )));
            }
            if ready(self).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::target(format!(
                    "the throwaway OpenBao did not {what} within {}s: {}",
                    STEP_TIMEOUT.as_secs(),
                    last_lines(&self.log, 5)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_listens_on_loopback_only() {
        let text = config(Path::new("/d/raft"), 8200, 8201);
        assert!(text.contains(r#"address = "127.0.0.1:8200""#), "{text}");
        assert!(
            text.contains(r#"cluster_address = "127.0.0.1:8201""#),
            "{text}"
        );
        assert!(text.contains(r#"path = "/d/raft""#), "{text}");
        assert!(!text.contains("0.0.0.0"), "{text}");
    }

    #[test]
    fn a_named_server_that_is_not_there_is_refused_by_flag() {
        let err = find_server("/nonexistent/bao").expect_err("refused");
        assert!(err.to_string().contains("--bao-server"), "{err}");
        assert!(matches!(find_server("none"), Ok(None)));
    }
}
