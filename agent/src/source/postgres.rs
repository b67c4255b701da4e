//! PostgreSQL backups and restores through `pg_dump` / `pg_restore`, run
//! directly (no shell), with the password passed in the child's environment.

use std::path::Path;

use tokio::process::Command;

use crate::pipeline::process::{self, Running};
use crate::pipeline::redact::Redactor;
use crate::target::PostgresTarget;

/// Arguments recorded in the manifest; the connection comes separately.
pub fn dump_arguments() -> Vec<String> {
    // Custom format restores selectively and in parallel; no internal
    // compression because the pipeline compresses (and stock `zstd -d` then
    // yields a plain archive).
    vec![
        "--format=custom".into(),
        "--compress=0".into(),
        "--no-password".into(),
    ]
}

pub fn spawn_dump(
    pg_dump: &Path,
    target: &PostgresTarget,
    password: Option<&str>,
    redactor: Redactor,
) -> std::io::Result<Running> {
    let mut command = Command::new(pg_dump);
    command
        .args(dump_arguments())
        .arg(format!("--dbname={}", target.url));
    set_password(&mut command, password);
    process::spawn("pg_dump", command, redactor)
}

pub fn restore_arguments(no_owner: bool) -> Vec<String> {
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
    args
}

pub fn spawn_restore(
    pg_restore: &Path,
    target: &PostgresTarget,
    password: Option<&str>,
    no_owner: bool,
    redactor: Redactor,
) -> std::io::Result<Running> {
    let mut command = Command::new(pg_restore);
    command
        .args(restore_arguments(no_owner))
        .arg(format!("--dbname={}", target.url));
    set_password(&mut command, password);
    process::spawn("pg_restore", command, redactor)
}

fn set_password(command: &mut Command, password: Option<&str>) {
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    // Tools must never stop to ask for a password on a terminal.
    command.env(
        "PGCONNECT_TIMEOUT",
        std::env::var("PGCONNECT_TIMEOUT").unwrap_or_else(|_| "15".into()),
    );
}
