//! PostgreSQL: `pg_dump` custom-format archives out, `pg_restore` → psql
//! in (the agent sends the COMMIT), drills in a scratch database or an
//! ephemeral server.

pub mod archive;
pub mod connect;
mod drill;
mod drill_checks;
pub mod dump;
mod ephemeral;
pub mod parallel;
mod psql_text;
pub mod restore;
pub mod scratch;
pub mod target;
pub mod tls;
mod toc;
pub mod version;

pub use drill::{check_drill_server, drill};
pub use ephemeral::EPHEMERAL;
pub use target::PostgresTarget;

use crate::engine::common::{BackupStream, Stored};
use crate::engine::settings::{BackupSettings, Jobs, RestoreSettings};
use crate::error::{Error, Result};
use crate::manifest::{Producer, SourceInfo, SourceKind};
use crate::pipeline::redact::Redactor;
use dump::Tool;

/// Starts `pg_dump`; its stdout is the backup stream. With `--jobs` > 1,
/// pg_dump writes all but the larger tables' data and workers copy those
/// into parts of their own, all under one snapshot (`parallel`).
pub async fn start_backup(
    pg: &PostgresTarget,
    settings: &BackupSettings,
    redactor: &mut Redactor,
) -> Result<BackupStream> {
    if let Some(p) = &settings.password {
        redactor.add(p.expose());
    }
    let extra = dump::normalize(&settings.pg_dump_args, "--pg-dump-arg", Tool::PgDump)
        .map_err(Error::usage)?;
    let jobs = match settings.pg_jobs {
        Jobs::Fixed(n) => n,
        Jobs::Auto => {
            let selecting = parallel::backup::check_args(&extra, 2).is_err();
            let password = crate::secret::exposed(&settings.password);
            parallel::auto::backup_jobs_for(pg, password, selecting).await
        }
    };
    if jobs > 1 {
        let started =
            parallel::backup::start_backup(pg, settings, redactor, extra.clone(), jobs).await;
        match started {
            // Nothing is uploaded before the stream starts: a parallel
            // setup `auto` chose that cannot run here (a pooler in
            // transaction mode cannot export a snapshot, say) falls back to
            // the one stream the default used to be. A run the user asked
            // to be parallel fails instead.
            Err(e) if settings.pg_jobs == Jobs::Auto && crate::interrupt::received().is_none() => {
                tracing::warn!(error = %e, "--jobs auto: the parallel backup could not start; one pg_dump stream instead");
            }
            started => return started,
        }
    }
    let running = dump::spawn_dump(
        &settings.pg_dump,
        pg,
        &extra,
        crate::secret::exposed(&settings.password),
        redactor.clone(),
    )
    .map_err(|e| Error::usage(format!("--pg-dump: {e}")))?;
    let output = running
        .into_output()
        .map_err(|e| Error::source(e.to_string()))?;
    Ok(BackupStream {
        stream: Box::new(output),
        source: source_info(pg),
        artifact_stem: "dump.pgdump",
        format: "pg_dump-custom",
        producer: Producer {
            tool: "pg_dump".into(),
            version: None,
            arguments: dump::dump_arguments(&extra),
        },
        finished: None,
        parent: None,
        parts: None,
    })
}

/// What the manifest says of the source before the dump has run.
pub fn source_info(pg: &PostgresTarget) -> SourceInfo {
    SourceInfo {
        kind: SourceKind::Postgres,
        address: pg.url.clone(),
        server_version: None,
        database: Some(pg.database.clone()),
        keys: None,
        roles: Vec::new(),
        kafka: None,
        search: None,
        postgres: None,
    }
}

/// After the upload: the source's role names, and the archive header the
/// stream began with. Anything but a custom-format archive (a plain dump
/// smuggled in by an option, an empty stream) is never a backup.
pub async fn finish_backup(
    pg: &PostgresTarget,
    settings: &BackupSettings,
    redactor: &Redactor,
    head: &[u8],
    backup: &mut BackupStream,
) -> Result<()> {
    backup.source.roles = source_roles(pg, settings, redactor).await;
    match archive::parse_header(head) {
        Ok(header) => {
            backup.source.server_version = header.server_version;
            backup.producer.version = header.pg_dump_version;
            Ok(())
        }
        Err(e) => Err(Error::source(format!(
            "pg_dump did not produce a custom-format archive ({e}); nothing was stored"
        ))),
    }
}

/// The source's role names for the manifest (a drill's ephemeral server
/// creates them). Failing to list them costs a drill that convenience,
/// never the backup.
async fn source_roles(
    pg: &PostgresTarget,
    settings: &BackupSettings,
    redactor: &Redactor,
) -> Vec<String> {
    match dump::list_roles(
        &settings.psql,
        pg,
        crate::secret::exposed(&settings.password),
        redactor,
    )
    .await
    {
        Ok(roles) => roles,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the source's roles for the manifest; a drill takes them from the archive's table of contents");
            Vec::new()
        }
    }
}

/// pg_dump's own error (redacted): a database or role that does not exist
/// is a configuration error, with the fix.
pub fn source_failed(message: String) -> Error {
    match dump::missing_object(&message) {
        Some(fix) => Error::usage(format!("{message}; {fix}")),
        None => Error::source(message),
    }
}

/// The sessions a restore or drill loads a parallel backup with.
pub fn session_count(jobs: Jobs) -> u32 {
    match jobs {
        Jobs::Fixed(n) => n,
        Jobs::Auto => parallel::auto::sessions(parallel::auto::cpus()),
    }
}

/// `restore --to postgres://…`.
pub async fn restore(
    pg: &PostgresTarget,
    backup: &Stored<'_>,
    settings: &RestoreSettings,
) -> Result<()> {
    let jobs = session_count(settings.pg_jobs);
    let asked_for_sessions = matches!(settings.pg_jobs, Jobs::Fixed(n) if n > 1);
    let settings = restore::PgRestoreSettings::for_restore(settings)?;
    if asked_for_sessions && backup.manifest.source.postgres.is_none() {
        tracing::info!(
            backup = %backup.manifest.backup_id,
            "the backup is one pg_dump stream (made with --jobs 1): it restores in one session"
        );
    }
    parallel::restore::restore(
        &settings,
        backup,
        pg,
        // The warning in the log is all a plain restore reports.
        &Default::default(),
        jobs,
        parallel::restore::Place::Replace,
    )
    .await
}

/// A hook's statement, run by psql. psql, like pg_dump, honours every libpq
/// setting the URL carries (sslmode, service); the password travels only in
/// its environment, and none of the agent's PG* variables do.
pub async fn run_statement(
    pg: &PostgresTarget,
    statement: &str,
    password: Option<&str>,
    psql: &std::path::Path,
) -> Result<()> {
    let mut command = crate::pipeline::process::command(psql);
    command
        .args([
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            "--dbname",
        ])
        .arg(&pg.url)
        .arg("--command")
        .arg(statement)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    dump::set_password(&mut command, password);
    let output = command
        .output()
        .await
        .map_err(|e| Error::usage(format!("cannot run {} for a sql hook: {e}", psql.display())))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::hook(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}
