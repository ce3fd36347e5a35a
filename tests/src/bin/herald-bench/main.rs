//! Herald's benchmarks, run by `cargo xtask bench ...` once the XDP object is built. Each prints a
//! table of figures beside a baseline measured in the same run, with the command and the
//! conditions. Figures, not assertions: these machines are shared.

mod controller;
mod converge;
mod failover;
mod nodes;
mod xdp;
mod xdp_lab;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// The XDP program: ns per packet (BPF_PROG_TEST_RUN and live), an ARP flood in the lab
    /// against the Linux kernel answering, and neighbour-table growth.
    Xdp,
    /// The controller: allocator throughput in process, and 1,000 Services through a real API
    /// server.
    Controller,
    /// The whole cluster: Service creation and endpoint moves to the first ARP reply, and a
    /// speaker with 1,000 and 10,000 addresses.
    Converge,
    /// Takeover time when an owner dies, Herald beside keepalived.
    Failover {
        /// Runs per row.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Herald on real lab nodes: apply -k to the first answer, the speaker pods' memory and
    /// CPU, and rolling restarts as the client sees them.
    Nodes {
        /// Rolling restarts.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().which {
        Which::Xdp => xdp::run(),
        Which::Controller => controller::run(),
        Which::Converge => converge::run(),
        Which::Failover { runs } => failover::run(runs),
        Which::Nodes { runs } => nodes::run(runs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The machine the figures come from.
fn conditions() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) { "dev build" } else { "release build" };
    format!("kernel {}, {cpus} CPUs, {profile}", kernel.trim())
}

/// Median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
