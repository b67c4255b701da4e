//! Vault / OpenBao raft snapshots over the HTTP API: the snapshot streams
//! from `GET /v1/sys/storage/raft/snapshot` into the pipeline and back into
//! `POST /v1/sys/storage/raft/snapshot[-force]`. Login: a token (file or
//! VAULT_TOKEN) or Kubernetes auth with the pod's service-account token.

use std::path::Path;

use futures::TryStreamExt;
use serde::Deserialize;
use url::Url;

use super::target::VaultTarget;
pub use crate::engine::settings::VaultLogin;
use crate::error::{Error, Result};
use crate::pipeline::codec::BoxRead;

const SNAPSHOT_PATH: &str = "v1/sys/storage/raft/snapshot";

/// A logged-in client for one Vault server.
pub struct VaultClient {
    http: reqwest::Client,
    base: Url,
    token: String,
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// Vault's `{"errors": [...]}` body, shortened, or the status alone.
async fn describe_failure(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.errors.join("; "))
        .unwrap_or_else(|_| text.chars().take(200).collect());
    if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    }
}

/// Says so when Vault refused because it is sealed (HTTP 503, "Vault is
/// sealed"): a sealed server answers every request that way, and the only
/// fix is to unseal it, whatever else the request was about.
fn sealed(status: reqwest::StatusCode, detail: &str, base: &Url) -> Option<String> {
    let is_sealed = status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        && detail.to_ascii_lowercase().contains("sealed");
    is_sealed.then(|| {
        format!(
            "Vault at {} is sealed ({detail}); unseal it (`bao operator unseal` / `vault operator unseal`, or its auto-unseal) and run this again",
            base.as_str().trim_end_matches('/')
        )
    })
}

fn http_client(args: &VaultLogin) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    let ca = args
        .cacert
        .clone()
        .or_else(|| std::env::var_os("VAULT_CACERT").map(Into::into));
    if let Some(path) = ca {
        let pem = std::fs::read(&path).map_err(|e| {
            Error::usage(format!(
                "--vault-cacert {}: cannot read it ({e})",
                path.display()
            ))
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::usage(format!(
                "--vault-cacert {}: not a PEM certificate bundle ({e})",
                path.display()
            ))
        })? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| Error::source(format!("setting up the HTTP client: {e}")))
}

impl VaultClient {
    /// Logs in: the token the run's settings resolved (`--vault-token-file`
    /// or VAULT_TOKEN, see `VaultArgs::login` in `cli/settings.rs`), else
    /// Kubernetes auth when `--vault-k8s-role` is set.
    pub async fn connect(
        target: &VaultTarget,
        args: &VaultLogin,
    ) -> Result<(VaultClient, Vec<String>)> {
        let http = http_client(args)?;
        let mut secrets = Vec::new();
        let namespace = args.namespace.clone();
        let token = match &args.token {
            Some(token) => token.expose().to_string(),
            None => match &args.k8s_role {
                Some(role) => {
                    let jwt = read_jwt(&args.k8s_jwt_file)?;
                    secrets.push(jwt.clone());
                    kubernetes_login(&http, &target.base, namespace.as_deref(), &args.k8s_mount, role, &jwt).await?
                }
                None => {
                    return Err(Error::usage(
                        "no Vault credentials: set VAULT_TOKEN, --vault-token-file, or --vault-k8s-role for Kubernetes auth",
                    ))
                }
            },
        };
        secrets.push(token.clone());
        Ok((
            VaultClient {
                http,
                base: target.base.clone(),
                token,
                namespace,
            },
            secrets,
        ))
    }

    /// A client with a token already in hand (a drill's throwaway server).
    pub fn with_token(base: Url, token: String) -> Result<VaultClient> {
        Ok(VaultClient {
            http: http_client(&VaultLogin::default())?,
            base,
            token,
            namespace: None,
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| Error::usage(format!("Vault address {}: {e}", self.base)))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let mut request = self
            .http
            .request(method, self.url(path)?)
            .header("X-Vault-Token", &self.token);
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        Ok(request)
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        // reqwest errors name the URL, which holds no secret.
        Error::source(format!("cannot reach Vault at {}: {e}", self.base))
    }

    /// The server version, from the unauthenticated seal status.
    pub async fn version(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Seal {
            version: Option<String>,
        }
        let response = self
            .request(reqwest::Method::GET, "v1/sys/seal-status")
            .ok()?
            .send()
            .await
            .ok()?;
        response.json::<Seal>().await.ok()?.version
    }

    /// Starts streaming a raft snapshot. A snapshot cut short (Vault or the
    /// connection failed) ends the stream with an error, so it never
    /// becomes a backup.
    pub async fn snapshot(&self) -> Result<BoxRead> {
        let response = self
            .request(reqwest::Method::GET, SNAPSHOT_PATH)?
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if !status.is_success() {
            let detail = describe_failure(response).await;
            if let Some(sealed) = sealed(status, &detail, &self.base) {
                return Err(Error::source(sealed));
            }
            return Err(match status.as_u16() {
                401 | 403 => Error::usage(format!(
                    "Vault refused the snapshot ({detail}); the token needs read on sys/storage/raft/snapshot"
                )),
                _ => Error::source(format!("Vault snapshot failed ({detail}); is the server using raft storage?")),
            });
        }
        let stream = response
            .bytes_stream()
            .map_err(|e| std::io::Error::other(format!("reading the Vault snapshot: {e}")));
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    /// Installs a snapshot. `force` uses `snapshot-force`, needed when the
    /// snapshot comes from another cluster (other unseal keys).
    pub async fn restore(&self, body: BoxRead, force: bool) -> Result<()> {
        let path = if force {
            "v1/sys/storage/raft/snapshot-force"
        } else {
            SNAPSHOT_PATH
        };
        let stream = tokio_util::io::ReaderStream::new(body);
        let response = self
            .request(reqwest::Method::POST, path)?
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let detail = describe_failure(response).await;
        if let Some(sealed) = sealed(status, &detail, &self.base) {
            return Err(Error::target(sealed));
        }
        Err(match status.as_u16() {
            401 | 403 => Error::usage(format!(
                "Vault refused the restore ({detail}); the token needs update on sys/storage/raft/snapshot"
            )),
            _ if !force && (detail.contains("keyring") || detail.contains("unseal")) => Error::usage(format!(
                "Vault refused the snapshot ({detail}); it comes from another cluster: pass --force to install it anyway (the cluster then needs that cluster's unseal keys)"
            )),
            _ => Error::target(format!("Vault restore failed ({detail})")),
        })
    }
}

fn read_jwt(path: &Path) -> Result<String> {
    let jwt = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "--vault-k8s-jwt-file {}: cannot read the service-account token ({e})",
            path.display()
        ))
    })?;
    let jwt = jwt.trim().to_string();
    if jwt.is_empty() {
        return Err(Error::usage(format!(
            "--vault-k8s-jwt-file {} is empty",
            path.display()
        )));
    }
    Ok(jwt)
}

async fn kubernetes_login(
    http: &reqwest::Client,
    base: &Url,
    namespace: Option<&str>,
    mount: &str,
    role: &str,
    jwt: &str,
) -> Result<String> {
    #[derive(Deserialize)]
    struct Login {
        auth: Option<Auth>,
    }
    #[derive(Deserialize)]
    struct Auth {
        client_token: String,
    }
    let url = base
        .join(&format!("v1/auth/{}/login", mount.trim_matches('/')))
        .map_err(|e| Error::usage(format!("--vault-k8s-mount {mount:?}: {e}")))?;
    let mut request = http
        .post(url)
        .json(&serde_json::json!({ "role": role, "jwt": jwt }));
    if let Some(ns) = namespace {
        request = request.header("X-Vault-Namespace", ns);
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::source(format!("cannot reach Vault at {base}: {e}")))?;
    if !response.status().is_success() {
        let status = response.status();
        let detail = describe_failure(response).await;
        if let Some(sealed) = sealed(status, &detail, base) {
            return Err(Error::source(sealed));
        }
        return Err(Error::usage(format!(
            "Vault Kubernetes login as role {role:?} at auth/{mount} failed ({detail})"
        )));
    }
    let login: Login = response
        .json()
        .await
        .map_err(|e| Error::source(format!("Vault Kubernetes login: unexpected answer ({e})")))?;
    login
        .auth
        .map(|a| a.client_token)
        .ok_or_else(|| Error::source("Vault Kubernetes login returned no token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_vault_is_named_as_sealed() {
        let base = Url::parse("http://127.0.0.1:8200/").expect("url");
        let hint = sealed(
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "HTTP 503 Service Unavailable: Vault is sealed",
            &base,
        )
        .expect("sealed");
        assert!(
            hint.contains("is sealed") && hint.contains("unseal"),
            "{hint}"
        );
        assert!(!hint.contains("raft storage"), "{hint}");
        assert!(sealed(
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "HTTP 503: standby",
            &base
        )
        .is_none());
        assert!(sealed(reqwest::StatusCode::BAD_REQUEST, "sealed", &base).is_none());
    }
}
