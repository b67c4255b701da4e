//! A thin HTTP client for the dozen calls the engine makes of an
//! Elasticsearch or OpenSearch cluster (both vendors share them): JSON in
//! and out, basic auth or an API key, an extra CA bundle, the cluster's own
//! error `type` and `reason` in every message, and transient failures
//! (connection lost, 429, 502–504) retried within the run's timeout.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::target::SearchTarget;
use crate::engine::settings::SearchConnection;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Which end of the run the cluster is: its failures are the source's
/// (backup) or the target's (restore, drill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn error(self, message: String) -> Error {
        match self {
            Side::Source => Error::source(message),
            Side::Target => Error::target(message),
        }
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Basic(String, Secret),
    ApiKey(Secret),
}

/// A cluster as the agent talks to it.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    target: SearchTarget,
    auth: Auth,
    /// The flag that named the cluster, for messages.
    pub flag: &'static str,
    pub side: Side,
    /// How long transient failures are retried before the run gives up.
    pub timeout: Duration,
    /// Calls go out after SIGTERM too: see [`Client::despite_signals`].
    steady: bool,
    /// `--search-flavour`: the vendor [`super::cluster::identify`] insists on.
    pub expected_flavour: Option<&'static str>,
}

/// A call's answer: its status and body.
pub struct Answer {
    pub status: StatusCode,
    pub bytes: bytes::Bytes,
}

impl Answer {
    /// The body as JSON (`null` when it is none).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

impl Client {
    pub fn new(
        target: &SearchTarget,
        connection: &SearchConnection,
        password: Option<&Secret>,
        flag: &'static str,
        side: Side,
    ) -> Result<Client> {
        let auth = match (&target.user, password, &connection.api_key) {
            (Some(_), _, Some(_)) => {
                return Err(Error::usage(format!(
                    "{flag} names a user and an API key is set too (ELASTICSEARCH_API_KEY or --search-api-key-file): use one of them"
                )))
            }
            (Some(user), Some(password), None) => Auth::Basic(user.clone(), password.clone()),
            (Some(user), None, None) => {
                return Err(Error::usage(format!(
                    "{flag} names the user {user:?} but no password is set: put it in ELASTICSEARCH_PASSWORD or a file named by --password-file"
                )))
            }
            (None, _, Some(key)) => Auth::ApiKey(key.clone()),
            (None, _, None) => Auth::None,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A search page or bulk answer that takes this long is a hung
            // server, not a slow one.
            .timeout(Duration::from_secs(300))
            // No `Accept-Encoding`: other crates turn on reqwest's gzip and
            // deflate, and a cluster asked for them compresses every
            // answer — a page of documents costs its nodes about twice the
            // CPU (measured: 5.6 s against 3.1 s for a 256 MB scroll) and
            // the agent more to inflate it again.
            .no_gzip()
            .no_deflate()
            .no_brotli()
            .no_zstd();
        if let Some(path) = &connection.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::usage(format!(
                    "--search-ca-file {}: cannot read it ({e})",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::usage(format!(
                    "--search-ca-file {}: not a PEM certificate bundle ({e})",
                    path.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::usage(format!("setting up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            target: target.clone(),
            auth,
            flag,
            side,
            timeout: connection.timeout,
            steady: false,
            expected_flavour: connection.flavour,
        })
    }

    /// The cluster's address as messages print it.
    pub fn address(&self) -> String {
        self.target.address()
    }

    /// A call whose answer must be a success; its JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(|b| (b.to_string().into_bytes(), "application/json"));
        let answer = self.send(method.clone(), path, body).await?;
        if answer.status.is_success() {
            return Ok(answer.json());
        }
        Err(self.refused(&method, path, &answer))
    }

    /// `GET path`, which must succeed.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// A call with any answer (the caller judges the status); transient
    /// failures are retried within the timeout, refused credentials are a
    /// usage error at once.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<Answer> {
        self.send_retrying(method, path, body, true).await
    }

    /// Like [`Client::send`], but a 429 or 503 is returned at once for the
    /// caller to act on (a bulk load makes its batches smaller); a lost
    /// connection is still retried.
    pub async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<Answer> {
        self.send_retrying(method, path, body, false).await
    }

    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        retry_statuses: bool,
    ) -> Result<Answer> {
        let url = self.target.url(path)?;
        // Shared, so a retried bulk request does not copy its 8 MiB again.
        let body = body.map(|(bytes, kind)| (bytes::Bytes::from(bytes), kind));
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            // A DELETE undoes what the run made (a restore taken back, a
            // drill's throwaway indices, an aborted snapshot, a read view
            // released): it must still reach the cluster after SIGTERM,
            // which is when it is needed most.
            if method != Method::DELETE && !self.steady {
                self.stopped()?;
            }
            let mut request = self.http.request(method.clone(), url.clone());
            request = match &self.auth {
                Auth::None => request,
                Auth::Basic(user, password) => request.basic_auth(user, Some(password.expose())),
                Auth::ApiKey(key) => request.header(
                    reqwest::header::AUTHORIZATION,
                    format!("ApiKey {}", key.expose()),
                ),
            };
            if let Some((bytes, content_type)) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) => Ok(Answer { status, bytes }),
                        Err(e) => Err(causes(&e)),
                    }
                }
                Err(e) => Err(causes(&e)),
            };
            let transient = match &outcome {
                Ok(answer) if matches!(answer.status.as_u16(), 401 | 403) => {
                    return Err(self.credentials_refused(answer));
                }
                Ok(answer) => {
                    retry_statuses && matches!(answer.status.as_u16(), 429 | 502 | 503 | 504)
                }
                Err(_) => true,
            };
            let elapsed = started.elapsed();
            if !transient || elapsed >= self.timeout {
                return outcome.map_err(|cause| {
                    self.side.error(format!(
                        "{} {}: {method} /{} failed ({cause}); gave up after {:.0?}",
                        self.flag,
                        self.address(),
                        path.trim_start_matches('/'),
                        started.elapsed()
                    ))
                });
            }
            // The whole --search-timeout is waited out, the last pause cut
            // to what is left of it.
            tokio::time::sleep(pause.min(self.timeout - elapsed)).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// The same client, whose calls go out whatever signal arrived: for a
    /// short sequence that must not stop halfway (a replace's delete and
    /// clone).
    pub fn despite_signals(&self) -> Client {
        Client {
            steady: true,
            ..self.clone()
        }
    }

    /// An error once SIGTERM or SIGINT arrived, so a run stops between
    /// calls.
    pub fn stopped(&self) -> Result<()> {
        if self.steady {
            return Ok(());
        }
        match crate::interrupt::received() {
            Some(signal) => Err(self.side.error(format!(
                "stopped by {}",
                crate::interrupt::signal_name(signal)
            ))),
            None => Ok(()),
        }
    }

    fn credentials_refused(&self, answer: &Answer) -> Error {
        Error::usage(format!(
            "{} {}: the cluster refused the credentials (HTTP {}: {}); check the user in the URL and ELASTICSEARCH_PASSWORD / --password-file, or ELASTICSEARCH_API_KEY / --search-api-key-file, and the user's privileges",
            self.flag,
            self.address(),
            answer.status.as_u16(),
            reason(&answer.json())
        ))
    }

    /// The error for a call the cluster refused.
    pub fn refused(&self, method: &Method, path: &str, answer: &Answer) -> Error {
        self.side.error(format!(
            "{} {}: {method} /{} answered HTTP {}: {}",
            self.flag,
            self.address(),
            path.trim_start_matches('/'),
            answer.status.as_u16(),
            reason(&answer.json())
        ))
    }
}

/// An error with its causes, which say what actually went wrong
/// (connection refused, a TLS failure) where the top says only "error
/// sending request".
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The cluster's own words for an error: `type: reason` of the error (and
/// its root cause when that says more), else the body.
pub fn reason(body: &Value) -> String {
    let error = &body["error"];
    if let Some(text) = error.as_str() {
        return text.to_string();
    }
    let kind = error["type"].as_str().unwrap_or_default();
    let why = error["reason"].as_str().unwrap_or_default();
    if kind.is_empty() && why.is_empty() {
        let text = body.to_string();
        return if text == "null" {
            "no JSON body".into()
        } else {
            text.chars().take(300).collect()
        };
    }
    let mut text = format!("{kind}: {why}");
    let root = &error["root_cause"][0];
    if let Some(root_why) = root["reason"].as_str() {
        if root_why != why {
            text.push_str(&format!(" ({root_why})"));
        }
    }
    text
}

/// A name put into a URL path, escaped so a hostile index or template name
/// cannot reach another API.
pub fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        // Unreserved characters and `*` (patterns) stay; everything else,
        // space and `+` included, is percent-encoded.
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'*') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_come_from_the_clusters_error() {
        let body = serde_json::json!({"error": {"type": "resource_already_exists_exception",
            "reason": "index [orders/abc] already exists",
            "root_cause": [{"reason": "index [orders/abc] already exists"}]}, "status": 400});
        assert_eq!(
            reason(&body),
            "resource_already_exists_exception: index [orders/abc] already exists"
        );
        let body = serde_json::json!({"error": {"type": "search_phase_execution_exception",
            "reason": "all shards failed", "root_cause": [{"reason": "No mapping found for [x]"}]}});
        assert!(reason(&body).ends_with("(No mapping found for [x])"));
        assert_eq!(reason(&serde_json::json!({"error": "bad"})), "bad");
        assert_eq!(reason(&Value::Null), "no JSON body");
    }

    #[test]
    fn names_cannot_escape_their_path_segment() {
        assert_eq!(segment("a/../_cluster"), "a%2F..%2F_cluster");
        assert_eq!(segment("logs-*"), "logs-*");
        assert_eq!(segment("a?b#c"), "a%3Fb%23c");
        assert_eq!(segment("my pipeline+x"), "my%20pipeline%2Bx");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
