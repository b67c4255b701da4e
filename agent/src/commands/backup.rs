//! `vertice-agent backup`: source → meter → compress → meter → store, then
//! the manifest, last.

use std::sync::Arc;

use chrono::Utc;
use tokio::io::BufReader;

use super::{derive_name, store_from_args, validate_name};
use crate::backup_id::BackupId;
use crate::cli::BackupArgs;
use crate::error::{Error, Result};
use crate::manifest::Encryption;
use crate::manifest::{
    backup_dir, Artifact, Manifest, Producer, SourceInfo, SourceKind, FORMAT_VERSION, MANIFEST_FILE,
};
use crate::pipeline::codec::{compressing, validate_level, BoxRead};
use crate::pipeline::encryption;
use crate::pipeline::meter::{Meter, MeteredReader};
use crate::pipeline::progress::Progress;
use crate::pipeline::read_ahead::read_ahead;
use crate::pipeline::redact::Redactor;
use crate::source::vault::VaultClient;
use crate::source::{pg_archive, postgres, redis_sync};
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
        (None, Target::Postgres(pg)) => derive_name(&pg.database),
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
        (Ok(manifest), Some(e)) => Err(Error::failed(format!(
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

    let started_at = Utc::now();
    let id = BackupId::generate(started_at);
    summary.backup_id = Some(id.to_string());
    let mut redactor = Redactor::new();
    let started = start_source(args, &target, &mut redactor).await?;
    summary.source_kind = Some(started.kind.to_string());
    tracing::info!(backup = %id, source = %started.address, store = %store.describe(), compression = %args.compression, "backup started");

    let raw = Meter::capturing_head(HEAD_BYTES);
    let stored = Meter::new();
    // The source is drained by its own task so it never waits on compression.
    let source = read_ahead(
        MeteredReader::new(started.stream, Arc::clone(&raw)),
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
            .map_err(|e| Error::failed(format!("starting encryption: {e}")))?
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
    if let Err(e) = uploaded {
        // Whatever reached the store is an unfinished upload without a
        // manifest; remove it now rather than wait for pruning.
        if let Err(cleanup) = store.delete(&artifact_key).await {
            tracing::warn!(key = %artifact_key, error = %cleanup, "could not remove the partial artifact");
        }
        return Err(match e {
            e @ crate::store::StoreError::Io { .. } => {
                Error::failed(redactor.redact(&format!("backup {id} failed: {e}")))
            }
            other => Error::Store(other),
        });
    }

    let mut server_version = started.server_version;
    let mut producer = started.producer;
    if started.kind == SourceKind::Postgres {
        match pg_archive::parse_header(&raw.head()) {
            Ok(header) => {
                server_version = header.server_version;
                producer.version = header.pg_dump_version;
            }
            Err(e) => tracing::warn!(error = %e, "could not read the pg_dump archive header"),
        }
    }
    let finished_at = Utc::now();
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
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::failed(format!("encoding the manifest: {e}")))?;
    if let Err(e) = store
        .put_bytes(&format!("{dir}/{MANIFEST_FILE}"), json.into())
        .await
    {
        // Without its manifest the artifact is not a backup: do not leave it.
        if let Err(cleanup) = store.delete(&artifact_key).await {
            tracing::warn!(key = %artifact_key, error = %cleanup, "could not remove the artifact of the failed backup");
        }
        return Err(e.into());
    }
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
            Utc::now(),
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
            postgres::check_extra_args(&args.pg_dump_args, "--pg-dump-arg", false)
                .map_err(Error::usage)?;
            let running = postgres::spawn_dump(
                &args.pg_dump,
                pg,
                &args.pg_dump_args,
                password.as_deref(),
                redactor.clone(),
            )
            .map_err(|e| Error::usage(format!("--pg-dump: {e}")))?;
            let output = running
                .into_output()
                .map_err(|e| Error::failed(e.to_string()))?;
            Ok(Started {
                stream: Box::new(output),
                kind: SourceKind::Postgres,
                address: pg.url.clone(),
                database: Some(pg.database.clone()),
                server_version: None,
                artifact_stem: "dump.pgdump",
                format: "pg_dump-custom",
                producer: Producer {
                    tool: "pg_dump".into(),
                    version: None,
                    arguments: postgres::dump_arguments(&args.pg_dump_args),
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
            let (client, secrets) = VaultClient::connect(vault, &args.vault).await?;
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
