//! vertice-controller: three controllers in one process. VerticeBackups
//! become CronJobs (backups and restore drills) and report their runs in
//! status; VerticeScalers scale their targets through `/scale`;
//! VerticeFailovers steer traffic by the weights of an Istio
//! VirtualService. Flags in `config.rs`; the process around the controllers
//! in `runtime.rs`; `scaler simulate` runs the scaler's decision on a case
//! file.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use vertice_controller::config::{Cli, Command, Config, LogFormat, ScalerCommand};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Scaler(ScalerCommand::Simulate { file })) => simulate(&file),
        None => {
            if cli.run.agent_image.is_none() {
                Cli::command()
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "the following required argument was not provided: --agent-image <AGENT_IMAGE> (or VERTICE_AGENT_IMAGE)",
                    )
                    .exit();
            }
            init_logging(&cli.run);
            match vertice_controller::runtime::run(cli.run).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "controller stopped");
                    eprintln!("vertice-controller: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn simulate(file: &std::path::Path) -> ExitCode {
    // `-` is standard input, so a case can be piped in (`kubectl … | …`).
    let read = if file == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    let text = match read {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vertice-controller: --file {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match vertice_controller::scaler::simulate::run(&text) {
        Ok(decision) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&decision).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vertice-controller: --file {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
