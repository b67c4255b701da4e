//! A PostgreSQL drill: a scratch database on the server `--restore-to`
//! names, created under `--scratch-prefix` and always dropped; the backup
//! restored into it with the ordinary restore path (nothing commits unless
//! the whole artifact matched); then the archive's tables, sequences and
//! large objects are looked for, and the user's assertions run read-only.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use tokio::io::AsyncReadExt;
use tokio_postgres::{Client, NoTls};
use url::Url;
use vertice_crds::drill::{DrillReport, PostgresChecks, SqlAssertion};

use super::ephemeral_postgres::{self, EphemeralPostgres, EPHEMERAL};
use super::{scratch, timed, Drilled};
use crate::commands::restore_postgres::{self, PgRestoreSettings};
use crate::commands::verify::open_artifact;
use crate::error::{Error, Result};
use crate::source::pg_archive::{self, Contents};
use crate::target::{resolve_password, PostgresTarget, Target, POSTGRES_PASSWORD_ENV};

/// The table of contents sits at the start of the archive; a database with
/// millions of objects has a TOC of a few hundred MiB at most.
const MAX_TOC_BYTES: usize = 512 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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
    let password = resolve_password(d.args.password_file.as_ref(), POSTGRES_PASSWORD_ENV)?;
    let place = host_port(&server.url);
    drill_on(
        d,
        &server,
        password.as_deref(),
        &place,
        checks,
        stale_after,
        report,
    )
    .await
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
    let place = format!("an ephemeral {} in the drill's pod", server.version);
    let result = drill_on(d, &target, None, &place, checks, stale_after, report).await;
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
    server: &PostgresTarget,
    password: Option<&str>,
    place: &str,
    checks: &PostgresChecks,
    stale_after: chrono::Duration,
    report: &mut DrillReport,
) -> Result<()> {
    let shown = vertice_crds::redact::redact_url(&server.url);
    let admin = connect(&server.url, password, "--restore-to").await?;
    sweep_leftovers(&admin, &d.args.scratch_prefix, stale_after).await;

    let contents = if checks.objects {
        Some(read_contents(d).await?)
    } else {
        None
    };
    let random = u32::from_le_bytes(rand_bytes());
    let name = scratch::name(&d.args.scratch_prefix, Utc::now(), random);
    admin
        .batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote(&name)))
        .await
        .map_err(|e| {
            Error::usage(format!(
                "--restore-to {shown}: cannot create the scratch database {name}: {}; the drill's user needs CREATEDB",
                pg_reason(&e)
            ))
        })?;
    report.target = Some(format!("scratch database {name} on {place}"));
    tracing::info!(database = %name, "scratch database created");

    let result = restore_and_check(d, server, &name, password, checks, contents, report).await;
    // Always, whatever happened above, and with a fresh connection if the
    // first one died with the server.
    let dropped = drop_scratch(admin, &server.url, password, &name).await;
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

async fn restore_and_check(
    d: &Drilled<'_>,
    server: &PostgresTarget,
    name: &str,
    password: Option<&str>,
    checks: &PostgresChecks,
    contents: Option<Contents>,
    report: &mut DrillReport,
) -> Result<()> {
    let mut url =
        Url::parse(&server.url).map_err(|e| Error::usage(format!("--restore-to: {e}")))?;
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
        password: password.map(str::to_string),
        progress: d.args.run.progress,
    };
    let restored = timed(
        report,
        restore_postgres::restore(
            &settings,
            d.store,
            d.manifest,
            d.artifact,
            d.identities,
            &scratch,
        ),
    )
    .await;
    report.record(
        "restore",
        restored.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    restored?;
    tracing::info!(
        seconds = report.restore_seconds.unwrap_or(0.0),
        "restored into the scratch database"
    );

    let client = connect(&scratch.url, password, "--restore-to").await?;
    if let Some(contents) = contents {
        check_objects(&client, &contents, report).await?;
    }
    let backup_time = d.manifest.finished_at.to_rfc3339();
    for assertion in &checks.assertions {
        if crate::interrupt::received().is_some() {
            return Err(Error::target("interrupted before the assertions finished"));
        }
        let outcome = run_assertion(&client, assertion, &backup_time).await;
        report.record(format!("sql: {}", assertion.name), outcome);
    }
    Ok(())
}

/// Reads the archive's beginning until its table of contents is whole.
async fn read_contents(d: &Drilled<'_>) -> Result<Contents> {
    let mut open = open_artifact(d.store, d.manifest, d.artifact, d.identities).await?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = open.reader.read(&mut buf).await.map_err(|e| {
            Error::integrity(format!("reading the archive's table of contents: {e}"))
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
    url: &str,
    password: Option<&str>,
    name: &str,
) -> std::result::Result<(), String> {
    match drop_with(&admin, name).await {
        Ok(()) => Ok(()),
        Err(first) => {
            tracing::warn!(database = %name, error = %first, "dropping the scratch database failed; reconnecting to try again");
            let again = connect(url, password, "--restore-to")
                .await
                .map_err(|e| e.to_string())?;
            drop_with(&again, name).await
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

/// A connection for the drill's own statements (libpq's tools do the
/// restore). sslmode disable, prefer or require.
async fn connect(url: &str, password: Option<&str>, flag: &str) -> Result<Client> {
    let shown = vertice_crds::redact::redact_url(url);
    let parsed = Url::parse(url).map_err(|e| Error::usage(format!("{flag} {shown}: {e}")))?;
    let mut config = tokio_postgres::Config::new();
    // libpq's `?host=/dir` (a unix socket directory) wins over the URL's host.
    let socket_dir = parsed
        .query_pairs()
        .find(|(k, v)| k == "host" && v.starts_with('/'))
        .map(|(_, v)| v.into_owned());
    match socket_dir {
        Some(dir) => config.host_path(dir),
        None => config.host(
            parsed
                .host_str()
                .unwrap_or("localhost")
                .trim_matches(['[', ']']),
        ),
    };
    config
        .port(parsed.port().unwrap_or(5432))
        .dbname(crate::target::percent_decode(
            parsed.path().trim_start_matches('/'),
        ))
        .application_name("vertice-drill")
        .connect_timeout(CONNECT_TIMEOUT);
    if !parsed.username().is_empty() {
        config.user(crate::target::percent_decode(parsed.username()));
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
            "{flag} {shown}: {e}; the drill's own connection supports these"
        ))
    })?;
    config.ssl_mode(ssl);
    let failed = |e: tokio_postgres::Error| {
        let reason = pg_reason(&e);
        if crate::source::postgres::missing_object(&reason).is_some() || reason.contains("password")
        {
            Error::usage(format!("{flag} {shown}: {reason}"))
        } else {
            Error::target(format!("{flag} {shown}: {reason}"))
        }
    };
    let client = if ssl == tokio_postgres::config::SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
        tokio::spawn(connection);
        client
    } else {
        let tls =
            crate::probe::tls::encrypt_only().map_err(|e| Error::target(format!("TLS: {e}")))?;
        let (client, connection) = config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await
            .map_err(failed)?;
        tokio::spawn(connection);
        client
    };
    Ok(client)
}

fn host_port(url: &str) -> String {
    Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("?"),
                u.port().unwrap_or(5432)
            )
        })
        .unwrap_or_default()
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
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
