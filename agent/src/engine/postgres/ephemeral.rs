//! `--restore-to ephemeral`: a PostgreSQL server of the drill's own, in a
//! private directory, listening only on a unix socket there, and gone when
//! the drill ends. No credentials, no server to provision: the drill pod
//! carries the server binaries (`initdb`, `postgres`).
//!
//! The server trades durability for speed (no fsync, minimal WAL): a crash
//! loses nothing but the drill, which is thrown away anyway.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::engine::throwaway::{self, last_lines, PrivateDir};
use crate::error::{Error, Result};

/// The `--restore-to` value that asks for this.
pub const EPHEMERAL: &str = "ephemeral";
/// The superuser initdb creates; trust authentication on a 0700 socket.
pub const SUPERUSER: &str = "vertice";
/// The port in the socket's name (`.s.PGSQL.5432`); no TCP is opened.
const PORT: u16 = 5432;
/// How long a server gets to shut down (fast mode) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// initdb and startup on a slow disk.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Where Debian and Ubuntu install each major version's server.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

pub struct EphemeralPostgres {
    /// `postgres://…?host=<dir>` for the drill's connections and psql.
    pub url: String,
    /// `PostgreSQL 17.2`, for the report.
    pub version: String,
    child: tokio::process::Child,
    log: PathBuf,
    // Dropped last: the server must be gone before its directory is.
    dir: PrivateDir,
}

/// The directory holding `initdb` and `postgres`: `--postgres-bin` if
/// given, else beside `pg_restore`, else the newest Debian-style
/// `/usr/lib/postgresql/<major>/bin`, else PATH.
pub fn find_bin_dir(setting: Option<&Path>, pg_restore: &Path) -> Result<PathBuf> {
    if let Some(dir) = setting {
        return if has_server(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(Error::usage(format!(
                "--postgres-bin {}: no initdb and postgres there; give the directory of the PostgreSQL server binaries (e.g. /usr/lib/postgresql/17/bin)",
                dir.display()
            )))
        };
    }
    let beside = throwaway::resolve(pg_restore)
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let versions: Vec<String> = std::fs::read_dir(DEBIAN_ROOT)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let debian = newest_major(&versions).map(|v| Path::new(DEBIAN_ROOT).join(v).join("bin"));
    let on_path = throwaway::on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf));
    [beside, debian, on_path]
        .into_iter()
        .flatten()
        .find(|d| has_server(d))
        .ok_or_else(|| {
            Error::usage(
                "--restore-to ephemeral needs the PostgreSQL server binaries (initdb, postgres): install the server package (the agent image carries them) or give --postgres-bin DIR",
            )
        })
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// The highest numeric major version among directory names (`9.6` < `17`).
fn newest_major(names: &[String]) -> Option<&str> {
    names
        .iter()
        .filter_map(|n| {
            let mut parts = n.split('.').map(str::parse::<u32>);
            let major = parts.next()?.ok()?;
            let minor = match parts.next() {
                Some(Ok(m)) => m,
                Some(Err(_)) => return None,
                None => 0,
            };
            Some(((major, minor), n.as_str()))
        })
        .max()
        .map(|(_, n)| n)
}

/// The settings the throwaway server starts with: a socket in its own
/// directory and no TCP; speed over durability; no JIT (the image leaves
/// out LLVM); dynamic shared memory in the data directory, since a pod's
/// `/dev/shm` is small.
fn server_args(data: &Path, socket_dir: &Path) -> Vec<String> {
    let mut args = vec![
        "-D".to_string(),
        data.display().to_string(),
        "-k".to_string(),
        socket_dir.display().to_string(),
    ];
    args.push("-c".to_string());
    args.push(format!("port={PORT}"));
    for setting in [
        "listen_addresses=",
        "unix_socket_permissions=0700",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "wal_level=minimal",
        "max_wal_senders=0",
        "max_wal_size=4GB",
        "autovacuum=off",
        "jit=off",
        "dynamic_shared_memory_type=mmap",
        "max_connections=20",
    ] {
        args.push("-c".to_string());
        args.push(setting.to_string());
    }
    args
}

impl EphemeralPostgres {
    pub async fn start(bin: &Path) -> Result<Self> {
        let user = throwaway::server_user()?;
        let dir = PrivateDir::create(user)?;
        let data = dir.path.join("data");
        let log = dir.path.join("postgres.log");
        let version = version_of(bin).await;

        let initdb = command(&bin.join("initdb"), user)
            .arg("-D")
            .arg(&data)
            .args([
                "--username",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        // A signal must not wait for initdb: the wind-down is short.
        let initdb = tokio::select! {
            done = tokio::time::timeout(START_TIMEOUT, initdb) => done,
            () = crate::interrupt::cancelled() => {
                return Err(Error::target("interrupted while initdb ran"));
            }
        };
        let initdb = initdb
            .map_err(|_| Error::target("initdb did not finish in time"))?
            .map_err(|e| Error::usage(format!("--postgres-bin {}: initdb: {e}", bin.display())))?;
        if !initdb.status.success() {
            let stderr = String::from_utf8_lossy(&initdb.stderr);
            return Err(Error::target(format!(
                "initdb of the ephemeral PostgreSQL failed ({}): {}",
                initdb.status,
                stderr.trim()
            )));
        }

        let log_file = std::fs::File::create(&log)
            .map_err(|e| Error::target(format!("creating {}: {e}", log.display())))?;
        if let Some((uid, gid)) = user {
            let _ = std::os::unix::fs::chown(&log, Some(uid), Some(gid));
        }
        let child = command(&bin.join("postgres"), user)
            .args(server_args(&data, &dir.path))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::usage(format!("--postgres-bin {}: postgres: {e}", bin.display()))
            })?;
        let host: String =
            url::form_urlencoded::byte_serialize(dir.path.display().to_string().as_bytes())
                .collect();
        // The port is explicit: libpq would otherwise take PGPORT or its
        // compiled-in default for the socket's name.
        let mut server = Self {
            url: format!(
                "postgres://{SUPERUSER}@localhost:{PORT}/postgres?host={host}&sslmode=disable"
            ),
            version,
            child,
            log,
            dir,
        };
        server.wait_ready().await?;
        tracing::info!(version = %server.version, dir = %server.dir.path.display(), "ephemeral PostgreSQL started");
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let socket = self.dir.path.join(format!(".s.PGSQL.{PORT}"));
        loop {
            if crate::interrupt::received().is_some() {
                return Err(Error::target(
                    "interrupted while the ephemeral PostgreSQL was starting",
                ));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::target(format!(
                    "the ephemeral PostgreSQL exited ({status}) while starting: {}",
                    last_lines(&self.log, 5)
                )));
            }
            // The socket appears once the server accepts connections.
            if socket.exists() {
                let mut config = tokio_postgres::Config::new();
                config
                    .host_path(&self.dir.path)
                    .port(PORT)
                    .user(SUPERUSER)
                    .dbname("postgres")
                    .ssl_mode(tokio_postgres::config::SslMode::Disable);
                if let Ok((conn, _driver)) = super::connect::open(&config).await {
                    if conn.client.simple_query("SELECT 1").await.is_ok() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(Error::target(format!(
                    "the ephemeral PostgreSQL did not accept connections within {}s: {}",
                    START_TIMEOUT.as_secs(),
                    last_lines(&self.log, 5)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fast shutdown (SIGINT: sessions end, nothing is written back), then
    /// the directory goes.
    pub async fn stop(self) -> std::result::Result<(), String> {
        throwaway::stop_and_remove(self.child, self.dir, Signal::SIGINT, STOP_GRACE).await
    }
}

fn command(program: &Path, user: Option<(u32, u32)>) -> tokio::process::Command {
    // Nothing of the agent's environment: not its secrets, and not a PGDATA,
    // PGPORT or PGOPTIONS that would steer initdb or the server.
    let mut command = crate::pipeline::process::server_command(program);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

async fn version_of(bin: &Path) -> String {
    let out = crate::pipeline::process::server_command(bin.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await;
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .and_then(|v| v.strip_prefix("postgres (PostgreSQL) ").map(str::to_string))
        .map_or_else(|| "PostgreSQL".into(), |v| format!("PostgreSQL {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_major_version_wins_numerically() {
        let names: Vec<String> = ["9.6", "15", "17", "16", "common", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(newest_major(&names), Some("17"));
        assert_eq!(newest_major(&["9.6".into(), "9.5".into()]), Some("9.6"));
        assert_eq!(newest_major(&["x".into()]), None);
        assert_eq!(newest_major(&[]), None);
    }

    #[test]
    fn the_server_listens_on_its_socket_only() {
        let args = server_args(Path::new("/d/data"), Path::new("/d"));
        let joined = args.join(" ");
        assert!(joined.starts_with("-D /d/data -k /d "), "{joined}");
        assert!(joined.contains("-c listen_addresses= "), "{joined}");
        assert!(
            joined.contains("-c unix_socket_permissions=0700"),
            "{joined}"
        );
        assert!(joined.contains("-c jit=off"), "{joined}");
        assert!(joined.contains("-c port=5432"), "{joined}");
    }

    #[test]
    fn an_explicit_bin_dir_without_a_server_is_refused_by_flag() {
        let empty = tempfile::tempdir().expect("dir");
        let err = find_bin_dir(Some(empty.path()), Path::new("pg_restore")).expect_err("refused");
        assert!(err.to_string().contains("--postgres-bin"), "{err}");
    }
}
