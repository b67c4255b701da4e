use clap::Parser;

fn main() {
    let cli = vertice_agent::cli::Cli::parse();
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
