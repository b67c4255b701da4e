//! Runs a parsed command line: logging, the command, the run summary, and the
//! exit code.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::cli::{
    BackupArgs, Cli, Command, DrillArgs, ListArgs, LogFormat, PruneArgs, RestoreArgs, RunArgs,
    VerifyArgs,
};
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

/// Runs the command and returns the process exit code. The one place a
/// command is dispatched: a new command is one arm here and, if it reports
/// through a run summary, one [`Summarised`] impl below.
pub async fn run(cli: Cli) -> i32 {
    match &cli.command {
        Command::Backup(args) => summarised(args.as_ref()).await,
        Command::Restore(args) => summarised(args.as_ref()).await,
        Command::Verify(args) => summarised(args).await,
        Command::List(args) => summarised(args).await,
        Command::Prune(args) => summarised(args).await,
        Command::Drill(args) => summarised(args.as_ref()).await,
        // A check, or a long-running server: it reports by exit code and
        // output, not by a run summary, and handles its own signals.
        Command::Probe(args) => commands::probe::run(args).await,
    }
}

/// What [`summarised`] needs to know of a command that reports through a
/// run summary.
trait Summarised {
    /// The command's name in the summary and the logs.
    const NAME: &'static str;
    /// Its `--termination-log` and friends; `None` when it writes no summary
    /// file at all (`list` prints, it is not run by a Job).
    fn run_args(&self) -> Option<&RunArgs>;
    /// Runs it, filling `summary`; what to print on success.
    async fn execute(&self, summary: &mut RunSummary) -> Result<Option<String>, Error>;
    /// Once the summary is complete: push metrics, notify.
    async fn report(&self, _summary: &RunSummary) {}
}

impl Summarised for BackupArgs {
    const NAME: &'static str = "backup";
    fn run_args(&self) -> Option<&RunArgs> {
        Some(&self.run)
    }
    async fn execute(&self, summary: &mut RunSummary) -> Result<Option<String>, Error> {
        let manifest = commands::backup::run_with_hooks(self, summary).await?;
        Ok(Some(manifest.backup_id))
    }
    async fn report(&self, summary: &RunSummary) {
        crate::report::after_backup(
            self.pushgateway_url.as_deref(),
            self.notifications.as_ref(),
            &self.secrets_dir,
            summary,
        )
        .await;
    }
}

impl Summarised for RestoreArgs {
    const NAME: &'static str = "restore";
    fn run_args(&self) -> Option<&RunArgs> {
        Some(&self.run)
    }
    async fn execute(&self, summary: &mut RunSummary) -> Result<Option<String>, Error> {
        commands::restore::run(self, summary).await.map(|_| None)
    }
}

impl Summarised for VerifyArgs {
    const NAME: &'static str = "verify";
    fn run_args(&self) -> Option<&RunArgs> {
        Some(&self.run)
    }
    async fn execute(&self, summary: &mut RunSummary) -> Result<Option<String>, Error> {
        let manifest = commands::verify::run(self, summary).await?;
        Ok(Some(format!("backup {} verified", manifest.backup_id)))
    }
    async fn report(&self, summary: &RunSummary) {
        crate::report::after_verify(self.pushgateway_url.as_deref(), summary).await;
    }
}

impl Summarised for ListArgs {
    const NAME: &'static str = "list";
    fn run_args(&self) -> Option<&RunArgs> {
        None
    }
    async fn execute(&self, _summary: &mut RunSummary) -> Result<Option<String>, Error> {
        commands::list::run(self).await.map(Some)
    }
}

impl Summarised for PruneArgs {
    const NAME: &'static str = "prune";
    fn run_args(&self) -> Option<&RunArgs> {
        Some(&self.run)
    }
    async fn execute(&self, summary: &mut RunSummary) -> Result<Option<String>, Error> {
        commands::prune::run(self, summary).await.map(Some)
    }
}

impl Summarised for DrillArgs {
    const NAME: &'static str = "drill";
    fn run_args(&self) -> Option<&RunArgs> {
        Some(&self.run)
    }
    async fn execute(&self, summary: &mut RunSummary) -> Result<Option<String>, Error> {
        commands::drill::run(self, summary).await.map(Some)
    }
    async fn report(&self, summary: &RunSummary) {
        crate::report::after_drill(self.pushgateway_url.as_deref(), summary).await;
    }
}

/// Runs a command that reports through a run summary: the summary is
/// started, filled by the command, completed with the outcome, reported,
/// and written to the termination log.
async fn summarised<C: Summarised>(command: &C) -> i32 {
    let name = C::NAME;
    let clock = Instant::now();
    let mut summary = RunSummary {
        command: name.to_string(),
        started_at: Some(Utc::now()),
        ..Default::default()
    };
    crate::interrupt::install();
    let result = run_until_stopped(command, &mut summary).await;
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
    command.report(&summary).await;
    let termination_log = command.run_args().map(|run| run.termination_log.as_ref());
    if let Some(path) = termination_log.and_then(summary::target_path) {
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
async fn run_until_stopped<C: Summarised>(
    command: &C,
    summary: &mut RunSummary,
) -> Result<Option<String>, Error> {
    let work = command.execute(summary);
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
