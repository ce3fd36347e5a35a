//! `cargo xtask setup`: everything a new Debian/Ubuntu machine needs to build and test Herald.
//! Idempotent; when all is in place it only checks (well under a second).
//!
//! bpf-linker must use an LLVM at least as new as the one in the eBPF nightly's rustc, and no
//! Debian LLVM is that new: it is built against the nightly's own libLLVM, copied to a private
//! prefix so that toolchain updates cannot break it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{
    arch::{self, Arch},
    image,
    package::CARGO_DEB_VERSION,
    toolchain::{self, BPF_LINKER_VERSION, bpf_toolchain, host_toolchain, output},
};

/// Debian packages the build, the lab, the tests and the benches use.
const PACKAGES: &[&str] = &[
    "gcc",            // linker driver for build scripts and bpf-linker
    "bpftool",        // inspecting maps and programs
    "iproute2",       // the lab: ip netns, veth, bridge
    "util-linux",     // nsenter
    "ethtool",        // VLAN offloads in the lab, XDP counters
    "iputils-arping", // the client's ARP requests
    "iputils-ping",   // reachability of node addresses
    "tcpdump",        // captures of gratuitous ARP
    "netsniff-ng",    // trafgen: the ARP flood of the bench
    "procps",         // pkill, sysctl
    "keepalived",     // the failover bench's baseline (VRRP)
    "iptables",       // lossy links in the lab (and the CNI bridge's masquerade); this
                      // machine's kernel has no netem
];

/// Debian packages that cross-build arm64 on amd64 (`arch.rs`, `image/`, `arm64_vm.rs`) and run
/// what it builds here under qemu.
const ARM64_PACKAGES: &[&str] = &[
    "gcc-aarch64-linux-gnu", // its linker
    "libc6-dev-arm64-cross", // its C library, to link against
    "qemu-user",             // runs its binaries: the unit tests, the images' loader
    "mmdebstrap",            // Debian's arm64 packages: the images' libraries, the VM's root
];

/// Debian packages only the Kubernetes tests use.
const KUBE_PACKAGES: &[&str] = &[
    "etcd-server",                 // the API server's store
    "openssl",                     // its throwaway CA
    "curl",                        // its readiness
    "containerd",                  // the lab nodes' container runtime (with runc)
    "runc",                        //
    "containernetworking-plugins", // their pods' network (bridge, host-local, loopback)
    "podman",                      // loads the images as users do (tests/tests/images.rs)
    "skopeo",                      // copies them, both platforms, as users push them (same)
    "faketime",                    // a speaker whose clock is far off (tests/tests/kube_isolated.rs)
    "prometheus",                  // promtool and the server: deploy/monitoring's rules and dashboard
];

/// Debian packages the Debian package's tests use (tests/tests/package.rs).
const PACKAGE_PACKAGES: &[&str] = &[
    "mmdebstrap", // a clean Debian root with systemd to install it into
    "systemd",    // systemd-analyze and systemctl, run on that root
];

/// Debian packages of the kernel matrix (`kernels.rs`): another kernel and a VM to boot it.
const VM_PACKAGES: &[&str] = &[
    "linux-image-amd64", // Debian 12's kernel (6.1), the guest
    "qemu-system-x86",   // the VM
    "busybox-static",    // virtme-ng's initramfs
    "python3-venv",      // a private Python environment for virtme-ng
    "qemu-system-arm",   // arm64's VM (arm64_vm.rs)
    "cpio",              // its initramfs
];

/// Where virtme-ng lives (a venv: PyPI's package, not the system's Python).
pub const VM_DIR: &str = "/var/cache/herald-vm";
/// virtme-ng boots a kernel with the host's root filesystem shared: no image to build.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// What `setup` installs beyond the build, the lab and the demo.
#[derive(Clone, Copy, Default, clap::Args)]
pub struct Extras {
    /// The Kubernetes API server the controller's tests run against (built from Debian's
    /// source package the first time: a few minutes).
    #[arg(long)]
    pub kube: bool,
    /// The kernel matrix: Debian 12's kernel, qemu and virtme-ng; arm64's kernels and userland.
    #[arg(long)]
    pub kernels: bool,
    /// Cross-building for arm64 (from amd64): its target, Debian's cross toolchain, qemu-user,
    /// and Debian's arm64 libraries for the images.
    #[arg(long)]
    pub arm64: bool,
    /// The Debian package: cargo-deb (crates.io), and a clean Debian root for its tests.
    #[arg(long)]
    pub package: bool,
}

/// Everything for the build, the lab and the demo, and the `extras` asked for.
pub fn run(extras: Extras) -> anyhow::Result<()> {
    let start = Instant::now();
    // arm64 is cross-built from amd64 only; an arm64 machine builds its own.
    let cross = if extras.arm64 { arch::cross_targets() } else { vec![] };
    packages(PACKAGES)?;
    if cross.contains(&Arch::Arm64) {
        packages(ARM64_PACKAGES)?;
    }
    toolchains(&cross)?;
    bpf_linker()?;
    for &arch in &cross {
        runtime(arch)?;
    }
    if extras.kube {
        packages(KUBE_PACKAGES)?;
        apiserver()?;
    }
    if extras.package {
        packages(PACKAGE_PACKAGES)?;
        cargo_deb()?;
        clean_root()?;
    }
    if extras.kernels {
        packages(VM_PACKAGES)?;
        virtme_ng()?;
        crate::arm64_vm::setup()?;
    }
    eprintln!("setup: everything in place ({:.2} s)", start.elapsed().as_secs_f64());
    Ok(())
}

/// The Debian release whose packages the other architectures' images are made of.
const IMAGES_RELEASE: &str = "bookworm";

/// Debian's runtime libraries of `arch` for its images ([`image::runtime_dir`]), extracted
/// (no package scripts run, so no emulation), the packages kept for their control files.
fn runtime(arch: Arch) -> anyhow::Result<()> {
    let packages = Debian { arch, release: IMAGES_RELEASE, packages: image::RUNTIME_PACKAGES };
    packages.extract_once(&image::runtime_dir(arch), &["--skip=cleanup/apt/cache"], |_| Ok(()))
}

/// Debian packages: another architecture's, for its images and its VM; this one's, for a clean
/// root the Debian package installs into.
pub struct Debian<'a> {
    pub arch: Arch,
    pub release: &'a str,
    /// Comma-separated; what they depend on comes too.
    pub packages: &'a str,
}

impl Debian<'_> {
    /// Extracts the packages into `dir` (mmdebstrap's `args` added) and runs `then` on it,
    /// unless its stamp, written last, says that was done for these packages.
    pub fn extract_once(
        &self,
        dir: &Path,
        args: &[&str],
        then: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.once("extract", dir, args, then)
    }

    /// A Debian system in `dir` as debootstrap's minbase makes it (dpkg, apt), with the packages
    /// installed (their scripts run), unless its stamp says that was done.
    pub fn install_once(&self, dir: &Path) -> anyhow::Result<()> {
        self.once("minbase", dir, &[], |_| Ok(()))
    }

    /// mmdebstrap's `variant` of the packages into `dir`, then `then`, once.
    fn once(
        &self,
        variant: &str,
        dir: &Path,
        args: &[&str],
        then: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let stamp = dir.with_extension("packages");
        let wanted = format!("{} {}: {}", self.release, self.arch.name(), self.packages);
        if dir.is_dir() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
            return Ok(());
        }
        eprintln!("setup: Debian {wanted} into {}", dir.display());
        let _ = std::fs::remove_dir_all(dir);
        mmdebstrap(self, variant, args, dir)?;
        then(dir)?;
        Ok(std::fs::write(stamp, wanted)?)
    }
}

/// mmdebstrap's `variant` of `debian`'s packages and what they depend on, with its release's
/// security updates, into `dir` (made whole or not at all).
fn mmdebstrap(debian: &Debian, variant: &str, args: &[&str], dir: &Path) -> anyhow::Result<()> {
    let Debian { arch, release, packages } = debian;
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(dir.parent().context("a directory's parent")?)?;
    toolchain::run(
        Command::new("mmdebstrap")
            .args([
                "--quiet",
                &format!("--variant={variant}"),
                "--architectures",
                arch.name(),
                "--include",
                packages,
            ])
            .args(args)
            .arg(release)
            .arg(&partial)
            .arg(format!("deb http://deb.debian.org/debian {release} main"))
            .arg(format!("deb http://deb.debian.org/debian-security {release}-security main")),
    )?;
    std::fs::rename(&partial, dir).with_context(|| format!("moving {} into place", partial.display()))
}

/// kube-apiserver and kube-controller-manager v1.20.2, cached under /var/cache/herald-k8s.
fn apiserver() -> anyhow::Result<()> {
    // Its progress (stderr) shows; stdout is the binary's path.
    let out = toolchain::output(
        Command::new(toolchain::root().join("tests/kube/build-kubernetes.sh"))
            .stderr(std::process::Stdio::inherit()),
    )?;
    if !out.trim().ends_with("kube-apiserver") {
        bail!("tests/kube/build-kubernetes.sh printed no binary path: {out}");
    }
    Ok(())
}

/// cargo-deb at the pinned version, in cargo's bin directory.
fn cargo_deb() -> anyhow::Result<()> {
    let version = Command::new("cargo").args(["deb", "--version"]).current_dir(toolchain::root()).output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-deb {CARGO_DEB_VERSION} (a minute)");
    toolchain::run(&mut cargo_install("cargo-deb", CARGO_DEB_VERSION)?)
}

/// `cargo install` of `name` at exactly `version` (its lock file, over what is there) with the
/// host toolchain; features and environment may be added before it runs.
fn cargo_install(name: &str, version: &str) -> anyhow::Result<Command> {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{}", host_toolchain()?))
        .args(["install", name, "--version", &format!("={version}"), "--locked", "--force"])
        .env_remove("RUSTUP_TOOLCHAIN");
    Ok(cmd)
}

/// Where the clean Debian root lives, that the package's tests install it into (through an
/// overlay: the root itself stays clean).
pub const CLEAN_ROOT: &str = "/var/cache/herald-deb/bookworm";

/// Debian 12 as a server has it: minbase (dpkg, apt), systemd and procps (kill), made once.
fn clean_root() -> anyhow::Result<()> {
    let root = Debian { arch: Arch::host(), release: IMAGES_RELEASE, packages: "systemd,procps" };
    root.install_once(Path::new(CLEAN_ROOT))
}

/// virtme-ng in a venv under [`VM_DIR`], at the pinned version.
fn virtme_ng() -> anyhow::Result<()> {
    let venv = Path::new(VM_DIR).join("venv");
    let pip = venv.join("bin/pip");
    let has = Command::new(&pip).args(["show", "virtme-ng"]).output();
    let version = VIRTME_NG.split_once("==").map_or("", |(_, v)| v);
    if has
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l == format!("Version: {version}")))
    {
        return Ok(());
    }
    eprintln!("setup: installing {VIRTME_NG} into {}", venv.display());
    toolchain::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    toolchain::run(Command::new(&pip).args(["install", "--quiet", VIRTME_NG]))
}

fn packages(wanted: &[&'static str]) -> anyhow::Result<()> {
    let status =
        Command::new("dpkg-query").args(["-W", "-f", "${Package} ${Status}\\n"]).args(wanted).output()?;
    let text = String::from_utf8_lossy(&status.stdout);
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|p| {
            !text.lines().any(|l| l.starts_with(&format!("{p} ")) && l.ends_with("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    toolchain::run(Command::new("apt-get").args(["update", "-qq"]))?;
    toolchain::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn toolchains(cross: &[Arch]) -> anyhow::Result<()> {
    let host = host_toolchain()?;
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    let has = |name: &str| installed.lines().any(|l| l.starts_with(name));
    if !has(&host) {
        // With no argument, rustup installs what rust-toolchain.toml names (with its components).
        toolchain::run(Command::new("rustup").args(["toolchain", "install"]).current_dir(toolchain::root()))?;
    }
    // The other architectures' standard libraries (rust-toolchain.toml's `targets`), which an
    // older install of the same toolchain may lack.
    let host_lib = sysroot(&host)?.join("lib/rustlib");
    for arch in cross {
        if !host_lib.join(arch.triple()).is_dir() {
            toolchain::run(Command::new("rustup").args([
                "target",
                "add",
                arch.triple(),
                "--toolchain",
                &host,
            ]))?;
        }
    }
    let bpf = bpf_toolchain()?;
    if !has(&bpf) {
        toolchain::run(Command::new("rustup").args(["toolchain", "install", &bpf, "--profile", "minimal"]))?;
    }
    // rust-src for -Z build-std; clippy to lint the BPF programs.
    let sysroot = sysroot(&bpf)?;
    let missing = [
        ("rust-src", sysroot.join("lib/rustlib/src/rust/library/core")),
        ("clippy", sysroot.join("bin/cargo-clippy")),
    ]
    .into_iter()
    .filter(|(_, path)| !path.exists())
    .map(|(component, _)| component);
    for component in missing {
        toolchain::run(Command::new("rustup").args(["component", "add", component, "--toolchain", &bpf]))?;
    }
    Ok(())
}

fn sysroot(toolchain: &str) -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(
        output(Command::new("rustc").arg(format!("+{toolchain}")).args(["--print", "sysroot"]))?.trim(),
    ))
}

fn bpf_linker() -> anyhow::Result<()> {
    let lib_dir = sysroot(&bpf_toolchain()?)?.join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so.")))
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))?;
    let libname = libllvm.file_name().unwrap().to_string_lossy().into_owned();
    // e.g. libLLVM.so.23.1-rust-1.101.0-nightly: the LLVM major follows "libLLVM.so."
    let major = libname.trim_start_matches("libLLVM.so.").split('.').next().unwrap_or_default().to_owned();

    let home = PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?);
    let prefix = home.join(".local/share/bpf-linker-llvm").join(&libname);
    let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(|| home.join(".cargo"), PathBuf::from);
    let bin = cargo_home.join("bin/bpf-linker");
    let private_lib = prefix.join("lib").join(&libname);

    let works = || -> bool {
        let version = Command::new(&bin).arg("--version").output();
        let ldd = Command::new("ldd").arg(&bin).output();
        matches!((version, ldd), (Ok(v), Ok(l))
            if String::from_utf8_lossy(&v.stdout).contains(BPF_LINKER_VERSION)
            && String::from_utf8_lossy(&l.stdout).contains(&format!("=> {}", private_lib.display())))
    };
    if works() {
        return Ok(());
    }

    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against {libname} (a minute or two)");
    std::fs::create_dir_all(prefix.join("lib"))?;
    std::fs::copy(&libllvm, &private_lib)?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libname, &link)?;
    // LLVM_PREFIX is read by bpf-linker's build script and wins over any llvm-config on PATH.
    toolchain::run(
        cargo_install("bpf-linker", BPF_LINKER_VERSION)?
            .args(["--no-default-features", "--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !works() {
        bail!("bpf-linker at {} does not run against {}", bin.display(), private_lib.display());
    }
    Ok(())
}
