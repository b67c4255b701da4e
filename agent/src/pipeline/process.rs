//! Child processes (`pg_dump`, `pg_restore`) as parts of a stream.
//!
//! A tool's output counts only if the tool exits cleanly: [`ChildOutput`]
//! turns a non-zero exit into a read error at end of stream, so an upload of a
//! dump that died midway is aborted rather than completed.

use std::io;
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;

use super::checked_end::CheckedEnd;
use super::redact::Redactor;

/// How much of a tool's stderr is kept for the error message: the tail, where
/// the reason for a failure is.
const STDERR_TAIL: usize = 4096;
/// How long stderr may stay open after the tool exited.
const STDERR_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

struct Outcome {
    status: io::Result<ExitStatus>,
    stderr: String,
}

pub struct Running {
    name: String,
    pub stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    done: oneshot::Receiver<Outcome>,
    kill: Option<oneshot::Sender<()>>,
    redactor: Redactor,
}

/// A child tool's command: the agent's environment minus every variable
/// starting with `PG`. libpq reads `PGHOST`, `PGPORT`, `PGDATABASE`,
/// `PGUSER`, `PGOPTIONS`, `PGSSLMODE`, `PGSERVICE`… wherever the URL is
/// silent, and Debian's wrappers pick a version by `PGCLUSTER`: a shell, CI
/// job or pod that sets one would send a tool elsewhere than its arguments
/// say. The caller sets what it means (`PGPASSWORD`) after this. Every
/// process the agent starts is made here (the crate's clippy.toml forbids
/// `Command::new` elsewhere).
#[allow(clippy::disallowed_methods)]
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for name in libpq_variables(std::env::vars_os().map(|(name, _)| name)) {
        command.env_remove(name);
    }
    command
}

/// A throwaway server's command (PostgreSQL, redis-server, bao): nothing of
/// the agent's environment but `PATH`. Neither the source's nor the store's
/// secrets belong to it, and nothing the drill did not choose configures it.
pub fn server_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = self::command(program);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .env("TZ", "UTC");
    command
}

/// The names among `names` that a libpq-based tool would read: all that
/// start with `PG` (pure, so what is cleared is tested directly).
fn libpq_variables(names: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    names.filter(|n| n.as_bytes().starts_with(b"PG")).collect()
}

/// Starts `command` with piped stdio. The caller registers every secret the
/// tool may echo in `redactor`. The process is killed if `Running` is dropped
/// before it finished, and when the agent receives SIGTERM or SIGINT.
pub fn spawn(name: &str, mut command: Command, redactor: Redactor) -> io::Result<Running> {
    // Its own process group, so that stopping the tool also stops what it
    // started (a wrapper script's children would otherwise live on).
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let program = std::path::PathBuf::from(command.as_std().get_program());
    let mut child = command.spawn().map_err(|e| {
        let shown = program.display();
        if e.kind() != io::ErrorKind::NotFound {
            io::Error::new(e.kind(), format!("starting {name} ({shown}): {e}"))
        } else if program.components().count() > 1 {
            io::Error::new(e.kind(), format!("{shown} does not exist; give the path of an installed {name}"))
        } else {
            io::Error::new(e.kind(), format!("{name} not found on PATH; install it (e.g. apt-get install postgresql-client) or set its path"))
        }
    })?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    if let Some(out) = &stdout {
        widen_pipe(out);
    }
    let stderr = child.stderr.take();
    let (done_tx, done) = oneshot::channel();
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let stderr_task = tokio::spawn(async move {
            let mut tail = Vec::new();
            if let Some(mut stderr) = stderr {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * STDERR_TAIL {
                        tail.drain(..tail.len() - STDERR_TAIL);
                    }
                }
            }
            let start = tail.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&tail[start..]).into_owned()
        });
        // A signal to the agent stops its tools too: a killed psql session
        // rolls back, a killed dump ends its stream with an error.
        let group = child.id();
        let status = tokio::select! {
            status = child.wait() => status,
            Ok(()) = kill_rx => {
                kill_group(group);
                child.wait().await
            }
            () = crate::interrupt::cancelled() => {
                kill_group(group);
                child.wait().await
            }
        };
        // Whatever the tool left running holds stderr open: do not wait on it.
        kill_group(group);
        let stderr = match tokio::time::timeout(STDERR_GRACE, stderr_task).await {
            Ok(tail) => tail.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let _ = done_tx.send(Outcome { status, stderr });
    });
    Ok(Running {
        name: name.to_string(),
        stdin,
        stdout,
        done,
        kill: Some(kill_tx),
        redactor,
    })
}

/// Kills the tool's whole process group (it is the group's leader).
fn kill_group(leader: Option<u32>) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    if let Some(pid) = leader.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// A 64 KiB pipe makes a fast dump tool stop every 64 KiB until we read;
/// 1 MiB lets it run ahead and halves the context switches. Best effort:
/// Linux only, and the limit may be lowered by the administrator.
fn widen_pipe(stdout: &ChildStdout) {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{fcntl, FcntlArg};
        if let Err(e) = fcntl(stdout, FcntlArg::F_SETPIPE_SZ(1 << 20)) {
            tracing::debug!(error = %e, "could not enlarge the pipe from the child process");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stdout;
}

impl Running {
    /// The tool's stdout as a stream that fails at its end if the tool failed.
    pub fn into_output(mut self) -> io::Result<ChildOutput> {
        let stdout = self
            .stdout
            .take()
            .ok_or_else(|| io::Error::other(format!("{} has no stdout", self.name)))?;
        self.stdin = None;
        let (verdict, outcome) = oneshot::channel();
        tokio::spawn(async move {
            // Moving `self` here keeps the kill switch alive while the tool runs.
            let result = self.wait().await.map_err(io::Error::other);
            let _ = verdict.send(result);
        });
        Ok(CheckedEnd::new(stdout, outcome))
    }

    /// The tool's raw stdout, for a caller that judges the tool by [`Running::wait`].
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Kills the tool (a restore whose input turned out bad must not commit).
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }

    /// Waits for the tool to exit; an error carries its redacted stderr.
    pub async fn wait(mut self) -> Result<(), String> {
        self.stdin = None;
        let outcome = (&mut self.done).await;
        judge(&self.name, &self.redactor, outcome)
    }
}

fn judge(
    name: &str,
    redactor: &Redactor,
    outcome: Result<Outcome, oneshot::error::RecvError>,
) -> Result<(), String> {
    let outcome = outcome.map_err(|_| format!("{name}: lost track of the process"))?;
    let detail = || {
        let stderr = redactor.redact(outcome.stderr.trim());
        if stderr.is_empty() {
            String::new()
        } else {
            format!(": {}", stderr.lines().collect::<Vec<_>>().join(" | "))
        }
    };
    match &outcome.status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "{name} failed ({}){}",
            describe_status(status),
            detail()
        )),
        Err(e) => Err(format!(
            "{name}: waiting for the process failed: {e}{}",
            detail()
        )),
    }
}

fn describe_status(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "unknown status".to_string(),
    }
}

/// A tool's stdout, failing at its end if the tool failed.
pub type ChildOutput = CheckedEnd<ChildStdout>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = command("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn every_pg_variable_is_cleared_and_nothing_else() {
        let names = [
            "PGHOST",
            "PGPORT",
            "PGOPTIONS",
            "PGSSLROOTCERT",
            "PGTARGETSESSIONATTRS",
            "PGCLUSTER",
            "PG_COLOR",
            "PATH",
            "HOME",
            "APGAR",
            "pghost",
        ]
        .map(std::ffi::OsString::from);
        let cleared = libpq_variables(names.into_iter());
        let cleared: Vec<&str> = cleared.iter().filter_map(|n| n.to_str()).collect();
        assert_eq!(
            cleared,
            [
                "PGHOST",
                "PGPORT",
                "PGOPTIONS",
                "PGSSLROOTCERT",
                "PGTARGETSESSIONATTRS",
                "PGCLUSTER",
                "PG_COLOR"
            ]
        );
    }

    #[tokio::test]
    async fn output_of_a_successful_tool_reads_to_the_end() {
        let mut out = String::new();
        spawn("printer", sh("printf hello"), Redactor::new())
            .expect("spawn")
            .into_output()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("clean exit");
        assert_eq!(out, "hello");
    }

    #[tokio::test]
    async fn a_failing_tool_fails_the_stream_with_its_redacted_stderr() {
        let mut redactor = Redactor::new();
        redactor.add("topsecret");
        let mut out = Vec::new();
        let err = spawn(
            "dumper",
            sh("printf partial; echo 'auth topsecret refused' >&2; exit 3"),
            redactor,
        )
        .expect("spawn")
        .into_output()
        .expect("stdout")
        .read_to_end(&mut out)
        .await
        .expect_err("non-zero exit must fail the stream");
        let msg = err.to_string();
        assert!(msg.contains("dumper failed (exit code 3)"), "{msg}");
        assert!(msg.contains("auth *** refused"), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");
        assert_eq!(out, b"partial");
    }

    #[tokio::test]
    async fn a_killed_tool_reports_the_signal() {
        let mut running = spawn("sleeper", sh("sleep 30"), Redactor::new()).expect("spawn");
        running.kill();
        let err = running.wait().await.expect_err("killed");
        assert!(err.contains("killed by signal 9"), "{err}");
    }
}
