//! A stand-in for the one Kubernetes API call Vault's Kubernetes auth makes:
//! `POST /apis/authentication.k8s.io/v1/tokenreviews`, so the Vault suite
//! needs no control plane (the `kube_*` suites run a real API server,
//! `kube/`). Vault (OpenBao) itself is real. It vouches for one service
//! account.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

pub struct TokenReview {
    pub port: u16,
}

impl TokenReview {
    /// Answers every review: the token belongs to `namespace/name` (uid `uid`).
    pub fn start(namespace: &str, name: &str, uid: &str) -> TokenReview {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let answer = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": {
                "authenticated": true,
                "user": {
                    "username": format!("system:serviceaccount:{namespace}:{name}"),
                    "uid": uid,
                    "groups": ["system:serviceaccounts"]
                }
            }
        })
        .to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        TokenReview { port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A service-account-shaped JWT (claims only; the review decides).
pub fn service_account_jwt(namespace: &str, name: &str, uid: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let b64url = |data: &[u8]| URL_SAFE_NO_PAD.encode(data);
    let header = b64url(br#"{"alg":"RS256","kid":"vertice-test"}"#);
    let claims = serde_json::json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": format!("system:serviceaccount:{namespace}:{name}")
    })
    .to_string();
    format!(
        "{header}.{}.{}",
        b64url(claims.as_bytes()),
        b64url(b"not-verified-by-the-test")
    )
}
