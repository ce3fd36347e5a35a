//! Herald's project tasks. `cargo xtask <command>`; every command sets up what it needs first.

mod build;
mod lab;
mod setup;
mod test;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Herald's project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the pinned toolchains, bpf-linker and the Debian packages (idempotent).
    Setup {
        /// Also build and cache the Kubernetes API server the controller's tests run against.
        #[arg(long)]
        kube: bool,
    },
    /// Build the XDP object, then the userspace binaries.
    Build(build::Options),
    /// Set up, build, and run every test: lints, unit, BPF_PROG_TEST_RUN and lab tests.
    Test,
    /// Set up, build, and run the demo: three nodes share addresses, one owner dies.
    Demo,
    /// Regenerate the CRDs in deploy/crds from controller/src/crd.rs.
    Crds,
    /// Benchmarks; each prints a table of figures beside a baseline from the same run.
    Bench {
        #[command(subcommand)]
        which: lab::Bench,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup { kube } => setup::run(kube),
        Command::Build(opts) => build::run(&opts),
        Command::Test => test::run(),
        Command::Demo => lab::demo(),
        Command::Crds => toolchain::run(toolchain::cargo().args([
            "run",
            "--quiet",
            "--package",
            "herald-controller",
            "--bin",
            "herald-crdgen",
            "--",
            "deploy/crds",
        ])),
        Command::Bench { which } => lab::bench(which),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
