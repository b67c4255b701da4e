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
//! 3. the archive's post-data (indexes, constraints, triggers), in one
//!    transaction.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use futures::SinkExt;
use tokio::io::AsyncReadExt;

use super::plan;
use super::staging;
use crate::artifact::{check_integrity, read_failed};
use crate::engine::common::Stored;
use crate::engine::postgres::connect;
use crate::engine::postgres::restore::{self as single, OlderServer, PgRestoreSettings};
use crate::engine::postgres::target::PostgresTarget;
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
            let done = match loaded {
                Ok(()) if crate::interrupt::received().is_none() => {
                    staging::swap(target, password, &staging).await
                }
                Ok(()) => Err(Error::target(
                    "interrupted before the restore was put in place",
                )),
                Err(e) => Err(e),
            };
            if done.is_err() {
                staging::discard(target, password, &staging).await;
            }
            done.map_err(|e| {
                e.map_message(|m| format!("{m}; database {} was not changed", target.database))
            })
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

/// The three steps into `into`.
async fn load(
    settings: &PgRestoreSettings,
    backup: &Stored<'_>,
    into: &PostgresTarget,
    older: &OlderServer,
    jobs: u32,
    parts: &[(&CopyPart, &Artifact)],
) -> Result<()> {
    let section = |sections: &[&str]| PgRestoreSettings {
        extra: settings
            .extra
            .iter()
            .cloned()
            .chain(sections.iter().map(|s| format!("--section={s}")))
            .collect(),
        ..settings.clone()
    };
    single::restore(&section(&["pre-data", "data"]), backup, into, older).await?;
    load_parts(settings, backup, into, jobs, parts).await?;
    single::restore(&section(&["post-data"]), backup, into, older).await
}

/// Loads the parts with `jobs` sessions, largest first.
async fn load_parts(
    settings: &PgRestoreSettings,
    backup: &Stored<'_>,
    into: &PostgresTarget,
    jobs: u32,
    parts: &[(&CopyPart, &Artifact)],
) -> Result<()> {
    if parts.is_empty() {
        return Ok(());
    }
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|a, b| parts[*b].1.stored_bytes.cmp(&parts[*a].1.stored_bytes));
    let queue = Mutex::new(order.into_iter().collect::<VecDeque<usize>>());
    let cancel = crate::interrupt::child_token();
    let sessions = usize::try_from(jobs).unwrap_or(1).clamp(1, parts.len());
    let password = settings.password.as_ref().map(|p| p.expose().to_string());
    let session = |_: usize| {
        let (queue, cancel, password) = (&queue, cancel.clone(), password.clone());
        async move {
            let result = session(into, password.as_deref(), backup, parts, queue, &cancel).await;
            if result.is_err() {
                cancel.cancel();
            }
            result
        }
    };
    // The sessions run as futures of this task: the work is the server's
    // (and decompression's, which streams in step with it).
    let results = futures::future::join_all((0..sessions).map(session)).await;
    let mut errors = results.into_iter().filter_map(std::result::Result::err);
    match errors.next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// One session: parts from the queue until it is empty or another failed.
async fn session(
    into: &PostgresTarget,
    password: Option<&str>,
    backup: &Stored<'_>,
    parts: &[(&CopyPart, &Artifact)],
    queue: &Mutex<VecDeque<usize>>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    let conn = connect::connect(&into.url, password, "--to").await?;
    conn.client
        .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0; SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SET synchronous_commit = off; SET row_security = off")
        .await
        .map_err(|e| Error::target(format!("preparing a restore session: {}", connect::reason(&e))))?;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let Some(index) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
            return Ok(());
        };
        let (part, artifact) = parts[index];
        tokio::select! {
            loaded = load_part(&conn.client, backup, part, artifact) => loaded?,
            () = cancel.cancelled() => {
                // Another session failed: this COPY is abandoned, and the
                // whole database with it.
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
