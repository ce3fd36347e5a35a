//! `cargo xtask test`: what CI runs. Lints, then every test; the tests that need root (BPF,
//! network namespaces) run one at a time, and under CI=true none of them may skip.

use crate::{
    build, image, kernels, setup,
    toolchain::{self, cargo},
};

pub fn run() -> anyhow::Result<()> {
    setup::run(setup::Extras { kube: true, kernels: true })?;
    toolchain::run(cargo().args(["fmt", "--all", "--check"]))?;
    // The host's rustfmt formats the eBPF crate too (run from the root, so the host toolchain).
    toolchain::run(cargo().args(["fmt", "--check", "--manifest-path", "speaker-ebpf/Cargo.toml"]))?;
    build::run(&build::Options { release: false })?;
    toolchain::run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    build::bpf_clippy()?;
    images()?;
    // The lab tests share the host's bpffs and spawn processes: one at a time.
    toolchain::run(cargo().args(["test", "--workspace", "--", "--test-threads=1"]))?;
    kernels::run()
}

/// The images the end-to-end test runs on the lab's nodes (and the lab's pause image), built
/// twice: two builds of one commit must give the same digests.
fn images() -> anyhow::Result<()> {
    let opts = |out: &str| image::Options { release: false, out: out.into(), lab: true };
    let first = image::build(&opts("target/images"), &image::PRODUCT)?;
    image::build(&opts("target/images"), std::slice::from_ref(&image::LAB_PAUSE))?;
    let again = image::build(&opts("target/images-again"), &image::PRODUCT)?;
    let _ = std::fs::remove_dir_all(toolchain::root().join("target/images-again"));
    for (a, b) in first.iter().zip(&again) {
        anyhow::ensure!(a.digest == b.digest, "{} built twice: {} then {}", a.reference, a.digest, b.digest);
        eprintln!("image {} {} (built twice, same digest)", a.reference, a.digest);
    }
    Ok(())
}
