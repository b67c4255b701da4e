//! `vertice-agent drill`: proves a backup restores. Select it, verify it
//! (a full read against the manifest, before anything is restored), restore
//! it into a throwaway target, run the checks, and always remove the target —
//! also when a step fails or a signal arrives. The run summary carries a
//! [`DrillReport`]: the measured restore time, the backup's age, each check.
//!
//! How each engine restores and checks is its own (`crate::engine`).

use chrono::Utc;
use vertice_crds::drill::{DrillChecks, DrillReport};

use super::choose_backup;
use crate::artifact::{check_identities, load_identities};
use crate::cli::DrillArgs;
use crate::engine::{DrillSettings, Drilled, Stored};
use crate::error::{Error, ErrorCategory, Result};
use crate::secret::Secret;
use crate::secret_files::resolve_password;
use crate::summary::RunSummary;

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

/// The run's settings, prepared once: everything a user can get wrong is
/// refused before the store is read. The password waits for the backup's
/// engine and its `--restore-to` check (`check_drill_target`).
fn prepare(args: &DrillArgs) -> Result<(DrillSettings, DrillChecks)> {
    if let Some(url) = &args.pushgateway_url {
        crate::report::pushgateway::validate_url(url)?;
    }
    let checks = load_checks(args)?;
    let stale_after = vertice_crds::duration::parse(&args.stale_after)
        .map_err(|e| Error::usage(format!("--stale-after: {e}")));
    let settings = DrillSettings {
        restore_to: args.restore_to.clone(),
        password: None,
        scratch_prefix: args.scratch_prefix.clone(),
        stale_after: chrono::Duration::zero(),
        with_owner: args.with_owner,
        allow_older_server: args.allow_older_server,
        pg_restore: args.pg_restore.clone(),
        psql: args.psql.clone(),
        postgres_bin: args.postgres_bin.clone(),
        bao_server: args.bao_server.clone(),
        redis_server: args.redis_server.clone(),
        kafka: super::kafka_connection(&args.kafka)?,
        progress: args.run.progress,
    };
    crate::engine::check_drill_settings(&settings)?;
    Ok((
        DrillSettings {
            stale_after: stale_after?,
            ..settings
        },
        checks,
    ))
}

async fn drill(args: &DrillArgs, summary: &mut RunSummary, report: &mut DrillReport) -> Result<()> {
    let (mut settings, checks) = prepare(args)?;
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
    let kind = manifest.source.kind;
    crate::engine::check_drill_target(kind, settings.restore_to.as_deref())?;
    // Only a restorable backup is worth restoring: a wrong key or a corrupt
    // artifact fails here, before any target exists.
    check_identities(&manifest, &artifact, identities.as_deref())?;
    if artifact.encryption.is_some() && identities.is_none() {
        return Err(Error::usage(
            "--identity is needed to drill an encrypted backup",
        ));
    }
    let backup = Stored {
        store: store.as_ref(),
        manifest: &manifest,
        artifact: &artifact,
        identities: identities.as_deref(),
    };
    let verified = backup.verify(args.run.progress).await;
    report.record(
        "verify",
        verified.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    verified?;
    tracing::info!(backup = %manifest.backup_id, "backup verified; restoring it into a throwaway target");

    if let Some(env) = crate::engine::drill_password_env(kind, settings.restore_to.as_deref()) {
        settings.password = resolve_password(args.password_file.as_ref(), env)?.map(Secret::from);
    }
    let drilled = Drilled {
        args: &settings,
        backup,
    };
    crate::engine::drill(&drilled, &checks, report).await?;
    summary.stored_bytes = Some(manifest.stored_bytes());
    summary.raw_bytes = Some(manifest.raw_bytes());
    verdict(&manifest.backup_id, report)
}

/// A drill whose checks failed fails, naming them.
fn verdict(backup_id: &str, report: &DrillReport) -> Result<()> {
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
                "backup {backup_id} restored, but {} of {} checks failed ({}): {first}",
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
