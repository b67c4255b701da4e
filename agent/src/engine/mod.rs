//! The database engines: everything one engine knows lives in its folder —
//! its target URL, the backup stream and the facts it adds to the manifest,
//! restore, the drill and its structural checks. `commands/` knows none of
//! it: it parses a [`Target`] (a drill: a [`RestoreTo`], checked into a
//! [`DrillTarget`] once the backup's [`SourceKind`] is known) and calls the
//! functions below, each of which matches on the engine once.
//!
//! Adding an engine: a folder `engine/<name>/` with `target.rs` (parse),
//! `mod.rs` (`start_backup`, `restore`, `drill`), a variant of [`Target`],
//! of [`DrillTarget`] and of `SourceKind` (`manifest.rs`), and one arm in
//! each `match` of this file (the compiler lists them); its flags become
//! settings in `cli/settings.rs`. Engines import what they share from the
//! leaf [`common`] and [`settings`], never from this file, and take their
//! own target type, never a [`Target`]. The recipe is in
//! docs/ARCHITECTURE.md.

pub mod common;
pub mod kafka;
pub mod postgres;
pub mod redis;
pub mod search;
pub mod settings;
pub mod throwaway;
pub mod vault;

use std::path::PathBuf;

use url::Url;
use vertice_crds::drill::{DrillChecks, DrillReport};
use vertice_crds::redact::redact_url;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, SourceKind};
use crate::pipeline::redact::Redactor;
pub use common::{
    percent_decode, record_restore, timed, BackupStream, Drilled, PartRequest, PartSink, Stored,
};
pub use kafka::KafkaTarget;
pub use postgres::PostgresTarget;
pub use redis::RedisTarget;
pub use search::SearchTarget;
pub use settings::{BackupSettings, DrillSettings, RestoreSettings};
pub use vault::VaultTarget;

/// A parsed `--source` / `--to`: one variant per engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Postgres(PostgresTarget),
    Redis(RedisTarget),
    Vault(VaultTarget),
    Kafka(KafkaTarget),
    /// An Elasticsearch or OpenSearch cluster (`http(s)://` with the kind
    /// `elasticsearch`).
    Search(SearchTarget),
    /// An RDB file for a fresh Redis instance (restore only).
    File(PathBuf),
}

impl Target {
    /// Parses `--source`/`--to` (named by `flag` in errors).
    pub fn parse(raw: &str, flag: &str) -> Result<Target> {
        Target::parse_as(raw, flag, None)
    }

    /// Like [`Target::parse`]; `kind` is the kind declared on the command
    /// line (`--source-kind` / `--target-kind`), which says what engine an
    /// `http(s)://` address is (Vault for `vault`, a search cluster for
    /// `elasticsearch`).
    pub fn parse_as(raw: &str, flag: &str, kind: Option<SourceKind>) -> Result<Target> {
        // A list of brokers is no URL a parser takes; the Kafka parser
        // prints only the flag, never `raw`.
        if kafka::target::is_kafka(raw) {
            return kafka::target::parse(raw, flag).map(Target::Kafka);
        }
        // Everything below prints `shown`, never `raw`.
        let shown = redact_url(raw);
        let url = Url::parse(raw).map_err(|e| {
            Error::usage(format!(
                "{flag} {shown:?} is not a URL ({e}); expected postgres://USER@HOST:PORT/DB, redis://[USER@]HOST:PORT, vault://HOST:PORT, kafka://HOST:PORT[,HOST:PORT…] or (restore only) file:///path/dump.rdb (a password goes in PGPASSWORD / REDIS_PASSWORD / KAFKA_PASSWORD or --password-file, a Vault token in VAULT_TOKEN or --vault-token-file)"
            ))
        })?;
        if url.password().is_some() {
            return Err(Error::usage(format!(
                "{flag} must not contain a password: put it in PGPASSWORD / REDIS_PASSWORD / ELASTICSEARCH_PASSWORD or a file named by --password-file (Vault takes a token, from VAULT_TOKEN or --vault-token-file) ({shown})"
            )));
        }
        let raw = shown.as_str();
        match url.scheme() {
            "postgres" | "postgresql" => {
                postgres::target::parse(&url, flag, raw).map(Target::Postgres)
            }
            "redis" | "rediss" => redis::target::parse(&url, flag, raw).map(Target::Redis),
            "file" => Ok(Target::File(redis::target::rdb_file(&url))),
            "http" | "https" if kind == Some(SourceKind::Elasticsearch) => {
                search::target::parse(&url, flag, raw).map(Target::Search)
            }
            "vault" | "http" | "https" => {
                vault::target::parse(&url, flag, raw, kind == Some(SourceKind::Vault))
                    .map(Target::Vault)
            }
            other => Err(Error::usage(format!(
                "{flag}: unknown scheme {other:?}; expected postgres://, redis://, vault://, kafka:// or (restore only) file:///path/dump.rdb"
            ))),
        }
    }
}

impl Target {
    /// The kind of backup this target makes or takes.
    pub fn kind(&self) -> SourceKind {
        match self {
            Target::Postgres(_) => SourceKind::Postgres,
            Target::Redis(_) | Target::File(_) => SourceKind::Redis,
            Target::Vault(_) => SourceKind::Vault,
            Target::Kafka(_) => SourceKind::Kafka,
            Target::Search(_) => SourceKind::Elasticsearch,
        }
    }

    /// Where this engine's password comes from without `--password-file`;
    /// `None`: the engine takes no password (Vault logs in its own way, an
    /// RDB file has none).
    pub fn password_env(&self) -> Option<&'static [&'static str]> {
        match self {
            Target::Postgres(_) => Some(postgres::target::PASSWORD_ENV),
            Target::Redis(_) => Some(redis::target::PASSWORD_ENV),
            // Kafka takes a password only for a SASL user.
            Target::Kafka(k) => k.sasl.as_ref().map(|_| kafka::target::PASSWORD_ENV),
            // Basic auth only when the URL names a user.
            Target::Search(t) => t.user.as_ref().map(|_| search::target::PASSWORD_ENV),
            // Writing an RDB file reads no password.
            Target::Vault(_) | Target::File(_) => None,
        }
    }

    /// Where this engine's login token comes from without
    /// `--vault-token-file`; `None`: the engine takes no token.
    pub fn token_env(&self) -> Option<&'static [&'static str]> {
        match self {
            Target::Vault(_) => Some(vault::target::TOKEN_ENV),
            Target::Postgres(_)
            | Target::Redis(_)
            | Target::Kafka(_)
            | Target::Search(_)
            | Target::File(_) => None,
        }
    }

    /// The backup name when `--name` is not given.
    pub fn default_name(&self) -> Result<String> {
        match self {
            Target::Postgres(pg) => crate::names::name_for_database(&pg.database),
            Target::Vault(_) => Ok("vault".to_string()),
            Target::Kafka(_) => Ok("kafka".to_string()),
            Target::Search(_) => Ok("elasticsearch".to_string()),
            Target::Redis(_) | Target::File(_) => Ok("redis".to_string()),
        }
    }

    /// Starts the backup stream; the password and every secret are added
    /// to `redactor` first.
    pub async fn start_backup(
        &self,
        settings: &BackupSettings,
        redactor: &mut Redactor,
    ) -> Result<BackupStream> {
        match self {
            Target::Postgres(pg) => postgres::start_backup(pg, settings, redactor).await,
            Target::Redis(redis) => redis::start_backup(redis, settings, redactor).await,
            Target::Vault(vault) => vault::start_backup(vault, settings, redactor).await,
            Target::Kafka(k) => kafka::start_backup(k, settings, redactor).await,
            Target::Search(t) => search::start_backup(t, settings, redactor).await,
            Target::File(_) => Err(Error::usage(
                "--source file:// is not a database; back up postgres://, redis://, vault:// (or http(s):// with --source-kind vault) or kafka:// (or kafkas://)",
            )),
        }
    }

    /// Refuses a backup this target's engine cannot make, before anything
    /// is read: only Kafka continues an earlier backup (`incremental`).
    pub fn check_backup(&self, incremental: bool) -> Result<()> {
        match self {
            Target::Kafka(_) => Ok(()),
            _ if incremental => Err(Error::usage(
                "--incremental is for Kafka sources (--source kafka://…); PostgreSQL, Redis, Vault and Elasticsearch backups are always full",
            )),
            Target::Postgres(_)
            | Target::Redis(_)
            | Target::Vault(_)
            | Target::Search(_)
            | Target::File(_) => Ok(()),
        }
    }

    /// Whether this run continues the newest backup of its series (Kafka's
    /// `--incremental`): the command then finds that backup in the store
    /// (`catalog::continuable`) and hands it to [`Target::continue_from`].
    pub fn incremental(&self, settings: &BackupSettings) -> bool {
        match self {
            Target::Kafka(_) => settings.kafka.incremental,
            Target::Postgres(_)
            | Target::Redis(_)
            | Target::Vault(_)
            | Target::Search(_)
            | Target::File(_) => false,
        }
    }

    /// `settings` for a run continuing `newest`, the newest backup of the
    /// series whose chain restores; the engine may still take a full backup
    /// (`newest` is of another engine, or its chain is long enough).
    pub fn continue_from(&self, settings: &mut BackupSettings, newest: &Manifest) {
        if let Target::Kafka(_) = self {
            kafka::continue_from(&mut settings.kafka, newest);
        }
    }

    /// What the engine learns once the stream is stored: `head` is the
    /// stream's first bytes. An error means what was stored is no backup.
    pub async fn finish_backup(
        &self,
        settings: &BackupSettings,
        redactor: &Redactor,
        head: &[u8],
        store: &dyn crate::store::Store,
        backup: &mut BackupStream,
    ) -> Result<()> {
        if let Some(finished) = backup.finished.take() {
            backup.source = finished
                .await
                .map_err(|e| Error::source(format!("the source reader stopped: {e}")))?
                .map_err(|e| e.map_message(|m| redactor.redact(&m)))?;
        }
        match self {
            Target::Postgres(pg) => {
                postgres::finish_backup(pg, settings, redactor, head, backup).await
            }
            Target::Search(t) => search::finish_backup(t, settings, store, backup).await,
            _ => Ok(()),
        }
    }

    /// The error for a source stream that failed with `message` (redacted).
    pub fn source_failed(&self, message: String) -> Error {
        match self {
            Target::Postgres(_) => postgres::source_failed(message),
            _ => Error::source(message),
        }
    }

    /// Refuses a backup of another engine than this target's, naming what
    /// `--to` must be.
    pub fn check_kind(&self, manifest: &Manifest) -> Result<()> {
        let kind = manifest.source.kind;
        if matches!(
            (self, kind),
            (Target::Postgres(_), SourceKind::Postgres)
                | (Target::File(_) | Target::Redis(_), SourceKind::Redis)
                | (Target::Vault(_), SourceKind::Vault)
                | (Target::Kafka(_), SourceKind::Kafka)
                | (Target::Search(_), SourceKind::Elasticsearch)
        ) {
            return Ok(());
        }
        Err(Error::usage(format!(
            "backup {} is a {kind} backup; --to must be {}",
            manifest.backup_id,
            match kind {
                SourceKind::Postgres => "a postgres:// URL",
                SourceKind::Redis => "a redis:// URL or file:///path/dump.rdb",
                SourceKind::Vault => "a vault:// URL (or http(s):// with --target-kind vault)",
                SourceKind::Kafka => "a kafka:// (or kafkas://) address",
                SourceKind::Elasticsearch =>
                    "an http(s):// cluster address with --target-kind elasticsearch",
            }
        )))
    }

    /// Restores `backup` into this target.
    pub async fn restore(&self, backup: &Stored<'_>, settings: &RestoreSettings) -> Result<()> {
        match (self, backup.manifest.source.kind) {
            (Target::Postgres(pg), SourceKind::Postgres) => {
                postgres::restore(pg, backup, settings).await
            }
            (Target::File(path), SourceKind::Redis) => {
                redis::restore_file(path, backup, settings).await
            }
            (Target::Redis(redis), SourceKind::Redis) => {
                redis::restore_live(redis, backup, settings).await
            }
            (Target::Vault(vault), SourceKind::Vault) => {
                vault::restore(vault, backup, settings).await
            }
            (Target::Kafka(k), SourceKind::Kafka) => kafka::restore(k, backup, settings).await,
            (Target::Search(t), SourceKind::Elasticsearch) => {
                search::restore(t, backup, settings).await
            }
            // Every other pair is a kind mismatch, which `check_kind` refuses.
            (_, _) => self.check_kind(backup.manifest),
        }
    }

    /// Deletes what `old`, a backup retention lets go, holds outside the
    /// store (a search cluster's snapshot), through this source.
    pub async fn release(&self, settings: &BackupSettings, old: &Manifest) -> Result<()> {
        match self {
            Target::Search(t) => search::release(t, settings, old).await,
            _ if holds_data_outside_the_store(old) => Err(Error::usage(format!(
                "backup {}'s snapshot lives on a search cluster, which this run's source is not",
                old.backup_id
            ))),
            _ => Ok(()),
        }
    }

    /// Deletes what this run's source made for a backup that will not be
    /// stored (a search cluster's snapshot), from the facts it returned.
    pub async fn discard(
        &self,
        settings: &BackupSettings,
        source: &crate::manifest::SourceInfo,
    ) -> Result<()> {
        match self {
            Target::Search(t) => search::discard(t, settings, source).await,
            _ => Ok(()),
        }
    }

    /// Runs a hook's statement on the target (`psql` for PostgreSQL).
    pub async fn run_statement(
        &self,
        statement: &str,
        password: Option<&str>,
        psql: &std::path::Path,
    ) -> Result<()> {
        match self {
            Target::Postgres(pg) => postgres::run_statement(pg, statement, password, psql).await,
            Target::Redis(redis) => redis::run_statement(redis, statement, password).await,
            _ => Err(Error::usage(
                "sql hooks run on PostgreSQL and Redis targets only",
            )),
        }
    }
}

/// Whether a backup's data lives outside the store (a search cluster's
/// snapshot): retention deletes it only through the source.
pub fn holds_data_outside_the_store(manifest: &Manifest) -> bool {
    manifest
        .source
        .search
        .as_ref()
        .is_some_and(|s| s.snapshot.is_some())
}

/// The store objects a backup needs beside its own directory (a search
/// snapshot's blobs in the agent's repository), keys relative to the
/// store's prefix, with their sizes.
pub fn held_objects(manifest: &Manifest) -> Vec<(String, u64)> {
    let Some(snapshot) = manifest
        .source
        .search
        .as_ref()
        .and_then(|s| s.snapshot.as_ref())
    else {
        return Vec::new();
    };
    let Some(repository) = &snapshot.managed else {
        return Vec::new();
    };
    snapshot
        .blobs
        .iter()
        .map(|b| (format!("{}/{}", repository.store_path, b.key), b.size))
        .collect()
}

/// Checks what a backup holds outside its artifacts (a search snapshot's
/// blobs in the agent's own repository in the store); how many objects
/// were checked.
pub async fn check_held_data(
    store: &dyn crate::store::Store,
    manifest: &Manifest,
) -> Result<usize> {
    match manifest
        .source
        .search
        .as_ref()
        .and_then(|s| s.snapshot.as_ref())
    {
        Some(snapshot) => search::repository::check_blobs(store, snapshot).await,
        None => Ok(0),
    }
}

/// Refuses drill settings no engine could use, before the store is read.
pub fn check_drill_settings(settings: &DrillSettings) -> Result<()> {
    postgres::scratch::validate_prefix(&settings.scratch_prefix).map_err(Error::usage)
}

/// A drill's `--restore-to`, parsed once where the drill's settings are
/// prepared; which engine may use it is known only once the backup is
/// chosen ([`drill_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTo {
    /// `ephemeral`: a PostgreSQL server the drill starts itself.
    Ephemeral,
    /// A server or cluster the user names.
    Target(Target),
    /// An `http(s)://` address: which engine's is known only from the
    /// backup (an Elasticsearch / OpenSearch cluster).
    Http(String),
}

impl RestoreTo {
    /// `ephemeral`, or a target's URL (its errors name `--restore-to`).
    pub fn parse(raw: &str) -> Result<RestoreTo> {
        if raw == postgres::EPHEMERAL {
            return Ok(RestoreTo::Ephemeral);
        }
        if let Ok(url) = Url::parse(raw) {
            if matches!(url.scheme(), "http" | "https") {
                // Parsed as the backup's engine's, with its checks, once
                // the backup is chosen; nothing is read before.
                return Ok(RestoreTo::Http(raw.to_string()));
            }
        }
        // Target's own message would offer the restore-only targets too.
        if !kafka::target::is_kafka(raw) && Url::parse(raw).is_err() {
            return Err(Error::usage(format!(
                "--restore-to {:?} is not a URL; a drill restores into postgres://USER@HOST:PORT/postgres or ephemeral (PostgreSQL backups) or kafka://HOST:PORT[,HOST:PORT…] (Kafka backups)",
                redact_url(raw)
            )));
        }
        Target::parse(raw, "--restore-to").map(RestoreTo::Target)
    }
}

/// Where a drill restores, checked against the backup's engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillTarget {
    /// A server the user names (no redirects: `check_drill_server`), or
    /// `None`: an ephemeral server of the drill's own.
    Postgres(Option<PostgresTarget>),
    /// The cluster the drill's scratch topics go to.
    Kafka(KafkaTarget),
    /// The cluster the drill's throwaway indices go to.
    Search(SearchTarget),
    /// Redis and Vault drills restore into a throwaway target of their own.
    Redis,
    Vault,
}

/// Refuses a drill whose `--restore-to` does not suit the backup's engine,
/// before anything is read (and before its password is); else where the
/// drill restores.
pub fn drill_target(kind: SourceKind, restore_to: Option<RestoreTo>) -> Result<DrillTarget> {
    match (kind, restore_to) {
        (SourceKind::Postgres, Some(RestoreTo::Ephemeral)) => Ok(DrillTarget::Postgres(None)),
        (SourceKind::Postgres, Some(RestoreTo::Target(Target::Postgres(server)))) => {
            postgres::check_drill_server(server).map(|s| DrillTarget::Postgres(Some(s)))
        }
        (SourceKind::Postgres, Some(_)) => Err(Error::usage(
            "--restore-to must be postgres://USER@HOST:PORT/DB (or ephemeral) for a PostgreSQL backup",
        )),
        (SourceKind::Postgres, None) => Err(Error::usage(
            "--restore-to is needed for a PostgreSQL drill: postgres://USER@HOST:PORT/postgres, a server where the drill may create and drop its scratch databases",
        )),
        (SourceKind::Kafka, Some(RestoreTo::Target(Target::Kafka(cluster)))) => {
            Ok(DrillTarget::Kafka(cluster))
        }
        (SourceKind::Kafka, Some(_)) => Err(Error::usage(
            "--restore-to must be kafka://HOST:PORT[,HOST:PORT…] (or kafkas://) for a Kafka backup",
        )),
        (SourceKind::Kafka, None) => Err(Error::usage(
            "--restore-to is needed for a Kafka drill: kafka://HOST:PORT, a cluster where the drill may create and delete its scratch topics (vertice-drill-<backup>-<topic>)",
        )),
        (SourceKind::Elasticsearch, Some(RestoreTo::Http(raw))) => {
            match Target::parse_as(&raw, "--restore-to", Some(SourceKind::Elasticsearch))? {
                Target::Search(cluster) => Ok(DrillTarget::Search(cluster)),
                _ => Err(Error::usage("--restore-to must be http(s)://HOST:PORT for an Elasticsearch backup")),
            }
        }
        (SourceKind::Elasticsearch, Some(_)) => Err(Error::usage(
            "--restore-to must be http(s)://[USER@]HOST:PORT for an Elasticsearch / OpenSearch backup",
        )),
        (SourceKind::Elasticsearch, None) => Err(Error::usage(
            "--restore-to is needed for an Elasticsearch / OpenSearch drill: http(s)://HOST:PORT, a cluster where the drill may create and delete its throwaway indices (vertice-drill-<backup>-<index>)",
        )),
        (SourceKind::Redis | SourceKind::Vault, Some(_)) => Err(Error::usage(format!(
            "--restore-to is for PostgreSQL, Kafka and Elasticsearch drills; a {kind} drill restores into a throwaway target of its own"
        ))),
        (SourceKind::Redis, None) => Ok(DrillTarget::Redis),
        (SourceKind::Vault, None) => Ok(DrillTarget::Vault),
    }
}

impl DrillTarget {
    /// Where the password of the drill's target comes from, if it takes
    /// one: a PostgreSQL server the user names, a Kafka cluster's SASL user.
    pub fn password_env(&self) -> Option<&'static [&'static str]> {
        match self {
            DrillTarget::Postgres(Some(_)) => Some(postgres::target::PASSWORD_ENV),
            DrillTarget::Kafka(cluster) => {
                cluster.sasl.as_ref().map(|_| kafka::target::PASSWORD_ENV)
            }
            DrillTarget::Search(cluster) => {
                cluster.user.as_ref().map(|_| search::target::PASSWORD_ENV)
            }
            DrillTarget::Postgres(None) | DrillTarget::Redis | DrillTarget::Vault => None,
        }
    }
}

/// Restores a verified backup into a throwaway target and runs the checks,
/// recording them in `report`; the target is gone when this returns
/// (`report.cleaned_up` says whether it went cleanly).
pub async fn drill(
    d: &Drilled<'_>,
    target: &DrillTarget,
    checks: &DrillChecks,
    report: &mut DrillReport,
) -> Result<()> {
    match target {
        DrillTarget::Postgres(server) => {
            postgres::drill(d, server.clone(), &checks.postgres, report).await
        }
        DrillTarget::Redis => {
            redis::drill(d, &checks.redis, report).await?;
            // Its throwaway directory and server are gone once it returns.
            report.cleaned_up = true;
            Ok(())
        }
        DrillTarget::Vault => {
            vault::drill(d, report).await?;
            report.cleaned_up = true;
            Ok(())
        }
        DrillTarget::Kafka(cluster) => kafka::drill(d, cluster, report).await,
        DrillTarget::Search(cluster) => search::drill(d, cluster, &checks.search, report).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_and_redis_urls() {
        assert_eq!(
            Target::parse("postgres://app@db:5432/sales?sslmode=require", "--source").expect("pg"),
            Target::Postgres(PostgresTarget {
                url: "postgres://app@db:5432/sales?sslmode=require".into(),
                database: "sales".into()
            })
        );
        assert_eq!(
            Target::parse("redis://backup@cache:6380/2", "--source").expect("redis"),
            Target::Redis(RedisTarget {
                host: "cache".into(),
                port: 6380,
                username: Some("backup".into()),
                db: Some(2)
            })
        );
        assert_eq!(
            Target::parse("redis://127.0.0.1", "--source").expect("redis"),
            Target::Redis(RedisTarget {
                host: "127.0.0.1".into(),
                port: 6379,
                username: None,
                db: None
            })
        );
        assert_eq!(
            Target::parse("file:///data/dump.rdb", "--to").expect("file"),
            Target::File("/data/dump.rdb".into())
        );
    }

    #[test]
    fn refuses_passwords_and_names_the_flag() {
        let err =
            Target::parse("postgres://app:hunter2@db/sales", "--source").expect_err("password");
        let msg = err.to_string();
        assert!(
            msg.contains("--source") && msg.contains("PGPASSWORD"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert_eq!(err.exit_code(), 2);
        assert!(Target::parse("postgres://db:5432/sales?password=x", "--source").is_err());
    }

    #[test]
    fn rejects_incomplete_or_unknown_urls() {
        for (raw, needle) in [
            ("postgres://app@db:5432", "names no database"),
            ("mysql://db/x", "unknown scheme"),
            ("not a url", "not a URL"),
            ("redis://cache:6379/abc", "database number"),
        ] {
            let msg = Target::parse(raw, "--source").expect_err(raw).to_string();
            assert!(msg.contains(needle), "{raw}: {msg}");
        }
    }

    #[test]
    fn a_drill_server_that_redirects_is_refused_before_anything_is_read() {
        let check = |to: &str| {
            RestoreTo::parse(to).and_then(|to| drill_target(SourceKind::Postgres, Some(to)))
        };
        for (to, needle) in [
            ("postgres://app@db/postgres?dbname=x", "dbname="),
            ("postgres://app@db/postgres?service=x", "service="),
            ("redis://db", "must be postgres://"),
        ] {
            let err = check(to).expect_err(to);
            assert_eq!(err.exit_code(), 2, "{to}");
            assert!(err.to_string().contains(needle), "{to}: {err}");
        }
        assert!(check("ephemeral").is_ok());
        assert!(check("postgres://app@db/postgres").is_ok());
    }

    #[test]
    fn an_rdb_file_reads_no_password() {
        let file = Target::parse("file:///data/dump.rdb", "--to").expect("file");
        assert_eq!(file.password_env(), None);
    }

    #[test]
    fn password_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(
            crate::secret_files::resolve_password(Some(&path), &[]).expect("read"),
            Some("s3cret".into())
        );
        let missing = dir.path().join("nope");
        assert!(crate::secret_files::resolve_password(Some(&missing), &[])
            .expect_err("missing")
            .to_string()
            .contains("--password-file"));
    }
}
