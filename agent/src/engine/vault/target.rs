//! `vault://HOST[:PORT]` (https), or an `http(s)://` address when the kind
//! is given explicitly (`--source-kind vault`, `--target-kind vault`).

use url::Url;

use crate::error::{Error, Result};
use vertice_crds::agent_env;

/// Where a Vault token comes from when no `--vault-token-file` is given.
pub const TOKEN_ENV: &[&str] = &[agent_env::VAULT_TOKEN];

/// A Vault / OpenBao server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultTarget {
    /// Scheme, host and port, ending in `/`.
    pub base: Url,
}

/// Reads a Vault address; `raw` is its redacted form, for messages, and
/// `explicit` says the kind was given, so `http(s)://` means Vault.
pub fn parse(url: &Url, flag: &str, raw: &str, explicit: bool) -> Result<VaultTarget> {
    if url.scheme() != "vault" && !explicit {
        return Err(Error::usage(format!(
            "{flag} {raw:?}: an http(s):// address needs --source-kind vault (or write vault://HOST:PORT for https)"
        )));
    }
    if !url.username().is_empty() || url.query().is_some() {
        return Err(Error::usage(format!(
            "{flag}: a Vault address carries no user or query; the token comes from VAULT_TOKEN, --vault-token-file or Kubernetes auth"
        )));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
        Error::usage(format!(
            "{flag} {raw:?} names no host; write it as vault://HOST:8200"
        ))
    })?;
    let scheme = if url.scheme() == "vault" {
        "https"
    } else {
        url.scheme()
    };
    let port = url.port().unwrap_or(if url.scheme() == "vault" {
        8200
    } else if scheme == "https" {
        443
    } else {
        80
    });
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let base = Url::parse(&format!("{scheme}://{host}:{port}/"))
        .map_err(|e| Error::usage(format!("{flag} {raw:?}: {e}")))?;
    Ok(VaultTarget { base })
}
