//! Runs a parsed command line: logging, the command, the run summary, and the
//! exit code.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::cli::{Cli, Command, LogFormat};
use crate::commands;
use crate::error::Error;
use crate::summary::{self, RunSummary};
use vertice_crds::run_summary::{OUTCOME_FAILED, OUTCOME_INTERRUPTED, OUTCOME_SUCCEEDED};

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
    // Probes report by exit code and output, not by a run summary.
    if let Command::Probe(probe) = &cli.command {
        return crate::probe::cli::run(probe).await;
    }
    let started = Utc::now();
    let clock = Instant::now();
    let (name, termination_log) = match &cli.command {
        Command::Backup(a) => ("backup", Some(&a.run.termination_log)),
        Command::Restore(a) => ("restore", Some(&a.run.termination_log)),
        Command::Verify(a) => ("verify", Some(&a.run.termination_log)),
        Command::List(_) => ("list", None),
        Command::Prune(a) => ("prune", Some(&a.run.termination_log)),
        Command::Drill(a) => ("drill", Some(&a.run.termination_log)),
        Command::Probe(_) => ("probe", None),
    };
    let mut summary = RunSummary {
        command: name.to_string(),
        started_at: Some(started),
        ..Default::default()
    };
    crate::interrupt::install();
    let result = run_until_stopped(&cli, &mut summary).await;
    let code = match &result {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    };
    summary.finished_at = Some(Utc::now());
    summary.duration_seconds = Some(clock.elapsed().as_secs_f64());
    summary.exit_code = code;
    match result {
        Ok(output) => {
            summary.outcome = OUTCOME_SUCCEEDED.into();
            if let Some(output) = output {
                println!("{output}");
            }
        }
        Err(e) => {
            summary.outcome = match e {
                Error::Interrupted { .. } => OUTCOME_INTERRUPTED,
                _ => OUTCOME_FAILED,
            }
            .into();
            summary.error_category = Some(e.category().to_string());
            let message = one_line(&e.to_string());
            summary.error = Some(message.clone());
            tracing::error!(category = e.category().as_str(), "{name} failed");
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
    if let Command::Verify(a) = &cli.command {
        crate::report::after_verify(a.pushgateway_url.as_deref(), &summary).await;
    }
    if let Command::Drill(a) = &cli.command {
        crate::report::after_drill(a.pushgateway_url.as_deref(), &summary).await;
    }
    if let Some(path) = termination_log.and_then(|p| summary::target_path(p.as_ref())) {
        summary::write(&path, &summary);
    }
    code
}

/// How long a signalled run may take to undo what it started (abort uploads,
/// roll back, stop children) before it is cut short; well inside the 30 s
/// Kubernetes grants between SIGTERM and SIGKILL, leaving time to report.
const WIND_DOWN: Duration = Duration::from_secs(15);

/// Runs the command; after a signal it has [`WIND_DOWN`] to fail through its
/// own error paths, then it is dropped (children are killed on drop, partial
/// files removed). Any outcome after a signal, but a success, is `interrupted`.
async fn run_until_stopped(cli: &Cli, summary: &mut RunSummary) -> Result<Option<String>, Error> {
    let work = run_command(cli, summary);
    tokio::pin!(work);
    let result = tokio::select! {
        result = &mut work => result,
        () = async {
            crate::interrupt::cancelled().await;
            tokio::time::sleep(WIND_DOWN).await;
        } => Err(Error::run(
            crate::error::ErrorCategory::Interrupted,
            "the run did not stop in time and was cut short",
        )),
    };
    match (result, crate::interrupt::received()) {
        (Err(e), Some(signal)) => Err(Error::Interrupted {
            signal,
            message: format!(
                "interrupted by {}: {e}",
                crate::interrupt::signal_name(signal)
            ),
        }),
        (result, _) => result,
    }
}

async fn run_command(cli: &Cli, summary: &mut RunSummary) -> Result<Option<String>, Error> {
    match &cli.command {
        Command::Backup(a) => commands::backup::run_with_hooks(a, summary)
            .await
            .map(|m| Some(m.backup_id)),
        Command::Restore(a) => commands::restore::run(a, summary).await.map(|_| None),
        Command::Verify(a) => commands::verify::run(a, summary)
            .await
            .map(|m| Some(format!("backup {} verified", m.backup_id))),
        Command::List(a) => commands::list::run(a).await.map(Some),
        Command::Prune(a) => commands::prune::run(a, summary).await.map(Some),
        Command::Drill(a) => commands::drill::run(a, summary).await.map(Some),
        // `run` hands probes off before a summary is started.
        Command::Probe(_) => Ok(None),
    }
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
    let args: Vec<String> = std::env::args().collect();
    let explicit = termination_log_flag(&args)
        .or_else(|| std::env::var_os("VERTICE_TERMINATION_LOG").map(std::path::PathBuf::from));
    if let Some(path) = summary::target_path(explicit.as_ref()) {
        let now = Utc::now();
        let summary = RunSummary {
            command: std::env::args().nth(1).unwrap_or_default(),
            outcome: "failed".into(),
            started_at: Some(now),
            finished_at: Some(now),
            exit_code: 2,
            error_category: Some(crate::error::ErrorCategory::Config.to_string()),
            error: Some(one_line(message)),
            ..Default::default()
        };
        summary::write(&path, &summary);
    }
}

/// `--termination-log PATH` / `--termination-log=PATH` read from raw
/// arguments, for a command line clap refused (so the Job still reports why).
fn termination_log_flag(args: &[String]) -> Option<std::path::PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--termination-log" {
            return iter.next().map(std::path::PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--termination-log=") {
            return Some(path.into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_termination_log_in_raw_arguments() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            termination_log_flag(&args(&[
                "a",
                "backup",
                "--bogus",
                "--termination-log",
                "/t"
            ])),
            Some("/t".into())
        );
        assert_eq!(
            termination_log_flag(&args(&["a", "--termination-log=/u"])),
            Some("/u".into())
        );
        assert_eq!(termination_log_flag(&args(&["a", "backup"])), None);
    }
}
