//! Runs a parsed command line: logging, the command, the run summary, and the
//! exit code.

use std::time::Instant;

use chrono::Utc;

use crate::cli::{Cli, Command, LogFormat};
use crate::commands;
use crate::error::Error;
use crate::summary::{self, RunSummary};

pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let started = Utc::now();
    let clock = Instant::now();
    let (name, termination_log) = match &cli.command {
        Command::Backup(a) => ("backup", Some(&a.run.termination_log)),
        Command::Restore(a) => ("restore", Some(&a.run.termination_log)),
        Command::Verify(a) => ("verify", Some(&a.run.termination_log)),
        Command::List(_) => ("list", None),
        Command::Prune(a) => ("prune", Some(&a.run.termination_log)),
    };
    let mut summary = RunSummary {
        command: name.to_string(),
        started_at: Some(started),
        ..Default::default()
    };
    let result: Result<Option<String>, Error> = match &cli.command {
        Command::Backup(a) => commands::backup::run_with_hooks(a, &mut summary)
            .await
            .map(|m| Some(m.backup_id)),
        Command::Restore(a) => commands::restore::run(a, &mut summary).await.map(|_| None),
        Command::Verify(a) => commands::verify::run(a, &mut summary)
            .await
            .map(|m| Some(format!("backup {} verified", m.backup_id))),
        Command::List(a) => commands::list::run(a).await.map(Some),
        Command::Prune(a) => commands::prune::run(a, &mut summary).await.map(Some),
    };
    let code = match &result {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    };
    summary.finished_at = Some(Utc::now());
    summary.duration_seconds = Some(clock.elapsed().as_secs_f64());
    summary.exit_code = code;
    match result {
        Ok(output) => {
            summary.outcome = "succeeded".into();
            if let Some(output) = output {
                println!("{output}");
            }
        }
        Err(e) => {
            summary.outcome = "failed".into();
            summary.error_category = Some(e.category().to_string());
            let message = one_line(&e.to_string());
            summary.error = Some(message.clone());
            tracing::error!(category = e.category(), "{name} failed");
            eprintln!("error: {message}");
        }
    }
    if let Command::Backup(a) = &cli.command {
        crate::report::after_backup(
            a.pushgateway_url.as_deref(),
            a.notifications.as_ref(),
            &a.secrets_dir,
            &summary,
        )
        .await;
    }
    if let Some(path) = termination_log.and_then(|p| summary::target_path(p.as_ref())) {
        summary::write(&path, &summary);
    }
    code
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Writes a summary for a command line that could not be parsed, to the
/// termination-log path from the environment or the default (if it exists).
pub fn report_usage_error(message: &str) {
    let explicit = std::env::var_os("VERTICE_TERMINATION_LOG").map(std::path::PathBuf::from);
    if let Some(path) = summary::target_path(explicit.as_ref()) {
        let now = Utc::now();
        let summary = RunSummary {
            command: std::env::args().nth(1).unwrap_or_default(),
            outcome: "failed".into(),
            started_at: Some(now),
            finished_at: Some(now),
            exit_code: 2,
            error_category: Some("usage".into()),
            error: Some(one_line(message)),
            ..Default::default()
        };
        summary::write(&path, &summary);
    }
}
