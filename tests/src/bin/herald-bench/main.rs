//! Herald's benchmarks, run by `cargo xtask bench ...` once the XDP object is built. Each prints a
//! table of figures beside a baseline measured in the same run, with the command and the
//! conditions. Figures, not assertions: these machines are shared.

mod controller;
mod converge;
mod decide;
mod failover;
mod failover_nodes;
mod flood;
mod membership;
mod nodes;
mod plot;
mod price;
mod xdp;
mod xdp_lab;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// What each bench measures is said once, in `cargo xtask bench --help` (xtask/src/lab.rs),
/// which runs this program.
#[derive(Parser)]
struct Cli {
    which: Which,
    /// Runs per row (failover) or rolling restarts (nodes).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Seconds at rest per loss level (failover's price rows).
    #[arg(long, default_value_t = 120)]
    soak: u64,
    /// Only this cluster size (membership); this many real speakers (failover).
    #[arg(long)]
    nodes: Option<usize>,
    /// Draw the plots (SVG) into this directory (`cargo xtask bench ... --write`).
    #[arg(long)]
    plots: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Xdp,
    Controller,
    Converge,
    Decide,
    Failover,
    Membership,
    Nodes,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = cli.plots.clone() {
        plot::write_to(dir);
    }
    let result = match cli.which {
        Which::Xdp => xdp::run(),
        Which::Controller => controller::run(),
        Which::Converge => converge::run(),
        Which::Decide => decide::run(),
        Which::Failover => {
            let soak = std::time::Duration::from_secs(cli.soak);
            match cli.nodes {
                Some(nodes) => failover_nodes::run(nodes, cli.runs, soak),
                None => failover::run(cli.runs, soak),
            }
        }
        Which::Membership => membership::run(cli.nodes),
        Which::Nodes => nodes::run(cli.runs),
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
    herald_tests::conditions(cfg!(debug_assertions))
}

/// Median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
