//! HTTP(S) probe: a GET whose status must fall in a range, and whose body
//! (the first 64 KiB) may have to contain a text or a JSON field value.
//! Redirects are not followed: a 3xx is judged by the status range.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{json_field, Failed};

/// The body is read up to this many bytes for the body checks.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct HttpProbe {
    pub url: url::Url,
    pub client: reqwest::Client,
    pub min_status: u16,
    pub max_status: u16,
    pub body_contains: Option<String>,
    /// (dotted path, expected value)
    pub json_field: Option<(String, String)>,
    pub headers: HeaderMap,
}

/// A header as configured: literal or read from a Secret / file.
pub struct HeaderSpec {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

/// Builds the header map; secret values are marked sensitive so they are
/// never printed by the HTTP stack's debug output.
pub fn headers(specs: &[HeaderSpec]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for spec in specs {
        let name = HeaderName::from_bytes(spec.name.as_bytes()).map_err(|_| {
            format!(
                "header name {:?} is not a valid HTTP header name",
                spec.name
            )
        })?;
        let mut value =
            HeaderValue::from_str(spec.value.trim_end_matches(['\r', '\n'])).map_err(|_| {
                format!(
                    "the value of header {:?} is not a valid HTTP header value",
                    spec.name
                )
            })?;
        value.set_sensitive(spec.secret);
        map.append(name, value);
    }
    Ok(map)
}

/// A client trusting the system roots plus `ca_pem`, if given. Clients are
/// shared by every probe with the same CA bundle and timeout: each one
/// holds its own TLS root store, and a runner with hundreds of replicas
/// would otherwise keep hundreds of copies of the system roots.
pub fn client(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client, String> {
    use sha2::Digest;
    type Key = (Option<[u8; 32]>, Duration);
    static SHARED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<Key, reqwest::Client>>,
    > = std::sync::OnceLock::new();
    let key: Key = (ca_pem.map(|pem| sha2::Sha256::digest(pem).into()), timeout);
    let shared = SHARED.get_or_init(Default::default);
    if let Some(client) = shared.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(client);
    }
    let client = build_client(ca_pem, timeout)?;
    if let Ok(mut m) = shared.lock() {
        m.insert(key, client.clone());
    }
    Ok(client)
}

fn build_client(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        // A new connection every probe, as a kubelet's HTTP probe: a server
        // that stopped accepting must not look healthy over an old one.
        .pool_max_idle_per_host(0)
        .user_agent(concat!("vertice-probe/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("the CA bundle is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("the CA bundle holds no PEM certificate".into());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

impl HttpProbe {
    pub async fn check(&self) -> Result<(), Failed> {
        let mut response = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| Failed(format!("GET {}: {}", self.url, chain(&e))))?;
        let status = response.status().as_u16();
        if !(self.min_status..=self.max_status).contains(&status) {
            return Err(Failed(format!(
                "status {status}, expected {}-{}",
                self.min_status, self.max_status
            )));
        }
        if self.body_contains.is_none() && self.json_field.is_none() {
            return Ok(());
        }
        let mut body = Vec::new();
        while body.len() < MAX_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(Failed(format!("reading the body: {}", chain(&e)))),
            }
        }
        body.truncate(MAX_BODY);
        if let Some(needle) = &self.body_contains {
            if !contains(&body, needle.as_bytes()) {
                return Err(Failed(format!("body does not contain {needle:?}")));
            }
        }
        if let Some((path, expected)) = &self.json_field {
            json_field::check(&body, path, expected).map_err(Failed)?;
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The error with its causes: reqwest's top line alone says only "error
/// sending request".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_are_sensitive_and_bad_ones_named() {
        let map = headers(&[
            HeaderSpec {
                name: "Authorization".into(),
                value: "Bearer s3cret\n".into(),
                secret: true,
            },
            HeaderSpec {
                name: "X-Env".into(),
                value: "prod".into(),
                secret: false,
            },
        ])
        .expect("headers");
        let auth = map.get("authorization").expect("auth");
        assert!(auth.is_sensitive());
        assert_eq!(auth, "Bearer s3cret");
        assert!(!map.get("x-env").expect("x-env").is_sensitive());
        let bad = headers(&[HeaderSpec {
            name: "bad name".into(),
            value: "v".into(),
            secret: false,
        }]);
        assert!(bad.expect_err("must fail").contains("\"bad name\""));
    }

    #[test]
    fn clients_are_shared_per_ca_bundle_and_timeout() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let t = Duration::from_secs(3);
        assert!(client(None, t).is_ok());
        assert!(client(None, t).is_ok());
        let bad = client(Some(b"not a certificate"), t).expect_err("no PEM");
        assert!(bad.contains("PEM"), "{bad}");
    }

    #[test]
    fn body_search() {
        assert!(contains(b"all is ok here", b"ok"));
        assert!(!contains(b"nope", b"ok"));
        assert!(contains(b"", b""));
    }
}
