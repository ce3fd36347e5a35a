//! `cargo xtask test`: what CI runs. Lints, then every test; the tests that need root (BPF,
//! network namespaces) run one at a time, and under CI=true none of them may skip.

use crate::{
    build, kernels, setup,
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
    // The lab tests share the host's bpffs and spawn processes: one at a time.
    toolchain::run(cargo().args(["test", "--workspace", "--", "--test-threads=1"]))?;
    kernels::run()
}
