//! `vertice-agent backup`: source → meter → compress → meter → store, then
//! the manifest, last.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::io::BufReader;

use super::store_from_args;
use crate::backup_id::BackupId;
use crate::cli::BackupArgs;
use crate::error::{Error, ErrorCategory, Result};
use crate::interrupt::Interruptible;
use crate::manifest::Encryption;
use crate::manifest::{
    backup_dir, Artifact, Manifest, Producer, SourceInfo, SourceKind, FORMAT_VERSION, MANIFEST_FILE,
};
use crate::names::{name_for_database, validate_name};
use crate::pipeline::codec::{compressing, validate_level, BoxRead};
use crate::pipeline::encryption;
use crate::pipeline::meter::{Meter, MeteredReader};
use crate::pipeline::progress::Progress;
use crate::pipeline::read_ahead::read_ahead;
use crate::pipeline::redact::Redactor;
use crate::source::postgres::Tool;
use crate::source::vault::VaultClient;
use crate::source::{pg_archive, postgres, redis_sync};
use crate::store::{Store, StoreError};
use crate::summary::RunSummary;
use crate::target::{resolve_password, Target, POSTGRES_PASSWORD_ENV, REDIS_PASSWORD_ENV};

/// Enough of the stream to read a pg_dump archive header.
const HEAD_BYTES: usize = 4096;
/// Buffer between compression and its input.
const READ_CHUNK: usize = 64 * 1024;
/// How far the source may run ahead of compression.
const READ_AHEAD: usize = 2 << 20;

struct Started {
    stream: BoxRead,
    kind: SourceKind,
    address: String,
    database: Option<String>,
    keys: Option<u64>,
    server_version: Option<String>,
    artifact_stem: &'static str,
    format: &'static str,
    producer: Producer,
}

/// The namespace and backup name the run is filed under: the flags, or the
/// database name (`redis`, `vault`) when no name is given.
fn series_names(args: &BackupArgs, target: &Target) -> Result<(String, String)> {
    let namespace = args
        .names
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let name = match (&args.names.name, target) {
        (Some(name), _) => name.clone(),
        (None, Target::Postgres(pg)) => name_for_database(&pg.database)?,
        (None, Target::Vault(_)) => "vault".to_string(),
        (None, _) => "redis".to_string(),
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
    let Some(hooks) = args.hooks.as_ref().filter(|h| !h.is_empty()) else {
        return run(args, summary).await;
    };
    let target = Target::parse_as(
        &args.source,
        "--source",
        args.source_kind == Some(crate::cli::SourceKindArg::Vault),
    )?;
    let password = match &target {
        Target::Postgres(_) => crate::target::resolve_password(
            args.password_file.as_ref(),
            crate::target::POSTGRES_PASSWORD_ENV,
        )?,
        Target::Redis(_) => crate::target::resolve_password(
            args.password_file.as_ref(),
            crate::target::REDIS_PASSWORD_ENV,
        )?,
        _ => None,
    };
    // Filed before the hooks run, so a failed pre-hook is reported under the
    // backup's own name (metrics group, notifications).
    let (namespace, name) = series_names(args, &target)?;
    summary.namespace = Some(namespace);
    summary.name = Some(name);
    let hook_target = crate::hooks::HookTarget {
        target: &target,
        password: password.as_deref(),
        psql: &args.psql,
    };
    let (outcomes, pre_error) =
        crate::hooks::run_phase("pre", &hooks.pre, &hook_target, &args.secrets_dir).await;
    summary.hooks.extend(outcomes);
    let result = match pre_error {
        Some(e) => Err(e),
        None => run(args, summary).await,
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

pub async fn run(args: &BackupArgs, summary: &mut RunSummary) -> Result<Manifest> {
    validate_level(args.compression, args.compression_level).map_err(Error::usage)?;
    let recipients = encryption::parse_recipients(&args.encrypt_to).map_err(Error::usage)?;
    let retention = super::prune::policy_from_args(&args.retention)?;
    let target = Target::parse_as(
        &args.source,
        "--source",
        args.source_kind == Some(crate::cli::SourceKindArg::Vault),
    )?;
    let (namespace, name) = series_names(args, &target)?;
    summary.namespace = Some(namespace.clone());
    summary.name = Some(name.clone());

    let store = store_from_args(&args.to, "--to", &args.store).await?;
    summary.store = Some(store.describe());
    store.check_access().await?;

    let started_at = crate::backup_id::now()?;
    let id = new_id(store.as_ref(), &namespace, &name, started_at).await?;
    summary.backup_id = Some(id.to_string());
    let mut redactor = Redactor::new();
    let started = start_source(args, &target, &mut redactor).await?;
    summary.source_kind = Some(started.kind.to_string());
    tracing::info!(backup = %id, source = %started.address, store = %store.describe(), compression = %args.compression, "backup started");

    let raw = Meter::capturing_head(HEAD_BYTES);
    let stored = Meter::new();
    // The source is drained by its own task so it never waits on compression.
    let source = read_ahead(
        MeteredReader::new(Interruptible::new(started.stream), Arc::clone(&raw)),
        READ_AHEAD,
    );
    let compressed = compressing(
        args.compression,
        args.compression_level,
        BufReader::with_capacity(READ_CHUNK, source),
    );
    // Compress, then encrypt, then hash what is stored.
    let sealed = if recipients.is_empty() {
        compressed
    } else {
        encryption::encrypting(&recipients, compressed)
            .map_err(|e| Error::encryption(format!("starting encryption: {e}")))?
    };
    let mut body = MeteredReader::new(sealed, Arc::clone(&stored));
    let dir = backup_dir(&namespace, &name, id.as_str());
    let artifact_name = format!(
        "{}{}{}",
        started.artifact_stem,
        args.compression.file_suffix(),
        if recipients.is_empty() { "" } else { ".age" }
    );
    let artifact_key = format!("{dir}/{artifact_name}");

    let uploaded = {
        let _progress = Progress::start(args.run.progress, "backup", Arc::clone(&raw));
        store.put_stream(&artifact_key, &mut body).await
    };
    summary.raw_bytes = Some(raw.bytes());
    // No cleanup after a failed upload: every store leaves nothing that looks
    // like an object (aborted multipart uploads, removed temporary files), and
    // deleting the key could remove an object this run did not create.
    let stored_size = uploaded.map_err(|e| upload_error(e, &redactor, &id))?;

    let mut server_version = started.server_version;
    let mut producer = started.producer;
    let mut roles = Vec::new();
    if started.kind == SourceKind::Postgres {
        roles = source_roles(args, &target, &redactor).await;
        // Anything but a custom-format archive (a plain dump smuggled in by
        // an option, an empty stream) is never a backup.
        match pg_archive::parse_header(&raw.head()) {
            Ok(header) => {
                server_version = header.server_version;
                producer.version = header.pg_dump_version;
            }
            Err(e) => {
                remove_own(store.as_ref(), &[&artifact_key]).await;
                return Err(Error::source(format!(
                    "pg_dump did not produce a custom-format archive ({e}); nothing was stored"
                )));
            }
        }
    }
    let finished_at = crate::backup_id::now()?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id: id.to_string(),
        namespace,
        name,
        source: SourceInfo {
            kind: started.kind,
            address: started.address,
            server_version,
            database: started.database,
            keys: started.keys,
            roles,
        },
        started_at,
        finished_at,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        artifacts: vec![Artifact {
            name: artifact_name,
            format: started.format.to_string(),
            stored_bytes: stored.bytes(),
            raw_bytes: raw.bytes(),
            stored_sha256: stored.sha256_hex(),
            raw_sha256: raw.sha256_hex(),
            compression: args.compression,
            encryption: (!recipients.is_empty()).then(|| Encryption {
                scheme: encryption::SCHEME.to_string(),
                recipient_fingerprints: recipients.iter().map(encryption::fingerprint).collect(),
            }),
            producer,
        }],
    };
    if stored_size != manifest.stored_bytes() {
        remove_own(store.as_ref(), &[&artifact_key]).await;
        return Err(Error::run(
            ErrorCategory::Store,
            format!(
                "the store took {stored_size} bytes but the pipeline produced {}; nothing was stored",
                manifest.stored_bytes()
            ),
        ));
    }
    publish_manifest(store.as_ref(), &manifest, &dir, &artifact_key).await?;
    summary.stored_bytes = Some(manifest.stored_bytes());
    tracing::info!(
        backup = %id,
        raw_bytes = manifest.raw_bytes(),
        stored_bytes = manifest.stored_bytes(),
        seconds = manifest.duration_seconds(),
        "backup complete"
    );
    if let Some((policy, unfinished_after)) = retention {
        // Only after a backup that succeeded; a failed prune does not undo it.
        let scope = crate::catalog::Scope {
            namespace: Some(manifest.namespace.clone()),
            name: Some(manifest.name.clone()),
        };
        match super::prune::prune(
            store.as_ref(),
            &scope,
            &policy,
            unfinished_after,
            false,
            crate::backup_id::now()?,
        )
        .await
        {
            Ok(report) => summary.pruned = Some(report.deleted_backups),
            Err(e) => {
                tracing::warn!(error = %e, "pruning after the backup failed; the backup itself succeeded")
            }
        }
    }
    Ok(manifest)
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
    artifact_key: &str,
) -> Result<()> {
    let manifest_key = format!("{dir}/{MANIFEST_FILE}");
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::run(ErrorCategory::Store, format!("encoding the manifest: {e}")))?;
    if let Err(e) = store.put_bytes(&manifest_key, json.into()).await {
        if !matches!(e, StoreError::AlreadyExists { .. }) {
            remove_own(store, &[&manifest_key]).await;
        }
        remove_own(store, &[artifact_key]).await;
        return Err(Error::from(e).context(format!(
            "backup {} was not stored: writing its manifest failed",
            manifest.backup_id
        )));
    }
    if let Err(problem) = read_back(store, manifest, &manifest_key, artifact_key).await {
        remove_own(store, &[&manifest_key, artifact_key]).await;
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
    artifact_key: &str,
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
    let expected = manifest.stored_bytes();
    let listed = store.list(artifact_key).await.map_err(|e| e.to_string())?;
    match listed.iter().find(|o| o.key == artifact_key) {
        Some(o) if o.size == expected => Ok(()),
        Some(o) => Err(format!(
            "{artifact_key} is {} bytes in the store, {expected} were written",
            o.size
        )),
        None => Err(format!("{artifact_key} is not in the store")),
    }
}

/// Removes objects this run created; failures are logged, since the run has
/// already failed for a better reason.
async fn remove_own(store: &dyn Store, keys: &[&str]) {
    for key in keys {
        if let Err(e) = store.delete(key).await {
            tracing::warn!(key = %key, error = %e, "could not remove an object this failed run created");
        }
    }
}

/// Says what went wrong with the upload: the dump's own error (redacted,
/// with a database or role that does not exist as a configuration error),
/// or the store's.
fn upload_error(e: StoreError, redactor: &Redactor, id: &BackupId) -> Error {
    match e {
        StoreError::Body(e) => {
            let message = redactor.redact(&format!("backup {id} failed: {e}"));
            match postgres::missing_object(&message) {
                Some(fix) => Error::usage(format!("{message}; {fix}")),
                None => Error::source(message),
            }
        }
        other => Error::Store(other),
    }
}

/// The source's role names for the manifest (a drill's ephemeral server
/// creates them). Failing to list them costs a drill that convenience,
/// never the backup.
async fn source_roles(args: &BackupArgs, target: &Target, redactor: &Redactor) -> Vec<String> {
    let Target::Postgres(pg) = target else {
        return Vec::new();
    };
    let password = resolve_password(args.password_file.as_ref(), POSTGRES_PASSWORD_ENV)
        .ok()
        .flatten();
    match postgres::list_roles(&args.psql, pg, password.as_deref(), redactor).await {
        Ok(roles) => roles,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the source's roles for the manifest; a drill takes them from the archive's table of contents");
            Vec::new()
        }
    }
}

async fn start_source(
    args: &BackupArgs,
    target: &Target,
    redactor: &mut Redactor,
) -> Result<Started> {
    match target {
        Target::Postgres(pg) => {
            let password = resolve_password(args.password_file.as_ref(), POSTGRES_PASSWORD_ENV)?;
            if let Some(p) = &password {
                redactor.add(p);
            }
            let extra = postgres::normalize(&args.pg_dump_args, "--pg-dump-arg", Tool::PgDump)
                .map_err(Error::usage)?;
            let running = postgres::spawn_dump(
                &args.pg_dump,
                pg,
                &extra,
                password.as_deref(),
                redactor.clone(),
            )
            .map_err(|e| Error::usage(format!("--pg-dump: {e}")))?;
            let output = running
                .into_output()
                .map_err(|e| Error::source(e.to_string()))?;
            Ok(Started {
                stream: Box::new(output),
                kind: SourceKind::Postgres,
                address: pg.url.clone(),
                database: Some(pg.database.clone()),
                keys: None,
                server_version: None,
                artifact_stem: "dump.pgdump",
                format: "pg_dump-custom",
                producer: Producer {
                    tool: "pg_dump".into(),
                    version: None,
                    arguments: postgres::dump_arguments(&extra),
                },
            })
        }
        Target::Redis(redis) => {
            let password = resolve_password(args.password_file.as_ref(), REDIS_PASSWORD_ENV)?;
            if let Some(p) = &password {
                redactor.add(p);
            }
            let snapshot = redis_sync::start(redis, password.as_deref()).await?;
            Ok(Started {
                stream: Box::new(snapshot.stream),
                kind: SourceKind::Redis,
                address: redis.address(),
                database: None,
                keys: snapshot.keys,
                server_version: snapshot.server_version,
                artifact_stem: "dump.rdb",
                format: "redis-rdb",
                producer: Producer {
                    tool: "vertice-agent (replication protocol)".into(),
                    version: Some(env!("CARGO_PKG_VERSION").into()),
                    arguments: vec!["PSYNC ? -1".into()],
                },
            })
        }
        Target::Vault(vault) => {
            let (client, secrets) =
                VaultClient::connect(vault, &super::vault_login(&args.vault)).await?;
            for secret in &secrets {
                redactor.add(secret);
            }
            let server_version = client.version().await;
            let stream = client.snapshot().await?;
            Ok(Started {
                stream,
                kind: SourceKind::Vault,
                address: vault.base.as_str().trim_end_matches('/').to_string(),
                database: None,
                keys: None,
                server_version,
                artifact_stem: "raft.snap",
                format: "vault-raft-snapshot",
                producer: Producer {
                    tool: "Vault HTTP API".into(),
                    version: None,
                    arguments: vec!["GET /v1/sys/storage/raft/snapshot".into()],
                },
            })
        }
        Target::File(_) => Err(Error::usage(
            "--source file:// is not a database; back up postgres:// or redis://",
        )),
    }
}
