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
use crate::engine::{DrillSettings, Drilled, RestoreTo, Stored};
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

/// The run's settings, prepared once by [`prepare`].
struct Prepared {
    settings: DrillSettings,
    /// `--restore-to`, parsed once; which engine may use it is known once
    /// the backup is chosen.
    restore_to: Option<RestoreTo>,
    checks: DrillChecks,
}

/// Everything a user can get wrong is refused here, before the store is
/// read. The password waits for the backup's engine and its `--restore-to`
/// check (`engine::drill_target`).
fn prepare(args: &DrillArgs) -> Result<Prepared> {
    if let Some(url) = &args.pushgateway_url {
        crate::report::pushgateway::validate_url(url)?;
    }
    let checks = load_checks(args)?;
    let settings = args.engine_settings()?;
    let restore_to = args
        .restore_to
        .as_deref()
        .map(RestoreTo::parse)
        .transpose()?;
    Ok(Prepared {
        settings,
        restore_to,
        checks,
    })
}

async fn drill(args: &DrillArgs, summary: &mut RunSummary, report: &mut DrillReport) -> Result<()> {
    let Prepared {
        mut settings,
        restore_to,
        checks,
    } = prepare(args)?;
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
    let target = crate::engine::drill_target(manifest.source.kind, restore_to)?;
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

    if let Some(env) = target.password_env() {
        settings.password = resolve_password(args.password_file.as_ref(), env)?.map(Secret::from);
    }
    let drilled = Drilled {
        args: &settings,
        backup,
    };
    crate::engine::drill(&drilled, &target, &checks, report).await?;
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
