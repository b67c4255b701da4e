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
//!
//! The steps, one module each (none imports this one or each other in a
//! circle): [`settings`] (who asked, the flags), [`preflight`] (the archive's
//! header and versions, before the target is touched), [`start`] (pg_restore
//! and psql), [`psql_session`] (the agent's lines in psql's session and what
//! psql says back), [`forward`] (SQL to psql, its end held back),
//! [`rollback`] (every ending but the COMMIT, and its error), [`commit`]
//! (the one ending that commits), [`older_server`] (refused or let through).

mod commit;
mod forward;
mod older_server;
mod preflight;
mod psql_session;
mod rollback;
mod settings;
mod start;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::task::JoinHandle;

use super::target::PostgresTarget;
use crate::artifact::OpenArtifact;
use crate::engine::common::Stored;
use crate::error::{Error, Result};
use crate::manifest::{Artifact, Manifest};
use crate::pipeline::process::Running;
use crate::pipeline::progress::Progress;
use crate::pipeline::redact::Redactor;
use commit::{conclude, Fed};
use forward::{forward_sql, join, Forwarded, CHUNK};
use rollback::{abort, finish, psql_stopped_first, restorer_failed, Failure};

pub use older_server::OlderServer;
pub use settings::{PgRestoreSettings, RestoreInto};

pub async fn restore(
    settings: &PgRestoreSettings,
    backup: &Stored<'_>,
    target: &PostgresTarget,
    older: &OlderServer,
) -> Result<()> {
    let mut redactor = Redactor::new();
    if let Some(p) = &settings.password {
        redactor.add(p.expose());
    }
    let (manifest, artifact) = (backup.manifest, backup.artifact);
    let mut open = backup.open().await?;
    // What can be known without the target is checked before anything
    // starts: can this pg_restore read the archive?
    let (head, known) = preflight::preflight(settings, &mut open, manifest, artifact).await?;
    let (psql, sql_in, failure) =
        start::start_psql(settings, manifest, target, &known, older, &redactor).await?;

    let (restorer, archive_in, sql_out) = start::start_restorer(settings, redactor)?;
    let forward = tokio::spawn(forward_sql(sql_out, sql_in, Arc::clone(&failure.objects)));
    let _progress = Progress::start(settings.progress, "restore", Arc::clone(&open.stored));
    let tools = Tools {
        restorer,
        archive_in,
        psql,
        forward,
    };
    let reading = Reading {
        open: &mut open,
        manifest,
        artifact,
    };
    let fed = feed(head, tools, reading, &failure).await?;
    conclude(fed, &open, manifest, artifact, &failure).await
}

/// The two tools and the forwarder between them, as feeding starts.
struct Tools {
    restorer: Running,
    archive_in: ChildStdin,
    psql: Running,
    forward: JoinHandle<std::io::Result<Forwarded>>,
}

/// The stored artifact being read, and what it is checked against.
struct Reading<'a> {
    open: &'a mut OpenArtifact,
    manifest: &'a Manifest,
    artifact: &'a Artifact,
}

/// Feeds the archive (its head, read by the preflight, first). If
/// pg_restore stops reading, keep reading (and hashing) when it finished
/// cleanly, so the COMMIT still waits on the whole artifact's checksum;
/// stop at once when it failed. An error here has already rolled back.
async fn feed(head: Vec<u8>, tools: Tools, reading: Reading<'_>, failure: &Failure) -> Result<Fed> {
    let Tools {
        restorer,
        mut archive_in,
        psql,
        forward,
    } = tools;
    let Reading {
        open,
        manifest,
        artifact,
    } = reading;
    let mut forward = Some(forward);
    let mut forwarded: Option<Forwarded> = None;
    let mut buf = vec![0u8; CHUNK];
    let mut pending = head;
    let mut restorer = Some(restorer);
    let read_error = loop {
        let n = match next_chunk(&mut pending, open, &mut buf).await {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) => break Some(e),
        };
        if forward.as_ref().is_some_and(JoinHandle::is_finished) {
            match join(forward.take()).await {
                Some(done) => forwarded = Some(done),
                // psql stopped taking SQL: an error in the target.
                None => return Err(abort(restorer, psql, None, None, failure).await),
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
                return Err(abort(restorer, psql, forward, Some(stopped), failure).await);
            }
        };
        if written.is_ok() {
            continue;
        }
        if let Some(Err(e)) = finish(restorer.take()).await {
            // psql stopping at an SQL error closes pg_restore's output, and
            // pg_restore dies of SIGPIPE: psql's error is the reason.
            if psql_stopped_first(&mut forward).await {
                return Err(abort(None, psql, None, None, failure).await);
            }
            let cause = restorer_failed(e, open, manifest, artifact).await;
            return Err(abort(None, psql, forward, Some(cause), failure).await);
        }
    };
    drop(archive_in);
    Ok(Fed {
        read_error,
        restorer,
        psql,
        forward,
        forwarded,
    })
}

/// The next chunk to feed pg_restore: what is left of the head, then the
/// rest of the artifact; 0 at its end.
async fn next_chunk(
    pending: &mut Vec<u8>,
    open: &mut OpenArtifact,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    if pending.is_empty() {
        return open.reader.read(buf).await;
    }
    let n = pending.len().min(buf.len());
    buf[..n].copy_from_slice(&pending[..n]);
    pending.drain(..n);
    Ok(n)
}
