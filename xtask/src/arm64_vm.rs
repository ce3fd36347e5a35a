//! arm64's kernels: the XDP programs and the speaker from its arm64 image, on Debian 12's and
//! Debian 13's `linux-image-arm64` (6.1, 6.12) in qemu, emulated (TCG) as a Cortex-A72, the
//! Raspberry Pi 4's core.
//! The BPF bytecode is the same on every architecture; arm64's verifier, JIT and drivers are not.
//!
//! The guest boots from an initramfs and nothing else: Debian's arm64 userland (extracted by
//! `cargo xtask setup --kernels`, no package script run, so no emulation there), the kernel
//! modules the lab loads, the suites cross-built here, and the speaker's arm64 image unpacked as a
//! root of its own. The guest writes each suite's output into a directory the host shares (9p).
//!
//! The suites are some of amd64's VM's ([`kernels::SUITES`], chosen per kernel in [`KERNELS`]):
//! the programs through BPF_PROG_TEST_RUN, with the DaemonSet's capabilities only, and the
//! standalone speaker in the lab.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    arch::Arch,
    guest, image, kernels,
    setup::Debian,
    toolchain::{self, output},
};

/// Where the VM's parts are extracted.
const DIR: &str = "/var/cache/herald-vm/arm64";

/// The userland: Debian 12's [`PACKAGES`] and what they depend on.
const USERLAND: &str = "bookworm";

/// The tools the lab runs (`tests/src/lab.rs`, `probe.rs`): busybox gives the shell, mount and
/// poweroff that an extracted root lacks; libcap2-bin the file capability of the image's entry;
/// curl reads a speaker's /metrics.
const PACKAGES: &str = "busybox-static,coreutils,kmod,iproute2,util-linux,procps,ethtool,iputils-arping,iputils-ping,tcpdump,libcap2-bin,curl";

/// A kernel: `linux-image-arm64` of a Debian release, extracted on its own and booted with the
/// same userland, and the suites it runs.
struct Kernel {
    release: &'static str,
    /// Suites of [`kernels::SUITES`] by name; empty for all of them.
    only: &'static [&'static str],
}

/// What differs on arm64 is the verifier, the JIT and the compiled speaker, not how a kernel
/// version treats veth, VLAN offloads or another program on the NIC (`lab_vlan`, `lab_share`:
/// amd64's VM runs them on the same 6.1). So Debian 12's 6.1 (what many nodes run) runs the
/// programs, the speaker from the image in the lab for both families, and the preflight (its
/// seccomp filter names the architecture); Debian 13's 6.12 the programs and the hooks that change
/// with the kernel (TC through tcx links from 6.6). The rest would add a minute or more under
/// emulation, and CI's 45 minutes are nearly spent.
const KERNELS: [Kernel; 2] = [
    Kernel {
        release: "bookworm",
        only: &["xdp_program", "xdp_ndp", "xdp_claims", "lab_standalone", "lab_check", "lab_ndp"],
    },
    Kernel {
        release: "trixie",
        only: &["xdp_program", "xdp_ndp", "xdp_claims", "lab_standalone", "lab_ndp"],
    },
];

/// Busybox's applets the guest uses where the extracted packages have no such program.
const APPLETS: [&str; 4] = ["sh", "mount", "umount", "poweroff"];

/// The modules the guest loads: the lab's, then the shared directory's (virtio PCI, 9p).
const MODULES: [&str; 8] =
    ["veth", "bridge", "8021q", "sch_ingress", "cls_bpf", "virtio_pci", "9pnet_virtio", "9p"];

/// What the lab never needs from the extracted userland.
const LEFT_OUT: [&str; 4] = ["usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache"];

/// The tests package's helpers the suites run (`workspace_bin`), beside the speaker.
const HELPERS: [&str; 2] = ["herald-verify", "herald-deny-bpf"];

/// A bound on a hung guest, far above a run's few minutes.
const GUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn userland() -> PathBuf {
    Path::new(DIR).join("userland")
}

fn kernel_dir(release: &str) -> PathBuf {
    Path::new(DIR).join(format!("linux-{release}"))
}

/// Extracts the userland and the kernels (`setup --kernels`), each again when what it is made
/// of changed, and indexes each kernel's modules.
pub fn setup() -> anyhow::Result<()> {
    let userland_packages = Debian { arch: Arch::Arm64, release: USERLAND, packages: PACKAGES };
    userland_packages.extract_once(&userland(), &[], |_| Ok(()))?;
    for Kernel { release, .. } in KERNELS {
        let kernel = Debian { arch: Arch::Arm64, release, packages: "linux-image-arm64" };
        kernel.extract_once(&kernel_dir(release), &[], |dir| {
            let version = kernel_version(dir)?;
            toolchain::run(Command::new("depmod").arg("-b").arg(modules_base(dir)).arg(&version))
        })?;
    }
    Ok(())
}

/// `6.1.0-57-arm64` from the kernel's /boot/vmlinuz-6.1.0-57-arm64.
fn kernel_version(dir: &Path) -> anyhow::Result<String> {
    std::fs::read_dir(dir.join("boot"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_owned))
        .next()
        .with_context(|| format!("no kernel in {}/boot: run `cargo xtask setup --kernels`", dir.display()))
}

/// The directory whose lib/modules holds the kernel's modules (usr/ where /lib is merged).
fn modules_base(dir: &Path) -> PathBuf {
    if dir.join("lib/modules").is_dir() { dir.to_owned() } else { dir.join("usr") }
}

/// Runs [`kernels::SUITES`] on each arm64 kernel with the speaker of the arm64 image in
/// `speaker_image` (an archive `cargo xtask image` wrote).
pub fn run(speaker_image: &Path) -> anyhow::Result<()> {
    let built = guest::build(Arch::Arm64, kernels::SUITES)?;
    for Kernel { release, only } in KERNELS {
        let kernel = kernel_dir(release);
        let version = kernel_version(&kernel)?;
        let suites: Vec<guest::Built> =
            built.iter().filter(|b| only.is_empty() || only.contains(&b.suite)).cloned().collect();
        let work = std::env::temp_dir().join(format!("herald-arm64-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let result = boot(&kernel, &version, &suites, speaker_image, &work);
        let _ = std::fs::remove_dir_all(&work);
        let failed = result.with_context(|| format!("on arm64's Linux {version}"))?;
        if !failed.is_empty() {
            bail!("on arm64's Linux {version}: {} failed (output above)", failed.join(", "));
        }
    }
    Ok(())
}

/// Boots `kernel` (its directory) with the userland, its modules and the staged suites; the
/// suites that failed.
fn boot(
    kernel: &Path,
    release: &str,
    built: &[guest::Built],
    speaker_image: &Path,
    work: &Path,
) -> anyhow::Result<Vec<&'static str>> {
    let (stage, out) = (work.join("stage"), work.join("out"));
    std::fs::create_dir_all(&out)?;
    stage_suites(&stage, built, speaker_image)?;
    let initrd = work.join("initrd.cpio");
    let mut initrd_file = std::fs::File::create(&initrd)?;
    let userland = userland();
    cpio(&userland, &all_entries(&userland)?, &mut initrd_file)?;
    let modules = modules_base(kernel);
    cpio(&modules, &module_entries(&modules, release)?, &mut initrd_file)?;
    cpio(&stage, &all_entries(&stage)?, &mut initrd_file)?;
    drop(initrd_file);

    let start = Instant::now();
    eprintln!("kernels: {} suites on arm64's Linux {release} (a VM, emulated: several minutes)", built.len());
    let console = work.join("console");
    let mut qemu = Command::new("qemu-system-aarch64")
        .args(["-machine", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "3G"])
        .args(["-accel", "tcg,thread=multi", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel.join("boot").join(format!("vmlinuz-{release}")))
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyAMA0 panic=-1 loglevel=4"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-fsdev")
        .arg(format!("local,id=out,path={},security_model=none", out.display()))
        .args(["-device", "virtio-9p-pci,fsdev=out,mount_tag=out"])
        .stdin(Stdio::null())
        .spawn()
        .context("starting qemu-system-aarch64")?;
    let status = loop {
        if let Some(status) = qemu.try_wait()? {
            break status;
        }
        if start.elapsed() > GUEST_TIMEOUT {
            let _ = qemu.kill();
            bail!("the arm64 VM ran past {GUEST_TIMEOUT:?}:\n{}", std::fs::read_to_string(&console)?);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let failed = guest::failures(built, &out, &console).with_context(|| format!("qemu: {status}"))?;
    if failed.is_empty() {
        eprintln!("kernels: arm64's Linux {release}: all passed in {:.0} s", start.elapsed().as_secs_f64());
    }
    Ok(failed)
}

/// The guest's own files: /init, busybox's applets, the suites (stripped) in /herald/deps where
/// `workspace_bin` looks beside them for [`HELPERS`] and /herald/herald-speaker, and the
/// speaker's arm64 image unpacked in /herald/image, which /herald/herald-speaker runs.
fn stage_suites(stage: &Path, built: &[guest::Built], speaker_image: &Path) -> anyhow::Result<()> {
    let herald = stage.join("herald");
    std::fs::create_dir_all(herald.join("deps"))?;
    let strip = |from: &Path, to: &Path| {
        let strip = format!("{}strip", Arch::Arm64.binutils_prefix());
        toolchain::run(Command::new(strip).arg("--strip-debug").arg(from).arg("-o").arg(to))
    };
    for b in built {
        strip(&b.binary, &herald.join("deps").join(b.suite))?;
    }
    for helper in HELPERS {
        strip(&Arch::Arm64.bin_dir("debug").join(helper), &herald.join(helper))?;
    }
    image::unpack(speaker_image, Arch::Arm64, &herald.join("image"))?;
    write_script(&herald.join("herald-speaker"), SPEAKER)?;
    let script = guest::script(built, |b| format!("/herald/deps/{}", b.suite), "/out");
    std::fs::write(herald.join("run.sh"), script)?;
    write_script(&stage.join("init"), INIT)?;
    // The users the packages' scripts would have made: base-passwd's root, tcpdump's own (it
    // drops to it after opening the capture).
    std::fs::create_dir_all(stage.join("etc"))?;
    std::fs::write(stage.join("etc/passwd"), PASSWD)?;
    std::fs::write(stage.join("etc/group"), GROUP)?;
    std::fs::create_dir_all(stage.join("bin"))?;
    for applet in APPLETS {
        let present =
            ["bin", "sbin", "usr/bin", "usr/sbin"].iter().any(|d| userland().join(d).join(applet).exists());
        if !present {
            std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet))?;
        }
    }
    Ok(())
}

fn write_script(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The guest's init: what a node has mounted, the modules, the host's shared directory, then
/// the suites; then off.
const INIT: &str = r#"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /tmp /run /out
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
for m in virtio_pci 9pnet_virtio 9p; do modprobe $m; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out
# The speaker's image as a container runtime gives it a node: its own root, with the node's
# proc, sys (and bpffs), dev, tmp and run; entered, as a runtime enters it, with a privilege
# the speaker does not keep (a speaker run without capabilities still reaches its root).
for d in proc sys dev tmp run; do mkdir -p /herald/image/$d; mount --rbind /$d /herald/image/$d; done
cp /usr/sbin/chroot /herald/chroot && setcap cap_sys_chroot+ep /herald/chroot
sh /herald/run.sh
umount /out
poweroff -f
"#;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ntcpdump:x:101:101::/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\ntcpdump:x:101:\n";

/// The speaker the lab starts: the one in the arm64 image, in the image's own root (its loader
/// and libraries, nothing of the guest's).
const SPEAKER: &str = "#!/bin/sh\nexec /herald/chroot /herald/image /usr/local/bin/herald-speaker \"$@\"\n";

/// The modules [`MODULES`] need, with the module index, under `base` (relative to it, each
/// after its parent directories).
fn module_entries(base: &Path, release: &str) -> anyhow::Result<Vec<String>> {
    let modules = Path::new("lib/modules").join(release);
    let mut wanted: Vec<PathBuf> = std::fs::read_dir(base.join(&modules))?
        .filter_map(|e| {
            e.ok()?.file_name().to_str().filter(|n| n.starts_with("modules.")).map(|n| modules.join(n))
        })
        .collect();
    for module in MODULES {
        // `insmod /var/cache/herald-vm/arm64/linux-bookworm/lib/modules/6.1.0-57-arm64/kernel/net/802/stp.ko`
        let said = output(Command::new("modprobe").arg("-d").arg(base).args([
            "-S",
            release,
            "--show-depends",
            module,
        ]))?;
        // `builtin virtio_pci` where the kernel has it built in.
        for line in said.lines().filter(|l| l.starts_with("insmod ")) {
            let path = line.split_whitespace().nth(1).context("modprobe --show-depends")?;
            let inside =
                Path::new(path).strip_prefix(base).context("a module outside the kernel's directory")?;
            wanted.push(inside.to_owned());
        }
    }
    Ok(with_parents(&wanted))
}

/// `paths` and their parent directories, each once, parents first (the order cpio needs).
fn with_parents(paths: &[PathBuf]) -> Vec<String> {
    let mut entries = BTreeSet::new();
    for path in paths {
        for ancestor in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            entries.insert(ancestor.display().to_string());
        }
    }
    entries.into_iter().collect()
}

/// Every entry under `root/dir` but [`LEFT_OUT`], symbolic links not followed.
fn walk(root: &Path, dir: &Path, entries: &mut BTreeSet<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(root.join(dir))? {
        let entry = entry?;
        let path = dir.join(entry.file_name());
        if LEFT_OUT.iter().any(|l| path == Path::new(l)) {
            continue;
        }
        entries.insert(path.display().to_string());
        if entry.file_type()?.is_dir() {
            walk(root, &path, entries)?;
        }
    }
    Ok(())
}

fn all_entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut entries = BTreeSet::new();
    walk(dir, Path::new(""), &mut entries)?;
    Ok(entries.into_iter().collect())
}

/// Appends a newc cpio archive of `entries` (relative to `dir`, parents first) to `to`: the
/// kernel unpacks archives laid end to end into one root.
fn cpio(dir: &Path, entries: &[String], to: &mut std::fs::File) -> anyhow::Result<()> {
    let mut child = Command::new("cpio")
        .args(["--create", "--format=newc", "--owner=0:0", "--quiet", "--directory"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(to.try_clone()?)
        .spawn()
        .context("starting cpio")?;
    let list = entries.join("\n") + "\n";
    std::io::Write::write_all(child.stdin.as_mut().context("cpio's stdin")?, list.as_bytes())?;
    drop(child.stdin.take());
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio of {}: {status}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_after_their_directories() {
        let paths = [
            PathBuf::from("lib/modules/6.1.0-57-arm64/kernel/net/802/stp.ko"),
            PathBuf::from("lib/modules/6.1.0-57-arm64/modules.dep"),
            PathBuf::from("lib/modules/6.1.0-57-arm64/kernel/net/802/garp.ko"),
        ];
        assert_eq!(
            with_parents(&paths),
            [
                "lib",
                "lib/modules",
                "lib/modules/6.1.0-57-arm64",
                "lib/modules/6.1.0-57-arm64/kernel",
                "lib/modules/6.1.0-57-arm64/kernel/net",
                "lib/modules/6.1.0-57-arm64/kernel/net/802",
                "lib/modules/6.1.0-57-arm64/kernel/net/802/garp.ko",
                "lib/modules/6.1.0-57-arm64/kernel/net/802/stp.ko",
                "lib/modules/6.1.0-57-arm64/modules.dep",
            ]
        );
    }
}
