//! `vertice-agent drill`: proves a backup restores. Select it, verify it
//! (a full read against the manifest, before anything is restored), restore
//! it into a throwaway target, run the checks, and always remove the target —
//! also when a step fails or a signal arrives. The run summary carries a
//! [`DrillReport`]: the measured restore time, the backup's age, each check.
//!
//! - PostgreSQL ([`postgres`]): a scratch database on a server the user
//!   names, created under a prefix the drill owns and dropped afterwards;
//!   or on an ephemeral server the drill starts itself
//!   ([`ephemeral_postgres`]).
//! - Redis ([`redis`]): a throwaway `redis-server` on a private socket when
//!   one is available, and a full streaming parse of the RDB in any case.
//! - Vault / OpenBao ([`vault`]): the raft snapshot's structure (archive,
//!   checksums, metadata), then, with a `bao` binary at hand, the snapshot
//!   installed into a throwaway single-node server.

mod ephemeral_postgres;
mod postgres;
mod redis;
pub mod scratch;
mod throwaway;
mod throwaway_bao;
mod vault;

use std::time::Instant;

use chrono::Utc;
use vertice_crds::drill::{DrillChecks, DrillReport};

use super::choose_backup;
use super::verify::{check_identities, load_identities, verify_artifact};
use crate::cli::DrillArgs;
use crate::error::{Error, ErrorCategory, Result};
use crate::manifest::{Artifact, Manifest, SourceKind};
use crate::pipeline::encryption::x25519;
use crate::store::Store;
use crate::summary::RunSummary;

/// What every engine's drill works from.
pub struct Drilled<'a> {
    pub args: &'a DrillArgs,
    pub store: &'a dyn Store,
    pub manifest: &'a Manifest,
    pub artifact: &'a Artifact,
    pub identities: Option<&'a [x25519::Identity]>,
}

pub async fn run(args: &DrillArgs, summary: &mut RunSummary) -> Result<String> {
    let mut report = DrillReport::default();
    let result = drill(args, summary, &mut report).await;
    summary.drill = Some(report.clone());
    result?;
    Ok(format!(
        "backup {} restored in {:.1}s and passed {} checks",
        summary.backup_id.as_deref().unwrap_or("?"),
        report.restore_seconds.unwrap_or(0.0),
        report.checks_passed
    ))
}

async fn drill(args: &DrillArgs, summary: &mut RunSummary, report: &mut DrillReport) -> Result<()> {
    // Everything a user can get wrong is refused before the store is read.
    if let Some(url) = &args.pushgateway_url {
        crate::report::pushgateway::validate_url(url)?;
    }
    let checks = load_checks(args)?;
    scratch::validate_prefix(&args.scratch_prefix).map_err(Error::usage)?;
    let stale_after = vertice_crds::duration::parse(&args.stale_after)
        .map_err(|e| Error::usage(format!("--stale-after: {e}")))?;
    let identities = load_identities(args.identity.as_deref())?;
    let (store, manifest) =
        choose_backup(&args.from, &args.backup, &args.names, &args.store, summary).await?;
    let artifact = manifest
        .artifacts
        .first()
        .ok_or_else(|| Error::integrity(format!("backup {} has no artifacts", manifest.backup_id)))?
        .clone();
    let now = Utc::now();
    report.backup_finished_at = Some(manifest.finished_at);
    report.backup_age_seconds =
        Some((now - manifest.finished_at).num_milliseconds() as f64 / 1000.0);
    match (manifest.source.kind, &args.restore_to) {
        (SourceKind::Postgres, None) => {
            return Err(Error::usage(
                "--restore-to is needed for a PostgreSQL drill: postgres://USER@HOST:PORT/postgres, a server where the drill may create and drop its scratch databases",
            ))
        }
        (SourceKind::Redis | SourceKind::Vault, Some(_)) => {
            return Err(Error::usage(format!(
                "--restore-to is for PostgreSQL drills; a {} drill restores into a throwaway target of its own",
                manifest.source.kind
            )))
        }
        _ => {}
    }
    // Only a restorable backup is worth restoring: a wrong key or a corrupt
    // artifact fails here, before any target exists.
    check_identities(&manifest, &artifact, identities.as_deref())?;
    if artifact.encryption.is_some() && identities.is_none() {
        return Err(Error::usage(
            "--identity is needed to drill an encrypted backup",
        ));
    }
    let verified = verify_artifact(
        store.as_ref(),
        &manifest,
        &artifact,
        identities.as_deref(),
        args.run.progress,
    )
    .await;
    report.record(
        "verify",
        verified.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    verified?;
    tracing::info!(backup = %manifest.backup_id, "backup verified; restoring it into a throwaway target");

    let drilled = Drilled {
        args,
        store: store.as_ref(),
        manifest: &manifest,
        artifact: &artifact,
        identities: identities.as_deref(),
    };
    match manifest.source.kind {
        SourceKind::Postgres => {
            postgres::drill(&drilled, &checks.postgres, stale_after, report).await?
        }
        SourceKind::Redis => redis::drill(&drilled, &checks.redis, report).await?,
        SourceKind::Vault => vault::drill(&drilled, report).await?,
    }
    if manifest.source.kind != SourceKind::Postgres {
        // Their throwaway directory and server are gone once the drill returns.
        report.cleaned_up = true;
    }
    summary.stored_bytes = Some(manifest.stored_bytes());
    summary.raw_bytes = Some(manifest.raw_bytes());
    if report.checks_failed > 0 {
        let first = report
            .checks
            .iter()
            .find(|c| !c.ok)
            .and_then(|c| c.detail.clone())
            .unwrap_or_default();
        return Err(Error::run(
            ErrorCategory::Check,
            format!(
                "backup {} restored, but {} of {} checks failed ({}): {first}",
                manifest.backup_id,
                report.checks_failed,
                report.checks_failed + report.checks_passed,
                report.failed_names().join(", ")
            ),
        ));
    }
    Ok(())
}

/// `--checks FILE` or `--checks-json`; none means the default checks.
fn load_checks(args: &DrillArgs) -> Result<DrillChecks> {
    if let Some(checks) = &args.checks_json {
        return Ok(checks.clone());
    }
    let Some(path) = &args.checks else {
        return Ok(DrillChecks::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("--checks {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "--checks {}: not valid checks JSON (the shape of spec.drill.checks): {e}",
            path.display()
        ))
    })
}

/// Times a restore into the report's `restore_seconds`.
pub async fn timed<T>(
    report: &mut DrillReport,
    restore: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    let result = restore.await;
    report.restore_seconds = Some(started.elapsed().as_secs_f64());
    result
}
