//! The pinned toolchains and the helpers that run them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The nightly that builds the BPF programs (they need `-Z build-std`), as
/// speaker-ebpf/rust-toolchain.toml names it: the one place it is written. Its LLVM is the one
/// bpf-linker is linked against.
pub fn bpf_toolchain() -> anyhow::Result<String> {
    channel(&root().join("speaker-ebpf/rust-toolchain.toml"))
}
/// bpf-linker release built by `setup`.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The host toolchain named by rust-toolchain.toml.
pub fn host_toolchain() -> anyhow::Result<String> {
    channel(&root().join("rust-toolchain.toml"))
}

/// The `channel` a rust-toolchain.toml names.
fn channel(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("channel = ").map(|v| v.trim_matches('"').to_owned()))
        .with_context(|| format!("no channel in {}", file.display()))
}

/// Runs `cmd`, failing with its description when it does not succeed.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `cargo` of the host toolchain, in the workspace root. Drops the variables the outer
/// `cargo xtask` set, so the inner cargo picks its own toolchain.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root()).env_remove("RUSTUP_TOOLCHAIN").env_remove("RUSTC").env_remove("CARGO");
    cmd
}
