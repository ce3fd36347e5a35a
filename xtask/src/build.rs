//! Builds the XDP object with the eBPF toolchain, then the workspace with the host toolchain.

use crate::toolchain::{self, BPF_TOOLCHAIN, cargo, root};

#[derive(clap::Args)]
pub struct Options {
    /// Build the userspace binaries in release mode.
    #[arg(long)]
    pub release: bool,
}

/// Builds target/bpf/bpfel-unknown-none/release/herald, where speaker/build.rs looks for it.
pub fn bpf() -> anyhow::Result<()> {
    toolchain::run(
        cargo()
            .current_dir(root().join("speaker-ebpf"))
            .arg(format!("+{BPF_TOOLCHAIN}"))
            .args(["build", "--release", "-Z", "build-std=core", "--target", "bpfel-unknown-none"])
            .env("CARGO_TARGET_DIR", root().join("target/bpf"))
            // BTF for the maps (readable bpftool dumps) and for the verifier's messages.
            .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf"),
    )
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    bpf()?;
    let mut cmd = cargo();
    cmd.args(["build", "--workspace", "--all-targets"]);
    if opts.release {
        cmd.arg("--release");
    }
    toolchain::run(&mut cmd)
}
