//! The kernel matrix: the XDP program tests and the standalone lab tests, run again inside a VM
//! on Debian 12's kernel (Linux 6.1, what many nodes run), besides the host's kernel. virtme-ng
//! boots the distribution kernel with the host's root filesystem shared read-only, so the test
//! binaries built here run there as they are. qemu emulates (TCG): KVM is not usable on every
//! CI machine.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{
    setup::VM_DIR,
    toolchain::{self, cargo},
};

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
    let binaries = test_binaries()?;
    for series in GUEST_KERNELS {
        let kernel = installed_kernel(series)?;
        let release = kernel.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_owned();
        let start = Instant::now();
        eprintln!("kernels: {} suites on Linux {release} (a VM, emulated: a few minutes)", binaries.len());
        let failed = in_guest(&kernel, &binaries).with_context(|| format!("on Linux {release}"))?;
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

/// (suite, executable) of each suite, built now (cargo prints the paths).
fn test_binaries() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut cmd = cargo();
    cmd.args(["test", "--no-run", "--package", "herald-tests"]);
    for suite in SUITES {
        cmd.args(["--test", suite]);
    }
    let out = cmd.output().context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test suites: {}", String::from_utf8_lossy(&out.stderr));
    }
    // `  Executable tests/lab_vlan.rs (target/debug/deps/lab_vlan-0123abcd)`
    let text = String::from_utf8_lossy(&out.stderr);
    let binaries: Vec<(String, PathBuf)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("Executable tests/")?;
            let (suite, path) = rest.split_once(".rs (")?;
            Some((suite.to_owned(), toolchain::root().join(path.strip_suffix(')')?)))
        })
        .collect();
    if binaries.len() != SUITES.len() {
        bail!("expected {} test executables from cargo, found {binaries:?}", SUITES.len());
    }
    Ok(binaries)
}

/// Boots `kernel` and runs `binaries` in it one after the other; returns the suites that
/// failed, after printing their output.
fn in_guest(kernel: &Path, binaries: &[(String, PathBuf)]) -> anyhow::Result<Vec<String>> {
    let out = std::env::temp_dir().join(format!("herald-guest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut script = String::from(GUEST_PRELUDE);
    for (suite, bin) in binaries {
        script += &format!(
            "{bin} --test-threads=1 > {o}/{suite}.log 2>&1; echo \"{suite} $?\" >> {o}/results\n",
            bin = bin.display(),
            o = out.display()
        );
    }
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
    let results = std::fs::read_to_string(out.join("results")).unwrap_or_default();
    let mut failed = Vec::new();
    for (suite, _) in binaries {
        let passed = results.lines().any(|l| l == format!("{suite} 0"));
        if !passed {
            let log = std::fs::read_to_string(out.join(format!("{suite}.log"))).unwrap_or_default();
            eprintln!("---- {suite} in the guest ----\n{log}");
            failed.push(suite.clone());
        }
    }
    if results.is_empty() {
        let console = std::fs::read_to_string(out.join("console.err")).unwrap_or_default();
        bail!("the VM ran no suite ({status}):\n{console}");
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(failed)
}

/// What the guest needs before the suites: the modules the lab uses (Debian builds them as
/// modules), and CI=true so that nothing skips.
const GUEST_PRELUDE: &str = "set -u\n\
    for m in veth bridge 8021q sch_ingress cls_bpf; do modprobe $m; done\n\
    export CI=true\n";
