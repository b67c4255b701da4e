//! `http(s)://[USER@]HOST:PORT[/PATH]` with `--source-kind elasticsearch`
//! (or `--target-kind`, `--restore-to` of a drill of such a backup): an
//! Elasticsearch or OpenSearch cluster. The URL never holds a password: it
//! comes from ELASTICSEARCH_PASSWORD or `--password-file`; an API key from
//! ELASTICSEARCH_API_KEY or `--search-api-key-file`.

use url::Url;

use crate::error::{Error, Result};

/// Where the basic-auth password comes from without `--password-file`.
pub const PASSWORD_ENV: &[&str] = &[vertice_crds::agent_env::ELASTICSEARCH_PASSWORD];
/// Where an API key comes from without `--search-api-key-file`.
pub const API_KEY_ENV: &[&str] = &[vertice_crds::agent_env::ELASTICSEARCH_API_KEY];

/// A search cluster, as the agent reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTarget {
    /// Scheme, host, port and path prefix (a cluster behind a proxy may
    /// sit under a path); no user, no query.
    pub base: Url,
    /// The basic-auth user; `None`: no basic auth (an API key or none).
    pub user: Option<String>,
}

impl SearchTarget {
    /// The address as written in manifests and logs.
    pub fn address(&self) -> String {
        let mut shown = self.base.clone();
        if let Some(user) = &self.user {
            let _ = shown.set_username(user);
        }
        shown.as_str().trim_end_matches('/').to_string()
    }

    /// The URL of an API path (`path` without a leading `/`).
    pub fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::usage(format!("{}: cannot address {path:?} ({e})", self.address())))
    }
}

/// Reads an `http(s)://` URL already known to be a search cluster's; the
/// caller refused a password in it. `shown` is the URL as errors print it.
pub fn parse(url: &Url, flag: &str, shown: &str) -> Result<SearchTarget> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::usage(format!(
            "{flag} {shown}: an Elasticsearch / OpenSearch cluster is http://HOST:PORT or https://HOST:PORT"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::usage(format!("{flag} {shown}: names no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::usage(format!(
            "{flag} {shown}: a cluster address takes no ?query or #fragment; the password goes in ELASTICSEARCH_PASSWORD or --password-file, an API key in ELASTICSEARCH_API_KEY or --search-api-key-file"
        )));
    }
    let user =
        (!url.username().is_empty()).then(|| crate::engine::common::percent_decode(url.username()));
    let mut base = url.clone();
    let _ = base.set_username("");
    // `join` keeps a path prefix only when it ends with '/'.
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(SearchTarget { base, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(raw: &str) -> Result<SearchTarget> {
        let url = Url::parse(raw).expect("url");
        parse(&url, "--source", raw)
    }

    #[test]
    fn keeps_the_user_and_a_path_prefix_apart_from_the_base() {
        let t = target("https://backup@search.example:9200/es").expect("parse");
        assert_eq!(t.user.as_deref(), Some("backup"));
        assert_eq!(t.address(), "https://backup@search.example:9200/es");
        assert_eq!(
            t.url("/_cat/indices").expect("url").as_str(),
            "https://search.example:9200/es/_cat/indices"
        );
        let t = target("http://127.0.0.1:9200").expect("parse");
        assert_eq!(t.user, None);
        assert_eq!(t.address(), "http://127.0.0.1:9200");
        assert_eq!(
            t.url("orders/_search").expect("url").as_str(),
            "http://127.0.0.1:9200/orders/_search"
        );
    }

    #[test]
    fn refuses_what_is_no_cluster_address_naming_the_flag() {
        for (raw, needle) in [
            ("http://h:9200/?api_key=x", "no ?query"),
            ("ftp://h:21", "http://HOST:PORT"),
        ] {
            let err = target(raw).expect_err(raw);
            assert!(err.to_string().contains("--source"), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
    }
}
