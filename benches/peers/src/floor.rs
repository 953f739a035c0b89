//! The loopback floor: the most small writes per second this machine's kernel takes into N
//! connected TCP sockets while a reader in the same process drains them — a server that does
//! nothing but `write(2)` one frame per delivery, with no protocol, queue or task switch.
//!
//! It bounds what any WebSocket fan-out can deliver here when its clients run on the same
//! cores: every delivery is at least one such write (a session that receives a message every
//! few tens of milliseconds has nothing to batch it with), and on loopback the sender's
//! `write` also pays for the receiving side's TCP processing.
//!
//! Writers: `--writers` plain threads (one per core by default), each owning a slice of the
//! server-side sockets and writing one `--size`-byte frame to each in turn with a blocking
//! `write`. Reader: the same tokio runtime as every other driver, one task per client socket,
//! counting what arrives. The report gives both counts, so a reader that fell behind shows.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use tokio::io::AsyncReadExt as _;

use crate::cpu::CpuClock;

#[derive(Args)]
pub struct FloorArgs {
    /// Connected socket pairs.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Bytes per write (a WebSocket text frame of a chat message is about 300).
    #[arg(long, default_value_t = 300)]
    size: usize,
    /// Writer threads; 0: one per core.
    #[arg(long, default_value_t = 0)]
    writers: usize,
    /// Seconds to write for.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FloorReport {
    connections: usize,
    size: usize,
    writers: usize,
    seconds: f64,
    writes_per_sec: f64,
    frames_read_per_sec: f64,
    process_cpu_cores: f64,
}

pub async fn run(args: &FloorArgs) -> Result<serde_json::Value> {
    let writers = match args.writers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let (server_side, received) = connect_pairs(args.connections).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let cpu = CpuClock::start(&[]);
    let started = Instant::now();
    let threads = spawn_writers(server_side, writers, args.size, &stop, &written);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let writes = written.load(Ordering::Relaxed);
    let read_bytes = received.load(Ordering::Relaxed);
    let cores = cpu.stop().generator_cpu_cores;
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))?;
    }
    let report = FloorReport {
        connections: args.connections,
        size: args.size,
        writers,
        seconds: elapsed,
        writes_per_sec: writes as f64 / elapsed,
        frames_read_per_sec: read_bytes as f64 / args.size as f64 / elapsed,
        process_cpu_cores: cores,
    };
    Ok(serde_json::to_value(&report)?)
}

/// Opens `n` loopback connections; the client ends are read by tasks that add what they
/// receive to the returned counter.
async fn connect_pairs(n: usize) -> Result<(Vec<TcpStream>, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let mut server_side = Vec::with_capacity(n);
    for _ in 0..n {
        let client = tokio::net::TcpStream::connect(addr)
            .await
            .context("connecting (raise `ulimit -n` for many connections)")?;
        let (accepted, _) = listener.accept()?;
        accepted.set_nodelay(true)?;
        server_side.push(accepted);
        let received = received.clone();
        tokio::spawn(async move {
            let mut client = client;
            let mut buffer = vec![0u8; 4096];
            while let Ok(read) = client.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                received.fetch_add(read as u64, Ordering::Relaxed);
            }
        });
    }
    Ok((server_side, received))
}

fn spawn_writers(
    sockets: Vec<TcpStream>,
    writers: usize,
    size: usize,
    stop: &Arc<AtomicBool>,
    written: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut slices: Vec<Vec<TcpStream>> = (0..writers).map(|_| Vec::new()).collect();
    for (i, socket) in sockets.into_iter().enumerate() {
        slices[i % writers].push(socket);
    }
    slices
        .into_iter()
        .map(|mut slice| {
            let (stop, written) = (stop.clone(), written.clone());
            let frame = vec![b'x'; size];
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for socket in &mut slice {
                        if socket.write_all(&frame).is_err() {
                            return;
                        }
                    }
                    written.fetch_add(slice.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect()
}
