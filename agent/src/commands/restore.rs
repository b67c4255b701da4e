//! `vertice-agent restore`: store → SHA-256 → decompress → target, where the
//! target never sees a backup whose checksum fails. How each engine writes
//! into its target is its own (`crate::engine`): PostgreSQL's agent-sent
//! COMMIT, Redis' file or staged live restore, Vault's snapshot install.

use super::choose_backup;
use crate::artifact::{check_identities, load_identities};
use crate::cli::RestoreArgs;
use crate::engine::{RestoreSettings, Stored, Target};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::secret::Secret;
use crate::secret_files::resolve_password;
use crate::summary::RunSummary;

/// The run's settings, prepared once from the command line. The password
/// is read later, once the backup's kind matched `--to`.
fn prepare(args: &RestoreArgs) -> Result<(Target, RestoreSettings)> {
    let target = Target::parse_as(&args.to, "--to", args.target_kind.map(Into::into))?;
    let settings = args.engine_settings(&target)?;
    Ok((target, settings))
}

pub async fn run(args: &RestoreArgs, summary: &mut RunSummary) -> Result<Manifest> {
    let (target, mut settings) = prepare(args)?;
    let identities = load_identities(args.identity.as_deref())?;
    let ids = identities.as_deref();
    let (store, manifest) =
        choose_backup(&args.from, &args.backup, &args.names, &args.store, summary).await?;
    let artifact = manifest
        .artifacts
        .first()
        .ok_or_else(|| Error::target(format!("backup {} has no artifacts", manifest.backup_id)))?
        .clone();
    // A missing or wrong key is found out before the target is touched.
    check_identities(&manifest, &artifact, ids)?;
    // A backup of another engine is refused before any password is read.
    target.check_kind(&manifest)?;
    if let Some(env) = target.password_env() {
        settings.password = resolve_password(args.password_file.as_ref(), env)?.map(Secret::from);
    }
    tracing::info!(backup = %manifest.backup_id, artifact = %artifact.name, "restore started");
    let backup = Stored {
        store: store.as_ref(),
        manifest: &manifest,
        artifact: &artifact,
        identities: ids,
    };
    target.restore(&backup, &settings).await?;
    summary.stored_bytes = Some(manifest.stored_bytes());
    summary.raw_bytes = Some(manifest.raw_bytes());
    tracing::info!(backup = %manifest.backup_id, "restore complete");
    Ok(manifest)
}
