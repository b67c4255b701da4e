//! A tiny HTTP server on loopback that records every request and answers
//! 200 (or what a path is told to answer): the stand-in for Slack,
//! PagerDuty, webhooks and hook endpoints, which live outside any cluster.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Captured {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} body is not JSON ({e}): {}",
                self.method, self.path, self.body
            )
        })
    }
}

pub struct HttpCapture {
    pub port: u16,
    requests: Arc<Mutex<Vec<Captured>>>,
    statuses: Arc<Mutex<HashMap<String, u16>>>,
}

impl HttpCapture {
    pub fn start() -> HttpCapture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind capture server");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let statuses: Arc<Mutex<HashMap<String, u16>>> = Arc::new(Mutex::new(HashMap::new()));
        let (r, s) = (requests.clone(), statuses.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_string();
                    let path = parts.next().unwrap_or_default().to_string();
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let status = s
                        .lock()
                        .expect("statuses")
                        .get(&path)
                        .copied()
                        .unwrap_or(200);
                    r.lock().expect("requests").push(Captured {
                        method,
                        path,
                        headers,
                        body: String::from_utf8_lossy(&body).to_string(),
                    });
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                });
            }
        });
        HttpCapture {
            port,
            requests,
            statuses,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Makes `path` answer `status` from now on.
    pub fn respond(&self, path: &str, status: u16) {
        self.statuses
            .lock()
            .expect("statuses")
            .insert(path.to_string(), status);
    }

    /// Requests so far whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Captured> {
        self.requests
            .lock()
            .expect("requests")
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.requests.lock().expect("requests").clear();
    }
}
