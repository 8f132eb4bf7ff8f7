//! The `faultline` binary: parse the command line, set up logging, run the subcommand.

use clap::Parser;
use faultline::config::{Cli, Command, ServeArgs};

/// jemalloc, tuned in `.cargo/config.toml` to return freed memory quickly: digestion allocates
/// and frees a lot per batch, and the resident size is what users see.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli.global.log, &cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        None => faultline::server::serve(global, &ServeArgs::default()).await,
        Some(Command::Serve(args)) => faultline::server::serve(global, &args).await,
        Some(Command::User(cmd)) => faultline::cli::user(global, cmd).await,
        Some(Command::Project(cmd)) => faultline::cli::project(global, cmd).await,
        Some(Command::Token(cmd)) => faultline::cli::token(global, cmd).await,
        Some(Command::Migrate(args)) => faultline::cli::migrate::run(&args).await,
    }
}

fn init_tracing(filter: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
