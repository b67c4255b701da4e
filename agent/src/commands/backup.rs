//! `vertice-agent backup`: source → meter → compress → meter → store, then
//! the manifest, last. The engine (`crate::engine`) supplies the stream and
//! what the manifest says of its source; this file only assembles.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::backup_parts::{Parts, Seal};
use super::store_from_args;
use crate::backup_id::BackupId;
use crate::cli::BackupArgs;
use crate::engine::{BackupSettings, BackupStream, Target};
use crate::error::{Error, ErrorCategory, Result};
use crate::interrupt::Interruptible;
use crate::manifest::{backup_dir, Manifest, MANIFEST_FILE};
use crate::names::validate_name;
use crate::pipeline::codec::{validate_level, BoxRead};
use crate::pipeline::encryption;
use crate::pipeline::meter::Meter;
use crate::pipeline::progress::Progress;
use crate::pipeline::redact::Redactor;
use crate::store::{Store, StoreError};
use crate::summary::RunSummary;

/// Enough of the stream's head for its engine to read a header there
/// (a pg_dump archive's).
const HEAD_BYTES: usize = 4096;
/// How far the source may run ahead of compression.
const READ_AHEAD: usize = 2 << 20;

/// The run's settings, prepared once from the command line: the target
/// parsed, the series named, the password resolved.
struct Prepared {
    target: Target,
    namespace: String,
    name: String,
    engine: BackupSettings,
    recipients: Vec<encryption::x25519::Recipient>,
    /// The retention policy to apply after a successful backup, if any.
    retention: Option<(crate::retention::Policy, chrono::Duration)>,
}

/// Everything a user can get wrong on the command line, refused before the
/// store is opened or a hook runs.
fn prepare(args: &BackupArgs, summary: &mut RunSummary) -> Result<Prepared> {
    validate_level(args.compression, args.compression_level).map_err(Error::usage)?;
    let recipients = encryption::parse_recipients(&args.encrypt_to).map_err(Error::usage)?;
    let retention = super::prune::policy_from_args(&args.retention)?;
    let target = Target::parse_as(&args.source, "--source", args.source_kind.map(Into::into))?;
    args.check_for(&target)?;
    let (namespace, name) = series_names(args, &target)?;
    // Filed before anything runs, so a failed pre-hook is reported under
    // the backup's own name (metrics group, notifications).
    summary.namespace = Some(namespace.clone());
    summary.name = Some(name.clone());
    let mut engine = args.engine_settings(&target)?;
    let location: vertice_crds::StoreLocation = args
        .to
        .parse()
        .map_err(|e| Error::usage(format!("--to: {e}")))?;
    engine
        .search
        .place_repository(&location, &namespace, &name)?;
    Ok(Prepared {
        target,
        namespace,
        name,
        engine,
        recipients,
        retention,
    })
}

/// The namespace and backup name the run is filed under: the flags, or the
/// engine's default (the database name, `redis`, `vault`) when no name is
/// given.
fn series_names(args: &BackupArgs, target: &Target) -> Result<(String, String)> {
    let namespace = args
        .names
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let name = match &args.names.name {
        Some(name) => name.clone(),
        None => target.default_name()?,
    };
    validate_name(&namespace, "--namespace")?;
    validate_name(&name, "--name")?;
    Ok((namespace, name))
}

/// The backup between its pre- and post-hooks. A failing pre-hook (with
/// `onError: Fail`) stops the run before anything is dumped; post-hooks run
/// whatever happened, and one that fails fails the run, though a backup it
/// follows stays valid and listed.
pub async fn run_with_hooks(args: &BackupArgs, summary: &mut RunSummary) -> Result<Manifest> {
    if let Some(url) = &args.pushgateway_url {
        crate::report::pushgateway::validate_url(url)?;
    }
    let prepared = prepare(args, summary)?;
    let Some(hooks) = args.hooks.as_ref().filter(|h| !h.is_empty()) else {
        return backup(args, &prepared, summary).await;
    };
    let hook_target = crate::hooks::HookTarget {
        target: &prepared.target,
        password: crate::secret::exposed(&prepared.engine.password),
        psql: &prepared.engine.psql,
    };
    let (outcomes, pre_error) =
        crate::hooks::run_phase("pre", &hooks.pre, &hook_target, &args.secrets_dir).await;
    summary.hooks.extend(outcomes);
    let result = match pre_error {
        Some(e) => Err(e),
        None => backup(args, &prepared, summary).await,
    };
    let (outcomes, post_error) =
        crate::hooks::run_phase("post", &hooks.post, &hook_target, &args.secrets_dir).await;
    summary.hooks.extend(outcomes);
    match (result, post_error) {
        (Ok(manifest), Some(e)) => Err(Error::hook(format!(
            "backup {} is stored and valid, but {e}",
            manifest.backup_id
        ))),
        (result, _) => result,
    }
}

async fn backup(args: &BackupArgs, run: &Prepared, summary: &mut RunSummary) -> Result<Manifest> {
    let store: Arc<dyn Store> = Arc::from(store_from_args(&args.to, "--to", &args.store).await?);
    summary.store = Some(store.describe());
    store.check_access().await?;

    let started_at = crate::backup_id::now()?;
    let id = new_id(store.as_ref(), &run.namespace, &run.name, started_at).await?;
    summary.backup_id = Some(id.to_string());
    let mut redactor = Redactor::new();
    let engine = with_parent(store.as_ref(), run, &id).await?;
    let mut started = run.target.start_backup(&engine, &mut redactor).await?;
    summary.source_kind = Some(started.source.kind.to_string());
    tracing::info!(backup = %id, source = %started.source.address, store = %store.describe(), compression = %args.compression, "backup started");

    let mut stream = std::mem::replace(&mut started.stream, Box::new(tokio::io::empty()));
    let dir = backup_dir(&run.namespace, &run.name, id.as_str());
    let seal = Seal {
        compression: args.compression,
        level: args.compression_level,
        recipients: run.recipients.clone(),
    };
    let artifact_name = seal.name(started.artifact_stem);
    let artifact_key = format!("{dir}/{artifact_name}");
    // An engine with parts beside its main stream: its workers upload
    // through the same pipeline, and the main stream stops with them.
    let parts = match started.parts.take() {
        Some(runner) => {
            let (parts, sink) = Parts::start(
                Arc::clone(&store),
                dir.clone(),
                seal.clone(),
                redactor.clone(),
            );
            stream = Box::new(Interruptible::until(stream, parts.cancel.clone()));
            started.finished = Some(runner(sink));
            Some(parts)
        }
        None => None,
    };
    let own = |parts: &Option<Parts>| -> Vec<String> {
        let mut keys = vec![artifact_key.clone()];
        keys.extend(stored_parts(parts));
        keys
    };
    let (raw, stored) = (Meter::capturing_head(HEAD_BYTES), Meter::new());
    let uploaded = match upload(
        args,
        &seal,
        stream,
        (&raw, &stored),
        store.as_ref(),
        &artifact_key,
    )
    .await
    {
        Ok(uploaded) => uploaded,
        Err(e) => {
            let e = settle_failure(run, &parts, started.finished.take(), &redactor, e).await;
            remove_own(store.as_ref(), &stored_parts(&parts)).await;
            return Err(e);
        }
    };
    summary.raw_bytes = Some(raw.bytes());
    // No cleanup of the main artifact after a failed upload: every store
    // leaves nothing that looks like an object (aborted multipart uploads,
    // removed temporary files), and deleting the key could remove an object
    // this run did not create. Parts this run stored whole are removed.
    let stored_size = match uploaded {
        Ok(size) => size,
        Err(e) => {
            // An engine task still running (a search snapshot being
            // followed, parts being copied) gets to undo what it started
            // before the run ends.
            let e = upload_error(e, &redactor, &id, &run.target);
            let e = settle_failure(run, &parts, started.finished.take(), &redactor, e).await;
            remove_own(store.as_ref(), &stored_parts(&parts)).await;
            return Err(e);
        }
    };

    if let Err(e) = run
        .target
        .finish_backup(
            &run.engine,
            &redactor,
            &raw.head(),
            store.as_ref(),
            &mut started,
        )
        .await
    {
        // The parts' workers have ended (finish_backup waited for them).
        remove_own(store.as_ref(), &own(&parts)).await;
        return Err(e);
    }
    let meters = Meters { raw, stored };
    let mut manifest = manifest_of(&seal, run, &id, started_at, started, artifact_name, &meters)?;
    if let Some(parts) = &parts {
        manifest.artifacts.extend(parts.artifacts());
    }
    if let Err(e) = check_size(stored_size, &manifest) {
        remove_own(store.as_ref(), &own(&parts)).await;
        abandon(store.as_ref(), run, &manifest, &dir).await;
        return Err(e);
    }
    if let Err(e) = publish_manifest(store.as_ref(), &manifest, &dir, &own(&parts)).await {
        abandon(store.as_ref(), run, &manifest, &dir).await;
        return Err(e);
    }
    summary.stored_bytes = Some(manifest.stored_bytes());
    tracing::info!(
        backup = %id,
        raw_bytes = manifest.raw_bytes(),
        stored_bytes = manifest.stored_bytes(),
        seconds = manifest.duration_seconds(),
        "backup complete"
    );
    if let Some((policy, unfinished_after)) = &run.retention {
        prune_after(
            store.as_ref(),
            &manifest,
            policy,
            *unfinished_after,
            summary,
            (&run.target, &engine),
        )
        .await?;
    }
    Ok(manifest)
}

/// The keys of the parts a run stored whole (none without parts).
fn stored_parts(parts: &Option<Parts>) -> Vec<String> {
    parts.iter().flat_map(Parts::keys).collect()
}

/// A run whose main upload failed. Its part workers are stopped (their
/// uploads abort as their streams fail) and waited for; when the main
/// stream was stopped because a part failed first (their token cancelled,
/// no signal), that part's error is the run's. Without parts: the engine's
/// task settles as [`settle_source`] says.
async fn settle_failure(
    run: &Prepared,
    parts: &Option<Parts>,
    finished: Option<tokio::task::JoinHandle<Result<crate::manifest::SourceInfo>>>,
    redactor: &Redactor,
    error: Error,
) -> Error {
    let Some(parts) = parts else {
        settle_source(run, finished, redactor).await;
        return error;
    };
    let caused_by_a_part = parts.cancel.is_cancelled() && crate::interrupt::received().is_none();
    parts.cancel.cancel();
    let Some(mut finishing) = finished else {
        return error;
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), &mut finishing).await {
        Ok(Ok(Err(cause))) if caused_by_a_part => cause.map_message(|m| redactor.redact(&m)),
        Ok(_) => error,
        Err(_) => {
            // Stopped for good, so no part lands after its cleanup.
            finishing.abort();
            let _ = finishing.await;
            error
        }
    }
}

/// The source side of a run whose upload failed: an engine task still
/// running (a search snapshot being followed) gets to undo what it
/// started; one that finished — its snapshot taken, its record handed
/// over — has its work discarded, since no manifest will name it.
async fn settle_source(
    run: &Prepared,
    finished: Option<tokio::task::JoinHandle<Result<crate::manifest::SourceInfo>>>,
    redactor: &Redactor,
) {
    let Some(finishing) = finished else {
        return;
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), finishing).await {
        Ok(Ok(Ok(info))) => {
            if let Err(e) = run.target.discard(&run.engine, &info).await {
                tracing::warn!(error = %redactor.redact(&e.to_string()), "the backup was not stored and what its source made for it could not be deleted");
            }
        }
        // What it undid (a snapshot deleted) is worth a line.
        Ok(Ok(Err(e))) => {
            tracing::warn!(source = %redactor.redact(&e.to_string()), "the source side stopped too");
        }
        _ => {}
    }
}

/// Lets go of what a backup that was not published holds outside the
/// store (a search cluster's snapshot) — only once the store shows no
/// manifest of it: a manifest that landed after all (an answer lost, a
/// removal that failed) keeps its snapshot, since a listed backup without
/// its data is worse than an orphan.
async fn abandon(store: &dyn Store, run: &Prepared, manifest: &Manifest, dir: &str) {
    if !crate::engine::holds_data_outside_the_store(manifest) {
        return;
    }
    match store.get_bytes(&format!("{dir}/{MANIFEST_FILE}")).await {
        Err(StoreError::NotFound { .. }) => {
            if let Err(e) = run.target.discard(&run.engine, &manifest.source).await {
                tracing::warn!(backup = %manifest.backup_id, error = %e, "the backup was not stored and its snapshot could not be deleted");
            }
        }
        _ => {
            tracing::warn!(backup = %manifest.backup_id, "the backup may have been stored after all (its manifest is there or the store cannot say): its snapshot is kept")
        }
    }
}

/// The run's engine settings with, for an incremental run, the backup it
/// continues: the newest backup of the series whose chain restores
/// (`catalog::continuable`), as the engine takes it; else a full backup.
async fn with_parent(store: &dyn Store, run: &Prepared, id: &BackupId) -> Result<BackupSettings> {
    let mut engine = run.engine.clone();
    if !run.target.incremental(&engine) {
        return Ok(engine);
    }
    let scope = crate::catalog::Scope {
        namespace: Some(run.namespace.clone()),
        name: Some(run.name.clone()),
    };
    // Earlier than this run's id: a run that started meanwhile is no parent.
    if let Some(newest) = crate::catalog::continuable(store, &scope, id.as_str()).await? {
        run.target.continue_from(&mut engine, &newest);
    }
    Ok(engine)
}

/// The source stream through the meters, compression and encryption into
/// the store; the store's count of what it took (or how it failed).
async fn upload(
    args: &BackupArgs,
    seal: &Seal,
    stream: BoxRead,
    (raw, stored): (&Arc<Meter>, &Arc<Meter>),
    store: &dyn Store,
    artifact_key: &str,
) -> Result<std::result::Result<u64, StoreError>> {
    let mut body = seal.body(
        Box::new(Interruptible::new(stream)),
        raw,
        stored,
        READ_AHEAD,
    )?;
    let _progress = Progress::start(args.run.progress, "backup", Arc::clone(raw));
    Ok(store.put_stream(artifact_key, &mut body).await)
}

/// What went into the store (raw) and what the store holds (stored).
struct Meters {
    raw: Arc<Meter>,
    stored: Arc<Meter>,
}

/// The manifest of a stored backup.
fn manifest_of(
    seal: &Seal,
    run: &Prepared,
    id: &BackupId,
    started_at: DateTime<Utc>,
    started: BackupStream,
    artifact_name: String,
    meters: &Meters,
) -> Result<Manifest> {
    let artifact = seal.artifact(
        artifact_name,
        started.format,
        (&meters.raw, &meters.stored),
        started.producer,
    );
    Ok(Manifest {
        format_version: crate::manifest::format_version(
            started.parent.is_some(),
            started.source.postgres.is_some(),
        ),
        backup_id: id.to_string(),
        namespace: run.namespace.clone(),
        name: run.name.clone(),
        source: started.source,
        started_at,
        finished_at: crate::backup_id::now()?,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        artifacts: vec![artifact],
        parent: started.parent,
    })
}

/// The store must have taken exactly what the pipeline produced (the main
/// artifact; each part was checked as it was stored).
fn check_size(stored_size: u64, manifest: &Manifest) -> Result<()> {
    let produced = manifest.artifacts.first().map_or(0, |a| a.stored_bytes);
    if stored_size == produced {
        return Ok(());
    }
    Err(Error::run(
        ErrorCategory::Store,
        format!(
            "the store took {stored_size} bytes but the pipeline produced {produced}; nothing was stored"
        ),
    ))
}

/// Retention, only after a backup that succeeded; a failed prune does not
/// undo it.
async fn prune_after(
    store: &dyn Store,
    manifest: &Manifest,
    policy: &crate::retention::Policy,
    unfinished_after: chrono::Duration,
    summary: &mut RunSummary,
    (target, settings): (&crate::engine::Target, &crate::engine::BackupSettings),
) -> Result<()> {
    // This run reaches the source: old backups' data kept there (a search
    // cluster's snapshots) is deleted through it.
    let release = |old: &Manifest| -> futures::future::BoxFuture<'_, Result<()>> {
        let old = old.clone();
        Box::pin(async move { target.release(settings, &old).await })
    };
    let scope = crate::catalog::Scope {
        namespace: Some(manifest.namespace.clone()),
        name: Some(manifest.name.clone()),
    };
    match super::prune::prune(
        store,
        &scope,
        policy,
        unfinished_after,
        false,
        crate::backup_id::now()?,
        Some(&release),
    )
    .await
    {
        Ok(report) => summary.pruned = Some(report.deleted_backups),
        Err(e) => {
            tracing::warn!(error = %e, "pruning after the backup failed; the backup itself succeeded")
        }
    }
    Ok(())
}

/// The id of a new backup: its start time, but always later than the
/// newest id of its series (`backup_id::next_id`), so the backup taken last
/// is the newest for `latest` and retention even when this node's clock is
/// behind.
async fn new_id(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    started_at: DateTime<Utc>,
) -> Result<BackupId> {
    let newest = crate::catalog::newest_id(store, namespace, name).await?;
    let random = crate::backup_id::random_suffix(started_at);
    let next = crate::backup_id::next_id(started_at, newest.as_ref(), random);
    let id = next.id;
    if let (Some(behind), Some(newest)) = (next.behind, &newest) {
        if behind > chrono::Duration::zero() {
            tracing::warn!(
                clock = %started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                newest = %newest,
                behind_seconds = behind.num_seconds(),
                backup = %id,
                "this node's clock is behind the newest backup of {namespace}/{name}; the backup takes an id after it so it stays the newest. Check the node's time synchronisation (NTP)"
            );
        } else {
            tracing::debug!(newest = %newest, backup = %id, "a backup of this series took the last id of this second; the id takes the next second");
        }
    }
    Ok(id)
}

/// Writes the manifest, then reads the backup back from the store: the run
/// counts as succeeded only once the manifest parses to exactly what was
/// written and the artifact is listed at its full size. Otherwise what this
/// run created is removed (it never overwrote anything, so nothing else is).
async fn publish_manifest(
    store: &dyn Store,
    manifest: &Manifest,
    dir: &str,
    artifact_keys: &[String],
) -> Result<()> {
    let manifest_key = format!("{dir}/{MANIFEST_FILE}");
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::run(ErrorCategory::Store, format!("encoding the manifest: {e}")))?;
    if let Err(e) = store.put_bytes(&manifest_key, json.into()).await {
        if !matches!(e, StoreError::AlreadyExists { .. }) {
            remove_own(store, &[&manifest_key]).await;
        }
        remove_own(store, artifact_keys).await;
        return Err(Error::from(e).context(format!(
            "backup {} was not stored: writing its manifest failed",
            manifest.backup_id
        )));
    }
    if let Err(problem) = read_back(store, manifest, &manifest_key, dir).await {
        remove_own(store, &[&manifest_key]).await;
        remove_own(store, artifact_keys).await;
        return Err(Error::run(
            ErrorCategory::Store,
            format!(
                "backup {} was not stored: reading it back from the store failed ({problem}); what this run wrote was removed",
                manifest.backup_id
            ),
        ));
    }
    Ok(())
}

async fn read_back(
    store: &dyn Store,
    manifest: &Manifest,
    manifest_key: &str,
    dir: &str,
) -> std::result::Result<(), String> {
    let bytes = store
        .get_bytes(manifest_key)
        .await
        .map_err(|e| e.to_string())?;
    let parsed = Manifest::parse(&bytes, manifest_key)?;
    if parsed != *manifest {
        return Err(format!(
            "{manifest_key} does not hold the manifest that was written"
        ));
    }
    // Every artifact listed at its full size (one listing for them all).
    let listed = store
        .list(&format!("{dir}/"))
        .await
        .map_err(|e| e.to_string())?;
    for artifact in &manifest.artifacts {
        let key = format!("{dir}/{}", artifact.name);
        match listed.iter().find(|o| o.key == key) {
            Some(o) if o.size == artifact.stored_bytes => {}
            Some(o) => {
                return Err(format!(
                    "{key} is {} bytes in the store, {} were written",
                    o.size, artifact.stored_bytes
                ))
            }
            None => return Err(format!("{key} is not in the store")),
        }
    }
    Ok(())
}

/// Removes objects this run created; failures are logged, since the run has
/// already failed for a better reason.
async fn remove_own<K: AsRef<str>>(store: &dyn Store, keys: &[K]) {
    for key in keys.iter().map(AsRef::as_ref) {
        if let Err(e) = store.delete(key).await {
            tracing::warn!(key = %key, error = %e, "could not remove an object this failed run created");
        }
    }
}

/// Says what went wrong with the upload: the source's own error (redacted,
/// worded by its engine), or the store's.
fn upload_error(e: StoreError, redactor: &Redactor, id: &BackupId, target: &Target) -> Error {
    match e {
        StoreError::Body(e) => {
            target.source_failed(redactor.redact(&format!("backup {id} failed: {e}")))
        }
        other => Error::Store(other),
    }
}
