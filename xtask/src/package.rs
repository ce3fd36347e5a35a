//! `cargo xtask deb`: the Debian package of standalone mode, made by cargo-deb from
//! speaker/Cargo.toml's `[package.metadata.deb]` (the speaker, `speaker/debian/`'s systemd unit
//! and example config) out of the binary `build` made, into target/debian.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    arch::Arch,
    build, setup,
    toolchain::{self, cargo},
};

/// The cargo-deb `cargo xtask setup` installs (crates.io).
pub const CARGO_DEB_VERSION: &str = "3.8.0";

#[derive(Clone, Copy, clap::Args)]
pub struct Options {
    /// Package the release build (what users install); without it, the dev build the tests use.
    #[arg(long)]
    pub release: bool,
    /// The architecture of the package (arm64 is cross-built from amd64).
    #[arg(long, value_enum, default_value_t = Arch::host())]
    pub arch: Arch,
}

/// Sets up, builds, and packages.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let cross = opts.arch != Arch::host();
    setup::run(setup::Extras { arm64: cross, package: true, ..Default::default() })?;
    build::run(&build::Options { release: opts.release, arch: opts.arch })?;
    let deb = package(opts)?;
    eprintln!("deb: {}", deb.display());
    Ok(())
}

/// The package of the binary already built for `opts`; returns its path.
pub fn package(opts: &Options) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["deb", "--package", "herald-speaker", "--no-build", "--output", "target/debian"]);
    if !opts.release {
        // The tests' package: the dev build, compressed fast (cargo-deb warns that it is meant
        // for releases; the package is the same but for the binary).
        cmd.args(["--profile", "dev", "--fast"]);
    }
    if opts.arch != Arch::host() {
        // The host's strip does not know the other architecture; its debug information is kept.
        cmd.args(["--target", opts.arch.triple(), "--no-strip"]);
    }
    // cargo-deb prints the package's path last.
    let out = toolchain::output(&mut cmd)?;
    let path = out.lines().last().context("cargo deb printed no package path")?;
    Ok(toolchain::root().join(path.trim()))
}
