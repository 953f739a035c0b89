//! `peers`: one load generator for Tidings and the systems a user would pick instead (Redis
//! Streams, NATS JetStream, a Socket.IO server). Every driver runs under the same harness (tokio
//! with the default two workers on this machine, one connection per producer, the same record
//! size, duration and hdrhistogram), so both sides of every ratio are measured the same way.
//!
//! Each subcommand prints one JSON object on stdout; `benches/peers/run` starts the servers,
//! calls these subcommands and writes the tables. This crate does not start or stop any server.
//!
//! Layout:
//! - [`load`]: the closed-loop producer harness (N producers, one request in flight each).
//! - [`append`]: row 1, durable appends (Tidings over HTTP, Redis `XADD`, JetStream publish).
//! - [`consume`]: row 2, reading a stream from its start.
//! - [`chat`]: row 3, send → delivered to a connected WebSocket client, swept over rates.
//! - [`tidings`]: talking to a Tidings server (tokens, topics).
//! - [`floor`]: the loopback floor, plain writes into many sockets (what bounds fan-out here).
//! - [`cpu`]: CPU use of this process and of the servers.
//! - [`plot`]: PNG line charts of latency against rate.

mod append;
mod chat;
mod consume;
mod cpu;
mod floor;
mod load;
mod plot;
mod tidings;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// One load generator, a driver per system.
#[derive(Parser)]
#[command(name = "peers", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Row 1: durable appends from concurrent producers, one in flight each.
    Append(append::AppendArgs),
    /// Row 2: fill a stream, then read it from the start.
    Consume(consume::ConsumeArgs),
    /// Row 3: chat delivery latency, swept over send rates.
    Chat(chat::ChatArgs),
    /// The loopback floor: plain writes into N connected sockets, drained in-process.
    Floor(floor::FloorArgs),
    /// Draw a PNG line chart from a JSON description of series.
    Plot(plot::PlotArgs),
}

fn main() -> Result<()> {
    let report = match Cli::parse().command {
        Command::Plot(args) => return plot::draw(&args),
        Command::Append(args) => runtime()?.block_on(append::run(&args))?,
        Command::Consume(args) => runtime()?.block_on(consume::run(&args))?,
        Command::Chat(args) => runtime()?.block_on(chat::run(&args))?,
        Command::Floor(args) => runtime()?.block_on(floor::run(&args))?,
    };
    println!("{report}");
    Ok(())
}

/// The same runtime for every driver: tokio's default worker count (one per core).
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
