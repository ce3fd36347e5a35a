//! Herald's lab and the helpers its integration tests, benches and demo share.
//!
//! Tests that need root, BPF or network namespaces call [`root_or_skip`]: without root they
//! say loudly that they did not run, except under `CI=true`, where they fail.

pub mod apiserver;
pub mod checker;
pub mod cluster;
pub mod controller;
pub mod failover;
pub mod foreign;
pub mod forge;
pub mod freeze;
mod host_bpffs;
pub mod keepalived;
pub mod kube_lab;
pub mod lab;
pub mod loss;
pub mod ndp;
pub mod nodes;
pub mod objects;
pub mod package;
pub mod podman;
pub mod poll;
pub mod probe;
pub mod prometheus;
pub mod rbac;
pub mod series;
pub mod soak;
pub mod speaker;
pub mod test_run;
pub mod workload;

use std::path::PathBuf;

/// Whether CI is running us: then nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// Fails unless running as root. Tests use [`root_or_skip`] instead.
pub fn require_root() -> anyhow::Result<()> {
    anyhow::ensure!(nix::unistd::geteuid().is_root(), "the lab needs root (BPF, network namespaces)");
    Ok(())
}

/// `true` when the test can run. Without root: panics under CI, else prints why it skips.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(!in_ci(), "{test}: needs root, and CI=true forbids skipping");
    eprintln!("SKIPPED {test}: needs root (BPF, network namespaces); run `cargo xtask test` as root");
    false
}

/// A binary of this workspace, built next to the running executable (tests run from
/// target/<profile>/deps, xtask from target/<profile>).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(name);
    assert!(bin.is_file(), "{} is not built: run `cargo xtask build`", bin.display());
    bin
}

/// The generator of randomized tests: seeded, so that a failure reproduces.
pub fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// The machine figures come from: kernel, CPUs, and the build of the binary that measured
/// (`debug`: its `cfg!(debug_assertions)`).
pub fn conditions(debug: bool) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if debug { "dev build" } else { "release build" };
    format!("kernel {}, {cpus} CPUs, {profile}", kernel.trim())
}
