//! What every throwaway server a drill starts needs: a private directory
//! that is removed whatever happens, the server binary found on PATH or
//! beside another, and a stop that lets the server shut down cleanly
//! before it is killed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Who a server runs as when the agent is root, first found in the user
/// database wins: PostgreSQL refuses to run as root (and needs its user to
/// have a name), and nothing the drill restores needs root either.
const UNPRIVILEGED: [&str; 3] = ["postgres", "nobody", "nonroot"];

/// A private (0700) directory under the temporary directory, removed on
/// drop. `owner` hands it to another user (the agent is root then).
pub struct PrivateDir {
    pub path: PathBuf,
}

impl PrivateDir {
    pub fn create(owner: Option<(u32, u32)>) -> Result<Self> {
        let mut random = [0u8; 6];
        let _ = getrandom::fill(&mut random);
        let path = std::env::temp_dir().join(format!("vertice-drill-{}", hex::encode(random)));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&path)
            .map_err(|e| Error::target(format!("creating {}: {e}", path.display())))?;
        let dir = Self { path };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir.path, Some(uid), Some(gid)).map_err(|e| {
                Error::target(format!("handing {} to uid {uid}: {e}", dir.path.display()))
            })?;
        }
        Ok(dir)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove the drill's directory");
        }
    }
}

/// The (uid, gid) a throwaway server should run as: none (the agent's own)
/// unless the agent is root.
pub fn server_user() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    UNPRIVILEGED
        .iter()
        .find_map(|name| nix::unistd::User::from_name(name).ok().flatten())
        .filter(|u| !u.uid.is_root())
        .map(|u| Some((u.uid.as_raw(), u.gid.as_raw())))
        .ok_or_else(|| {
            Error::usage(format!(
                "the agent runs as root and the throwaway server may not; no unprivileged user ({}) is in the user database: run the drill as a non-root user",
                UNPRIVILEGED.join(", ")
            ))
        })
}

pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
}

/// `name` resolved as a shell would: a path as it is, a bare name on PATH.
pub fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    on_path(&program.to_string_lossy())
}

/// The last few lines of a server's log, for an error message.
pub fn last_lines(log: &Path, count: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(count).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// After SIGTERM the whole run has 15 s to wind down: a server gets this
/// much of it to stop before it is killed.
const INTERRUPTED_GRACE: Duration = Duration::from_secs(5);

/// Asks the server to stop with `signal`, waits up to `grace` (at most
/// [`INTERRUPTED_GRACE`] once the agent was signalled, also when the signal
/// arrives during the wait), then kills it. A server killed outright can
/// leave children behind (PostgreSQL's backends) that hold the directory
/// open.
pub async fn stop(
    child: &mut tokio::process::Child,
    signal: Signal,
    grace: Duration,
) -> std::result::Result<(), String> {
    stop_within(
        child,
        signal,
        grace,
        INTERRUPTED_GRACE,
        crate::interrupt::cancelled(),
    )
    .await
}

/// [`stop`], with the signal's arrival as a future (tests give their own).
async fn stop_within(
    child: &mut tokio::process::Child,
    signal: Signal,
    grace: Duration,
    interrupted_grace: Duration,
    cancelled: impl std::future::Future<Output = ()>,
) -> std::result::Result<(), String> {
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let started = tokio::time::Instant::now();
    let mut deadline = started + grace;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = signal::kill(Pid::from_raw(pid), signal);
    }
    // The run's wind-down after SIGTERM is shorter than a normal stop's
    // grace: a signal before or during the wait shortens it, or the run
    // would be killed mid-wait, leaving the server and its directory.
    let mut cancelled = std::pin::pin!(cancelled);
    let mut shortened = false;
    let waited = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            () = tokio::time::sleep_until(deadline) => break None,
            () = &mut cancelled, if !shortened => {
                shortened = true;
                deadline = deadline.min(tokio::time::Instant::now() + interrupted_grace);
            }
        }
    };
    match waited {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(format!("waiting for the server to stop: {e}")),
        None => {
            let _ = child.kill().await;
            Err(format!(
                "the server did not stop within {}s of {signal} and was killed",
                (deadline - started).as_secs()
            ))
        }
    }
}

/// A server binary setting: `auto` (the first of `names` on PATH), `none`,
/// or a path, which must exist.
pub fn find_binary(setting: &str, flag: &str, names: &[&str]) -> Result<Option<PathBuf>> {
    match setting {
        "none" => Ok(None),
        "auto" => Ok(names.iter().find_map(|n| on_path(n))),
        path => {
            let p = PathBuf::from(path);
            if p.is_file() {
                Ok(Some(p))
            } else {
                Err(Error::usage(format!(
                    "{flag} {path}: no such file; give the path of {}, or auto / none",
                    names.join(" or ")
                )))
            }
        }
    }
}

/// Stops a server (see [`stop`]), then removes its directory; `Err` says
/// what was left behind.
pub async fn stop_and_remove(
    mut child: tokio::process::Child,
    dir: PrivateDir,
    signal: Signal,
    grace: Duration,
) -> std::result::Result<(), String> {
    let stopped = stop(&mut child, signal, grace).await;
    let path = dir.path.clone();
    drop(dir);
    if stopped.is_err() && path.exists() {
        // A killed server's children may still be writing as they die.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = std::fs::remove_dir_all(&path);
    }
    match (stopped, path.exists()) {
        (Ok(()), false) => Ok(()),
        (Err(e), _) => Err(e),
        (Ok(()), true) => Err(format!("{} could not be removed", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that ignores its stop signal, like one stuck shutting down.
    fn stubborn() -> tokio::process::Child {
        crate::pipeline::process::server_command("sh")
            .args(["-c", "trap '' INT TERM; while :; do sleep 1; done"])
            .kill_on_drop(true)
            .spawn()
            .expect("sh")
    }

    #[tokio::test]
    async fn a_signal_during_the_wait_shortens_it() {
        let mut child = stubborn();
        // Let the shell set its trap before it is signalled.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let signalled = tokio::time::sleep(Duration::from_millis(300));
        let stopped = stop_within(
            &mut child,
            Signal::SIGINT,
            Duration::from_secs(30),
            Duration::from_millis(500),
            signalled,
        )
        .await;
        let took = started.elapsed();
        let why = stopped.expect_err("killed");
        assert!(why.contains("was killed"), "{why}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(child.try_wait().expect("status").is_some(), "killed");
    }

    #[tokio::test]
    async fn without_a_signal_a_stopping_server_gets_its_grace() {
        let mut child = crate::pipeline::process::server_command("sleep")
            .arg("60")
            .kill_on_drop(true)
            .spawn()
            .expect("sleep");
        let stopped = stop_within(
            &mut child,
            Signal::SIGTERM,
            Duration::from_secs(30),
            Duration::from_millis(1),
            std::future::pending(),
        )
        .await;
        assert_eq!(stopped, Ok(()), "sleep stops on SIGTERM");
    }
}
