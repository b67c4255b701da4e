//! `postgres://USER@HOST:PORT/DATABASE?…`: the URL is handed to libpq tools
//! as given; it may carry no secret.

use url::Url;

use crate::engine::common::percent_decode;
use crate::error::{Error, Result};
use vertice_crds::{agent_env, redact};

/// Where a PostgreSQL password comes from when no `--password-file` is given.
pub const PASSWORD_ENV: &[&str] = &[agent_env::PGPASSWORD];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    /// The URL exactly as given (it carries no password), handed to libpq tools.
    pub url: String,
    pub database: String,
}

/// Reads a `postgres://` URL; `raw` is its redacted form, for messages.
pub fn parse(url: &Url, flag: &str, raw: &str) -> Result<PostgresTarget> {
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
    Ok(PostgresTarget {
        url: url.to_string(),
        database,
    })
}
