//! The `tidings` binary: parses the command line and hands off to the library.
//!
//! Errors end here: they are printed as `error: <message>` (with their causes, never a debug
//! dump or backtrace) and the process exits with 1; clap exits with 2 on usage errors.

use std::process::ExitCode;

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
    /// Manage topics: list, create, describe, delete.
    Topics(tidings::cli::topics::TopicsArgs),
    /// Append one record per line of standard input to a topic.
    Produce(tidings::cli::produce::ProduceArgs),
    /// Print a topic's records: only new ones unless --from-beginning.
    Tail(tidings::cli::tail::TailArgs),
    /// Consumer groups: list, describe (lag), reset-offsets.
    Groups(tidings::cli::groups::GroupsArgs),
    /// Load generators: measure the log, the chat service and real-time fan-out.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Appends from concurrent producers and reports records/s, latency and syncs.
    Log(tidings::bench::log::BenchLogArgs),
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Topics(args) => tidings::cli::topics::run(args),
        Command::Produce(args) => tidings::cli::produce::run(args),
        Command::Tail(args) => tidings::cli::tail::run(args),
        Command::Groups(args) => tidings::cli::groups::run(args),
        Command::Bench(BenchCommand::Log(args)) => tidings::bench::log::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`tidings tail … | head`): not a failure of ours.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = match (
            cause.downcast_ref::<std::io::Error>(),
            cause.downcast_ref::<serde_json::Error>(),
        ) {
            (Some(io), _) => Some(io.kind()),
            (_, Some(json)) => json.io_error_kind(),
            _ => None,
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDINGS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
