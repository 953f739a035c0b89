//! The `tidings` binary: parses the command line and hands off to the library.
//!
//! Errors end here: they are printed as `error: <message>` (with their causes, never a debug
//! dump or backtrace) and the process exits with 1; clap exits with 2 on usage errors.
//!
//! `serve` resolves the configuration, installs the tracing subscriber, binds, prints
//! `listening on http://HOST:PORT` (`https` with TLS) on stdout, and runs [`tidings::server::run`] (which logs the
//! start-up banner) until SIGINT or SIGTERM. Any failure is printed as one `error: …` line on stderr with exit status 1.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tidings::cli::{log_format, stderr_lines};
use tidings::config::{Config, LogFormat};

/// The server allocates and frees many small buffers per request on every thread; jemalloc's
/// per-thread caches cost a fraction of glibc malloc's locking and consolidation there, and
/// its background purging keeps the resident set near what is in use.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tidings: a self-contained chat messaging engine.
#[derive(Parser)]
#[command(name = "tidings", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server until SIGINT or SIGTERM.
    Serve(tidings::cli::serve::ServeArgs),
    /// Print a token signed with the server's secret.
    Token(tidings::cli::token::TokenArgs),
    /// Manage topics: list, create, describe, delete.
    Topics(tidings::cli::topics::TopicsArgs),
    /// Append one record per line of standard input to a topic.
    Produce(tidings::cli::produce::ProduceArgs),
    /// Print a topic's records: only new ones unless --from-beginning.
    Tail(tidings::cli::tail::TailArgs),
    /// Consumer groups: list, describe (lag), reset-offsets.
    Groups(tidings::cli::groups::GroupsArgs),
    /// Dead letters: replay them to the topic they came from.
    Dlq(tidings::cli::dlq::DlqArgs),
    /// Load generators: measure the log, the chat service and real-time fan-out.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Appends from concurrent producers and reports records/s, latency and syncs.
    Log(tidings::bench::log::BenchLogArgs),
    /// Sends chat messages over HTTP to a running server; reports sends/s, 202 latency and
    /// the time until a message is readable.
    Send(tidings::bench::send::BenchSendArgs),
    /// Opens WebSocket sessions, sends over HTTP and reports deliveries/s, send -> delivered
    /// latency and lost or duplicated deliveries.
    Fanout(tidings::bench::fanout::BenchFanoutArgs),
    /// Publishes to the event bus over HTTP; reports records/s with batches and the
    /// publish → poll latency of a consumer group at a fixed rate.
    Publish(tidings::bench::publish::BenchPublishArgs),
    /// Runs mixed chat load for a long time against a server it starts, kills and restarts;
    /// samples its memory, descriptors and disk, and checks that no acknowledged message was
    /// lost or duplicated.
    Soak(tidings::bench::soak::BenchSoakArgs),
}

fn main() -> ExitCode {
    // Arms the failpoints named in `FAILPOINTS` (docs/architecture.md, "Fault injection"). They
    // exist only in test builds; in a release build the variable is read and has no effect.
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Token(args) => admin(|| tidings::cli::token::run(args)),
        Command::Topics(args) => admin(|| tidings::cli::topics::run(args)),
        Command::Produce(args) => admin(|| tidings::cli::produce::run(args)),
        Command::Tail(args) => admin(|| tidings::cli::tail::run(args)),
        Command::Groups(args) => admin(|| tidings::cli::groups::run(args)),
        Command::Dlq(args) => admin(|| tidings::cli::dlq::run(args)),
        Command::Bench(BenchCommand::Log(args)) => admin(|| tidings::bench::log::run(args)),
        Command::Bench(BenchCommand::Send(args)) => admin(|| tidings::bench::send::run(args)),
        Command::Bench(BenchCommand::Fanout(args)) => admin(|| tidings::bench::fanout::run(args)),
        Command::Bench(BenchCommand::Publish(args)) => admin(|| tidings::bench::publish::run(args)),
        Command::Bench(BenchCommand::Soak(args)) => admin(|| tidings::bench::soak::run(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: tidings::cli::serve::ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve(|name| std::env::var(name).ok())?;
    // Held until `serve` returns: dropping it writes the lines still buffered.
    let _log_writer = init_tracing(&config)?;
    tidings::server::check_tls(&config)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Handlers first, so a signal that arrives while the log opens is not lost.
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        let kafka = match config.kafka.listen {
            Some(address) => {
                let kafka = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen for Kafka clients on {address}"))?;
                let bound = kafka
                    .local_addr()
                    .context("cannot read the bound Kafka address")?;
                announce_kafka(bound)?;
                Some(kafka)
            }
            None => None,
        };
        announce(config.tls.scheme(), addr)?;
        tidings::server::run_with_kafka(listener, kafka, config, shutdown).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The Kafka listener's line on stdout (before the `listening on` line scripts wait for).
fn announce_kafka(addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "kafka listening on {addr}")?;
    out.flush()?;
    Ok(())
}

/// The one line on stdout that scripts and tests wait for.
fn announce(scheme: &str, addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {scheme}://{addr}")?;
    out.flush()?;
    Ok(())
}

/// A future that completes on SIGINT or SIGTERM (handlers installed now, not when polled).
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

/// The server's log: formatted on the thread that logs, gathered in one buffer and written to
/// stderr every few milliseconds by a thread of its own (`tidings::cli::stderr_lines`), so a
/// request's access-log line costs no system call and no wake-up. Lines are never dropped: if
/// stderr stops taking them, logging waits. The returned guard writes what is buffered when
/// dropped.
fn init_tracing(config: &Config) -> anyhow::Result<stderr_lines::FlushGuard> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.logging.level)
        .with_context(|| format!("bad log level {:?}", config.logging.level))?;
    let (writer, guard) =
        stderr_lines::buffered_stderr().context("cannot start the log's writer thread")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_timer(log_format::LineClock)
        .with_writer(writer);
    let installed = match config.logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.fmt_fields(log_format::PlainFields).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    Ok(guard)
}

/// Runs an admin or bench command with the default diagnostic log.
fn admin(command: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    init_default_tracing();
    command()
}

/// The reader went away (`tidings tail … | head`): not a failure of ours.
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

fn init_default_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDINGS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
