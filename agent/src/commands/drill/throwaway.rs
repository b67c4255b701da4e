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
/// [`INTERRUPTED_GRACE`] once the agent was signalled), then kills it. A
/// server killed outright can leave children behind (PostgreSQL's
/// backends) that hold the directory open.
pub async fn stop(
    child: &mut tokio::process::Child,
    signal: Signal,
    grace: Duration,
) -> std::result::Result<(), String> {
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let grace = if crate::interrupt::received().is_some() {
        grace.min(INTERRUPTED_GRACE)
    } else {
        grace
    };
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = signal::kill(Pid::from_raw(pid), signal);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("waiting for the server to stop: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "the server did not stop within {}s of {signal} and was killed",
                grace.as_secs()
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
    match (stopped, path.exists()) {
        (Ok(()), false) => Ok(()),
        (Err(e), _) => Err(e),
        (Ok(()), true) => Err(format!("{} could not be removed", path.display())),
    }
}
