//! A throwaway `redis-server` / `valkey-server` on a private unix socket,
//! loading an RDB: the Redis drill's target. The test harness starts its
//! servers with the same settings ([`SERVER_ARGS`]).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::census::Census;
use crate::engine::throwaway::last_lines;
use crate::error::{Error, Result};

/// What every throwaway server runs with: loopback only, and nothing
/// written back (no RDB saves, no AOF).
pub const SERVER_ARGS: [&str; 6] = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];

/// Starts the server on the RDB; `Err(why)` is a failed check (the server
/// refused the file), not a failed drill run.
pub(super) async fn start_server(
    server: &Path,
    dir: &Path,
    census: &Census,
) -> Result<std::result::Result<tokio::process::Child, String>> {
    let databases = (census.highest_db() + 1).max(16);
    let socket = dir.join("redis.sock");
    let log = dir.join("redis.log");
    // Neither the source's password nor the store's credentials belong to it.
    let mut child = crate::pipeline::process::server_command(server)
        .args(["--port", "0"])
        .args(SERVER_ARGS)
        .arg("--unixsocket")
        .arg(&socket)
        .args([
            "--unixsocketperm",
            "700",
            "--databases",
            &databases.to_string(),
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", "dump.rdb"])
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::usage(format!("--redis-server {}: {e}", server.display())))?;
    // Loading runs at a few hundred MB/s; allow a slow disk.
    let size = std::fs::metadata(dir.join("dump.rdb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60 + size / (20 << 20));
    loop {
        if crate::interrupt::received().is_some() {
            return Err(Error::target("interrupted while redis-server was loading"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Err(format!(
                "redis-server exited ({status}) while loading: {}",
                last_lines(&log, 3)
            )));
        }
        let probe = socket.clone();
        let ready = tokio::task::spawn_blocking(move || ping(&probe))
            .await
            .unwrap_or(false);
        if ready {
            return Ok(Ok(child));
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            return Ok(Err(format!(
                "redis-server did not finish loading in time: {}",
                last_lines(&log, 3)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn connect(socket: &Path) -> redis::RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    let info = redis::ConnectionAddr::Unix(socket.to_path_buf()).into_connection_info()?;
    redis::Client::open(info)?.get_connection_with_timeout(Duration::from_secs(5))
}

/// True once the server answers (not `LOADING`).
fn ping(socket: &Path) -> bool {
    connect(socket)
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}
