//! HTTP(S) probe: a GET whose status must fall in a range, and whose body
//! (at most the runner's `--max-probe-body-bytes`) may have to contain a
//! text or a JSON field value. Redirects are not followed: a 3xx is judged
//! by the status range. Reasons say which condition failed, never what the
//! body held: the target is whatever the failover's author points at.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::address_policy::AddressPolicy;
use super::target::PolicyResolver;
use super::{json_field, reasons, Failed};

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
    /// Bodies longer than this fail the check (only read when a body
    /// condition is set).
    pub max_body: usize,
    /// Checks IP-literal URLs; names are checked by the client's resolver.
    pub policy: Arc<AddressPolicy>,
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

/// A client trusting the system roots plus `ca_pem`, if given, connecting
/// only to addresses `policy` allows. Clients are shared by every probe with
/// the same CA bundle, timeout and policy: each one holds its own TLS root
/// store, and a runner with hundreds of replicas would otherwise keep
/// hundreds of copies of the system roots.
pub fn client(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
    policy: &Arc<AddressPolicy>,
) -> Result<reqwest::Client, String> {
    use sha2::Digest;
    type Key = (Option<[u8; 32]>, Duration, AddressPolicy);
    static SHARED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<Key, reqwest::Client>>,
    > = std::sync::OnceLock::new();
    let key: Key = (
        ca_pem.map(|pem| sha2::Sha256::digest(pem).into()),
        timeout,
        AddressPolicy::clone(policy),
    );
    let shared = SHARED.get_or_init(Default::default);
    if let Some(client) = shared.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(client);
    }
    let client = build_client(ca_pem, timeout, policy)?;
    if let Ok(mut m) = shared.lock() {
        m.insert(key, client.clone());
    }
    Ok(client)
}

fn build_client(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
    policy: &Arc<AddressPolicy>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Every name through the policy; no proxy, whose address the policy
        // would check instead of the target's.
        .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
        .no_proxy()
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
        // reqwest resolves names through the policy, but connects to an IP
        // literal without resolving: that one is checked here.
        let literal = match self.url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            self.policy.check(ip).map_err(|e| Failed(e.to_string()))?;
        }
        let mut response = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| match reasons::address_refused(&e) {
                Some(refused) => Failed(refused),
                None => Failed(format!("GET {}: {}", self.url, reasons::http(&e))),
            })?;
        judge_status(response.status().as_u16(), self.min_status, self.max_status)?;
        if self.body_contains.is_none() && self.json_field.is_none() {
            return Ok(());
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_large(self.max_body));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => append_bounded(&mut body, &chunk, self.max_body)?,
                Ok(None) => break,
                Err(e) => return Err(Failed(format!("reading the body: {}", reasons::http(&e)))),
            }
        }
        judge_body(
            &body,
            self.body_contains.as_deref(),
            self.json_field
                .as_ref()
                .map(|(p, e)| (p.as_str(), e.as_str())),
        )
    }
}

pub fn judge_status(status: u16, min: u16, max: u16) -> Result<(), Failed> {
    if (min..=max).contains(&status) {
        Ok(())
    } else {
        Err(Failed(format!("status {status} outside {min}-{max}")))
    }
}

fn too_large(max: usize) -> Failed {
    Failed(format!("body larger than {max} bytes"))
}

/// Adds `chunk` to `body`, or fails once the body would exceed `max`: a
/// larger body is refused rather than cut, so no check ever passes on a
/// part of the answer.
pub fn append_bounded(body: &mut Vec<u8>, chunk: &[u8], max: usize) -> Result<(), Failed> {
    if body.len().saturating_add(chunk.len()) > max {
        return Err(too_large(max));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// The body conditions, with reasons that name the condition and never
/// quote the body: a `bodyContains` or `jsonField` check must not become
/// a way to read what a server answers.
pub fn judge_body(
    body: &[u8],
    body_contains: Option<&str>,
    json_field: Option<(&str, &str)>,
) -> Result<(), Failed> {
    if let Some(needle) = body_contains {
        if !contains(body, needle.as_bytes()) {
            return Err(Failed::new("body does not contain the expected text"));
        }
    }
    if let Some((path, expected)) = json_field {
        json_field::check(body, path, expected).map_err(Failed)?;
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
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
        let policy = Arc::new(AddressPolicy::default());
        assert!(client(None, t, &policy).is_ok());
        assert!(client(None, t, &policy).is_ok());
        let bad = client(Some(b"not a certificate"), t, &policy).expect_err("no PEM");
        assert!(bad.contains("PEM"), "{bad}");
    }

    #[test]
    fn statuses_outside_the_range_name_it() {
        assert!(judge_status(204, 200, 399).is_ok());
        assert_eq!(
            judge_status(503, 200, 399).expect_err("outside").0,
            "status 503 outside 200-399"
        );
    }

    #[test]
    fn bodies_over_the_limit_fail_whole() {
        let mut body = Vec::new();
        append_bounded(&mut body, &[b'a'; 40], 64).expect("fits");
        append_bounded(&mut body, &[b'a'; 24], 64).expect("exactly fits");
        let e = append_bounded(&mut body, b"a", 64).expect_err("over");
        assert_eq!(e.0, "body larger than 64 bytes");
        assert_eq!(body.len(), 64);
        assert_eq!(
            append_bounded(&mut Vec::new(), &vec![0; 65537], 65536)
                .expect_err("over")
                .0,
            "body larger than 65536 bytes"
        );
    }

    #[test]
    fn reasons_never_quote_the_body() {
        const SECRET: &str = "sk-live-9f8e7d";
        let body = format!(r#"{{"status": "ok", "internal": {{"apiKey": "{SECRET}"}}}}"#);
        let body = body.as_bytes();
        let reasons = [
            judge_body(body, None, Some(("internal.apiKey", "guess"))),
            judge_body(body, Some("sk-live-0"), None),
            judge_body(body, None, Some(("internal", "{}"))),
            judge_body(SECRET.as_bytes(), None, Some(("status", "ok"))),
            judge_body(
                format!(r#"{{"a": "{SECRET}""#).as_bytes(),
                None,
                Some(("a", "x")),
            ),
        ];
        for reason in reasons {
            let reason = reason.expect_err("fails").0;
            assert!(!reason.contains(SECRET), "{reason}");
            assert!(!reason.contains("sk-live"), "{reason}");
        }
        assert_eq!(
            judge_body(body, None, Some(("internal.apiKey", "guess")))
                .expect_err("fails")
                .0,
            "JSON field internal.apiKey does not equal the expected value"
        );
        assert_eq!(
            judge_body(body, Some("healthy"), None)
                .expect_err("fails")
                .0,
            "body does not contain the expected text"
        );
        assert!(judge_body(body, Some("\"status\""), Some(("status", "ok"))).is_ok());
    }

    /// A server answering every connection with `response`, at 127.0.0.1.
    async fn answering(response: String) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        address
    }

    fn probe(url: &str, policy: AddressPolicy, json_field: Option<(&str, &str)>) -> HttpProbe {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let policy = Arc::new(policy);
        HttpProbe {
            url: url.parse().expect("url"),
            client: client(None, Duration::from_secs(3), &policy).expect("client"),
            min_status: 200,
            max_status: 399,
            body_contains: None,
            json_field: json_field.map(|(p, e)| (p.to_string(), e.to_string())),
            headers: HeaderMap::new(),
            max_body: 64,
            policy,
        }
    }

    fn ok_with(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn a_fetched_value_never_reaches_the_reason() {
        let address = answering(ok_with(r#"{"internal":{"apiKey":"sk-9f8e"}}"#)).await;
        let url = format!("http://{address}/");
        let p = probe(
            &url,
            AddressPolicy::default(),
            Some(("internal.apiKey", "x")),
        );
        let reason = p.check().await.expect_err("mismatch").0;
        assert_eq!(
            reason,
            "JSON field internal.apiKey does not equal the expected value"
        );
        let p = probe(
            &url,
            AddressPolicy::default(),
            Some(("internal.apiKey", "sk-9f8e")),
        );
        assert_eq!(p.check().await, Ok(()));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails() {
        let address = answering(ok_with(&format!(r#"{{"pad":"{}"}}"#, "a".repeat(80)))).await;
        let url = format!("http://{address}/");
        let p = probe(&url, AddressPolicy::default(), Some(("pad", "a")));
        assert_eq!(
            p.check().await.expect_err("too large").0,
            "body larger than 64 bytes"
        );
    }

    #[tokio::test]
    async fn refused_addresses_are_not_requested() {
        let address = answering(ok_with("{}")).await;
        let no_loopback = || AddressPolicy::parse("0.0.0.0/0", "127.0.0.0/8").expect("policy");
        // An IP literal, checked before the request.
        let p = probe(&format!("http://{address}/"), no_loopback(), None);
        assert_eq!(
            p.check().await.expect_err("refused").0,
            "address 127.0.0.1 is not allowed by the runner's \
             --probe-allowed-cidrs/--probe-denied-cidrs"
        );
        // A name, checked by the client's resolver.
        let url = format!("http://localhost:{}/", address.port());
        let p = probe(&url, no_loopback(), None);
        let reason = p.check().await.expect_err("refused").0;
        assert!(
            reason.starts_with("address ")
                && reason.ends_with(
                    "is not allowed by the runner's --probe-allowed-cidrs/--probe-denied-cidrs"
                ),
            "{reason}"
        );
        assert!(probe(&url, AddressPolicy::default(), None)
            .check()
            .await
            .is_ok());
    }

    #[test]
    fn body_search() {
        assert!(contains(b"all is ok here", b"ok"));
        assert!(!contains(b"nope", b"ok"));
        assert!(contains(b"", b""));
    }
}
