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

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::verify::{check_integrity, open_artifact, read_failed, OpenArtifact};
use crate::cli::RestoreArgs;
use crate::error::{Error, ErrorCategory, Result};
use crate::manifest::{Artifact, Manifest};
use crate::pipeline::encryption::x25519;
use crate::pipeline::process::Running;
use crate::pipeline::progress::{Progress, ProgressMode};
use crate::pipeline::redact::Redactor;
use crate::source::pg_archive;
use crate::source::pg_version::{self, Known, Major, Refusal, Version};
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
/// What psql prints first: the server it reached (psql 10 and later set
/// these variables on connecting).
const SERVER_ANSWER: &str = "vertice-agent: server ";
/// What psql prints when the server is older than the backup's source.
const OLDER_SERVER: &str = "vertice-agent: older server";
/// At most this much of the archive's start is read for its header.
const HEAD_LIMIT: usize = 64 * 1024;
/// How long a stopped pg_restore's output may take to drain to psql before
/// psql's part in the failure is judged.
const PSQL_VERDICT: Duration = Duration::from_secs(5);

const NOTHING_RESTORED: &str = "the transaction was rolled back, nothing was restored";

/// Who asked for the restore: errors name that command's flag and fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreInto {
    /// `restore --to postgres://…`.
    Target,
    /// `drill --restore-to postgres://…`: a scratch database on a server
    /// the user named.
    DrillServer,
    /// `drill --restore-to ephemeral`: a server the drill started itself.
    DrillEphemeral,
}

impl RestoreInto {
    pub fn flag(self) -> &'static str {
        match self {
            RestoreInto::Target => "--to",
            RestoreInto::DrillServer | RestoreInto::DrillEphemeral => "--restore-to",
        }
    }

    fn server(self) -> &'static str {
        match self {
            RestoreInto::Target => "the target",
            RestoreInto::DrillServer => "the drill server",
            RestoreInto::DrillEphemeral => "the drill's ephemeral server",
        }
    }

    /// What to do about a role the archive names that the server lacks.
    fn missing_role_fix(self, role: &str) -> String {
        let create = format!("CREATE ROLE {} NOLOGIN", quote_ident(role));
        match self {
            RestoreInto::Target => format!(
                "the backup refers to role {role} (an owner, a grant, a policy or aclitem data), which the target does not have: create it there ({create}), or restore with --no-owner, which skips owners and grants (a policy or data naming the role still needs it)"
            ),
            RestoreInto::DrillServer => format!(
                "the backup refers to role {role} (a policy or aclitem data; owners and grants are skipped without --with-owner), which the drill server does not have: create it there ({create}), or drill with --restore-to ephemeral, which creates the backup's roles itself"
            ),
            RestoreInto::DrillEphemeral => format!(
                "the backup refers to role {role}, which neither its manifest nor its table of contents names, so the ephemeral server did not create it (a backup taken before agents recorded the source's roles, naming the role only in data): take a new backup, or drill with --restore-to postgres://… on a server that has the role"
            ),
        }
    }

    fn older_server_fix(self, source: Major) -> String {
        let anyway = "or pass --allow-older-server to try anyway (nothing commits unless every statement succeeds)";
        match self {
            RestoreInto::Target => format!("restore into PostgreSQL {source} or newer, {anyway}"),
            RestoreInto::DrillServer => {
                format!("drill on a PostgreSQL {source} or newer server, {anyway}")
            }
            RestoreInto::DrillEphemeral => format!(
                "give --postgres-bin the server binaries of PostgreSQL {source} or newer (e.g. /usr/lib/postgresql/{source}/bin), {anyway}"
            ),
        }
    }
}

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
    pub into: RestoreInto,
    /// Restore into a server of an older major than the backup's source.
    pub allow_older_server: bool,
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
            into: RestoreInto::Target,
            allow_older_server: args.allow_older_server,
        })
    }
}

/// An older server psql reached that `--allow-older-server` let through,
/// shared with the caller, which names it (the drill's report); filled as
/// soon as psql answers.
#[derive(Clone, Default)]
pub struct OlderServer(Arc<Mutex<Option<(Version, Version)>>>);

impl OlderServer {
    /// `PostgreSQL 15.8, older than the backup's 17.2 (--allow-older-server)`.
    pub fn describe(&self) -> Option<String> {
        let (source, target) = self.0.lock().ok()?.clone()?;
        Some(format!(
            "PostgreSQL {}, older than the backup's {} (--allow-older-server)",
            target.text, source.text
        ))
    }

    fn note(&self, source: &Version, target: &Version) {
        if let Ok(mut seen) = self.0.lock() {
            *seen = Some((source.clone(), target.clone()));
        }
    }
}

/// Says that an older server is being restored into: the override is the
/// user's, but whoever reads the log later must see what it let through.
fn warn_older(into: RestoreInto, backup_id: &str, source: &Version, target: &Version) {
    tracing::warn!(
        backup = %backup_id,
        "--allow-older-server: backup {backup_id} was taken from PostgreSQL {} and {} runs PostgreSQL {}, an older major; trying anyway (pg_dump wrote SQL for {}, which {} may not accept; nothing commits unless every statement succeeds)",
        source.text,
        into.server(),
        target.text,
        source.major,
        target.major,
    );
}

pub async fn restore(
    settings: &PgRestoreSettings,
    store: &dyn Store,
    manifest: &Manifest,
    artifact: &Artifact,
    ids: Option<&[x25519::Identity]>,
    target: &PostgresTarget,
    older: &OlderServer,
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
    // What can be known without the target is checked before anything
    // starts: can this pg_restore read the archive?
    let head = read_head(&mut open, manifest, artifact).await?;
    let known = Known {
        source: manifest
            .source
            .server_version
            .as_deref()
            .and_then(Version::parse),
        target: None,
        pg_restore: postgres::tool_version(&settings.pg_restore).await,
        archive: pg_archive::parse_header_prefix(&head)
            .ok()
            .flatten()
            .map(|h| {
                let pg_dump = h.pg_dump_version.as_deref().and_then(Version::parse);
                (h.archive_version, pg_dump)
            }),
    };
    if let Err(refusal) = pg_version::check(&known, settings.allow_older_server) {
        return Err(refused(&refusal, settings, manifest));
    }
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
    let mut psql = postgres::spawn_psql(&psql_path, target, password.as_deref(), redactor.clone())
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

    let mut restorer = postgres::spawn_restore(
        &settings.pg_restore,
        settings.no_owner,
        &settings.extra,
        redactor,
    )
    .map_err(|e| Error::usage(format!("--pg-restore: {e}")))?;
    let (Some(mut archive_in), Some(sql_out)) = (restorer.stdin.take(), restorer.take_stdout())
    else {
        return Err(Error::target("pg_restore started without pipes"));
    };
    let mut forward = Some(tokio::spawn(forward_sql(
        sql_out,
        sql_in,
        Arc::clone(&failure.objects),
    )));
    let mut forwarded: Option<Forwarded> = None;
    let _progress = Progress::start(settings.progress, "restore", Arc::clone(&open.stored));

    // Feed the archive (its head, read above, first). If pg_restore stops
    // reading, keep reading (and hashing) when it finished cleanly; stop at
    // once when it failed.
    let mut buf = vec![0u8; CHUNK];
    let mut pending = head;
    let mut restorer = Some(restorer);
    let read_error = loop {
        let n = if pending.is_empty() {
            match open.reader.read(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) => break Some(e),
            }
        } else {
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            pending.drain(..n);
            n
        };
        if forward.as_ref().is_some_and(JoinHandle::is_finished) {
            match join(forward.take()).await {
                Some(done) => forwarded = Some(done),
                // psql stopped taking SQL: an error in the target.
                None => return Err(abort(restorer, psql, None, None, &failure).await),
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
                return Err(abort(restorer, psql, forward, Some(stopped), &failure).await);
            }
        };
        if written.is_ok() {
            continue;
        }
        if let Some(Err(e)) = finish(restorer.take()).await {
            // psql stopping at an SQL error closes pg_restore's output, and
            // pg_restore dies of SIGPIPE: psql's error is the reason.
            if psql_stopped_first(&mut forward).await {
                return Err(abort(None, psql, None, None, &failure).await);
            }
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
                // Whether the backup or the target was at fault is unknown:
                // the store is what failed, and running again is the fix.
                Diagnosis::StoreFailed(store) => {
                    store.context(format!("pg_restore stopped ({e}) and then"))
                }
            };
            return Err(abort(None, psql, forward, Some(cause), &failure).await);
        }
    };
    drop(archive_in);
    let integrity = match read_error {
        // A store that failed midway is the store's failure, not the backup's.
        Some(e) => Err(read_failed(manifest, artifact, &e)),
        None => check_integrity(manifest, artifact, &open),
    };
    if let Err(e) = integrity {
        return Err(abort(restorer, psql, forward, Some(e), &failure).await);
    }
    if let Some(Err(e)) = finish(restorer.take()).await {
        if psql_stopped_first(&mut forward).await {
            return Err(abort(None, psql, None, None, &failure).await);
        }
        return Err(abort(None, psql, forward, Some(Error::target(e)), &failure).await);
    }
    let forwarded = match forwarded {
        Some(f) => f,
        None => match join(forward.take()).await {
            Some(f) => f,
            None => return Err(abort(None, psql, None, None, &failure).await),
        },
    };
    commit(forwarded, psql, &failure).await
}

/// The start of the archive, enough for its header (fed to pg_restore
/// first). Short or not an archive: pg_restore and the checksums say so.
async fn read_head(
    open: &mut OpenArtifact,
    manifest: &Manifest,
    artifact: &Artifact,
) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    while head.len() < HEAD_LIMIT {
        let n = open
            .reader
            .read(&mut buf)
            .await
            .map_err(|e| read_failed(manifest, artifact, &e))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if !matches!(pg_archive::parse_header_prefix(&head), Ok(None)) {
            break;
        }
    }
    Ok(head)
}

/// psql's first line (see [`session_preamble`]): `<server_version_num>
/// <server_version>`;
/// `None` from a psql that does not set the variables (before 10).
fn parse_server_answer(line: &str) -> Option<Version> {
    let rest = line.strip_prefix(SERVER_ANSWER)?;
    let (num, text) = rest.split_once(' ')?;
    Some(Version {
        major: Major::from_num(num.parse().ok()?),
        text: text.trim().to_string(),
    })
}

/// A refusal before anything started, naming both versions and the flag.
fn refused(refusal: &Refusal, settings: &PgRestoreSettings, manifest: &Manifest) -> Error {
    let id = &manifest.backup_id;
    match refusal {
        Refusal::Unreadable {
            pg_restore,
            archive,
            pg_dump,
            needed,
        } => Error::usage(format!(
            "--pg-restore {}: pg_restore {} cannot read backup {id}: its archive (format {}.{}) was written by pg_dump {} and needs pg_restore {needed} or newer; give --pg-restore the path of one (e.g. /usr/lib/postgresql/{needed}/bin/pg_restore); nothing was restored",
            settings.pg_restore.display(),
            pg_restore.text,
            archive.0,
            archive.1,
            pg_dump.as_ref().map_or("(unknown)", |v| v.text.as_str()),
        )),
        Refusal::OlderTarget { source, target } => {
            older_refusal(settings.into, id, source, target)
        }
    }
}

/// A server older than the backup's source, naming both versions.
fn older_refusal(into: RestoreInto, id: &str, source: &Version, target: &Version) -> Error {
    Error::usage(format!(
        "{}: backup {id} was taken from PostgreSQL {} and {} runs PostgreSQL {}; restoring into an older major is refused (pg_dump wrote SQL for {}, which {} may not accept): {}; nothing was restored",
        into.flag(),
        source.text,
        into.server(),
        target.text,
        source.major,
        target.major,
        into.older_server_fix(source.major),
    ))
}

async fn finish(restorer: Option<Running>) -> Option<std::result::Result<(), String>> {
    match restorer {
        Some(running) => Some(running.wait().await),
        None => None,
    }
}

/// Whether psql stopped taking SQL (the forwarder's write failed): then
/// pg_restore's failure is only its consequence. Waits a moment for the
/// forwarder, which ends once pg_restore's output is closed.
async fn psql_stopped_first(forward: &mut Option<JoinHandle<std::io::Result<Forwarded>>>) -> bool {
    let Some(handle) = forward.as_mut() else {
        return false;
    };
    match tokio::time::timeout(PSQL_VERDICT, handle).await {
        Ok(Ok(Err(_))) => {
            *forward = None;
            true
        }
        Ok(_) => {
            *forward = None;
            false
        }
        // Still writing: psql is alive and reading (slowly).
        Err(_) => false,
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
    /// The store failed while the rest was read: nothing is known.
    StoreFailed(Error),
}

async fn diagnose(open: &mut OpenArtifact, manifest: &Manifest, artifact: &Artifact) -> Diagnosis {
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
                return match read_failed(manifest, artifact, &e) {
                    store if store.category() == ErrorCategory::Store => {
                        Diagnosis::StoreFailed(store)
                    }
                    corrupt => Diagnosis::Corrupt(corrupt.to_string()),
                }
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
/// What goes out is noted in `objects`.
async fn forward_sql(
    mut from: impl AsyncRead + Unpin,
    mut sql_in: tokio::process::ChildStdin,
    objects: Arc<Mutex<ObjectLines>>,
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
            if let Ok(mut objects) = objects.lock() {
                objects.feed(&held[..release]);
            }
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
async fn commit(forwarded: Forwarded, psql: Running, failure: &Failure) -> Result<()> {
    let Forwarded { mut sql_in, held } = forwarded;
    let Some(at) = find_last(&held, COMMIT) else {
        let unexpected =
            Error::target("pg_restore's SQL did not end its transaction with COMMIT as expected");
        return Err(abort(None, psql, None, Some(unexpected), failure).await);
    };
    let mut rest = held[..at].to_vec();
    rest.extend_from_slice(&held[at + COMMIT.len()..]);
    if let Ok(mut objects) = failure.objects.lock() {
        objects.feed(&rest);
        objects.mark("the final COMMIT");
    }
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
    let said = failure.said().await;
    if said.older_server {
        return Err(failure.older_server(&said));
    }
    match (status, said.committed) {
        (_, true) => Ok(()),
        (Ok(()), false) => Err(Error::target(format!(
            "psql ended without confirming the COMMIT{}; {NOTHING_RESTORED}",
            if sent.is_err() {
                " (it stopped reading)"
            } else {
                ""
            }
        ))),
        (Err(e), false) => Err(failure.judge_psql(e)),
    }
}

async fn write_all_and(to: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> std::io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

/// The first lines psql is sent: the server's version, and, when the
/// backup's source major is known (and no `--allow-older-server`), a check
/// that quits before any of pg_restore's SQL runs on an older server.
fn session_preamble(older_than: Option<Major>) -> String {
    let mut preamble = format!("\\echo {SERVER_ANSWER}:SERVER_VERSION_NUM :SERVER_VERSION_NAME\n");
    if let Some(major) = older_than {
        preamble.push_str(&format!(
            "SELECT pg_catalog.current_setting('server_version_num')::int >= {} AS vertice_agent_new_enough \\gset\n\\if :vertice_agent_new_enough\n\\else\n\\echo {OLDER_SERVER}\n\\quit\n\\endif\n",
            major.min_num()
        ));
    }
    preamble
}

/// What psql printed on its stdout (nothing but `\echo` output goes
/// there): the server it reached, whether it refused it as older, whether
/// the agent's COMMIT succeeded.
#[derive(Debug, Default)]
struct PsqlSaid {
    server: Option<Version>,
    older_server: bool,
    committed: bool,
}

/// What the watcher of psql's output compares the server it reached with,
/// when `--allow-older-server` let an older one through.
struct Watch {
    into: RestoreInto,
    backup_id: String,
    /// The backup's source version, when older servers are allowed.
    source: Option<Version>,
    older: OlderServer,
}

impl Watch {
    fn reached(&self, server: &Version) {
        if let Some(source) = self.source.as_ref().filter(|s| server.major < s.major) {
            warn_older(self.into, &self.backup_id, source, server);
            self.older.note(source, server);
        }
    }
}

fn watch_psql(stdout: tokio::process::ChildStdout, watch: Watch) -> JoinHandle<PsqlSaid> {
    tokio::spawn(async move {
        let mut said = PsqlSaid::default();
        let mut stdout = stdout;
        let mut first_line = true;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if first_line {
                if let Some(end) = seen.iter().position(|&b| b == b'\n') {
                    said.server = parse_server_answer(&String::from_utf8_lossy(&seen[..end]));
                    if let Some(server) = &said.server {
                        watch.reached(server);
                    }
                    seen.drain(..=end);
                    first_line = false;
                }
            }
            said.older_server |= find_last(&seen, OLDER_SERVER.as_bytes()).is_some();
            if seen.len() > 8192 {
                seen.drain(..seen.len() - 4096);
            }
        }
        said.older_server |= find_last(&seen, OLDER_SERVER.as_bytes()).is_some();
        said.committed = find_last(&seen, COMMITTED_MARKER.as_bytes()).is_some();
        said
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
    failure: &Failure,
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
            // Its output is closed now: the watcher ends, having noted the
            // server psql reached for the caller.
            let _ = tokio::time::timeout(PSQL_VERDICT, failure.said()).await;
            e.map_message(|m| format!("{m}; psql was stopped before COMMIT, {NOTHING_RESTORED}"))
        }
        None => {
            let reason = psql.wait().await.err();
            let said = failure.said().await;
            if said.older_server {
                return failure.older_server(&said);
            }
            failure.psql_error(&reason.unwrap_or_else(|| "psql stopped early".into()))
        }
    }
}

/// What a failed restore is reported with: who asked (the flag and fixes
/// to name) and where in the SQL psql was.
struct Failure {
    into: RestoreInto,
    objects: Arc<Mutex<ObjectLines>>,
    /// What psql printed, read once psql is gone.
    said: Mutex<Option<JoinHandle<PsqlSaid>>>,
    /// The backup's source version, when psql checks the server against it.
    older_than: Option<Version>,
    backup_id: String,
}

impl Failure {
    async fn said(&self) -> PsqlSaid {
        let watcher = self.said.lock().ok().and_then(|mut w| w.take());
        match watcher {
            Some(watcher) => watcher.await.unwrap_or_default(),
            None => PsqlSaid::default(),
        }
    }

    /// psql quit on an older server before any of the backup's SQL ran.
    fn older_server(&self, said: &PsqlSaid) -> Error {
        let source = self.older_than.clone().unwrap_or(Version {
            major: Major(0, 0),
            text: "(unknown)".into(),
        });
        let target = said.server.clone().unwrap_or(Version {
            major: Major(0, 0),
            text: "an older major".into(),
        });
        older_refusal(self.into, &self.backup_id, &source, &target)
    }

    /// psql failed and never confirmed the COMMIT: with ON_ERROR_STOP (exit
    /// 3) or a failed connection the transaction cannot have committed; a
    /// connection lost later may have been lost during the COMMIT itself.
    fn judge_psql(&self, e: String) -> Error {
        let never_connected = e.contains("connection to server") && e.contains("failed:");
        if e.contains("exit code 3") || never_connected || sql_error_line(&e).is_some() {
            self.psql_error(&e)
        } else {
            Error::target(format!(
                "{}; the connection ended while committing: the restore may or may not have committed, check the target",
                redact_passwords(&e)
            ))
        }
    }

    /// psql stopped the restore: its own error, the object it was
    /// restoring, and the fix for a role the server lacks or a part of the
    /// URL that is wrong.
    fn psql_error(&self, reason: &str) -> Error {
        let flag = self.into.flag();
        // Only psql's own error lines: its `LINE n:` echo and a CONTEXT or
        // QUERY can quote the statement, and a statement can hold a secret
        // (`CREATE SUBSCRIPTION … CONNECTION '… password=…'`).
        let reason = &redact_passwords(&error_lines(reason));
        if let Some(line) = sql_error_line(reason) {
            let object = self.objects.lock().ok().and_then(|o| o.object_at(line));
            let at = object.map(|o| format!(" at {o}")).unwrap_or_default();
            return match missing_role(reason) {
                Some(role) => Error::usage(format!(
                    "{flag}: psql stopped{at}: {reason}; {}; {NOTHING_RESTORED}",
                    self.into.missing_role_fix(role)
                )),
                None => Error::target(format!("psql stopped{at}: {reason}; {NOTHING_RESTORED}")),
            };
        }
        match postgres::missing_object(reason) {
            Some(fix) => Error::usage(format!("{flag}: {reason}; {fix}; {NOTHING_RESTORED}")),
            None => Error::target(format!("{reason}; {NOTHING_RESTORED}")),
        }
    }
}

/// The line of psql's input an SQL error is reported at
/// (`psql:<stdin>:57: ERROR:  …`); `None` for connection errors.
fn sql_error_line(message: &str) -> Option<u64> {
    const AT: &str = "psql:<stdin>:";
    message.match_indices(AT).find_map(|(i, _)| {
        let rest = &message[i + AT.len()..];
        let (line, rest) = rest.split_once(':')?;
        rest.trim_start()
            .starts_with("ERROR:")
            .then(|| line.parse().ok())
            .flatten()
    })
}

/// psql's failure (`psql failed (exit code 3): <stderr lines joined by
/// " | ">`) with only the lines psql itself wrote (`psql:<stdin>:57:
/// ERROR:  …`, `psql: error: …`): the rest (`LINE 1: …`, the caret,
/// `DETAIL`, `CONTEXT`, `QUERY`) can echo SQL and the data in it, and the
/// error names the object already. Without such a line, the whole.
fn error_lines(reason: &str) -> String {
    let Some(at) = reason.find("psql:") else {
        return reason.to_string();
    };
    let (head, rest) = reason.split_at(at);
    let kept: Vec<&str> = rest
        .split(" | ")
        .filter(|part| part.starts_with("psql:"))
        .collect();
    format!("{head}{}", kept.join(" | "))
}

/// `password=…` (a connection string) and `password '…'` (an option or a
/// role's password) with the value replaced: a belt under [`error_lines`],
/// for an error message that quotes one itself.
fn redact_passwords(text: &str) -> String {
    const WORD: &str = "password";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(WORD) {
        let start = from + found;
        let mut at = start + WORD.len();
        from = at;
        // Part of a longer name (`password_hash`, `passwords`): not one.
        if bytes
            .get(at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            continue;
        }
        // A quoted option name: `"password" '…'`.
        if bytes.get(at) == Some(&b'"') {
            at += 1;
        }
        let skip_spaces = |mut i: usize| {
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            i
        };
        at = skip_spaces(at);
        let value_start = match bytes.get(at) {
            Some(b'=') => skip_spaces(at + 1),
            Some(b'\'') => at,
            _ => continue,
        };
        let (secret, end) = match bytes.get(value_start) {
            // Quoted: up to the closing quote (as many quotes as opened
            // it, for a conninfo value quoted inside an SQL literal).
            Some(b'\'') => {
                let quotes = bytes[value_start..]
                    .iter()
                    .take_while(|b| **b == b'\'')
                    .count();
                let inner = value_start + quotes;
                match text[inner..].find(&"'".repeat(quotes)) {
                    Some(i) => (inner..inner + i, inner + i + quotes),
                    None => (inner..text.len(), text.len()),
                }
            }
            _ => {
                let end = bytes[value_start..]
                    .iter()
                    .position(|b| {
                        b.is_ascii_whitespace() || matches!(b, b'\'' | b'"' | b')' | b',')
                    })
                    .map_or(text.len(), |i| value_start + i);
                (value_start..end, end)
            }
        };
        if secret.is_empty() {
            continue;
        }
        out.push_str(&text[copied..secret.start]);
        out.push_str("***");
        copied = secret.end;
        from = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The role of `ERROR:  role "app_role" does not exist`.
fn missing_role(message: &str) -> Option<&str> {
    let start = message.find("ERROR:  role \"")? + "ERROR:  role \"".len();
    let len = message[start..].find("\" does not exist")?;
    Some(&message[start..start + len])
}

/// `"name"` with inner quotes doubled, for a statement a message suggests.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where each object's SQL starts in what psql was sent, so that psql's
/// `psql:<stdin>:LINE: ERROR` names the object: pg_restore writes a
/// `-- Name: orders; Type: TABLE; Schema: public; Owner: app` comment before
/// each. Only recent ones are kept: psql reads at most a pipe's worth
/// behind what was sent.
struct ObjectLines {
    /// Lines sent so far.
    lines: u64,
    /// The start of the line being sent.
    current: Vec<u8>,
    recent: VecDeque<(u64, String)>,
}

const KEPT_OBJECTS: usize = 4096;
const KEPT_LINE: usize = 512;

impl ObjectLines {
    /// Counting starts after what was sent before pg_restore's SQL.
    fn after(sent: &str) -> Self {
        ObjectLines {
            lines: sent.matches('\n').count() as u64,
            current: Vec::new(),
            recent: VecDeque::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..end]);
            self.lines += 1;
            if let Some(object) = object_of(&self.current) {
                self.remember(self.lines, object);
            }
            self.current.clear();
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
    }

    /// Names the next line sent (the agent's own statements).
    fn mark(&mut self, what: &str) {
        self.remember(self.lines + 1, what.to_string());
    }

    fn keep(&mut self, part: &[u8]) {
        let room = KEPT_LINE.saturating_sub(self.current.len());
        self.current
            .extend_from_slice(&part[..part.len().min(room)]);
    }

    fn remember(&mut self, line: u64, object: String) {
        if self.recent.len() == KEPT_OBJECTS {
            self.recent.pop_front();
        }
        self.recent.push_back((line, object));
    }

    /// The object whose SQL holds `line`.
    fn object_at(&self, line: u64) -> Option<String> {
        self.recent
            .iter()
            .rev()
            .find(|(start, _)| *start <= line)
            .map(|(_, object)| object.clone())
    }
}

/// `TABLE public.orders` from pg_restore's `-- Name: orders; Type: TABLE;
/// Schema: public; Owner: app` (or `-- Data for Name: …`).
fn object_of(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let rest = text
        .strip_prefix("-- Name: ")
        .or_else(|| text.strip_prefix("-- Data for Name: "))?;
    let mut fields = rest.split("; ");
    let name = fields.next()?;
    let mut kind = None;
    let mut schema = None;
    for field in fields {
        if let Some(v) = field.strip_prefix("Type: ") {
            kind = Some(v);
        } else if let Some(v) = field.strip_prefix("Schema: ") {
            schema = Some(v);
        }
    }
    Some(match schema {
        Some(s) if s != "-" => format!("{} {s}.{name}", kind?),
        _ => format!("{} {name}", kind?),
    })
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

    fn failure(into: RestoreInto, objects: Arc<Mutex<ObjectLines>>) -> Failure {
        Failure {
            into,
            objects,
            said: Mutex::new(None),
            older_than: None,
            backup_id: "20261127T060000Z-1a2b".into(),
        }
    }

    #[test]
    fn psql_s_error_names_the_object_it_stopped_at() {
        let mut objects = ObjectLines::after(&session_preamble(None));
        objects.feed(b"--\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n--\n\nCREATE TABLE public.t (v int);\n\n--\n-- Data for Name: t; Type: TABLE DATA; Schema: pub");
        objects.feed(b"lic; Owner: app\n--\n\nCOPY public.t (v) FROM stdin;\n1\n");
        assert_eq!(objects.object_at(6).as_deref(), Some("TABLE public.t"));
        assert_eq!(
            objects.object_at(12).as_deref(),
            Some("TABLE DATA public.t")
        );
        assert_eq!(objects.object_at(1), None, "the agent's own first line");
        objects.mark("the final COMMIT");
        assert_eq!(objects.object_at(15).as_deref(), Some("the final COMMIT"));
        assert_eq!(
            object_of(b"-- Name: EXTENSION pgcrypto; Type: COMMENT; Schema: -; Owner: "),
            Some("COMMENT EXTENSION pgcrypto".into())
        );

        let failure = failure(RestoreInto::Target, Arc::new(Mutex::new(objects)));
        let reason =
            "psql failed (exit code 3): psql:<stdin>:6: ERROR:  relation \"t\" already exists";
        assert_eq!(sql_error_line(reason), Some(6));
        let e = failure.judge_psql(reason.to_string()).to_string();
        assert!(
            e.starts_with("psql stopped at TABLE public.t: psql failed (exit code 3): psql:<stdin>:6: ERROR:  relation \"t\" already exists; the transaction was rolled back"),
            "{e}"
        );
    }

    #[test]
    fn psql_s_error_keeps_its_own_lines_and_no_secret() {
        let mut objects = ObjectLines::after("");
        objects.feed(b"--\n-- Name: s; Type: SUBSCRIPTION; Schema: -; Owner: app\n--\n\nCREATE SUBSCRIPTION s CONNECTION 'host=pub password=hunter2 dbname=app' PUBLICATION p;\n");
        objects.feed(b"--\n-- Name: USER MAPPING app SERVER files; Type: USER MAPPING; Schema: -; Owner: app\n--\n\nCREATE USER MAPPING FOR app SERVER files OPTIONS (user 'app', password 'hunter 2');\n");
        let failure = failure(RestoreInto::Target, Arc::new(Mutex::new(objects)));
        for (reason, object) in [
            (
                "psql failed (exit code 3): psql:<stdin>:5: ERROR:  could not connect to the publisher: connection to server at \"pub\" failed: FATAL:  password authentication failed for user \"app\" | LINE 1: CREATE SUBSCRIPTION s CONNECTION 'host=pub password=hunter2 dbname=app' PUBLICATION p; |                                                                      ^",
                "at SUBSCRIPTION s:",
            ),
            (
                "psql failed (exit code 3): psql:<stdin>:10: ERROR:  server \"files\" does not exist | LINE 1: CREATE USER MAPPING FOR app SERVER files OPTIONS (user 'app', password 'hunter 2'); | ^ | CONTEXT:  SQL statement \"ALTER USER MAPPING FOR app SERVER files OPTIONS (password 'hunter 2')\"",
                "at USER MAPPING USER MAPPING app SERVER files:",
            ),
        ] {
            let e = failure.judge_psql(reason.to_string());
            assert_eq!(e.category(), ErrorCategory::Target);
            let e = e.to_string();
            assert!(e.contains(object) && e.contains("ERROR:  "), "{e}");
            assert!(e.ends_with(NOTHING_RESTORED), "{e}");
            for echoed in ["hunter", "LINE 1", "CONTEXT", "CREATE "] {
                assert!(!e.contains(echoed), "{echoed}: {e}");
            }
        }
        // A connection lost while committing says what psql said, minus secrets.
        let e = failure
            .judge_psql(
                "psql failed (exit code 2): server closed the connection; password=hunter2".into(),
            )
            .to_string();
        assert!(e.contains("password=***") && !e.contains("hunter"), "{e}");
    }

    #[test]
    fn passwords_in_text_are_redacted() {
        for (text, redacted) in [
            (
                "host=db password=hunter2 dbname=x",
                "host=db password=*** dbname=x",
            ),
            (
                "OPTIONS (user 'a', password 'hun ter')",
                "OPTIONS (user 'a', password '***')",
            ),
            (
                "ROLE r ENCRYPTED PASSWORD 'x'",
                "ROLE r ENCRYPTED PASSWORD '***'",
            ),
            ("OPTIONS (\"password\" 'x')", "OPTIONS (\"password\" '***')"),
            (
                "CONNECTION 'password=''a b'' host=h'",
                "CONNECTION 'password=''***'' host=h'",
            ),
            (
                "password = 'x', password=y",
                "password = '***', password=***",
            ),
            ("password 'unterminated", "password '***"),
        ] {
            assert_eq!(redact_passwords(text), redacted, "{text}");
        }
        for kept in [
            "password authentication failed for user \"bob\"",
            "column password_hash = 'abc'",
            "password=",
            "no passwords here",
        ] {
            assert_eq!(redact_passwords(kept), kept);
        }
        assert_eq!(
            error_lines("psql failed (exit code 3): psql:<stdin>:5: ERROR:  x | LINE 1: y | ^ | psql:<stdin>:6: error: z"),
            "psql failed (exit code 3): psql:<stdin>:5: ERROR:  x | psql:<stdin>:6: error: z"
        );
        assert_eq!(
            error_lines("psql failed (exit code 2)"),
            "psql failed (exit code 2)"
        );
    }

    #[test]
    fn a_missing_role_in_the_sql_is_not_the_url_s_user() {
        let objects = Arc::new(Mutex::new(ObjectLines::after("")));
        let sql =
            "psql failed (exit code 3): psql:<stdin>:40: ERROR:  role \"app_role\" does not exist";
        assert_eq!(missing_role(sql), Some("app_role"));
        for (into, flag, fix) in [
            (RestoreInto::Target, "--to:", "--no-owner"),
            (
                RestoreInto::DrillServer,
                "--restore-to:",
                "--restore-to ephemeral",
            ),
            (
                RestoreInto::DrillEphemeral,
                "--restore-to:",
                "take a new backup",
            ),
        ] {
            let failure = failure(into, Arc::clone(&objects));
            let e = failure.psql_error(sql);
            assert_eq!(e.exit_code(), 2);
            let e = e.to_string();
            assert!(e.starts_with(flag) && e.contains(fix), "{e}");
            assert!(!e.contains("URL"), "{e}");
        }
        // The connection's own user is the URL's.
        let failure = failure(RestoreInto::DrillServer, objects);
        let e = failure
            .psql_error("psql: error: connection to server at \"db\" (10.0.0.1), port 5432 failed: FATAL:  role \"bob\" does not exist")
            .to_string();
        assert!(e.starts_with("--restore-to:") && e.contains("USER@"), "{e}");
    }

    #[test]
    fn psql_checks_the_server_before_any_of_the_backup_s_sql() {
        assert_eq!(
            session_preamble(None),
            "\\echo vertice-agent: server :SERVER_VERSION_NUM :SERVER_VERSION_NAME\n"
        );
        let checked = session_preamble(Some(Major(17, 0)));
        assert!(
            checked.contains(">= 170000 AS vertice_agent_new_enough \\gset\n\\if :vertice_agent_new_enough\n\\else\n\\echo vertice-agent: older server\n\\quit\n\\endif\n"),
            "{checked}"
        );
        assert!(session_preamble(Some(Major(9, 6))).contains(">= 90600 "));
    }

    #[test]
    fn the_server_answer_reads_its_version() {
        assert_eq!(
            parse_server_answer("vertice-agent: server 150018 15.18 (Debian 15.18-0+deb12u1)"),
            Some(Version {
                major: Major(15, 0),
                text: "15.18 (Debian 15.18-0+deb12u1)".into()
            })
        );
        assert_eq!(
            parse_server_answer("vertice-agent: server :SERVER_VERSION_NUM :SERVER_VERSION_NAME"),
            None
        );
    }

    #[test]
    fn finds_the_final_commit() {
        let sql = b"BEGIN;\nCOMMIT;\nx\nCOMMIT;\n\n-- Completed on\n";
        assert_eq!(find_last(sql, COMMIT), Some(17));
        assert_eq!(find_last(b"BEGIN;\n", COMMIT), None);
    }
}
