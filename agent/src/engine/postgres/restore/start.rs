//! Starting the two tools: pg_restore, which only turns the archive into
//! SQL, and psql, connected to the target with the agent's preamble sent.

use std::sync::{Arc, Mutex};

use super::super::dump as postgres;
use super::super::psql_text::ObjectLines;
use super::super::target::PostgresTarget;
use super::super::version::Known;
use super::older_server::OlderServer;
use super::psql_session::{session_preamble, watch_psql, write_all_and, Watch};
use super::rollback::{abort, Failure};
use super::settings::PgRestoreSettings;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::pipeline::process::Running;
use crate::pipeline::redact::Redactor;

/// pg_restore, writing SQL to its stdout: it connects to nothing.
pub(super) fn start_restorer(
    settings: &PgRestoreSettings,
    redactor: Redactor,
) -> Result<(
    Running,
    tokio::process::ChildStdin,
    tokio::process::ChildStdout,
)> {
    let mut restorer = postgres::spawn_restore(
        &settings.pg_restore,
        settings.no_owner,
        &settings.extra,
        redactor,
    )
    .map_err(|e| Error::usage(format!("--pg-restore: {e}")))?;
    let (Some(archive_in), Some(sql_out)) = (restorer.stdin.take(), restorer.take_stdout()) else {
        return Err(Error::target("pg_restore started without pipes"));
    };
    Ok((restorer, archive_in, sql_out))
}

/// psql, connected, with the agent's own session preamble (the target's
/// version check) written; a watcher on its output.
pub(super) async fn start_psql(
    settings: &PgRestoreSettings,
    manifest: &Manifest,
    target: &PostgresTarget,
    known: &Known,
    older: &OlderServer,
    redactor: &Redactor,
) -> Result<(Running, tokio::process::ChildStdin, Failure)> {
    let psql_path = settings
        .psql
        .clone()
        .unwrap_or_else(|| postgres::psql_beside(&settings.pg_restore));
    // The target's version is checked by psql itself, first thing in its
    // session (nothing waits on its answer: a wrapper that buffers psql's
    // input must not stall the restore). With --allow-older-server, psql
    // only reports it, and the watcher warns.
    let refuse_older = !settings.allow_older_server;
    let preamble = session_preamble(
        known
            .source
            .as_ref()
            .filter(|_| refuse_older)
            .map(|v| v.major),
    );
    let mut psql = postgres::spawn_psql(
        &psql_path,
        target,
        crate::secret::exposed(&settings.password),
        redactor.clone(),
    )
    .map_err(|e| Error::usage(format!("--psql: {e}")))?;
    let (Some(mut sql_in), Some(psql_out)) = (psql.stdin.take(), psql.take_stdout()) else {
        return Err(Error::target("psql started without pipes"));
    };
    let watch = Watch {
        into: settings.into,
        backup_id: manifest.backup_id.clone(),
        source: known.source.clone().filter(|_| settings.allow_older_server),
        older: older.clone(),
    };
    let failure = Failure {
        into: settings.into,
        objects: Arc::new(Mutex::new(ObjectLines::after(&preamble))),
        said: Mutex::new(Some(watch_psql(psql_out, watch))),
        older_than: known.source.clone().filter(|_| refuse_older),
        backup_id: manifest.backup_id.clone(),
    };
    if write_all_and(&mut sql_in, preamble.as_bytes())
        .await
        .is_err()
    {
        // psql already stopped (a refused connection): its error says why.
        return Err(abort(None, psql, None, None, &failure).await);
    }

    Ok((psql, sql_in, failure))
}
