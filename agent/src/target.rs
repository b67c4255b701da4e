//! Database addresses given on the command line (`--source`, `--to`) and the
//! passwords that go with them, which never come from the command line.

use std::path::PathBuf;

use url::Url;

use crate::error::{Error, Result};
use vertice_crds::redact::{self, redact_url};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    /// The URL exactly as given (it carries no password), handed to libpq tools.
    pub url: String,
    pub database: String,
}

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

/// A Vault / OpenBao server: `vault://HOST[:PORT]` (https), or an
/// `http(s)://` address when the kind is given explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultTarget {
    /// Scheme, host and port, ending in `/`.
    pub base: Url,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Postgres(PostgresTarget),
    Redis(RedisTarget),
    Vault(VaultTarget),
    /// An RDB file for a fresh Redis instance (restore only).
    File(PathBuf),
}

impl Target {
    /// Parses `--source`/`--to` (named by `flag` in errors).
    pub fn parse(raw: &str, flag: &str) -> Result<Target> {
        Target::parse_as(raw, flag, false)
    }

    /// Like [`Target::parse`]; `vault` says an `http(s)://` address is a
    /// Vault server (`--source-kind vault`).
    pub fn parse_as(raw: &str, flag: &str, vault: bool) -> Result<Target> {
        // Everything below prints `shown`, never `raw`.
        let shown = redact_url(raw);
        let url = Url::parse(raw).map_err(|e| {
            Error::usage(format!(
                "{flag} {shown:?} is not a URL ({e}); expected postgres://USER@HOST:PORT/DB or redis://[USER@]HOST:PORT (a password goes in PGPASSWORD / REDIS_PASSWORD or --password-file)"
            ))
        })?;
        if url.password().is_some() {
            return Err(Error::usage(format!(
                "{flag} must not contain a password: put it in PGPASSWORD / REDIS_PASSWORD or a file named by --password-file ({shown})"
            )));
        }
        let raw = shown.as_str();
        match url.scheme() {
            "postgres" | "postgresql" => {
                let database = url.path().trim_start_matches('/').to_string();
                if database.is_empty() || database.contains('/') {
                    return Err(Error::usage(format!(
                        "{flag} {raw:?} names no database; write it as postgres://USER@HOST:PORT/DATABASE"
                    )));
                }
                if let Some((k, _)) = url.query_pairs().find(|(k, _)| redact::is_secret_param(k)) {
                    return Err(Error::usage(format!(
                        "{flag} must not carry {k}= in its query: secrets never go on the command line; use PGPASSWORD or --password-file (for a client key's passphrase, an unencrypted key file from a Secret)"
                    )));
                }
                let database = percent_decode(&database);
                Ok(Target::Postgres(PostgresTarget { url: url.to_string(), database }))
            }
            "redis" => {
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| Error::usage(format!("{flag} {raw:?} names no host; write it as redis://HOST:6379")))?
                    .trim_matches(|c| c == '[' || c == ']')
                    .to_string();
                let db = match url.path().trim_start_matches('/') {
                    "" => None,
                    n => Some(n.parse::<u32>().map_err(|_| {
                        Error::usage(format!("{flag} {raw:?}: the path must be a database number, e.g. redis://host:6379/0"))
                    })?),
                };
                let username = Some(url.username()).filter(|u| !u.is_empty()).map(percent_decode);
                Ok(Target::Redis(RedisTarget { host, port: url.port().unwrap_or(6379), username, db }))
            }
            "rediss" => Err(Error::usage(format!(
                "{flag}: rediss:// (TLS) is not supported by this agent version; reach Redis over redis:// inside the cluster network"
            ))),
            "file" => Ok(Target::File(PathBuf::from(url.path()))),
            "vault" | "http" | "https" => {
                if url.scheme() != "vault" && !vault {
                    return Err(Error::usage(format!(
                        "{flag} {raw:?}: an http(s):// address needs --source-kind vault (or write vault://HOST:PORT for https)"
                    )));
                }
                if url.username() != "" || url.query().is_some() {
                    return Err(Error::usage(format!(
                        "{flag}: a Vault address carries no user or query; the token comes from VAULT_TOKEN, --vault-token-file or Kubernetes auth"
                    )));
                }
                let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
                    Error::usage(format!("{flag} {raw:?} names no host; write it as vault://HOST:8200"))
                })?;
                let scheme = if url.scheme() == "vault" { "https" } else { url.scheme() };
                let port = url.port().unwrap_or(if url.scheme() == "vault" { 8200 } else if scheme == "https" { 443 } else { 80 });
                let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
                let base = Url::parse(&format!("{scheme}://{host}:{port}/"))
                    .map_err(|e| Error::usage(format!("{flag} {raw:?}: {e}")))?;
                Ok(Target::Vault(VaultTarget { base }))
            }
            other => Err(Error::usage(format!(
                "{flag}: unknown scheme {other:?}; expected postgres://, redis://, vault:// or (restore only) file:///path/dump.rdb"
            ))),
        }
    }
}

pub fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Finds the password for a database: `--password-file` first, then the
/// conventional environment variables. Returns `None` when there is none
/// (trust or peer authentication, or libpq's own `PGPASSFILE`).
pub fn resolve_password(
    password_file: Option<&PathBuf>,
    env_vars: &[&str],
) -> Result<Option<String>> {
    resolve_secret(password_file, "--password-file", env_vars)
}

/// A secret from the file named by `flag` (a mounted Secret), else the first
/// non-empty variable of `env_vars`. Errors name the flag, never the content.
pub fn resolve_secret(
    file: Option<&PathBuf>,
    flag: &str,
    env_vars: &[&str],
) -> Result<Option<String>> {
    if let Some(path) = file {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            Error::usage(format!("{flag} {}: cannot read it ({e})", path.display()))
        })?;
        let secret = raw.trim_end_matches(['\n', '\r']).to_string();
        if secret.is_empty() {
            return Err(Error::usage(format!("{flag} {} is empty", path.display())));
        }
        return Ok(Some(secret));
    }
    Ok(env_vars
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty())))
}

pub const POSTGRES_PASSWORD_ENV: &[&str] = &["PGPASSWORD"];
pub const REDIS_PASSWORD_ENV: &[&str] = &["REDIS_PASSWORD", "REDISCLI_AUTH"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_and_redis_urls() {
        assert_eq!(
            Target::parse("postgres://app@db:5432/sales?sslmode=require", "--source").expect("pg"),
            Target::Postgres(PostgresTarget {
                url: "postgres://app@db:5432/sales?sslmode=require".into(),
                database: "sales".into()
            })
        );
        assert_eq!(
            Target::parse("redis://backup@cache:6380/2", "--source").expect("redis"),
            Target::Redis(RedisTarget {
                host: "cache".into(),
                port: 6380,
                username: Some("backup".into()),
                db: Some(2)
            })
        );
        assert_eq!(
            Target::parse("redis://127.0.0.1", "--source").expect("redis"),
            Target::Redis(RedisTarget {
                host: "127.0.0.1".into(),
                port: 6379,
                username: None,
                db: None
            })
        );
        assert_eq!(
            Target::parse("file:///data/dump.rdb", "--to").expect("file"),
            Target::File("/data/dump.rdb".into())
        );
    }

    #[test]
    fn refuses_passwords_and_names_the_flag() {
        let err =
            Target::parse("postgres://app:hunter2@db/sales", "--source").expect_err("password");
        let msg = err.to_string();
        assert!(
            msg.contains("--source") && msg.contains("PGPASSWORD"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert_eq!(err.exit_code(), 2);
        assert!(Target::parse("postgres://db:5432/sales?password=x", "--source").is_err());
    }

    #[test]
    fn rejects_incomplete_or_unknown_urls() {
        for (raw, needle) in [
            ("postgres://app@db:5432", "names no database"),
            ("mysql://db/x", "unknown scheme"),
            ("not a url", "not a URL"),
            ("redis://cache:6379/abc", "database number"),
        ] {
            let msg = Target::parse(raw, "--source").expect_err(raw).to_string();
            assert!(msg.contains(needle), "{raw}: {msg}");
        }
    }

    #[test]
    fn password_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(
            resolve_password(Some(&path), &[]).expect("read"),
            Some("s3cret".into())
        );
        let missing = dir.path().join("nope");
        assert!(resolve_password(Some(&missing), &[])
            .expect_err("missing")
            .to_string()
            .contains("--password-file"));
    }
}
