//! PostgreSQL backups and restores through `pg_dump` / `pg_restore`, run
//! directly (no shell), with the password passed in the child's environment
//! and no other libpq variable of the agent's (see [`process::command`]).

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use super::target::PostgresTarget;
use super::version::Version;
use crate::pipeline::process::{self, Running};
use crate::pipeline::redact::Redactor;
pub use vertice_crds::pg_options::{normalize, Tool};

/// Arguments recorded in the manifest; the connection comes separately.
/// `extra` is already normalized by [`pg_options::normalize`].
pub fn dump_arguments(extra: &[String]) -> Vec<String> {
    // Custom format restores selectively and in parallel; no internal
    // compression because the pipeline compresses (and stock `zstd -d` then
    // yields a plain archive). Never prompt for a password.
    let mut args = vec![
        "--format=custom".to_string(),
        "--compress=0".into(),
        "--no-password".into(),
    ];
    args.extend(extra.iter().cloned());
    args
}

pub fn spawn_dump(
    pg_dump: &Path,
    target: &PostgresTarget,
    extra: &[String],
    password: Option<&str>,
    redactor: Redactor,
) -> std::io::Result<Running> {
    let mut command = process::command(pg_dump);
    command
        .args(dump_arguments(extra))
        .arg(format!("--dbname={}", target.url));
    set_password(&mut command, password);
    process::spawn("pg_dump", command, redactor)
}

/// `pg_restore` turns the archive into SQL on its stdout and connects to
/// nothing: `psql` runs that SQL, so the agent, which sits between them,
/// decides whether the transaction commits. `--single-transaction` makes the
/// SQL one `BEGIN` … `COMMIT` block (without it, large objects get their own
/// committed transactions).
pub fn restore_arguments(no_owner: bool, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "--file=-".to_string(),
        "--single-transaction".into(),
        "--exit-on-error".into(),
    ];
    if no_owner {
        args.push("--no-owner".into());
        args.push("--no-privileges".into());
    }
    args.extend(extra.iter().cloned());
    args
}

pub fn spawn_restore(
    pg_restore: &Path,
    no_owner: bool,
    extra: &[String],
    redactor: Redactor,
) -> std::io::Result<Running> {
    let mut command = process::command(pg_restore);
    command.args(restore_arguments(no_owner, extra));
    process::spawn("pg_restore", command, redactor)
}

/// `psql` reading SQL from its stdin into `target`: stops at the first error
/// (the open transaction is then rolled back), sends query results to
/// /dev/null (its stdout carries only `\echo`), reads no `~/.psqlrc`.
/// `--file=-` rather than plain stdin: psql then prefixes an error with
/// `psql:<stdin>:LINE:`, which the restore maps to the object it was at.
pub fn spawn_psql(
    psql: &Path,
    target: &PostgresTarget,
    password: Option<&str>,
    redactor: Redactor,
) -> std::io::Result<Running> {
    let mut command = process::command(psql);
    command
        .args([
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "--set=ON_ERROR_STOP=1",
            "--output=/dev/null",
            "--file=-",
        ])
        .arg(format!("--dbname={}", target.url));
    set_password(&mut command, password);
    process::spawn("psql", command, redactor)
}

/// The `psql` to pair with a `pg_restore`: the one beside it when its path
/// was given and it has one (same version, so it understands every
/// meta-command that `pg_restore` writes), else the one on `PATH`.
pub fn psql_beside(pg_restore: &Path) -> std::path::PathBuf {
    match pg_restore.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && dir.join("psql").is_file() => dir.join("psql"),
        _ => "psql".into(),
    }
}

/// A libpq error about a database or role that does not exist is the URL's
/// fault: says which part of it to fix.
pub fn missing_object(message: &str) -> Option<&'static str> {
    if message.contains("database \"") && message.contains("\" does not exist") {
        Some("fix the database name at the end of the postgres:// URL")
    } else if message.contains("role \"") && message.contains("\" does not exist") {
        Some("fix the user name (USER@) in the postgres:// URL")
    } else if message.contains("server version mismatch") {
        Some("pg_dump must be at least the server's major version: install a newer postgresql-client or point --pg-dump at one")
    } else if message.contains("password authentication failed for user") {
        // The server does not say whether the user or the password is wrong.
        Some("check the password (PGPASSWORD or --password-file) and the user name (USER@) in the postgres:// URL")
    } else {
        None
    }
}

/// The only libpq variables a tool gets: the password the agent resolved,
/// and a connect timeout (a URL's `connect_timeout=` still wins).
pub fn set_password(command: &mut Command, password: Option<&str>) {
    if let Some(password) = password {
        command.env(vertice_crds::agent_env::PGPASSWORD, password);
    }
    // An unreachable server fails in seconds, not after the OS's TCP timeout.
    command.env("PGCONNECT_TIMEOUT", "15");
}

/// The most role names a manifest records; a cluster with more gets none
/// recorded (a drill then finds roles in the archive's table of contents).
const MAX_ROLES: usize = 10_000;

/// The source cluster's role names (never anything else of them), for a
/// drill's throwaway server: a policy `TO app_role` or `aclitem` data naming
/// a role cannot be restored where the role does not exist. Built-in `pg_*`
/// roles exist everywhere. Read with psql, so the URL means what it means
/// for pg_dump.
pub async fn list_roles(
    psql: &Path,
    target: &PostgresTarget,
    password: Option<&str>,
    redactor: &Redactor,
) -> Result<Vec<String>, String> {
    let mut command = process::command(psql);
    command
        .args([
            "--no-psqlrc",
            "--no-password",
            "--tuples-only",
            "--no-align",
            "--record-separator-zero",
            "--command=SELECT rolname FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
        ])
        .arg(format!("--dbname={}", target.url))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    set_password(&mut command, password);
    let out = tokio::select! {
        out = tokio::time::timeout(Duration::from_secs(60), command.output()) => out,
        () = crate::interrupt::cancelled() => return Err("interrupted".into()),
    }
    .map_err(|_| "psql did not answer within 60s".to_string())?
    .map_err(|e| format!("starting {}: {e}", psql.display()))?;
    if !out.status.success() {
        return Err(redactor.redact(String::from_utf8_lossy(&out.stderr).trim()));
    }
    let roles = parse_roles(&out.stdout);
    if roles.len() > MAX_ROLES {
        return Err(format!(
            "the source has {} roles, more than the {MAX_ROLES} a manifest records",
            roles.len()
        ));
    }
    Ok(roles)
}

/// psql's `--record-separator-zero` output: one name per NUL.
fn parse_roles(out: &[u8]) -> Vec<String> {
    out.split(|b| *b == 0)
        .map(|r| {
            String::from_utf8_lossy(r)
                .trim_end_matches('\n')
                .to_string()
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// `pg_restore --version` ("pg_restore (PostgreSQL) 17.2 (Debian …)"):
/// the version, or `None` when the tool does not say (a wrapper, a fake).
pub async fn tool_version(tool: &Path) -> Option<Version> {
    let mut command = process::command(tool);
    command
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Version::parse(text.trim().split_once(") ")?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_write_sql_in_one_transaction() {
        let args = restore_arguments(true, &["--clean".to_string()]);
        assert_eq!(&args[..2], ["--file=-", "--single-transaction"]);
        assert!(args.contains(&"--no-owner".to_string()));
        assert_eq!(args.last().map(String::as_str), Some("--clean"));
        let dir = tempfile::tempdir().expect("tempdir");
        let beside = dir.path().join("pg_restore");
        assert_eq!(psql_beside(&beside), Path::new("psql"));
        std::fs::write(dir.path().join("psql"), "").expect("psql");
        assert_eq!(psql_beside(&beside), dir.path().join("psql"));
        assert_eq!(psql_beside(Path::new("pg_restore")), Path::new("psql"));
    }

    #[test]
    fn role_names_are_read_whole() {
        assert_eq!(
            parse_roles(b"app\0odd name\0with\nnewline\0\n"),
            ["app", "odd name", "with\nnewline"]
        );
        assert!(parse_roles(b"").is_empty());
    }

    #[test]
    fn missing_databases_and_roles_name_the_url_part() {
        assert!(missing_object("FATAL:  database \"shop\" does not exist")
            .expect("db")
            .contains("database name"));
        assert!(missing_object("FATAL:  role \"bob\" does not exist")
            .expect("role")
            .contains("USER@"));
        assert_eq!(missing_object("connection refused"), None);
    }
}
