//! Restoring a parallel backup: into a staging database, by N sessions,
//! swapped into the target's place only once everything loaded (see
//! [`super::staging`]); a drill restores the same way straight into its
//! own scratch database.
//!
//! 1. pg_dump's archive, sections pre-data and data (schema, sequences,
//!    large objects, the small tables' rows), in one transaction;
//! 2. the parts, N sessions each taking the next part: `COPY … FROM
//!    STDIN`, ended only once the part's checksums matched its manifest
//!    and its row count the backup's;
//! 3. indexes and key constraints built by the N sessions side by side
//!    (heaviest table first), then the rest of post-data (foreign keys,
//!    triggers, …) by pg_restore in one transaction.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use futures::SinkExt;
use tokio::io::AsyncReadExt;

use super::{plan, post_data, staging};
use crate::artifact::{check_integrity, read_failed};
use crate::engine::common::Stored;
use crate::engine::postgres::restore::{self as single, OlderServer, PgRestoreSettings};
use crate::engine::postgres::target::PostgresTarget;
use crate::engine::postgres::{archive, connect, toc};
use crate::engine::throwaway::PrivateDir;
use crate::error::{Error, Result};
use crate::manifest::postgres::{CopyPart, PostgresFacts};
use crate::manifest::{Artifact, Manifest};

/// Where the restore goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Build a staging database and swap it in for the (empty) target.
    Replace,
    /// Straight into the database (a drill's own scratch database).
    Into,
}

/// `--pg-restore-arg`s that choose what is restored: a parallel restore
/// runs the archive's sections itself.
const SELECTING: &[&str] = &[
    "--section",
    "--use-list",
    "--table",
    "--schema",
    "--exclude-schema",
    "--index",
    "--function",
    "--trigger",
    "--data-only",
    "--schema-only",
    "--clean",
    "--create",
    "--filter",
    "--no-data",
    "--no-schema",
    "--statistics-only",
];

pub fn check_args(extra: &[String]) -> Result<()> {
    for arg in extra {
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        if SELECTING.contains(&name) {
            return Err(Error::usage(format!(
                "--pg-restore-arg {arg}: a parallel backup is restored whole ({name} cannot choose parts of it); restore it whole, then drop what is not wanted"
            )));
        }
    }
    Ok(())
}

pub async fn restore(
    settings: &PgRestoreSettings,
    backup: &Stored<'_>,
    target: &PostgresTarget,
    older: &OlderServer,
    jobs: u32,
    place: Place,
) -> Result<()> {
    let Some(facts) = &backup.manifest.source.postgres else {
        return single::restore(settings, backup, target, older).await;
    };
    check_args(&settings.extra)?;
    let parts = parts_of(backup.manifest, facts)?;
    let password = settings.password.as_ref().map(|p| p.expose().to_string());
    let password = password.as_deref();
    match place {
        Place::Into => load(settings, backup, target, older, jobs, &parts).await,
        Place::Replace => {
            let unique = staging_unique();
            let staging = staging::create(target, password, &unique).await?;
            tracing::info!(staging = %staging.name, jobs, parts = parts.len(), "parallel restore: loading into a staging database that replaces the target at the end");
            let loaded = load(settings, backup, &staging.target, older, jobs, &parts).await;
            let unchanged = |e: Error| {
                e.map_message(|m| format!("{m}; database {} was not changed", target.database))
            };
            let done = match loaded {
                // Its errors say what became of the target.
                Ok(()) if crate::interrupt::received().is_none() => {
                    staging::swap(target, password, &staging).await
                }
                Ok(()) => Err(unchanged(Error::target(
                    "interrupted before the restore was put in place",
                ))),
                Err(e) => Err(unchanged(e)),
            };
            if done.is_err() {
                staging::discard(target, password, &staging).await;
            }
            done
        }
    }
}

/// A unique suffix for the staging database (two restores of one backup
/// may run at once): random, 12 hex digits.
fn staging_unique() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each part with its artifact; a manifest naming an artifact it does not
/// list is corrupt.
fn parts_of<'a>(
    manifest: &'a Manifest,
    facts: &'a PostgresFacts,
) -> Result<Vec<(&'a CopyPart, &'a Artifact)>> {
    facts
        .parts
        .iter()
        .map(|part| {
            manifest
                .artifacts
                .iter()
                .find(|a| a.name == part.artifact)
                .map(|a| (part, a))
                .ok_or_else(|| {
                    Error::integrity(format!(
                        "backup {}: part {} is not among its artifacts",
                        manifest.backup_id, part.artifact
                    ))
                })
        })
        .collect()
}

/// The steps into `into`.
async fn load(
    settings: &PgRestoreSettings,
    backup: &Stored<'_>,
    into: &PostgresTarget,
    older: &OlderServer,
    jobs: u32,
    parts: &[(&CopyPart, &Artifact)],
) -> Result<()> {
    let section = |sections: &[&str], more: Option<String>| PgRestoreSettings {
        extra: settings
            .extra
            .iter()
            .cloned()
            .chain(sections.iter().map(|s| format!("--section={s}")))
            .chain(more)
            .collect(),
        ..settings.clone()
    };
    single::restore(&section(&["pre-data", "data"], None), backup, into, older).await?;
    let mut tasks: Vec<Task<'_>> = parts.iter().map(|(p, a)| Task::Part(p, a)).collect();
    tasks.sort_by_key(|t| std::cmp::Reverse(t.weight()));
    run_sessions(settings, backup, into, jobs, &tasks).await?;

    // Indexes and key constraints side by side, then the rest of post-data
    // (foreign keys need the keys they point at) through pg_restore.
    let entries = toc::read_verified(backup, archive::parse_entries).await?;
    let mut weights: HashMap<(String, String), u64> = HashMap::new();
    for (part, artifact) in parts {
        *weights
            .entry((part.schema.clone(), part.table.clone()))
            .or_default() += artifact.raw_bytes;
    }
    let tablespaces = !settings.extra.iter().any(|a| a == "--no-tablespaces");
    let (builds, rest) = post_data::split(&entries, &weights, tablespaces);
    let tasks: Vec<Task<'_>> = builds.iter().map(Task::Build).collect();
    run_sessions(settings, backup, into, jobs, &tasks).await?;
    let dir = PrivateDir::create(None)?;
    let list = dir.path.join("post-data.list");
    std::fs::write(&list, post_data::use_list(&rest))
        .map_err(|e| Error::target(format!("writing {}: {e}", list.display())))?;
    let use_list = format!("--use-list={}", list.display());
    single::restore(
        &section(&["post-data"], Some(use_list)),
        backup,
        into,
        older,
    )
    .await
}

/// What a restore session does: load a part, or build an index.
enum Task<'a> {
    Part(&'a CopyPart, &'a Artifact),
    Build(&'a post_data::Build),
}

impl Task<'_> {
    fn weight(&self) -> u64 {
        match self {
            Task::Part(_, artifact) => artifact.raw_bytes,
            Task::Build(build) => build.weight,
        }
    }
}

/// Runs `tasks` in order with up to `jobs` sessions; the first failure
/// stops the others.
async fn run_sessions(
    settings: &PgRestoreSettings,
    backup: &Stored<'_>,
    into: &PostgresTarget,
    jobs: u32,
    tasks: &[Task<'_>],
) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let queue = Mutex::new((0..tasks.len()).collect::<VecDeque<usize>>());
    let cancel = crate::interrupt::child_token();
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let sessions = usize::try_from(jobs).unwrap_or(1).clamp(1, tasks.len());
    let password = settings.password.as_ref().map(|p| p.expose().to_string());
    let session = |_: usize| {
        let (queue, cancel, password, first_error) =
            (&queue, cancel.clone(), password.clone(), &first_error);
        async move {
            if let Err(e) = session(into, password.as_deref(), backup, tasks, queue, &cancel).await
            {
                if let Ok(mut first) = first_error.lock() {
                    first.get_or_insert(e);
                }
                cancel.cancel();
            }
        }
    };
    // The sessions run as futures of this task: the work is the server's
    // (and decompression's, which streams in step with it).
    futures::future::join_all((0..sessions).map(session)).await;
    if let Some(e) = first_error.lock().ok().and_then(|mut f| f.take()) {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(Error::target(
            "interrupted while the restore's sessions ran",
        ));
    }
    Ok(())
}

/// One session: tasks from the queue until it is empty or another failed.
async fn session(
    into: &PostgresTarget,
    password: Option<&str>,
    backup: &Stored<'_>,
    tasks: &[Task<'_>],
    queue: &Mutex<VecDeque<usize>>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    let conn = connect::connect(&into.url, password, "--to").await?;
    conn.client
        .batch_execute(
            "SET statement_timeout = 0; SET lock_timeout = 0; SET DateStyle = ISO; \
             SET IntervalStyle = postgres; SET extra_float_digits = 3; \
             SET row_security = off; SELECT pg_catalog.set_config('search_path', '', false)",
        )
        .await
        .map_err(|e| {
            Error::target(format!(
                "preparing a restore session: {}",
                connect::reason(&e)
            ))
        })?;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let Some(index) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
            return Ok(());
        };
        let work = async {
            match &tasks[index] {
                Task::Part(part, artifact) => load_part(&conn.client, backup, part, artifact).await,
                Task::Build(build) => conn.client.batch_execute(&build.sql).await.map_err(|e| {
                    Error::target(format!("building {}: {}", build.what, connect::reason(&e)))
                }),
            }
        };
        tokio::select! {
            done = work => done?,
            () = cancel.cancelled() => {
                // Another session failed: this statement is abandoned, and
                // the whole database with it.
                conn.cancel().await;
                return Ok(());
            }
        }
    }
}

/// One part: the artifact's bytes into `COPY … FROM STDIN`, finished only
/// once the whole artifact matched its manifest and the rows their count.
async fn load_part(
    client: &tokio_postgres::Client,
    backup: &Stored<'_>,
    part: &CopyPart,
    artifact: &Artifact,
) -> Result<()> {
    let manifest = backup.manifest;
    let name = format!("{}.{}", part.schema, part.table);
    let stored = Stored {
        store: backup.store,
        manifest,
        artifact,
        identities: backup.identities,
    };
    let mut open = stored.open().await?;
    let sql = plan::copy_in(&part.schema, &part.table, &part.columns);
    let sink = client
        .copy_in::<_, Bytes>(sql.as_str())
        .await
        .map_err(|e| Error::target(format!("loading {name}: {}", connect::reason(&e))))?;
    futures::pin_mut!(sink);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match open.reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // Dropping the sink unfinished aborts the COPY.
            Err(e) => return Err(read_failed(manifest, artifact, &e)),
        };
        sink.feed(Bytes::copy_from_slice(&buf[..n]))
            .await
            .map_err(|e| Error::target(format!("loading {name}: {}", connect::reason(&e))))?;
    }
    check_integrity(manifest, artifact, &open)?;
    let rows = sink
        .as_mut()
        .finish()
        .await
        .map_err(|e| Error::target(format!("loading {name}: {}", connect::reason(&e))))?;
    if rows != part.rows {
        return Err(Error::integrity(format!(
            "backup {} part {}: {rows} rows of {name} loaded, the backup copied {}",
            manifest.backup_id, artifact.name, part.rows
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choosing_parts_of_a_parallel_backup_is_refused_by_name() {
        let err = check_args(&["--section=data".into()]).expect_err("refused");
        assert!(err.to_string().contains("--section"), "{err}");
        assert!(check_args(&["--no-owner".into(), "--no-comments".into()]).is_ok());
    }

    #[test]
    fn staging_suffixes_are_unique_per_restore() {
        let (a, b) = (staging_unique(), staging_unique());
        assert_eq!(a.len(), 12);
        assert_ne!(a, b);
    }
}
