//! Builds the XDP object with the eBPF toolchain, then the workspace with the host toolchain.

use crate::{
    arch::Arch,
    toolchain::{self, bpf_toolchain, cargo, root},
};

#[derive(clap::Args)]
pub struct Options {
    /// Build the userspace binaries in release mode.
    #[arg(long)]
    pub release: bool,
    /// The architecture of the userspace binaries: the host's (the whole workspace, every
    /// target), or another one's shipped binaries, cross-built (`arm64`: target/aarch64-...).
    #[arg(long, value_enum, default_value_t = Arch::host())]
    pub arch: Arch,
}

impl Options {
    /// The host's build: the whole workspace, every target.
    pub fn host(release: bool) -> Self {
        Self { release, arch: Arch::host() }
    }
}

/// The packages whose binaries ship: the images' contents, and the kubectl plugin beside them.
pub const SHIPPED: [&str; 3] = ["herald-speaker", "herald-controller", "kubectl-herald"];

/// The two builds of the BPF objects: with the log statements (`--xdp-log` other than off), and
/// without (`--xdp-log off`, see speaker-ebpf/src/log.rs). Each in a target directory of its own,
/// so that neither rebuilds the other; speaker/build.rs looks for the objects there.
const BUILDS: [(&str, &[&str]); 2] = [("target/bpf", &[]), ("target/bpf-quiet", &["--no-default-features"])];

/// Builds the objects herald and herald-meta in both builds' bpfel-unknown-none/release.
pub fn bpf() -> anyhow::Result<()> {
    for (dir, features) in BUILDS {
        toolchain::run(bpf_cargo("build", dir)?.args(features))?;
    }
    Ok(())
}

/// Lints the BPF programs, as both builds compile them, with the eBPF toolchain's clippy.
pub fn bpf_clippy() -> anyhow::Result<()> {
    for (dir, features) in BUILDS {
        toolchain::run(bpf_cargo("clippy", dir)?.args(features).args(["--", "-D", "warnings"]))?;
    }
    Ok(())
}

/// `cargo <command>` for the BPF programs: the eBPF toolchain, its target, core built from
/// source, into `target_dir`.
fn bpf_cargo(command: &str, target_dir: &str) -> anyhow::Result<std::process::Command> {
    let mut cmd = cargo();
    cmd.current_dir(root().join("speaker-ebpf"))
        .arg(format!("+{}", bpf_toolchain()?))
        .args([command, "--release", "-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .env("CARGO_TARGET_DIR", root().join(target_dir))
        // BTF for the maps (readable bpftool dumps) and for the verifier's messages.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf");
    Ok(cmd)
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    bpf()?;
    let mut cmd = cargo();
    cmd.arg("build");
    if opts.arch == Arch::host() {
        cmd.args(["--workspace", "--all-targets"]);
    } else {
        cmd.args(opts.arch.cargo_target()).arg("--bins");
        for package in SHIPPED {
            cmd.args(["--package", package]);
        }
    }
    if opts.release {
        cmd.arg("--release");
    }
    toolchain::run(&mut cmd)
}
