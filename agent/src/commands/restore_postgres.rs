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

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::verify::{check_integrity, open_artifact};
use crate::cli::RestoreArgs;
use crate::error::{Error, Result};
use crate::manifest::{Artifact, Manifest};
use crate::pipeline::encryption::x25519;
use crate::pipeline::process::Running;
use crate::pipeline::progress::Progress;
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

const NOTHING_RESTORED: &str = "the transaction was rolled back, nothing was restored";

pub async fn restore(
    args: &RestoreArgs,
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    ids: Option<&[x25519::Identity]>,
    target: &PostgresTarget,
) -> Result<()> {
    let extra = postgres::normalize(&args.pg_restore_args, "--pg-restore-arg", Tool::PgRestore)
        .map_err(Error::usage)?;
    let password = resolve_password(args.password_file.as_ref(), POSTGRES_PASSWORD_ENV)?;
    let mut redactor = Redactor::new();
    if let Some(p) = &password {
        redactor.add(p);
    }
    let psql_path = args
        .psql
        .clone()
        .unwrap_or_else(|| postgres::psql_beside(&args.pg_restore));
    let mut open = open_artifact(store, manifest, artifact, ids).await?;
    let mut restorer =
        postgres::spawn_restore(&args.pg_restore, args.no_owner, &extra, redactor.clone())
            .map_err(|e| Error::usage(format!("--pg-restore: {e}")))?;
    let mut psql = postgres::spawn_psql(&psql_path, target, password.as_deref(), redactor)
        .map_err(|e| Error::usage(format!("--psql: {e}")))?;
    let (Some(mut archive_in), Some(sql_out), Some(sql_in)) = (
        restorer.stdin.take(),
        restorer.take_stdout(),
        psql.stdin.take(),
    ) else {
        return Err(Error::target("pg_restore or psql started without pipes"));
    };
    let mut forward = Some(tokio::spawn(forward_sql(sql_out, sql_in)));
    let mut forwarded: Option<Forwarded> = None;
    let _progress = Progress::start(args.run.progress, "restore", Arc::clone(&open.stored));

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
            return Err(abort(
                None,
                psql,
                forward,
                Some(Error::target(format!(
                    "{e}; the backup's integrity was not checked (vertice-agent verify checks it)"
                ))),
            )
            .await);
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
    commit(forwarded, psql).await
}

async fn finish(restorer: Option<Running>) -> Option<std::result::Result<(), String>> {
    match restorer {
        Some(running) => Some(running.wait().await),
        None => None,
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
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(Forwarded { sql_in, held });
        }
        held.extend_from_slice(&buf[..n]);
        if held.len() > HELD_SQL {
            let release = held.len() - HELD_SQL;
            sql_in.write_all(&held[..release]).await?;
            held.drain(..release);
        }
    }
}

/// Sends the held SQL without pg_restore's `COMMIT`, then the agent's own.
async fn commit(forwarded: Forwarded, psql: Running) -> Result<()> {
    let Forwarded { mut sql_in, held } = forwarded;
    let Some(at) = find_last(&held, COMMIT) else {
        let unexpected =
            Error::target("pg_restore's SQL did not end its transaction with COMMIT as expected");
        return Err(abort(None, psql, None, Some(unexpected)).await);
    };
    let mut rest = held[..at].to_vec();
    rest.extend_from_slice(&held[at + COMMIT.len()..]);
    if write_all_and(&mut sql_in, &rest).await.is_err() {
        drop(sql_in);
        return Err(failed_before_commit(psql).await);
    }
    if write_all_and(&mut sql_in, COMMIT).await.is_err() {
        drop(sql_in);
        return Err(failed_before_commit(psql).await);
    }
    let _ = sql_in.shutdown().await;
    drop(sql_in);
    psql.wait().await.map_err(|e| {
        if e.contains("exit code 3") {
            // ON_ERROR_STOP: a statement (or the COMMIT itself) failed.
            Error::target(format!("{e}; {NOTHING_RESTORED}"))
        } else {
            Error::target(format!(
                "{e}; the connection ended while committing: the restore may or may not have committed, check the target"
            ))
        }
    })
}

async fn write_all_and(to: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> std::io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

async fn failed_before_commit(psql: Running) -> Error {
    match psql.wait().await {
        Err(e) => Error::target(format!("{e}; {NOTHING_RESTORED}")),
        Ok(()) => Error::target(format!("psql ended before the COMMIT; {NOTHING_RESTORED}")),
    }
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
            Error::target(format!("{reason}; {NOTHING_RESTORED}"))
        }
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_final_commit() {
        let sql = b"BEGIN;\nCOMMIT;\nx\nCOMMIT;\n\n-- Completed on\n";
        assert_eq!(find_last(sql, COMMIT), Some(17));
        assert_eq!(find_last(b"BEGIN;\n", COMMIT), None);
    }
}
