//! Builds the XDP object with the eBPF toolchain, then the workspace with the host toolchain.

use crate::toolchain::{self, bpf_toolchain, cargo, root};

#[derive(clap::Args)]
pub struct Options {
    /// Build the userspace binaries in release mode.
    #[arg(long)]
    pub release: bool,
}

/// Builds the objects herald and herald-meta in target/bpf/bpfel-unknown-none/release, where
/// speaker/build.rs looks for them.
pub fn bpf() -> anyhow::Result<()> {
    toolchain::run(&mut bpf_cargo("build")?)
}

/// Lints the BPF programs with the eBPF toolchain's clippy.
pub fn bpf_clippy() -> anyhow::Result<()> {
    toolchain::run(bpf_cargo("clippy")?.args(["--", "-D", "warnings"]))
}

/// `cargo <command>` for the BPF programs: the eBPF toolchain, its target, core built from
/// source.
fn bpf_cargo(command: &str) -> anyhow::Result<std::process::Command> {
    let mut cmd = cargo();
    cmd.current_dir(root().join("speaker-ebpf"))
        .arg(format!("+{}", bpf_toolchain()?))
        .args([command, "--release", "-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .env("CARGO_TARGET_DIR", root().join("target/bpf"))
        // BTF for the maps (readable bpftool dumps) and for the verifier's messages.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf");
    Ok(cmd)
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
