//! `probe check|serve`: the flags become a CRD check or the runner's
//! settings here, and `crate::probe` runs them. Probes report by exit code
//! and output, not by a run summary: 2 when the flags are wrong.

use crate::cli::probe::{describe, CheckArgs, ProbeArgs, ProbeCommand, ServeArgs};

/// Runs `probe check` or `probe serve`; the exit code.
pub async fn run(args: &ProbeArgs) -> i32 {
    match &args.command {
        ProbeCommand::Check(args) => check(args).await,
        ProbeCommand::Serve(args) => serve(args).await,
    }
}

async fn check(args: &CheckArgs) -> i32 {
    match describe(args) {
        Ok((check, replica)) => crate::probe::check::run(&check, &replica, args.output).await,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

async fn serve(args: &ServeArgs) -> i32 {
    match args.settings() {
        Ok(settings) => crate::probe::serve::run(settings).await,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
