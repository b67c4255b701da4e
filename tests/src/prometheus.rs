//! A real Prometheus (Debian `prometheus`) on loopback, scraping an exporter
//! whose value the test sets, every second.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{require_binary, wait_until, Server};
use crate::pushgateway::http_get;

/// `/metrics` with the gauges the test sets.
pub struct Exporter {
    pub port: u16,
    values: Arc<Mutex<Vec<(String, f64)>>>,
}

impl Exporter {
    pub fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind exporter");
        let port = listener.local_addr().expect("addr").port();
        let values: Arc<Mutex<Vec<(String, f64)>>> = Arc::default();
        let shared = values.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body: String = shared
                    .lock()
                    .map(|v| v.iter().map(|(k, v)| format!("{k} {v}\n")).collect())
                    .unwrap_or_default();
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter { port, values }
    }

    /// Sets (or adds) the sample `name` (a metric name with labels).
    pub fn set(&self, name: &str, value: f64) {
        if let Ok(mut v) = self.values.lock() {
            match v.iter_mut().find(|(k, _)| k == name) {
                Some(entry) => entry.1 = value,
                None => v.push((name.to_string(), value)),
            }
        }
    }
}

/// One `scrape_configs` entry.
pub struct ScrapeJob {
    pub name: &'static str,
    pub targets: Vec<String>,
    /// Keep the scraped series' own `job`/`instance` labels (a Pushgateway).
    pub honor_labels: bool,
}

pub struct Prometheus {
    pub port: u16,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `targets` (`host:port`) every second.
    pub fn start(targets: &[String]) -> Prometheus {
        Prometheus::start_jobs(&[ScrapeJob {
            name: "test",
            targets: targets.to_vec(),
            honor_labels: false,
        }])
    }

    /// Scrapes each job's targets every second.
    pub fn start_jobs(jobs: &[ScrapeJob]) -> Prometheus {
        Prometheus::start_jobs_with_rules(jobs, None)
    }

    /// Scrapes each job's targets, and evaluates `rules`, every second.
    pub fn start_jobs_with_rules(
        jobs: &[ScrapeJob],
        rules: Option<&std::path::Path>,
    ) -> Prometheus {
        let bin = require_binary("prometheus", &[], "apt-get install -y prometheus");
        let dir = tempfile::Builder::new()
            .prefix("vertice-prometheus-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        let mut text = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if let Some(rules) = rules {
            text.push_str(&format!("rule_files: [\"{}\"]\n", rules.display()));
        }
        text.push_str("scrape_configs:\n");
        for job in jobs {
            let list = job
                .targets
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ");
            text.push_str(&format!(
                "  - job_name: {}\n    honor_labels: {}\n    static_configs:\n      - targets: [{list}]\n",
                job.name, job.honor_labels
            ));
        }
        std::fs::write(&config, text).expect("config");
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("prometheus.err")).expect("log"));
        let mut server = Server::spawn("prometheus", &mut cmd);
        wait_until("prometheus", Duration::from_secs(30), || {
            server.assert_running(&dir.path().join("prometheus.err"));
            http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        Prometheus {
            port,
            _server: server,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET `path` on the Prometheus HTTP API, parsed as JSON.
    pub fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (_, body) = http_get(self.port, path)?;
        serde_json::from_str(&body).ok()
    }

    /// The instant-query value of `promql`, if it has one.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (_, body) = http_get(self.port, &format!("/api/v1/query?query={q}"))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}
