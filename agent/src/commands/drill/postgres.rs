//! A PostgreSQL drill: a scratch database on the server `--restore-to`
//! names, created under `--scratch-prefix` and always dropped; the backup
//! restored into it with the ordinary restore path (nothing commits unless
//! the whole artifact matched); then the archive's tables, sequences and
//! large objects are looked for, and the user's assertions run read-only.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use tokio::io::AsyncReadExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use url::Url;
use vertice_crds::drill::{DrillReport, PostgresChecks, SqlAssertion};

use super::ephemeral_postgres::{self, EphemeralPostgres, EPHEMERAL};
use super::{scratch, timed, Drilled};
use crate::commands::restore_postgres::{self, OlderServer, PgRestoreSettings, RestoreInto};
use crate::commands::verify::{open_artifact, read_failed};
use crate::error::{Error, Result};
use crate::source::pg_archive::{self, Contents};
use crate::target::{resolve_password, PostgresTarget, Target, POSTGRES_PASSWORD_ENV};

/// The table of contents sits at the start of the archive; a database with
/// millions of objects has a TOC of a few hundred MiB at most.
const MAX_TOC_BYTES: usize = 512 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Tries at a scratch name before a collision is reported: the name holds
/// the time and 32 random bits, so a second collision means something else
/// makes databases of this shape.
const NAME_TRIES: u32 = 3;
/// How long a cancel request may take after a signal.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the drill restores: how its errors name the place and the flag.
struct Place<'a> {
    server: &'a PostgresTarget,
    password: Option<&'a str>,
    /// `--restore-to postgres://…` (redacted) or `--restore-to ephemeral`:
    /// never a URL the user did not give.
    label: String,
    /// For the report: `db:5432`, `an ephemeral PostgreSQL 17.2 …`.
    described: String,
    into: RestoreInto,
}

pub async fn drill(
    d: &Drilled<'_>,
    checks: &PostgresChecks,
    stale_after: chrono::Duration,
    report: &mut DrillReport,
) -> Result<()> {
    let raw = d.args.restore_to.as_deref().unwrap_or_default();
    if raw == EPHEMERAL {
        return drill_ephemeral(d, checks, stale_after, report).await;
    }
    let Target::Postgres(server) = Target::parse(raw, "--restore-to")? else {
        return Err(Error::usage(
            "--restore-to must be postgres://USER@HOST:PORT/DB (or ephemeral) for a PostgreSQL backup",
        ));
    };
    refuse_redirects(&server.url).map_err(|e| {
        Error::usage(format!(
            "--restore-to {}: {e}",
            vertice_crds::redact::redact_url(&server.url)
        ))
    })?;
    let password = resolve_password(d.args.password_file.as_ref(), POSTGRES_PASSWORD_ENV)?;
    let place = Place {
        server: &server,
        password: password.as_deref(),
        label: format!(
            "--restore-to {}",
            vertice_crds::redact::redact_url(&server.url)
        ),
        described: host_port(&server.url),
        into: RestoreInto::DrillServer,
    };
    drill_on(d, &place, checks, stale_after, report).await
}

/// The drill on a PostgreSQL server of its own, stopped and removed after.
async fn drill_ephemeral(
    d: &Drilled<'_>,
    checks: &PostgresChecks,
    stale_after: chrono::Duration,
    report: &mut DrillReport,
) -> Result<()> {
    let bin = ephemeral_postgres::find_bin_dir(d.args.postgres_bin.as_deref(), &d.args.pg_restore)?;
    let server = EphemeralPostgres::start(&bin).await?;
    let target = PostgresTarget {
        url: server.url.clone(),
        database: "postgres".into(),
    };
    let place = Place {
        server: &target,
        password: None,
        label: format!("--restore-to {EPHEMERAL}"),
        described: format!("an ephemeral {} in the drill's pod", server.version),
        into: RestoreInto::DrillEphemeral,
    };
    let result = drill_on(d, &place, checks, stale_after, report).await;
    let stopped = server.stop().await;
    report.cleaned_up = report.cleaned_up && stopped.is_ok();
    match (result, stopped) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(why)) => Err(Error::target(format!(
            "the drill passed but its ephemeral PostgreSQL did not stop cleanly: {why}"
        ))),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Scratch database, restore, checks, drop: on any server.
async fn drill_on(
    d: &Drilled<'_>,
    place: &Place<'_>,
    checks: &PostgresChecks,
    stale_after: chrono::Duration,
    report: &mut DrillReport,
) -> Result<()> {
    let admin = connect(&place.server.url, place.password, &place.label).await?;
    sweep_leftovers(&admin.client, &d.args.scratch_prefix, stale_after).await;

    let ephemeral = place.into == RestoreInto::DrillEphemeral;
    let contents = if checks.objects {
        Some(read_contents(d).await?)
    } else if ephemeral {
        // Only for the roles it names: without it, the manifest's roles.
        read_contents(d)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "could not read the archive's table of contents for the roles it names"))
            .ok()
    } else {
        None
    };
    // The ephemeral server has only its own superuser: one policy `TO
    // app_role` or aclitem naming a role would roll the whole restore back.
    let created = if ephemeral {
        let wanted: BTreeSet<String> = d
            .manifest
            .source
            .roles
            .iter()
            .chain(contents.iter().flat_map(|c| &c.roles))
            .cloned()
            .collect();
        create_roles(&admin.client, &wanted).await?
    } else {
        Vec::new()
    };
    let name = create_scratch(&admin.client, &d.args.scratch_prefix, &place.label).await?;
    report.target = Some(format!(
        "scratch database {name} on {}{}",
        place.described,
        created_roles(&created)
    ));
    tracing::info!(database = %name, "scratch database created");

    let contents = contents.filter(|_| checks.objects);
    let result = restore_and_check(d, place, &name, checks, contents, report).await;
    // Always, whatever happened above, and with a fresh connection if the
    // first one died with the server.
    let dropped = drop_scratch(admin.client, place, &name).await;
    report.cleaned_up = dropped.is_ok();
    match (result, dropped) {
        (Err(e), Err(d)) => {
            Err(e.map_message(|m| {
                format!("{m}; and the scratch database could not be dropped: {d}")
            }))
        }
        (Err(e), Ok(())) => Err(e),
        (Ok(()), Err(d)) => Err(Error::target(format!(
            "the drill passed but its scratch database could not be dropped: {d}"
        ))),
        (Ok(()), Ok(())) => {
            tracing::info!(database = %name, "scratch database dropped");
            Ok(())
        }
    }
}

/// Creates `CREATE DATABASE … TEMPLATE template0` under a fresh name; a
/// name taken (by chance, or by a drill started the same second) is
/// retried, not reported as a missing privilege.
async fn create_scratch(admin: &Client, prefix: &str, label: &str) -> Result<String> {
    let mut tries = 0;
    loop {
        tries += 1;
        let random = u32::from_le_bytes(rand_bytes());
        let name = scratch::name(prefix, Utc::now(), random);
        let created = admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote(&name)
            ))
            .await;
        match created {
            Ok(()) => return Ok(name),
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) && tries < NAME_TRIES => {
                tracing::warn!(database = %name, "a database of the scratch name exists; trying another name");
            }
            Err(e) => {
                return Err(scratch_refused(
                    label,
                    &name,
                    e.code(),
                    &pg_reason(&e),
                    tries,
                ))
            }
        }
    }
}

/// Why a scratch database could not be created, as what it is.
fn scratch_refused(
    label: &str,
    name: &str,
    code: Option<&SqlState>,
    reason: &str,
    tries: u32,
) -> Error {
    let base = format!("{label}: cannot create the scratch database {name}: {reason}");
    match code {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => Error::usage(format!(
            "{base}; the drill's user needs CREATEDB (ALTER ROLE … CREATEDB)"
        )),
        Some(c) if *c == SqlState::DUPLICATE_DATABASE => Error::target(format!(
            "{base}; {tries} fresh names were all taken: something else creates databases named like the drill's (--scratch-prefix)"
        )),
        _ => Error::target(base),
    }
}

/// Creates the roles in `wanted` the server lacks, NOLOGIN and without
/// passwords (a throwaway server's objects only need them to exist).
/// Returns the names created.
async fn create_roles(admin: &Client, wanted: &BTreeSet<String>) -> Result<Vec<String>> {
    let existing: BTreeSet<String> = admin
        .query("SELECT rolname FROM pg_catalog.pg_roles", &[])
        .await
        .map_err(|e| {
            Error::target(format!(
                "listing the ephemeral server's roles: {}",
                pg_reason(&e)
            ))
        })?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing = roles_to_create(wanted, &existing);
    if missing.is_empty() {
        return Ok(missing);
    }
    let sql: String = missing
        .iter()
        .map(|r| format!("CREATE ROLE {} NOLOGIN;\n", quote(r)))
        .collect();
    admin.batch_execute(&sql).await.map_err(|e| {
        Error::target(format!(
            "creating the backup's roles on the ephemeral server: {}",
            pg_reason(&e)
        ))
    })?;
    tracing::info!(roles = %missing.join(", "), "created the backup's roles on the ephemeral server (NOLOGIN)");
    Ok(missing)
}

/// The roles to create: wanted, not there, not built in (`pg_*` is
/// reserved), and names PostgreSQL keeps whole (63 bytes).
fn roles_to_create(wanted: &BTreeSet<String>, existing: &BTreeSet<String>) -> Vec<String> {
    wanted
        .iter()
        .filter(|r| !r.is_empty() && r.len() <= 63 && !r.starts_with("pg_"))
        .filter(|r| !existing.contains(*r))
        .cloned()
        .collect()
}

/// For the report's target: which roles the drill created.
fn created_roles(created: &[String]) -> String {
    if created.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = created.iter().take(5).map(String::as_str).collect();
    let more = created.len() - shown.len();
    format!(
        "; created the backup's roles (NOLOGIN): {}{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

async fn restore_and_check(
    d: &Drilled<'_>,
    place: &Place<'_>,
    name: &str,
    checks: &PostgresChecks,
    contents: Option<Contents>,
    report: &mut DrillReport,
) -> Result<()> {
    let mut url =
        Url::parse(&place.server.url).map_err(|e| Error::usage(format!("{}: {e}", place.label)))?;
    url.set_path(&format!("/{name}"));
    let scratch = PostgresTarget {
        url: url.to_string(),
        database: name.to_string(),
    };
    let settings = PgRestoreSettings {
        pg_restore: d.args.pg_restore.clone(),
        psql: d.args.psql.clone(),
        extra: Vec::new(),
        no_owner: !d.args.with_owner,
        password: place.password.map(str::to_string),
        progress: d.args.run.progress,
        into: place.into,
        allow_older_server: d.args.allow_older_server,
    };
    let older = OlderServer::default();
    let restored = timed(
        report,
        restore_postgres::restore(
            &settings,
            d.store,
            d.manifest,
            d.artifact,
            d.identities,
            &scratch,
            &older,
        ),
    )
    .await;
    // A pass on an older server than the source's says less: the report
    // names what --allow-older-server let through, whatever the outcome.
    if let (Some(note), Some(target)) = (older.describe(), report.target.as_mut()) {
        target.push_str(&format!("; the server runs {note}"));
    }
    report.record(
        "restore",
        restored.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    restored?;
    tracing::info!(
        seconds = report.restore_seconds.unwrap_or(0.0),
        "restored into the scratch database"
    );

    let conn = connect(&scratch.url, place.password, &place.label).await?;
    if let Some(contents) = contents {
        interruptible(&conn, check_objects(&conn.client, &contents, report)).await??;
    }
    let backup_time = d.manifest.finished_at.to_rfc3339();
    for assertion in &checks.assertions {
        if crate::interrupt::received().is_some() {
            return Err(Error::target("interrupted before the assertions finished"));
        }
        let outcome =
            interruptible(&conn, run_assertion(&conn.client, assertion, &backup_time)).await?;
        report.record(format!("sql: {}", assertion.name), outcome);
    }
    Ok(())
}

/// Runs one of the drill's own statements; a signal cancels it on the
/// server at once (the scratch database is dropped next, within the
/// wind-down), instead of waiting out the statement's own timeout.
async fn interruptible<T>(conn: &Conn, work: impl Future<Output = T>) -> Result<T> {
    tokio::select! {
        out = work => Ok(out),
        () = crate::interrupt::cancelled() => {
            conn.cancel().await;
            Err(Error::target("interrupted while the drill's checks ran; the running statement was cancelled"))
        }
    }
}

/// Reads the archive's beginning until its table of contents is whole.
async fn read_contents(d: &Drilled<'_>) -> Result<Contents> {
    let mut open = open_artifact(d.store, d.manifest, d.artifact, d.identities).await?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // A store that fails midway is not a corrupt archive.
        let n = open.reader.read(&mut buf).await.map_err(|e| {
            read_failed(d.manifest, d.artifact, &e)
                .context("reading the archive's table of contents")
        })?;
        head.extend_from_slice(&buf[..n]);
        match pg_archive::parse_contents(&head) {
            Ok(Some(contents)) => return Ok(contents),
            Ok(None) if n == 0 => {
                return Err(Error::integrity(
                    "the archive ends inside its table of contents",
                ))
            }
            Ok(None) if head.len() > MAX_TOC_BYTES => {
                return Err(Error::integrity(format!(
                    "the archive's table of contents is larger than {} MiB",
                    MAX_TOC_BYTES >> 20
                )))
            }
            Ok(None) => {}
            Err(e) if e.starts_with(pg_archive::NEWER_FORMAT) => return Err(Error::usage(e)),
            Err(e) => {
                return Err(Error::integrity(format!(
                    "the archive's table of contents: {e}"
                )))
            }
        }
    }
}

/// One check per kind of object: tables, sequences, large objects.
async fn check_objects(
    client: &Client,
    contents: &Contents,
    report: &mut DrillReport,
) -> Result<()> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'S')",
            &[],
        )
        .await
        .map_err(|e| Error::target(format!("listing the restored tables: {}", pg_reason(&e))))?;
    let mut tables = BTreeSet::new();
    let mut sequences = BTreeSet::new();
    for row in rows {
        let key = (row.get::<_, String>(0), row.get::<_, String>(1));
        if row.get::<_, String>(2) == "S" {
            sequences.insert(key);
        } else {
            tables.insert(key);
        }
    }
    report.record("tables", missing("table", &contents.tables, &tables));
    report.record(
        "sequences",
        missing("sequence", &contents.sequences, &sequences),
    );
    if !contents.large_objects.is_empty() {
        let rows = client
            .query(
                "SELECT oid::text FROM pg_catalog.pg_largeobject_metadata",
                &[],
            )
            .await
            .map_err(|e| {
                Error::target(format!(
                    "listing the restored large objects: {}",
                    pg_reason(&e)
                ))
            })?;
        let present: BTreeSet<u32> = rows
            .iter()
            .filter_map(|r| r.get::<_, String>(0).parse().ok())
            .collect();
        let absent: Vec<String> = contents
            .large_objects
            .iter()
            .filter(|oid| !present.contains(oid))
            .map(u32::to_string)
            .collect();
        report.record(
            "large objects",
            listed("large object", contents.large_objects.len(), &absent),
        );
    }
    Ok(())
}

fn missing(
    what: &str,
    expected: &[(String, String)],
    present: &BTreeSet<(String, String)>,
) -> std::result::Result<(), String> {
    let absent: Vec<String> = expected
        .iter()
        .filter(|k| !present.contains(*k))
        .map(|(schema, name)| format!("{schema}.{name}"))
        .collect();
    listed(what, expected.len(), &absent)
}

fn listed(what: &str, expected: usize, absent: &[String]) -> std::result::Result<(), String> {
    if absent.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = absent.iter().take(5).map(String::as_str).collect();
    let more = absent.len().saturating_sub(shown.len());
    Err(format!(
        "{} of {expected} {what}s in the archive are missing after the restore: {}{}",
        absent.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// One statement in a read-only transaction with its own timeout; it must
/// return one row whose one column is `true`.
async fn run_assertion(
    client: &Client,
    assertion: &SqlAssertion,
    backup_time: &str,
) -> std::result::Result<(), String> {
    let timeout = Duration::from_secs(u64::from(assertion.timeout_seconds));
    let work = async {
        client
            .batch_execute("BEGIN TRANSACTION READ ONLY")
            .await
            .map_err(|e| pg_reason(&e))?;
        client
            .execute(
                "SELECT set_config('statement_timeout', $1, true), set_config('vertice.backup_time', $2, true)",
                &[&format!("{}ms", timeout.as_millis()), &backup_time],
            )
            .await
            .map_err(|e| pg_reason(&e))?;
        // The extended protocol takes exactly one statement.
        let rows = client.query(assertion.sql.as_str(), &[]).await;
        let _ = client.batch_execute("ROLLBACK").await;
        let rows = rows.map_err(|e| pg_reason(&e))?;
        judge(&rows)
    };
    // The server cancels at statement_timeout; this guards a dead server.
    match tokio::time::timeout(timeout + Duration::from_secs(5), work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

fn judge(rows: &[tokio_postgres::Row]) -> std::result::Result<(), String> {
    let [row] = rows else {
        return Err(format!(
            "returned {} rows; an assertion returns one row with one boolean",
            rows.len()
        ));
    };
    if row.len() != 1 {
        return Err(format!(
            "returned {} columns; an assertion returns one boolean",
            row.len()
        ));
    }
    match row.try_get::<_, Option<bool>>(0) {
        Ok(Some(true)) => Ok(()),
        Ok(Some(false)) => Err("returned false".into()),
        Ok(None) => Err("returned NULL".into()),
        Err(_) => Err(format!(
            "returned a {} where a boolean was expected",
            row.columns()[0].type_().name()
        )),
    }
}

async fn drop_scratch(
    admin: Client,
    place: &Place<'_>,
    name: &str,
) -> std::result::Result<(), String> {
    match drop_with(&admin, name).await {
        Ok(()) => Ok(()),
        Err(first) => {
            tracing::warn!(database = %name, error = %first, "dropping the scratch database failed; reconnecting to try again");
            let again = connect(&place.server.url, place.password, &place.label)
                .await
                .map_err(|e| e.to_string())?;
            drop_with(&again.client, name).await
        }
    }
}

/// `WITH (FORCE)` (PostgreSQL 13) ends sessions a timed-out check left;
/// older servers get the same by terminating them first.
async fn drop_with(client: &Client, name: &str) -> std::result::Result<(), String> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| pg_reason(&e))?
        .get(0);
    if version >= 130_000 {
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote(name)
            ))
            .await
            .map_err(|e| pg_reason(&e))
    } else {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| pg_reason(&e))?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote(name)))
            .await
            .map_err(|e| pg_reason(&e))
    }
}

/// Drops scratch databases an earlier drill could not (it was killed);
/// only names of the drill's own shape, and only old ones.
async fn sweep_leftovers(admin: &Client, prefix: &str, stale_after: chrono::Duration) {
    let names: Vec<String> = match admin
        .query("SELECT datname FROM pg_catalog.pg_database", &[])
        .await
    {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) => {
            tracing::warn!(error = %pg_reason(&e), "could not list databases to find leftover scratch databases");
            return;
        }
    };
    for name in scratch::leftovers(prefix, &names, Utc::now(), stale_after) {
        match drop_with(admin, name).await {
            Ok(()) => {
                tracing::warn!(database = %name, "dropped a scratch database an earlier drill left behind")
            }
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "could not drop a leftover scratch database")
            }
        }
    }
}

/// A connection of the drill's own, and what cancelling its statement
/// needs (a cancel request goes over a new connection of the same kind).
struct Conn {
    client: Client,
    tls: Option<MakeRustlsConnect>,
}

impl Conn {
    /// Asks the server to cancel the running statement; best effort.
    async fn cancel(&self) {
        let token = self.client.cancel_token();
        let sent = match &self.tls {
            None => tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(NoTls)).await,
            Some(tls) => {
                tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(tls.clone())).await
            }
        };
        if !matches!(sent, Ok(Ok(()))) {
            tracing::warn!("could not cancel the drill's running statement; dropping the scratch database ends it");
        }
    }
}

/// A connection for the drill's own statements (libpq's tools do the
/// restore). sslmode disable, prefer or require. `label` names the flag
/// (and the URL the user gave) in errors.
async fn connect(url: &str, password: Option<&str>, label: &str) -> Result<Conn> {
    let config = config_for(url, password, label)?;
    let ssl = config.get_ssl_mode();
    let failed = |e: tokio_postgres::Error| {
        let reason = pg_reason(&e);
        if crate::source::postgres::missing_object(&reason).is_some() || reason.contains("password")
        {
            Error::usage(format!("{label}: {reason}"))
        } else {
            Error::target(format!("{label}: {reason}"))
        }
    };
    if ssl == tokio_postgres::config::SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
        tokio::spawn(connection);
        Ok(Conn { client, tls: None })
    } else {
        let tls =
            crate::probe::tls::encrypt_only().map_err(|e| Error::target(format!("TLS: {e}")))?;
        let tls = MakeRustlsConnect::new(tls);
        let (client, connection) = config.connect(tls.clone()).await.map_err(failed)?;
        tokio::spawn(connection);
        Ok(Conn {
            client,
            tls: Some(tls),
        })
    }
}

/// The drill's own connection settings for `url`, as psql reads it.
fn config_for(url: &str, password: Option<&str>, label: &str) -> Result<tokio_postgres::Config> {
    let parsed = Url::parse(url).map_err(|e| Error::usage(format!("{label}: {e}")))?;
    let end = endpoint(&parsed).map_err(|e| Error::usage(format!("{label}: {e}")))?;
    let mut config = tokio_postgres::Config::new();
    match &end.host {
        Host::Socket(dir) => config.host_path(dir),
        Host::Tcp(host) => config.host(host),
    };
    config
        .port(end.port)
        .dbname(crate::target::percent_decode(
            parsed.path().trim_start_matches('/'),
        ))
        .application_name("vertice-drill")
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(user) = &end.user {
        config.user(user);
    }
    // Where psql connects with `hostaddr=`, and the server settings its
    // `options=` gives the session: the drill's own checks and its DROP
    // must meet the server (and session) the restore met.
    if let Some(addr) = end.hostaddr {
        config.hostaddr(addr);
    }
    if let Some(options) = &end.options {
        config.options(options);
    }
    if let Some(p) = password {
        config.password(p);
    }
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned());
    let ssl = crate::probe::postgres::ssl_mode(mode.as_deref()).map_err(|e| {
        Error::usage(format!(
            "{label}: {e}; the drill's own connection supports these"
        ))
    })?;
    config.ssl_mode(ssl);
    Ok(config)
}

#[derive(Debug, PartialEq, Eq)]
enum Host {
    Tcp(String),
    /// libpq's `host=/dir`: a unix socket directory.
    Socket(String),
}

/// Where the drill's own connection goes: where psql goes for the same URL.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    host: Host,
    port: u16,
    user: Option<String>,
    /// libpq's `hostaddr=`: the address connected to; `host` then only
    /// names the server (TLS, a password file).
    hostaddr: Option<std::net::IpAddr>,
    /// libpq's `options=`: server settings for the session (`-c …`).
    options: Option<String>,
}

/// The URL's host, hostaddr, port, user and options as libpq reads them:
/// `?host=`, `?port=` and `?user=` win over the URL's own parts, and
/// `?hostaddr=` over the host, so the drill's statements and psql's
/// restore reach the same server as the same user.
fn endpoint(url: &Url) -> std::result::Result<Endpoint, String> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let host = param("host")
        .or_else(|| {
            url.host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    if host.contains(',') {
        return Err(format!(
            "lists several hosts ({host}); the drill needs one server"
        ));
    }
    let port = match param("port") {
        Some(p) => p
            .parse()
            .map_err(|_| format!("port={p} is not a port number"))?,
        None => url.port().unwrap_or(5432),
    };
    let user = param("user")
        .or_else(|| Some(crate::target::percent_decode(url.username())).filter(|u| !u.is_empty()));
    let hostaddr = match param("hostaddr").filter(|a| !a.is_empty()) {
        Some(a) if a.contains(',') => {
            return Err(format!(
                "lists several addresses (hostaddr={a}); the drill needs one server"
            ))
        }
        Some(a) => Some(a.parse().map_err(|_| {
            format!("hostaddr={a} is not an IP address (libpq takes a numeric address there)")
        })?),
        None => None,
    };
    Ok(Endpoint {
        host: if host.starts_with('/') {
            Host::Socket(host)
        } else {
            Host::Tcp(host)
        },
        port,
        user,
        hostaddr,
        options: param("options").filter(|o| !o.is_empty()),
    })
}

/// Query parameters a drill server's URL may not carry: the drill puts its
/// scratch database in the path (a `dbname=` would send the restore
/// elsewhere), and its own connection reads no service file.
fn refuse_redirects(url: &str) -> std::result::Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| e.to_string())?;
    for (key, _) in parsed.query_pairs() {
        match key.as_ref() {
            "dbname" => return Err("give the database in the URL's path, not as dbname= (the drill restores into a scratch database it names there)".into()),
            "service" => return Err("service= is not supported here: the drill's own connection reads no service file; give host, port and user in the URL".into()),
            _ => {}
        }
    }
    Ok(())
}

/// For the report: the server as the drill reached it (`db:5432`, `db
/// (10.0.0.7):5432`).
fn host_port(url: &str) -> String {
    let Some(end) = Url::parse(url).ok().and_then(|u| endpoint(&u).ok()) else {
        return String::new();
    };
    let host = match &end.host {
        Host::Tcp(h) | Host::Socket(h) => h.as_str(),
    };
    match end.hostaddr {
        Some(addr) => format!("{host} ({addr}):{}", end.port),
        None => format!("{host}:{}", end.port),
    }
}

/// A double-quoted identifier. Scratch names are plain, but quoting keeps
/// any name exactly what it is.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn pg_reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

fn rand_bytes() -> [u8; 4] {
    let mut bytes = [0u8; 4];
    // The time in the name already separates drills; randomness only
    // separates two started within the same second.
    let _ = getrandom::fill(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_objects_are_named_and_bounded() {
        let expected: Vec<(String, String)> = (0..8)
            .map(|i| ("public".to_string(), format!("t{i}")))
            .collect();
        let present: BTreeSet<_> = expected[..1].iter().cloned().collect();
        let err = missing("table", &expected, &present).expect_err("missing");
        assert!(err.starts_with("7 of 8 tables"), "{err}");
        assert!(
            err.contains("public.t1") && err.ends_with("and 2 more"),
            "{err}"
        );
        let all: BTreeSet<_> = expected.iter().cloned().collect();
        assert!(missing("table", &expected, &all).is_ok());
    }

    #[test]
    fn a_taken_scratch_name_is_not_a_missing_privilege() {
        let label = "--restore-to postgres://drill@db:5432/postgres";
        let taken = scratch_refused(
            label,
            "vertice_drill_1_0000abcd",
            Some(&SqlState::DUPLICATE_DATABASE),
            "database \"vertice_drill_1_0000abcd\" already exists",
            3,
        )
        .to_string();
        assert!(
            taken.contains("3 fresh names were all taken") && !taken.contains("CREATEDB"),
            "{taken}"
        );
        let denied = scratch_refused(
            label,
            "n",
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "permission denied to create database",
            1,
        );
        assert_eq!(denied.exit_code(), 2);
        assert!(denied.to_string().contains("needs CREATEDB"), "{denied}");
        let other =
            scratch_refused("--restore-to ephemeral", "n", None, "disk full", 1).to_string();
        assert_eq!(
            other,
            "--restore-to ephemeral: cannot create the scratch database n: disk full"
        );
    }

    #[test]
    fn roles_of_the_backup_are_created_once_and_built_ins_never() {
        let wanted: BTreeSet<String> = ["app_role", "vertice", "pg_read_all_data", "", "Odd \"One"]
            .map(String::from)
            .into();
        let existing: BTreeSet<String> = ["vertice", "pg_read_all_data"].map(String::from).into();
        assert_eq!(
            roles_to_create(&wanted, &existing),
            ["Odd \"One", "app_role"]
        );
        assert_eq!(created_roles(&[]), "");
        let many: Vec<String> = (0..7).map(|i| format!("r{i}")).collect();
        assert_eq!(
            created_roles(&many),
            "; created the backup's roles (NOLOGIN): r0, r1, r2, r3, r4 and 2 more"
        );
    }

    #[test]
    fn the_drill_connects_where_psql_does() {
        let at = |u: &str| endpoint(&Url::parse(u).expect("url"));
        assert_eq!(
            at("postgres://drill@db:5433/postgres"),
            Ok(Endpoint {
                host: Host::Tcp("db".into()),
                port: 5433,
                user: Some("drill".into()),
                hostaddr: None,
                options: None,
            })
        );
        assert_eq!(
            at("postgres://drill@localhost:5432/postgres?host=%2Ftmp%2Fx&port=6000&user=other"),
            Ok(Endpoint {
                host: Host::Socket("/tmp/x".into()),
                port: 6000,
                user: Some("other".into()),
                hostaddr: None,
                options: None,
            })
        );
        assert_eq!(
            at("postgres://[::1]/postgres").map(|e| (e.host, e.port, e.user)),
            Ok((Host::Tcp("::1".into()), 5432, None))
        );
        assert!(at("postgres://a,b/postgres").is_err());
        assert!(at("postgres://a/postgres?host=a,b").is_err());
        assert!(at("postgres://a/postgres?port=x").is_err());
        assert!(refuse_redirects("postgres://a/postgres?dbname=shop").is_err());
        assert!(refuse_redirects("postgres://a/postgres?service=x").is_err());
        assert!(refuse_redirects("postgres://a/postgres?sslmode=require").is_ok());
    }

    #[test]
    fn hostaddr_and_options_reach_the_drill_s_own_connection() {
        let url = "postgres://drill@db.example:5433/postgres?hostaddr=10.0.0.7&options=-c%20search_path%3Dshop";
        let end = endpoint(&Url::parse(url).expect("url")).expect("endpoint");
        assert_eq!(end.host, Host::Tcp("db.example".into()));
        assert_eq!(end.hostaddr, Some("10.0.0.7".parse().expect("ip")));
        assert_eq!(end.options.as_deref(), Some("-c search_path=shop"));
        assert_eq!(host_port(url), "db.example (10.0.0.7):5433");
        let at = |u: &str| endpoint(&Url::parse(u).expect("url"));
        assert_eq!(
            at("postgres://db/postgres?hostaddr=%3A%3A1").map(|e| e.hostaddr),
            Ok(Some("::1".parse().expect("ip")))
        );
        let many = at("postgres://db/postgres?hostaddr=10.0.0.1,10.0.0.2").expect_err("refused");
        assert!(many.contains("several addresses"), "{many}");
        let named = at("postgres://db/postgres?hostaddr=db2").expect_err("refused");
        assert!(named.contains("not an IP address"), "{named}");

        let label = "--restore-to postgres://drill@db.example:5433/postgres";
        let config = config_for(url, None, label).expect("config");
        assert_eq!(
            config.get_hostaddrs(),
            &["10.0.0.7".parse::<std::net::IpAddr>().expect("ip")]
        );
        assert_eq!(config.get_options(), Some("-c search_path=shop"));
        assert_eq!(config.get_ports(), &[5433]);
        let e =
            config_for("postgres://db/postgres?hostaddr=db2", None, label).expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("--restore-to "), "{e}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
