//! `cargo xtask test`: what CI runs. Lints, then every test; the tests that need root (BPF,
//! network namespaces) run one at a time, and under CI=true none of them may skip. Then the
//! kernel matrix: amd64's older kernel, and arm64's, each in a VM.

use std::{path::PathBuf, time::Instant};

use crate::{
    arch::{self, Arch},
    arm64_vm, build, image, kernels, package, setup,
    toolchain::{self, cargo},
};

/// The packages with unit tests of the shipped code, run again on arm64 (under qemu-user).
const ARM64_UNITS: [&str; 4] = ["herald-speaker", "herald-controller", "herald-kube", "speaker-common"];

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    timed("setup", || setup::run(setup::Extras { kube: true, kernels: true, arm64: true, package: true }))?;
    timed("fmt", || {
        toolchain::run(cargo().args(["fmt", "--all", "--check"]))?;
        // The host's rustfmt formats the eBPF crate too (run from the root, so the host toolchain).
        toolchain::run(cargo().args(["fmt", "--check", "--manifest-path", "speaker-ebpf/Cargo.toml"]))
    })?;
    // The workspace, and the shipped binaries of every architecture the images hold.
    timed("build", || image::binaries(false))?;
    let arm64 = arch::cross_targets().contains(&Arch::Arm64);
    timed("clippy", || {
        toolchain::run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
        build::bpf_clippy()
    })?;
    let speaker_image = timed("images", images)?;
    // The Debian packages tests/tests/package.rs installs (this machine's) and reads (arm64's).
    timed("deb", || {
        for arch in std::iter::once(Arch::host()).chain(arm64.then_some(Arch::Arm64)) {
            eprintln!("deb: {}", package::package(&package::Options { release: false, arch })?.display());
        }
        Ok(())
    })?;
    // The lab tests share the host's bpffs and spawn processes: one at a time.
    timed("cargo test", || toolchain::run(cargo().args(["test", "--workspace", "--", "--test-threads=1"])))?;
    timed("kernels amd64", kernels::run)?;
    if arm64 {
        timed("arm64 unit tests", arm64_units)?;
        timed("kernels arm64", || arm64_vm::run(&speaker_image))?;
    }
    eprintln!("test: everything passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs one phase of the test run and says how long it took, so that the run's budget (CI's
/// 45 minutes) shows where it goes.
fn timed<T>(phase: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let started = Instant::now();
    let result = f();
    let verdict = if result.is_ok() { "done" } else { "FAILED" };
    eprintln!("test: {phase} {verdict} in {:.0} s", started.elapsed().as_secs_f64());
    result
}

/// Unit tests that ask the kernel what qemu-user does not translate (the ethtool ioctl, generic
/// netlink); the lab suites of the arm64 VM run the same calls on arm64's kernel.
const ASK_THE_KERNEL: [&str; 2] =
    ["ethtool::tests::loopback_is_no_device_on_a_bus", "netlink::netdev::tests::asks_this_kernel"];

/// The unit tests of the shipped code, built for arm64 and run under qemu-user
/// (`.cargo/config.toml`'s runner): what differs there is the compiler's code, not the kernel.
/// Not the property tests: the same pure functions as the example tests, over hundreds of cases
/// each, which take minutes under emulation.
fn arm64_units() -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.arg("test").args(Arch::Arm64.cargo_target()).arg("--lib");
    for package in ARM64_UNITS {
        cmd.args(["--package", package]);
    }
    cmd.args(["--", "--skip", "property_"]);
    for test in ASK_THE_KERNEL {
        cmd.args(["--skip", test]);
    }
    toolchain::run(&mut cmd)
}

/// The images the end-to-end test runs on the lab's nodes (and the lab's pause image), built
/// twice: two builds of one commit must give the same digests. Returns the speaker's archive.
fn images() -> anyhow::Result<PathBuf> {
    let opts = |out: &str| image::Options { release: false, out: out.into(), lab: true };
    let first = image::build(&opts("target/images"), &image::PRODUCT)?;
    image::build(&opts("target/images"), std::slice::from_ref(&image::LAB_PAUSE))?;
    let again = image::build(&opts("target/images-again"), &image::PRODUCT)?;
    let _ = std::fs::remove_dir_all(toolchain::root().join("target/images-again"));
    for (a, b) in first.iter().zip(&again) {
        anyhow::ensure!(a.digest == b.digest, "{} built twice: {} then {}", a.reference, a.digest, b.digest);
        eprintln!("image {} {} (built twice, same digest)", a.reference, a.digest);
    }
    Ok(first.into_iter().next().expect("the speaker's image").archive)
}
