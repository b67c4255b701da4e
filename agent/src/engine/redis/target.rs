//! `redis://[USER@]HOST[:PORT][/DB]`, and for restores `file:///path/dump.rdb`.

use std::path::PathBuf;

use url::Url;

use crate::engine::common::percent_decode;
use crate::error::{Error, Result};
use vertice_crds::agent_env;

/// Where a Redis password comes from when no `--password-file` is given.
/// (`REDISCLI_AUTH` is redis-cli's own name, read as a fallback; the
/// controller never sets it, so it has no constant in `crds`.)
pub const PASSWORD_ENV: &[&str] = &[agent_env::REDIS_PASSWORD, "REDISCLI_AUTH"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    /// The database a `redis://host/N` URL names; informational for backups
    /// (a snapshot holds every database).
    pub db: Option<u32>,
}

impl RedisTarget {
    pub fn address(&self) -> String {
        let user = self
            .username
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("redis://{user}{}:{}", self.host, self.port)
    }
}

/// Reads a `redis://` URL (`rediss://` is refused); `raw` is its redacted
/// form, for messages.
pub fn parse(url: &Url, flag: &str, raw: &str) -> Result<RedisTarget> {
    if url.scheme() == "rediss" {
        return Err(Error::usage(format!(
            "{flag}: rediss:// (TLS) is not supported by this agent version; reach Redis over redis:// inside the cluster network"
        )));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::usage(format!(
                "{flag} {raw:?} names no host; write it as redis://HOST:6379"
            ))
        })?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let db = match url.path().trim_start_matches('/') {
        "" => None,
        n => Some(n.parse::<u32>().map_err(|_| {
            Error::usage(format!(
                "{flag} {raw:?}: the path must be a database number, e.g. redis://host:6379/0"
            ))
        })?),
    };
    let username = Some(url.username())
        .filter(|u| !u.is_empty())
        .map(percent_decode);
    Ok(RedisTarget {
        host,
        port: url.port().unwrap_or(6379),
        username,
        db,
    })
}

/// The RDB file a `file://` URL names.
pub fn rdb_file(url: &Url) -> PathBuf {
    PathBuf::from(url.path())
}
