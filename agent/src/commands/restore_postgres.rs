//! PostgreSQL restores where the agent, not `pg_restore`, decides whether
//! anything commits.
//!
//! ```text
//! store → SHA-256 → decrypt → decompress → pg_restore --file=- → agent → psql
//! ```
//! `pg_restore --single-transaction` writes the archive as SQL in one
//! `BEGIN … COMMIT` block. The agent forwards that SQL to `psql` but holds back
//! its end; only when the whole stored artifact has been read and both
//! checksums and sizes match the manifest does it send the `COMMIT`. Every
//! other ending (a corrupt or tampered artifact, a failing tool, a signal)
//! closes the session without it, so PostgreSQL rolls everything back, even
//! when `pg_restore` stopped reading early (`--schema-only`, `--section`,
//! `-L`, bytes appended after the archive).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::verify::{check_integrity, open_artifact};
use crate::cli::RestoreArgs;
use crate::error::{Error, Result};
use crate::manifest::{Artifact, Manifest};
use crate::pipeline::encryption::x25519;
use crate::pipeline::process::Running;
use crate::pipeline::progress::{Progress, ProgressMode};
use crate::pipeline::redact::Redactor;
use crate::source::postgres::{self, Tool};
use crate::store::Store;
use crate::target::{resolve_password, PostgresTarget, POSTGRES_PASSWORD_ENV};

const CHUNK: usize = 256 * 1024;
/// How much of pg_restore's SQL is held back: its final `COMMIT` and what
/// may follow it (a `--verbose` comment, `\unrestrict`).
const HELD_SQL: usize = 64 * 1024;
/// The statement pg_restore ends its single transaction with.
const COMMIT: &[u8] = b"COMMIT;\n";
/// What psql prints after the agent's COMMIT succeeded.
const COMMITTED_MARKER: &str = "vertice-agent: restore committed";

const NOTHING_RESTORED: &str = "the transaction was rolled back, nothing was restored";

/// How `pg_restore` and `psql` are run: the restore's flags as plain values.
pub struct PgRestoreSettings {
    pub pg_restore: PathBuf,
    /// `None`: the psql beside `pg_restore`, else the one on PATH.
    pub psql: Option<PathBuf>,
    /// Extra pg_restore options, already checked against the safe-list.
    pub extra: Vec<String>,
    pub no_owner: bool,
    pub password: Option<String>,
    pub progress: ProgressMode,
}

impl PgRestoreSettings {
    pub fn from_args(args: &RestoreArgs) -> Result<Self> {
        Ok(Self {
            pg_restore: args.pg_restore.clone(),
            psql: args.psql.clone(),
            extra: postgres::normalize(&args.pg_restore_args, "--pg-restore-arg", Tool::PgRestore)
                .map_err(Error::usage)?,
            no_owner: args.no_owner,
            password: resolve_password(args.password_file.as_ref(), POSTGRES_PASSWORD_ENV)?,
            progress: args.run.progress,
        })
    }
}

pub async fn restore(
    settings: &PgRestoreSettings,
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    ids: Option<&[x25519::Identity]>,
    target: &PostgresTarget,
) -> Result<()> {
    let password = settings.password.clone();
    let mut redactor = Redactor::new();
    if let Some(p) = &password {
        redactor.add(p);
    }
    let psql_path = settings
        .psql
        .clone()
        .unwrap_or_else(|| postgres::psql_beside(&settings.pg_restore));
    let mut open = open_artifact(store, manifest, artifact, ids).await?;
    let mut restorer = postgres::spawn_restore(
        &settings.pg_restore,
        settings.no_owner,
        &settings.extra,
        redactor.clone(),
    )
    .map_err(|e| Error::usage(format!("--pg-restore: {e}")))?;
    let mut psql = postgres::spawn_psql(&psql_path, target, password.as_deref(), redactor)
        .map_err(|e| Error::usage(format!("--psql: {e}")))?;
    let (Some(mut archive_in), Some(sql_out), Some(sql_in), Some(psql_out)) = (
        restorer.stdin.take(),
        restorer.take_stdout(),
        psql.stdin.take(),
        psql.take_stdout(),
    ) else {
        return Err(Error::target("pg_restore or psql started without pipes"));
    };
    let confirmed = watch_for_marker(psql_out);
    let mut forward = Some(tokio::spawn(forward_sql(sql_out, sql_in)));
    let mut forwarded: Option<Forwarded> = None;
    let _progress = Progress::start(settings.progress, "restore", Arc::clone(&open.stored));

    // Feed the archive. If pg_restore stops reading, keep reading (and
    // hashing) when it finished cleanly; stop at once when it failed.
    let mut buf = vec![0u8; CHUNK];
    let mut restorer = Some(restorer);
    let read_error = loop {
        let n = match open.reader.read(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) => break Some(e.to_string()),
        };
        if forward.as_ref().is_some_and(JoinHandle::is_finished) {
            match join(forward.take()).await {
                Some(done) => forwarded = Some(done),
                // psql stopped taking SQL: an error in the target.
                None => return Err(abort(restorer, psql, None, None).await),
            }
        }
        if restorer.is_none() {
            continue;
        }
        // A target that stalls (a lock) must not hold off a signal.
        let written = tokio::select! {
            written = archive_in.write_all(&buf[..n]) => written,
            () = crate::interrupt::cancelled() => {
                let stopped = Error::target("interrupted while pg_restore was running");
                return Err(abort(restorer, psql, forward, Some(stopped)).await);
            }
        };
        if written.is_ok() {
            continue;
        }
        if let Some(Err(e)) = finish(restorer.take()).await {
            // A corrupt artifact usually shows first as pg_restore failing on
            // garbage: say which it was when finding out is cheap.
            let cause = match diagnose(&mut open, manifest, artifact).await {
                Diagnosis::Corrupt(corrupt) => {
                    Error::integrity(format!("{corrupt}; pg_restore stopped on it: {e}"))
                }
                Diagnosis::Intact => Error::target(format!(
                    "{e}; the backup itself is intact (size and SHA-256 match its manifest)"
                )),
                Diagnosis::Unchecked => Error::target(format!(
                    "{e}; the backup's integrity was not checked (vertice-agent verify checks it)"
                )),
            };
            return Err(abort(None, psql, forward, Some(cause)).await);
        }
    };
    drop(archive_in);
    let integrity = match read_error {
        Some(e) => Err(Error::integrity(format!(
            "backup {} is corrupt or unreadable: {e}",
            manifest.backup_id
        ))),
        None => check_integrity(manifest, artifact, &open),
    };
    if let Err(e) = integrity {
        return Err(abort(restorer, psql, forward, Some(e)).await);
    }
    if let Some(Err(e)) = finish(restorer.take()).await {
        return Err(abort(None, psql, forward, Some(Error::target(e))).await);
    }
    let forwarded = match forwarded {
        Some(f) => f,
        None => match join(forward.take()).await {
            Some(f) => f,
            None => return Err(abort(None, psql, None, None).await),
        },
    };
    commit(forwarded, psql, confirmed).await
}

async fn finish(restorer: Option<Running>) -> Option<std::result::Result<(), String>> {
    match restorer {
        Some(running) => Some(running.wait().await),
        None => None,
    }
}

/// After pg_restore failed, at most this much more of the stored artifact
/// is read to tell a corrupt backup from a target that refused a good one;
/// past it, a refusal of a large backup is not held up reading all of it.
const DIAGNOSE_LIMIT: u64 = 256 * 1024 * 1024;

enum Diagnosis {
    Corrupt(String),
    Intact,
    Unchecked,
}

async fn diagnose(
    open: &mut super::verify::OpenArtifact,
    manifest: &Manifest,
    artifact: &Artifact,
) -> Diagnosis {
    if artifact.stored_bytes.saturating_sub(open.stored.bytes()) > DIAGNOSE_LIMIT {
        return Diagnosis::Unchecked;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        // A signal ends the diagnosis, not the report of the failure.
        let read = tokio::select! {
            read = open.reader.read(&mut buf) => read,
            () = crate::interrupt::cancelled() => return Diagnosis::Unchecked,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Diagnosis::Corrupt(format!(
                    "backup {} is corrupt or unreadable: {e}",
                    manifest.backup_id
                ))
            }
        }
    }
    match check_integrity(manifest, artifact, open) {
        Ok(()) => Diagnosis::Intact,
        Err(e) => Diagnosis::Corrupt(e.to_string()),
    }
}

/// The forwarder's result; `None` when psql stopped taking SQL.
async fn join(forward: Option<JoinHandle<std::io::Result<Forwarded>>>) -> Option<Forwarded> {
    match forward?.await {
        Ok(Ok(forwarded)) => Some(forwarded),
        _ => None,
    }
}

/// What [`forward_sql`] leaves for the end: psql's stdin and the held-back
/// tail of pg_restore's SQL.
struct Forwarded {
    sql_in: tokio::process::ChildStdin,
    held: Vec<u8>,
}

/// Copies SQL from pg_restore to psql, always keeping the last
/// [`HELD_SQL`] bytes back; returns them at the end of pg_restore's output.
async fn forward_sql(
    mut from: impl AsyncRead + Unpin,
    mut sql_in: tokio::process::ChildStdin,
) -> std::io::Result<Forwarded> {
    let mut held: Vec<u8> = Vec::with_capacity(2 * HELD_SQL);
    let mut buf = vec![0u8; CHUNK];
    // The preamble is a few hundred bytes: it is still held when the first
    // bytes go out (or when the output ends).
    let mut preamble_done = false;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            if !preamble_done {
                guard_newer_settings(&mut held);
            }
            return Ok(Forwarded { sql_in, held });
        }
        held.extend_from_slice(&buf[..n]);
        if held.len() > HELD_SQL {
            if !preamble_done {
                guard_newer_settings(&mut held);
                preamble_done = true;
            }
            let release = held.len() - HELD_SQL;
            sql_in.write_all(&held[..release]).await?;
            held.drain(..release);
        }
    }
}

/// `SET transaction_timeout = 0;` as pg_restore writes it, and what it
/// becomes.
const TRANSACTION_TIMEOUT: &[u8] = b"SET transaction_timeout = 0;";
const GUARDED_TRANSACTION_TIMEOUT: &[u8] = b"SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;";

/// pg_restore writing SQL (it has no connection to ask) assumes a server of
/// its own major: pg_restore 17 sets `transaction_timeout`, which servers
/// before 17 refuse, and psql's ON_ERROR_STOP then fails the restore of a
/// good backup into an older server. In the preamble of session settings
/// only, that SET becomes a statement that sets it where the server has it.
fn guard_newer_settings(sql: &mut Vec<u8>) {
    let mut at = 0;
    while at < sql.len() {
        let end = sql[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(sql.len(), |i| at + i);
        let line = &sql[at..end];
        if line == TRANSACTION_TIMEOUT {
            sql.splice(at..end, GUARDED_TRANSACTION_TIMEOUT.iter().copied());
            return;
        }
        let preamble = line.is_empty()
            || line.starts_with(b"--")
            || line.starts_with(b"SET ")
            || line.starts_with(b"SELECT pg_catalog.set_config(")
            || line == b"BEGIN;"
            // 17.6 and later open with `\restrict <key>`.
            || line.starts_with(b"\\restrict ");
        if !preamble {
            return;
        }
        at = end + 1;
    }
}

/// Sends the held SQL without pg_restore's `COMMIT`, then the agent's own,
/// followed by a marker psql prints only once the COMMIT succeeded: with it
/// the outcome is known, without it only a lost connection leaves doubt.
async fn commit(forwarded: Forwarded, psql: Running, confirmed: JoinHandle<bool>) -> Result<()> {
    let Forwarded { mut sql_in, held } = forwarded;
    let Some(at) = find_last(&held, COMMIT) else {
        let unexpected =
            Error::target("pg_restore's SQL did not end its transaction with COMMIT as expected");
        return Err(abort(None, psql, None, Some(unexpected)).await);
    };
    let mut rest = held[..at].to_vec();
    rest.extend_from_slice(&held[at + COMMIT.len()..]);
    let sent = async {
        write_all_and(&mut sql_in, &rest).await?;
        write_all_and(&mut sql_in, COMMIT).await?;
        write_all_and(
            &mut sql_in,
            format!("\\echo {COMMITTED_MARKER}\n").as_bytes(),
        )
        .await?;
        sql_in.shutdown().await
    }
    .await;
    drop(sql_in);
    let status = psql.wait().await;
    let committed = confirmed.await.unwrap_or(false);
    match (status, committed) {
        (_, true) => Ok(()),
        (Ok(()), false) => Err(Error::target(format!(
            "psql ended without confirming the COMMIT{}; {NOTHING_RESTORED}",
            if sent.is_err() {
                " (it stopped reading)"
            } else {
                ""
            }
        ))),
        (Err(e), false) => Err(judge_psql_failure(e)),
    }
}

/// psql failed and never confirmed the COMMIT: with ON_ERROR_STOP (exit 3)
/// or a failed connection the transaction cannot have committed; a
/// connection lost later may have been lost during the COMMIT itself.
fn judge_psql_failure(e: String) -> Error {
    if let Some(fix) = postgres::missing_object(&e) {
        return Error::usage(format!("--to: {e}; {fix}; {NOTHING_RESTORED}"));
    }
    let never_connected = e.contains("connection to server") && e.contains("failed:");
    if e.contains("exit code 3") || never_connected {
        Error::target(format!("{e}; {NOTHING_RESTORED}"))
    } else {
        Error::target(format!(
            "{e}; the connection ended while committing: the restore may or may not have committed, check the target"
        ))
    }
}

async fn write_all_and(to: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> std::io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

/// Reads psql's stdout (nothing but meta-command output goes there) and
/// tells whether the marker appeared.
fn watch_for_marker(stdout: tokio::process::ChildStdout) -> JoinHandle<bool> {
    tokio::spawn(async move {
        let mut stdout = stdout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.len() > 8192 {
                seen.drain(..seen.len() - 4096);
            }
        }
        find_last(&seen, COMMITTED_MARKER.as_bytes()).is_some()
    })
}

/// Ends the restore without committing: stops pg_restore, closes psql's
/// session (PostgreSQL rolls back the open transaction), and says why. With
/// no `cause`, psql stopped by itself, and its error is the reason.
async fn abort(
    restorer: Option<Running>,
    mut psql: Running,
    forward: Option<JoinHandle<std::io::Result<Forwarded>>>,
    cause: Option<Error>,
) -> Error {
    if let Some(forward) = forward {
        forward.abort();
    }
    if let Some(mut running) = restorer {
        running.kill();
        let _ = running.wait().await;
    }
    match cause {
        Some(e) => {
            psql.kill();
            let _ = psql.wait().await;
            e.map_message(|m| format!("{m}; psql was stopped before COMMIT, {NOTHING_RESTORED}"))
        }
        None => {
            let reason = psql
                .wait()
                .await
                .err()
                .unwrap_or_else(|| "psql stopped early".into());
            match postgres::missing_object(&reason) {
                Some(fix) => Error::usage(format!("--to: {reason}; {fix}; {NOTHING_RESTORED}")),
                None => Error::target(format!("{reason}; {NOTHING_RESTORED}")),
            }
        }
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_newer_pg_restore_s_transaction_timeout_is_set_only_where_the_server_has_it() {
        let preamble = "--\n-- PostgreSQL database dump\n--\n\n\\restrict Yq3k\n\nSET statement_timeout = 0;\nSET lock_timeout = 0;\nSET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n\nCREATE TABLE t (v text);\n";
        let mut sql = preamble.as_bytes().to_vec();
        super::guard_newer_settings(&mut sql);
        let text = String::from_utf8(sql).expect("utf-8");
        assert!(!text.contains("SET transaction_timeout"), "{text}");
        assert!(
            text.contains("SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;\nSET client_encoding"),
            "{text}"
        );
        // Past the preamble, the same text is data or a user's own SQL.
        let later = "SET lock_timeout = 0;\nCREATE FUNCTION f() RETURNS void AS $$\nSET transaction_timeout = 0;\n$$ LANGUAGE sql;\n";
        let mut sql = later.as_bytes().to_vec();
        super::guard_newer_settings(&mut sql);
        assert_eq!(String::from_utf8(sql).expect("utf-8"), later);
        // pg_restore 16 and older write no such line: nothing changes.
        let old = "SET statement_timeout = 0;\nCREATE TABLE t ();\n";
        let mut sql = old.as_bytes().to_vec();
        super::guard_newer_settings(&mut sql);
        assert_eq!(String::from_utf8(sql).expect("utf-8"), old);
    }

    use super::*;

    #[test]
    fn finds_the_final_commit() {
        let sql = b"BEGIN;\nCOMMIT;\nx\nCOMMIT;\n\n-- Completed on\n";
        assert_eq!(find_last(sql, COMMIT), Some(17));
        assert_eq!(find_last(b"BEGIN;\n", COMMIT), None);
    }
}
