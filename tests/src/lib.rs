//! Test harness: starts real servers (PostgreSQL, Redis and Valkey,
//! SeaweedFS, Azurite, fake-gcs-server, OpenBao, Prometheus, the
//! Pushgateway, an SMTP sink, OpenSearch and Elasticsearch in `search`, and a
//! Kubernetes control plane in `kube`) on 127.0.0.1, on free ports, in
//! temporary directories, and stops them when dropped. A missing server
//! binary fails the test with the command that installs it; nothing is
//! silently skipped. Beside the servers, the helpers the suites share:
//! `summary` (the run summary an agent run wrote), `drill` (a drill's
//! report), `fake_pg_dump`, `fixtures`, `write_script`.

pub mod agent;
pub mod azurite;
pub mod drill;
pub mod fake_gcs;
pub mod fake_pg_dump;
pub mod fixtures;
pub mod flaky_proxy;
pub mod health_target;
pub mod http_capture;
pub mod http_json;
pub mod kafka;
pub mod kube;
pub mod monitoring;
pub mod openbao;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod procfs;
pub mod prometheus;
pub mod pushgateway;
pub mod redis_server;
pub mod search;
pub mod search_proxy;
pub mod seaweedfs;
pub mod smtp_sink;
pub mod store;
pub mod summary;
pub mod token_review;
pub mod trixie;
pub mod wait;

pub use agent::Agent;
pub use openbao::OpenBao;
pub use postgres::Postgres;
pub use redis_server::RedisServer;
pub use seaweedfs::SeaweedFs;
pub use store::TestStore;

/// Writes an executable shell script (a stand-in for a tool, to inject faults
/// or record how the agent called it).
pub fn write_script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}
