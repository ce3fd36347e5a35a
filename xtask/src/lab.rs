//! The commands that run programs of the tests crate in the lab (they embed the XDP object, so
//! they are built after it, by `build::run`).

use crate::{
    bench_page, build, image, setup,
    toolchain::{self, cargo},
};

#[derive(clap::Subcommand)]
pub enum Bench {
    /// The XDP program: ns per packet (BPF_PROG_TEST_RUN and live), an ARP flood in the lab
    /// against the Linux kernel answering, and neighbour-table growth.
    Xdp,
    /// The controller: allocator throughput in process, and 1,000 Services through a real API
    /// server (needs `cargo xtask setup --kube`).
    Controller,
    /// The whole cluster in the lab: Service creation and endpoint moves to the first ARP
    /// reply, and a speaker with 1,000 and 10,000 addresses (needs `cargo xtask setup --kube`).
    Converge,
    /// Kubernetes mode's decision pass, in process: 3 to 1,000 nodes, 1,000 to 100,000 Services,
    /// cold and after a node dies, joins, or endpoints move, beside the rules computed directly.
    Decide,
    /// Takeover time when an owner's daemon is killed or its link cut, Herald beside keepalived
    /// (tuned and default VRRP); then the price at rest with 0, 1 and 5% loss: spurious
    /// takeovers and packets per second per node. With `--nodes N`: N real speakers sharing 10
    /// addresses each, takeovers over SIGKILLs of owners and what each node sends at rest,
    /// beside the membership simulation of the same cluster.
    Failover {
        /// Runs per row (kills, with `--nodes`).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Seconds at rest per loss level (at rest, with `--nodes`).
        #[arg(long, default_value_t = 120)]
        soak: u64,
        /// This many speakers (3 to 25) instead of three, Herald alone.
        #[arg(long)]
        nodes: Option<usize>,
    },
    /// Membership at scale, simulated in process with the real protocol code (SWIM and the
    /// liveness protocol), 3 to 1,000 nodes sharing 10,000 addresses: takeover time after a
    /// SIGKILL, spurious takeovers, bytes per second per node, with 0, 1 and 5% loss.
    Membership {
        /// Only this cluster size.
        #[arg(long)]
        nodes: Option<usize>,
    },
    /// Herald on real lab nodes (kubelet, containerd), from its release images: apply -k to the
    /// first answer, the speaker pods' memory and CPU, rolling restarts as the client sees them.
    Nodes {
        /// Rolling restarts.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

/// The soak's flags, passed on to `herald-soak` (`--minutes N`, `--seed S`, `--nodes 3..5`,
/// `--kubernetes`; its `--help` says more).
#[derive(clap::Args)]
pub struct Soak {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn soak(opts: &Soak) -> anyhow::Result<()> {
    // `--write` is xtask's: the table becomes docs/benchmarks/soak[-kubernetes].md.
    let write = opts.args.iter().any(|a| a == "--write");
    let args: Vec<&str> = opts.args.iter().map(String::as_str).filter(|a| *a != "--write").collect();
    // Kubernetes mode runs the real API server.
    let kube = args.contains(&"--kubernetes");
    if write {
        let page = if kube { "soak-kubernetes" } else { "soak" };
        return bench_page::run(
            bench_page::Run { bin: "herald-soak", page, plots: false },
            &args,
            kube,
            false,
        );
    }
    run_bin("herald-soak", &args, kube, false)
}

pub fn demo() -> anyhow::Result<()> {
    run_bin("herald-demo", &[], false, false)
}

pub fn bench(which: Bench, write: bool) -> anyhow::Result<()> {
    // With --write, the output also becomes docs/benchmarks/'s page (see bench_page).
    let bench = |args: &[&str], kube: bool, release: bool| {
        if write {
            let page = bench_page::page_name(args);
            bench_page::run(
                bench_page::Run { bin: "herald-bench", page: &page, plots: true },
                args,
                kube,
                release,
            )
        } else {
            run_bin("herald-bench", args, kube, release)
        }
    };
    match which {
        Bench::Xdp => bench(&["xdp"], false, false),
        Bench::Controller => bench(&["controller"], true, false),
        // Memory and CPU figures of a dev build would say little about the product.
        Bench::Converge => bench(&["converge"], true, true),
        Bench::Decide => bench(&["decide"], false, true),
        // Thousands of simulated nodes: optimised, or it takes minutes.
        Bench::Membership { nodes } => {
            let nodes = nodes.map(|n| n.to_string());
            let only = nodes.as_deref().map(|n| ["--nodes", n]);
            let args: Vec<&str> = ["membership"].into_iter().chain(only.into_iter().flatten()).collect();
            bench(&args, false, true)
        }
        Bench::Failover { runs, soak, nodes } => {
            let (runs, soak, nodes) = (runs.to_string(), soak.to_string(), nodes.map(|n| n.to_string()));
            let mut args = vec!["failover", "--runs", &runs, "--soak", &soak];
            args.extend(nodes.as_deref().map(|n| ["--nodes", n]).into_iter().flatten());
            // Many speakers on two cores, and their CPU in the table: optimised, as users run them.
            bench(&args, false, nodes.is_some())
        }
        Bench::Nodes { runs } => {
            // The images from the release build: what users run.
            setup::run(setup::Extras { kube: true, ..Default::default() })?;
            image::binaries(true)?;
            let opts = image::Options { release: true, out: "target/images".into(), lab: true };
            image::build(&opts, &image::PRODUCT)?;
            image::build(&opts, std::slice::from_ref(&image::LAB_PAUSE))?;
            bench(&["nodes", "--runs", &runs.to_string()], true, true)
        }
    }
}

/// Sets up (with the API server when `kube`), builds (optimised when `release`), and runs `bin`
/// of the tests crate with `args`.
fn run_bin(bin: &str, args: &[&str], kube: bool, release: bool) -> anyhow::Result<()> {
    toolchain::run(prepare(bin, kube, release)?.args(args))
}

/// Sets up and builds for `bin`; returns the command that runs it, its arguments to come.
pub fn prepare(bin: &str, kube: bool, release: bool) -> anyhow::Result<std::process::Command> {
    setup::run(setup::Extras { kube, ..Default::default() })?;
    build::run(&build::Options::host(release))?;
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--package", "herald-tests", "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    cmd.arg("--");
    Ok(cmd)
}
