//! CPU use of this generator and of the servers it loads, from `/proc/PID/stat` (Linux). The
//! generator shares the two cores with the server, so every report says how much each took.
//! This module measures; it does not decide what a figure means.

use std::time::Instant;

use serde::Serialize;

/// CPU seconds of this process and of some server processes at one moment.
pub struct CpuClock {
    started: Instant,
    generator: f64,
    servers: Vec<(u32, f64)>,
}

/// Cores used between [`CpuClock::start`] and [`CpuClock::stop`] (CPU seconds / wall seconds).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuUse {
    /// This generator.
    pub generator_cpu_cores: f64,
    /// The server processes named with `--server-pid`, added up (`None` when none were named).
    pub server_cpu_cores: Option<f64>,
}

impl CpuClock {
    /// Starts measuring this process and the given server processes.
    pub fn start(server_pids: &[u32]) -> Self {
        CpuClock {
            started: Instant::now(),
            generator: cpu_seconds("self"),
            servers: server_pids
                .iter()
                .map(|pid| (*pid, cpu_seconds(&pid.to_string())))
                .collect(),
        }
    }

    /// Cores used since [`CpuClock::start`].
    pub fn stop(&self) -> CpuUse {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let servers: f64 = self
            .servers
            .iter()
            .map(|(pid, before)| cpu_seconds(&pid.to_string()) - before)
            .sum();
        CpuUse {
            generator_cpu_cores: (cpu_seconds("self") - self.generator) / wall,
            server_cpu_cores: (!self.servers.is_empty()).then_some(servers / wall),
        }
    }
}

/// User + system CPU seconds of `/proc/{who}` (0 when it cannot be read).
fn cpu_seconds(who: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).unwrap_or_default();
    // The command name may hold spaces; the numeric fields start after its closing ')'.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // utime and stime are the 14th and 15th fields of the line: the 12th and 13th after the name.
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<f64>().ok())
        .sum();
    ticks / CLOCK_TICKS_PER_SECOND
}

/// `sysconf(_SC_CLK_TCK)` on every Linux this runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
