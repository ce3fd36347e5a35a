//! `cargo xtask image [--release]`: Herald's two images as OCI image archives, built without a
//! container engine from the binaries `cargo xtask build` makes, for amd64 and arm64: each
//! platform's binary (stripped of debug information) and exactly the shared libraries it loads,
//! nothing else (no shell). The archive is an OCI image layout whose index lists both platforms
//! (`oci.rs`), plus docker's manifest.json, so `ctr images import`, `podman load` and `docker
//! load` all read it and name the image, and `skopeo copy --all` pushes both platforms.
//!
//! Reproducible: every byte is a function of the binaries and the commit (entries sorted, owners
//! 0, times the commit's time, JSON keys sorted), so two builds of one commit give one digest.

mod oci;
mod rootfs;

pub use rootfs::{RUNTIME_PACKAGES, runtime_dir};

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{
    arch::{self, Arch},
    build,
    toolchain::{self, output, root},
};

#[derive(clap::Args)]
pub struct Options {
    /// From the release build (optimised); default: the dev build, as the tests use.
    #[arg(long)]
    pub release: bool,
    /// Where the archives go.
    #[arg(long, default_value = "target/images")]
    pub out: PathBuf,
    /// Also the lab nodes' pause image (the end-to-end tests import it).
    #[arg(long)]
    pub lab: bool,
}

/// An image: one binary of the workspace.
pub struct Spec {
    name: &'static str,
    description: &'static str,
    /// `uid[:gid]` the process runs as.
    user: &'static str,
    /// For every architecture this machine builds ([`arch::buildable`]); else its own only.
    multi_arch: bool,
}

impl Spec {
    fn architectures(&self) -> Vec<Arch> {
        if self.multi_arch { arch::buildable() } else { vec![Arch::host()] }
    }
}

/// Herald's images.
pub const PRODUCT: [Spec; 2] = [
    // Root in the container for the host's bpffs; the DaemonSet grants three capabilities only.
    Spec {
        name: "herald-speaker",
        description: "Herald's speaker: answers ARP for announced addresses",
        user: "0",
        multi_arch: true,
    },
    Spec {
        name: "herald-controller",
        description: "Herald's controller: LoadBalancer addresses from MetalLB-compatible pools",
        user: "65532:65532",
        multi_arch: true,
    },
];

/// The lab nodes' pod sandbox (containerd's `sandbox_image`), so that nothing is pulled.
pub const LAB_PAUSE: Spec = Spec {
    name: "herald-pause",
    description: "The lab's pod sandbox: sleeps until a signal",
    user: "65535",
    multi_arch: false,
};

/// Where a built image is, and what it is called.
pub struct Built {
    pub archive: PathBuf,
    pub reference: String,
    /// The image index's digest (`sha256:...`): what a registry or `image@digest` names.
    pub digest: String,
}

/// Sets up, builds the binaries, then both images; prints where they are and their digests.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    binaries(opts.release)?;
    let mut built = build(opts, &PRODUCT)?;
    if opts.lab {
        built.extend(build(opts, std::slice::from_ref(&LAB_PAUSE))?);
    }
    for image in built {
        println!("{}  {}  {}", image.archive.display(), image.reference, image.digest);
    }
    for plugin in plugins(opts)? {
        println!("{}", plugin.display());
    }
    Ok(())
}

/// `kubectl herald` for every architecture built, beside the images:
/// `kubectl-herald-linux-<arch>`, debug information stripped.
fn plugins(opts: &Options) -> anyhow::Result<Vec<PathBuf>> {
    let profile = if opts.release { "release" } else { "debug" };
    let mut out = Vec::new();
    for arch in arch::buildable() {
        let binary = arch.bin_dir(profile).join("kubectl-herald");
        let shipped = root().join(&opts.out).join(format!("kubectl-herald-linux-{}", arch.name()));
        let strip = format!("{}strip", arch.binutils_prefix());
        toolchain::run(
            std::process::Command::new(strip).args(["--strip-debug", "-o"]).arg(&shipped).arg(&binary),
        )?;
        out.push(shipped);
    }
    Ok(out)
}

/// Sets up cross-building and builds the binaries of every architecture the images hold: the
/// host's workspace, and the shipped binaries cross-built ([`arch::cross_targets`]).
pub fn binaries(release: bool) -> anyhow::Result<()> {
    crate::setup::run(crate::setup::Extras { arm64: true, ..Default::default() })?;
    build::run(&build::Options::host(release))?;
    for arch in arch::cross_targets() {
        build::run(&build::Options { release, arch })?;
    }
    Ok(())
}

/// Builds `specs`' images from the binaries already built (`cargo xtask build [--release]
/// [--arch arm64]`).
pub fn build(opts: &Options, specs: &[Spec]) -> anyhow::Result<Vec<Built>> {
    let profile = if opts.release { "release" } else { "debug" };
    let out = root().join(&opts.out);
    std::fs::create_dir_all(&out)?;
    let meta = Meta::of_checkout()?;
    specs
        .iter()
        .map(|spec| {
            let platforms = spec
                .architectures()
                .into_iter()
                .map(|arch| {
                    let binary = arch.bin_dir(profile).join(spec.name);
                    Ok(oci::Platform { files: rootfs::rootfs(arch, &binary, spec.name)? })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (archive, digest) = oci::archive(spec, &meta, &platforms)?;
            let reference = reference(spec.name, &meta.version);
            let path = out.join(format!("{}-{}.oci.tar", spec.name, meta.version));
            std::fs::write(&path, archive).with_context(|| format!("writing {}", path.display()))?;
            Ok(Built { archive: path, reference, digest })
        })
        .collect()
}

/// Unpacks the root filesystem of `arch`'s image in `archive` into `into`: what a container
/// runtime gives the image's process as its root.
pub fn unpack(archive: &Path, arch: Arch, into: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(archive).with_context(|| format!("reading {}", archive.display()))?;
    let layer = oci::layer_of(&bytes, arch.name()).with_context(|| format!("in {}", archive.display()))?;
    std::fs::create_dir_all(into)?;
    Ok(tar::Archive::new(layer.as_slice()).unpack(into)?)
}

/// The full reference an image is imported under: what Kubernetes makes of `herald-speaker:0.1.0`.
pub fn reference(name: &str, version: &str) -> String {
    format!("docker.io/library/{name}:{version}")
}

/// What the images say about where they come from.
struct Meta {
    version: String,
    /// `git rev-parse HEAD`, `-dirty` with uncommitted changes.
    revision: String,
    /// The commit's time (seconds since 1970): every file's mtime and the image's creation time.
    time: u64,
    /// Where the source is (the checkout's `origin`), when known.
    source: Option<String>,
}

impl Meta {
    fn of_checkout() -> anyhow::Result<Self> {
        let git = |args: &[&str]| {
            output(Command::new("git").current_dir(root()).args(args)).map(|s| s.trim().to_owned())
        };
        let manifest = std::fs::read_to_string(root().join("controller/Cargo.toml"))?;
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("version = "))
            .map(|v| v.trim_matches('"').to_owned())
            .context("no version in controller/Cargo.toml")?;
        let mut revision = git(&["rev-parse", "HEAD"]).unwrap_or_else(|_| "unknown".into());
        if git(&["status", "--porcelain", "--untracked-files=no"]).is_ok_and(|s| !s.is_empty()) {
            revision.push_str("-dirty");
        }
        let time = git(&["log", "-1", "--format=%ct"]).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
        let source = git(&["remote", "get-url", "origin"]).ok().filter(|s| !s.is_empty());
        Ok(Self { version, revision, time, source })
    }
}
