//! A PostgreSQL drill: a scratch database on the server `--restore-to`
//! names, created under `--scratch-prefix` and always dropped; the backup
//! restored into it with the ordinary restore path (nothing commits unless
//! the whole artifact matched); then the archive's tables, sequences and
//! large objects are looked for, and the user's assertions run read-only.

use std::collections::BTreeSet;
use std::future::Future;

use chrono::Utc;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use url::Url;
use vertice_crds::drill::{DrillReport, PostgresChecks};

use super::archive::{self as pg_archive, Contents};
use super::connect::{connect, host_port, reason, refuse_redirects, Conn};
use super::drill_checks::{check_objects, run_assertion};
use super::ephemeral::{self, EphemeralPostgres, EPHEMERAL};
use super::restore::{OlderServer, PgRestoreSettings, RestoreInto};
use super::scratch;
use super::target::PostgresTarget;
use crate::engine::common::{record_restore, timed, Drilled};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Tries at a scratch name before a collision is reported: the name holds
/// the time and 32 random bits, so a second collision means something else
/// makes databases of this shape.
const NAME_TRIES: u32 = 3;

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

/// Refuses a `--restore-to` server that redirects the drill (`dbname=`,
/// `service=`); the dispatcher parsed it as a PostgreSQL URL.
pub fn check_drill_server(server: PostgresTarget) -> Result<PostgresTarget> {
    refuse_redirects(&server.url).map_err(|e| {
        Error::usage(format!(
            "--restore-to {}: {e}",
            vertice_crds::redact::redact_url(&server.url)
        ))
    })?;
    Ok(server)
}

/// The drill on `server` (`--restore-to postgres://…`, checked by
/// [`check_drill_server`]), or on an ephemeral server of its own (`None`).
pub async fn drill(
    d: &Drilled<'_>,
    server: Option<PostgresTarget>,
    checks: &PostgresChecks,
    report: &mut DrillReport,
) -> Result<()> {
    let stale_after = d.args.stale_after;
    let Some(server) = server else {
        return drill_ephemeral(d, checks, stale_after, report).await;
    };
    let password = d.args.password.clone();
    let place = Place {
        server: &server,
        password: crate::secret::exposed(&password),
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
    let bin = ephemeral::find_bin_dir(d.args.postgres_bin.as_deref(), &d.args.pg_restore)?;
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
            .backup
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
            Err(e) => return Err(scratch_refused(label, &name, e.code(), &reason(&e), tries)),
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
                reason(&e)
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
            reason(&e)
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
        password: place.password.map(|p| Secret::from(p.to_string())),
        progress: d.args.progress,
        into: place.into,
        allow_older_server: d.args.allow_older_server,
    };
    let older = OlderServer::default();
    let restored = timed(
        report,
        super::parallel::restore::restore(
            &settings,
            &d.backup,
            &scratch,
            &older,
            super::session_count(d.args.pg_jobs),
            super::parallel::restore::Place::Into,
        ),
    )
    .await;
    // A pass on an older server than the source's says less: the report
    // names what --allow-older-server let through, whatever the outcome.
    if let (Some(note), Some(target)) = (older.describe(), report.target.as_mut()) {
        target.push_str(&format!("; the server runs {note}"));
    }
    record_restore(report, restored, |_| Ok(()))?;
    tracing::info!(
        seconds = report.restore_seconds.unwrap_or(0.0),
        "restored into the scratch database"
    );

    let conn = connect(&scratch.url, place.password, &place.label).await?;
    if let Some(contents) = contents {
        interruptible(&conn, check_objects(&conn.client, &contents, report)).await??;
    }
    let backup_time = d.backup.manifest.finished_at.to_rfc3339();
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
    super::toc::read(&d.backup, pg_archive::parse_contents).await
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
        .map_err(|e| reason(&e))?
        .get(0);
    if version >= 130_000 {
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote(name)
            ))
            .await
            .map_err(|e| reason(&e))
    } else {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| reason(&e))?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote(name)))
            .await
            .map_err(|e| reason(&e))
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
            tracing::warn!(error = %reason(&e), "could not list databases to find leftover scratch databases");
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

/// A double-quoted identifier. Scratch names are plain, but quoting keeps
/// any name exactly what it is.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
