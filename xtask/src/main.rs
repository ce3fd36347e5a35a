//! Herald's project tasks. `cargo xtask <command>`; every command sets up what it needs first.

mod build;
mod image;
mod kernels;
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
    Setup(setup::Extras),
    /// Build the XDP object, then the userspace binaries.
    Build(build::Options),
    /// Set up, build, and run every test: lints, unit, BPF_PROG_TEST_RUN and lab tests, and the
    /// XDP and standalone lab suites again on Debian 12's kernel in a VM.
    Test,
    /// Run the XDP and standalone lab suites on the other kernels of the matrix (in a VM).
    Kernels,
    /// Set up, build, and run the demo: three nodes share addresses, one owner dies.
    Demo,
    /// Build both images as OCI image archives (target/images), from the binaries `build` makes.
    Image(image::Options),
    /// Regenerate the CRDs in deploy/crds from kube/src/crd.rs.
    Crds,
    /// Faults drawn at random (SIGKILL, SIGSTOP, a frozen run loop, link down, a membership
    /// cut; with `--kubernetes`, API server and controller restarts, Service churn and pool
    /// edits besides) while a client asks for every address every 20 ms; a table by fault kind,
    /// and exit 1 on any request answered by two MACs outside a partition's window, any silence
    /// past 1 s, any address not answered by its owner alone within 1 s of a fault's end, or
    /// any Service's address changed. Flags: `--minutes N --seed S --nodes 3..5 --kubernetes`.
    Soak(lab::Soak),
    /// Benchmarks; each prints a table of figures beside a baseline from the same run.
    Bench {
        #[command(subcommand)]
        which: lab::Bench,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup(extras) => setup::run(extras),
        Command::Build(opts) => build::run(&opts),
        Command::Test => test::run(),
        Command::Kernels => setup::run(setup::Extras { kernels: true, ..Default::default() })
            .and_then(|()| build::run(&build::Options { release: false }))
            .and_then(|()| kernels::run()),
        Command::Demo => lab::demo(),
        Command::Image(opts) => image::run(&opts),
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
        Command::Soak(opts) => lab::soak(&opts),
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
