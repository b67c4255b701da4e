//! A throwaway redis-server, optionally with a password.

use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{require_binary, wait_until, Server};

pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    _server: Server,
    pub dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start(password: Option<&str>) -> RedisServer {
        Self::start_with(password, None)
    }

    /// Starts with `dbfilename` loaded from the server's directory when given
    /// (the "init container put dump.rdb in place" case).
    pub fn start_with(password: Option<&str>, rdb: Option<&std::path::Path>) -> RedisServer {
        let bin = require_binary("redis-server", &[], "apt-get install -y redis-server");
        Self::start_binary(bin, password, rdb, &[])
    }

    /// A replica of this server (`--replicaof`), with the same password.
    pub fn start_replica(&self) -> RedisServer {
        let bin = require_binary("redis-server", &[], "apt-get install -y redis-server");
        let mut extra = vec![
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            self.port.to_string(),
        ];
        if let Some(p) = &self.password {
            extra.extend(["--masterauth".to_string(), p.clone()]);
        }
        Self::start_binary(bin, self.password.as_deref(), None, &extra)
    }

    /// Valkey 8 from the trixie root (see [`crate::trixie`]).
    pub fn start_valkey() -> RedisServer {
        Self::start_binary(crate::trixie::bin().join("valkey-server"), None, None, &[])
    }

    fn start_binary(
        bin: std::path::PathBuf,
        password: Option<&str>,
        rdb: Option<&std::path::Path>,
        extra: &[String],
    ) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("vertice-redis-")
            .tempdir()
            .expect("tempdir");
        if let Some(rdb) = rdb {
            std::fs::copy(rdb, dir.path().join("dump.rdb")).expect("copy rdb");
        }
        let port = free_port();
        let log = dir.path().join("redis.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--port")
            .arg(port.to_string())
            // The agent's own throwaway settings: loopback, nothing saved.
            .args(vertice_agent::engine::redis::throwaway::SERVER_ARGS)
            .args([
                "--repl-diskless-sync-delay",
                "0",
                // DEBUG POPULATE fills large data sets in one command.
                "--enable-debug-command",
                "local",
            ])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(extra);
        if let Some(p) = password {
            cmd.arg("--requirepass").arg(p);
        }
        let mut server = Server::spawn("redis-server", &mut cmd);
        let client = redis::Client::open(Self::conn_url(port, password)).expect("client");
        wait_until("redis-server", Duration::from_secs(20), || {
            server.assert_running(&log);
            client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
        RedisServer {
            port,
            password: password.map(str::to_string),
            _server: server,
            dir,
        }
    }

    fn conn_url(port: u16, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{port}/"),
            None => format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// The URL the agent is given: never with the password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(Self::conn_url(self.port, self.password.as_deref()))
            .and_then(|c| c.get_connection())
            .expect("redis connection")
    }
}
