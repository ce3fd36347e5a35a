//! Herald's project tasks. `cargo xtask <command>`; every command sets up what it needs first.

mod arch;
mod arm64_vm;
mod bench_page;
mod build;
mod guest;
mod image;
mod kernels;
mod lab;
mod package;
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
    /// Set up, build (amd64 and arm64), and run every test: lints, unit, BPF_PROG_TEST_RUN and
    /// lab tests, the unit tests again on arm64 (qemu-user), and the XDP and standalone lab
    /// suites again on Debian 12's kernel in a VM, and on arm64's kernel in another.
    Test,
    /// Run the XDP and standalone lab suites on the other kernels of the matrix, each in a VM:
    /// amd64's Debian 12 kernel, and arm64's with the speaker from its arm64 image.
    Kernels {
        /// One architecture's VM only.
        #[arg(long, value_enum)]
        arch: Option<arch::Arch>,
    },
    /// Set up, build, and run the demo: three nodes share addresses, one owner dies.
    Demo,
    /// Build both images as OCI image archives (target/images), from the binaries `build` makes.
    Image(image::Options),
    /// Build the Debian package of standalone mode (target/debian): the speaker, its systemd
    /// unit, an example /etc/herald/herald.toml.
    Deb(package::Options),
    /// Regenerate the CRDs in deploy/crds from kube/src/crd.rs.
    Crds,
    /// Faults drawn at random (SIGKILL, SIGSTOP, a frozen run loop, link down, a membership
    /// cut; with `--kubernetes`, API server and controller restarts, Service churn and pool
    /// edits besides) while a client asks for every address every 20 ms; a table by fault kind,
    /// and exit 1 on any request answered by two MACs outside a partition's window, any silence
    /// past 1 s, any address not answered by its owner alone within 1 s of a fault's end, or
    /// any Service's address changed. Flags: `--minutes N --seed S --nodes 3..5 --kubernetes`,
    /// and `--write`: the output becomes docs/benchmarks/soak.md (soak-kubernetes.md).
    Soak(lab::Soak),
    /// Benchmarks; each prints a table of figures beside a baseline from the same run.
    Bench {
        /// Also write the figures and plots into docs/benchmarks/ (a page per bench, naming the
        /// command, the machine, the date and the commit).
        #[arg(long, global = true)]
        write: bool,
        #[command(subcommand)]
        which: lab::Bench,
    },
}

/// `cargo xtask kernels [--arch A]`: amd64's VM, then arm64's with the speaker from its image.
fn kernels(only: Option<arch::Arch>) -> anyhow::Result<()> {
    setup::run(setup::Extras { kernels: true, ..Default::default() })?;
    if only != Some(arch::Arch::Arm64) {
        build::run(&build::Options::host(false))?;
        kernels::run()?;
    }
    if only != Some(arch::Arch::Amd64) {
        image::binaries(false)?;
        let opts = image::Options { release: false, out: "target/images".into(), lab: false };
        let speaker = image::build(&opts, &image::PRODUCT[..1])?.remove(0);
        arm64_vm::run(&speaker.archive)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup(extras) => setup::run(extras),
        Command::Build(opts) => {
            setup::run(setup::Extras { arm64: opts.arch != arch::Arch::host(), ..Default::default() })
                .and_then(|()| build::run(&opts))
        }
        Command::Test => test::run(),
        Command::Kernels { arch } => kernels(arch),
        Command::Demo => lab::demo(),
        Command::Image(opts) => image::run(&opts),
        Command::Deb(opts) => package::run(&opts),
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
        Command::Bench { write, which } => lab::bench(which, write),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
