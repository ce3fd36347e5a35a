//! The kernel matrix: the XDP program tests and the standalone lab tests, run again inside a VM
//! on Debian 12's kernel (Linux 6.1, what many nodes run), besides the host's kernel. virtme-ng
//! boots the distribution kernel with the host's root filesystem shared read-only, so the test
//! binaries built here run there as they are. qemu emulates (TCG): KVM is not usable on every
//! CI machine. arm64's kernel runs in a VM of its own (`arm64_vm.rs`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{arch::Arch, guest, setup::VM_DIR, toolchain};

/// The guest kernels: Debian's `linux-image-amd64` (bookworm: 6.1), installed by `setup`.
const GUEST_KERNELS: &[&str] = &["6.1."];

/// The suites that run in each guest: the BPF program through BPF_PROG_TEST_RUN, and the
/// standalone speaker in the lab (answers, hooks, VLANs, the preflight, other loaders' programs).
pub const SUITES: &[&str] = &[
    "xdp_program",
    "xdp_ndp",
    "xdp_claims",
    "lab_standalone",
    "lab_vlan",
    "lab_check",
    "lab_ndp",
    "lab_share",
];

/// Runs [`SUITES`] in a VM on every guest kernel; a failure names the kernel and the suite and
/// shows its output.
pub fn run() -> anyhow::Result<()> {
    let built = guest::build(Arch::host(), SUITES)?;
    for series in GUEST_KERNELS {
        let kernel = installed_kernel(series)?;
        let release = kernel.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_owned();
        let start = Instant::now();
        eprintln!("kernels: {} suites on Linux {release} (a VM, emulated: a few minutes)", built.len());
        let failed = in_guest(&kernel, &built).with_context(|| format!("on Linux {release}"))?;
        if !failed.is_empty() {
            bail!("on Linux {release}: {} failed (output above)", failed.join(", "));
        }
        eprintln!("kernels: Linux {release}: all passed in {:.0} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The newest installed `/boot/vmlinuz-<series>*`.
fn installed_kernel(series: &str) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("vmlinuz-{series}")))
        })
        .collect();
    found.sort_by_key(|p| version_key(&p.to_string_lossy()));
    found.pop().with_context(|| format!("no /boot/vmlinuz-{series}*: run `cargo xtask setup --kernels`"))
}

/// Numbers in a kernel file name, in order, for sorting 6.1.0-9 before 6.1.0-10.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect()
}

/// Boots `kernel` and runs the suites in it one after the other; returns the suites that
/// failed, after printing their output.
fn in_guest(kernel: &Path, built: &[guest::Built]) -> anyhow::Result<Vec<&'static str>> {
    let out = std::env::temp_dir().join(format!("herald-guest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    // The host's root filesystem is the guest's: the executables are where cargo put them.
    let script = guest::script(built, |b| b.binary.display().to_string(), &out.display().to_string());
    let script_path = out.join("run.sh");
    std::fs::write(&script_path, script)?;
    let vng = Path::new(VM_DIR).join("venv/bin");
    let path = format!("{}:{}", vng.display(), std::env::var("PATH").unwrap_or_default());
    let status = Command::new(vng.join("vng"))
        .args(["--disable-kvm", "--cpus", "2", "--memory", "3G", "--user", "root", "--rwdir"])
        .arg(&out)
        .arg("-r")
        .arg(kernel)
        .args(["--", "sh"])
        .arg(&script_path)
        .env("PATH", path)
        .current_dir(toolchain::root())
        // The console is noisy and unreliable; the suites write to files.
        .stdout(std::fs::File::create(out.join("console"))?)
        .stderr(std::fs::File::create(out.join("console.err"))?)
        .status()
        .context("starting vng")?;
    let failed =
        guest::failures(built, &out, &out.join("console.err")).with_context(|| format!("vng: {status}"))?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(failed)
}
