//! `cargo xtask soak [--minutes N] [--seed S] [--nodes N] [--kubernetes]`: faults drawn at
//! random while a client asks for every address every 20 ms (see `herald_tests::soak`). Prints a line per
//! fault and a table by fault kind; exits non-zero on any broken invariant, naming the fault,
//! the address and the seed that reproduces it.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use herald_tests::soak;

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// The seed the faults are drawn from (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Speakers in the lab (3 to 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Kubernetes mode: the real API server and controller, and their faults besides.
    #[arg(long)]
    kubernetes: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    let opts = soak::Options {
        duration: Duration::from_secs(cli.minutes * 60),
        seed,
        nodes: cli.nodes,
        kubernetes: cli.kubernetes,
    };
    let mode = if cli.kubernetes { " --kubernetes" } else { "" };
    println!(
        "cargo xtask soak --minutes {} --seed {seed} --nodes {}{mode}: a client asking for each \
         of 3 addresses every 20 ms; {}",
        cli.minutes,
        cli.nodes,
        herald_tests::conditions(cfg!(debug_assertions))
    );
    let report = match soak::run(&opts, |line| println!("{line}")) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("herald-soak: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("\n{}: {} faults, seed {seed}\n{}", report.described, report.faults, report.table);
    if report.broken.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("broken invariants:");
    for b in &report.broken {
        eprintln!("  {b}");
    }
    ExitCode::FAILURE
}
