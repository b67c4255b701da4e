//! PostgreSQL backups and restores through `pg_dump` / `pg_restore`, run
//! directly (no shell), with the password passed in the child's environment.

use std::path::Path;

use tokio::process::Command;

use crate::pipeline::process::{self, Running};
use crate::pipeline::redact::Redactor;
use crate::target::PostgresTarget;

/// Options the agent sets itself (or that would break streaming or leak a
/// secret), refused in `--pg-dump-arg` / `--pg-restore-arg`.
const DUMP_OWNED: &[&str] = &[
    "-F",
    "--format",
    "-f",
    "--file",
    "-Z",
    "--compress",
    "-d",
    "--dbname",
    "-W",
    "--password",
    "-w",
    "--no-password",
    "-j",
    "--jobs",
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
];
const RESTORE_OWNED: &[&str] = &[
    "-d",
    "--dbname",
    "-f",
    "--file",
    "-1",
    "--single-transaction",
    "-e",
    "--exit-on-error",
    "-j",
    "--jobs",
    "-C",
    "--create",
    "-W",
    "--password",
    "-w",
    "--no-password",
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
    "-l",
    "--list",
    "-F",
    "--format",
];

/// Checks extra tool arguments: options only, none the agent owns.
pub fn check_extra_args(extra: &[String], flag: &str, restore: bool) -> Result<(), String> {
    let owned = if restore { RESTORE_OWNED } else { DUMP_OWNED };
    for arg in extra {
        if !arg.starts_with('-') {
            return Err(format!(
                "{flag} {arg:?}: only options are accepted (write --schema=NAME, not two words)"
            ));
        }
        let name = arg.split('=').next().unwrap_or(arg);
        // Short options may carry their value attached (-Fc, -j4).
        let short = if name.len() > 2 && !name.starts_with("--") {
            &name[..2]
        } else {
            name
        };
        if owned.contains(&name) || owned.contains(&short) {
            return Err(format!(
                "{flag} {arg:?}: vertice-agent sets {name} itself; remove it"
            ));
        }
    }
    Ok(())
}

/// Arguments recorded in the manifest; the connection comes separately.
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
    let mut command = Command::new(pg_dump);
    command
        .args(dump_arguments(extra))
        .arg(format!("--dbname={}", target.url));
    set_password(&mut command, password);
    process::spawn("pg_dump", command, redactor)
}

pub fn restore_arguments(no_owner: bool, extra: &[String]) -> Vec<String> {
    // One transaction: any failed statement, or a kill because the input
    // turned out corrupt, rolls everything back.
    let mut args = vec![
        "--single-transaction".to_string(),
        "--exit-on-error".into(),
        "--no-password".into(),
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
    target: &PostgresTarget,
    password: Option<&str>,
    no_owner: bool,
    extra: &[String],
    redactor: Redactor,
) -> std::io::Result<Running> {
    let mut command = Command::new(pg_restore);
    command
        .args(restore_arguments(no_owner, extra))
        .arg(format!("--dbname={}", target.url));
    set_password(&mut command, password);
    process::spawn("pg_restore", command, redactor)
}

fn set_password(command: &mut Command, password: Option<&str>) {
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    // An unreachable server fails in seconds, not after the OS's TCP timeout.
    command.env(
        "PGCONNECT_TIMEOUT",
        std::env::var("PGCONNECT_TIMEOUT").unwrap_or_else(|_| "15".into()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn extra_arguments_may_select_but_not_take_over() {
        assert!(check_extra_args(
            &args(&["--schema=sales", "--exclude-table=audit.*", "-n", "x"]),
            "--pg-dump-arg",
            false
        )
        .is_err());
        assert!(check_extra_args(
            &args(&["--schema=sales", "--exclude-table=audit.*", "--no-comments"]),
            "--pg-dump-arg",
            false
        )
        .is_ok());
        for owned in [
            "--format=plain",
            "-Fp",
            "--file=/tmp/x",
            "-Z9",
            "--dbname=other",
            "-j4",
            "--password",
        ] {
            let err = check_extra_args(&args(&[owned]), "--pg-dump-arg", false).expect_err(owned);
            assert!(
                err.contains("--pg-dump-arg") && err.contains("itself"),
                "{err}"
            );
        }
        assert!(check_extra_args(
            &args(&["--clean", "--if-exists", "--no-comments"]),
            "--pg-restore-arg",
            true
        )
        .is_ok());
        assert!(check_extra_args(&args(&["--create"]), "--pg-restore-arg", true).is_err());
        assert!(check_extra_args(&args(&["-j2"]), "--pg-restore-arg", true).is_err());
        assert_eq!(
            dump_arguments(&args(&["--no-comments"]))
                .last()
                .map(String::as_str),
            Some("--no-comments")
        );
    }
}
