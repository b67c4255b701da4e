use clap::Parser;

fn main() {
    let cli = match vertice_agent::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Even a run that never started reports, so a Job's status shows why.
            if e.use_stderr() {
                vertice_agent::run::report_usage_error(&e.to_string());
            }
            e.exit();
        }
    };
    vertice_agent::run::init_logging(&cli);
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(vertice_agent::run::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}
