//! The architectures Herald ships for, named as Debian, OCI and Kubernetes name them (`amd64`,
//! `arm64`). The machine that builds is amd64; arm64 is cross-built with Debian's cross
//! toolchain (`.cargo/config.toml` names its linker) and run here under qemu.

use std::path::PathBuf;

use crate::toolchain::root;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    Amd64,
    Arm64,
}

/// The architectures this machine cross-builds for: from amd64, arm64; an arm64 machine builds
/// its own only.
pub fn cross_targets() -> Vec<Arch> {
    if Arch::host() == Arch::Amd64 { vec![Arch::Arm64] } else { vec![] }
}

/// What this machine builds: its own architecture first (docker's manifest.json names it), then
/// [`cross_targets`].
pub fn buildable() -> Vec<Arch> {
    let mut all = vec![Arch::host()];
    all.extend(cross_targets());
    all
}

impl Arch {
    /// The Debian, OCI and Kubernetes name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// Rust's target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64-unknown-linux-gnu",
            Self::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The machine's own architecture, built without `--target` (so into target/debug).
    pub fn host() -> Self {
        if cfg!(target_arch = "aarch64") { Self::Arm64 } else { Self::Amd64 }
    }

    /// `--target` for cargo, or nothing for the host.
    pub fn cargo_target(self) -> Vec<&'static str> {
        if self == Self::host() { vec![] } else { vec!["--target", self.triple()] }
    }

    /// Where cargo puts this architecture's binaries of `profile` (`debug`, `release`).
    pub fn bin_dir(self, profile: &str) -> PathBuf {
        let target = root().join("target");
        if self == Self::host() { target.join(profile) } else { target.join(self.triple()).join(profile) }
    }

    /// Debian's prefix of its cross binutils (`aarch64-linux-gnu-strip`); empty for the host's.
    pub fn binutils_prefix(self) -> &'static str {
        match self {
            _ if self == Self::host() => "",
            Self::Amd64 => "x86_64-linux-gnu-",
            Self::Arm64 => "aarch64-linux-gnu-",
        }
    }
}
