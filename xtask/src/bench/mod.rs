//! `cargo xtask bench ...`: each prints a table of figures beside a baseline measured in the same
//! run, with the command and the conditions. Figures, not assertions: these machines are shared.

mod xdp;

use crate::{build, setup};

#[derive(clap::Subcommand)]
pub enum Which {
    /// The XDP program: ns per packet (BPF_PROG_TEST_RUN and live), an ARP flood in the lab
    /// against the Linux kernel answering, and neighbour-table growth.
    Xdp,
}

pub fn run(which: Which) -> anyhow::Result<()> {
    setup::run()?;
    build::run(&build::Options { release: false })?;
    match which {
        Which::Xdp => xdp::run(),
    }
}

/// The machine the figures come from.
pub fn conditions() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("kernel {}, {cpus} CPUs", kernel.trim())
}

/// Median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
