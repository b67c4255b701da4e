//! A real Prometheus Pushgateway (Debian `prometheus-pushgateway`) on loopback.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{require_binary, wait_until, Server};

pub struct Pushgateway {
    pub port: u16,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl Pushgateway {
    pub fn start() -> Pushgateway {
        let bin = require_binary(
            "prometheus-pushgateway",
            &[],
            "apt-get install -y prometheus-pushgateway",
        );
        let dir = tempfile::Builder::new()
            .prefix("vertice-pushgateway-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let log = dir.path().join("pushgateway.log");
        let mut cmd = Command::new(bin);
        // Debian's build persists to /var/lib/prometheus by default, which
        // would carry one test's metrics into the next.
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--persistence.file={}",
                dir.path().join("pushgateway.data").display()
            ))
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("pushgateway.err")).expect("log"));
        let mut server = Server::spawn("prometheus-pushgateway", &mut cmd);
        wait_until("prometheus-pushgateway", Duration::from_secs(20), || {
            server.assert_running(&log);
            http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        Pushgateway {
            port,
            _server: server,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The values of the group `{job="vertice-backup", namespace, backup}`.
    pub fn group(&self, namespace: &str, backup: &str) -> BTreeMap<String, f64> {
        let (_, body) = http_get(self.port, "/api/v1/metrics").expect("Pushgateway answers");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let mut out = BTreeMap::new();
        for group in json["data"].as_array().into_iter().flatten() {
            let labels = &group["labels"];
            if labels["job"] != "vertice-backup"
                || labels["namespace"] != namespace
                || labels["backup"] != backup
            {
                continue;
            }
            for (name, family) in group.as_object().into_iter().flatten() {
                if let Some(v) = family["metrics"][0]["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                {
                    out.insert(name.clone(), v);
                }
            }
        }
        out
    }

    /// The raw text exposition Prometheus would scrape.
    pub fn scrape(&self) -> String {
        http_get(self.port, "/metrics").expect("scrape").1
    }
}

/// A plain HTTP/1.0 GET on loopback: `(status, body)`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}
