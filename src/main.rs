//! The `tidings` binary: parses the command line and hands off to the library.

use clap::{Parser, Subcommand};

/// Tidings: a self-contained chat messaging engine.
#[derive(Parser)]
#[command(name = "tidings", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load generators: measure the log, the chat service and real-time fan-out.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Appends from concurrent producers and reports records/s, latency and syncs.
    Log(tidings::bench::log::BenchLogArgs),
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(BenchCommand::Log(args)) => tidings::bench::log::run(args),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDINGS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
