//! The arm64 kernel: the XDP programs and the speaker from its arm64 image, on Debian 12's
//! `linux-image-arm64` (6.1) in qemu, emulated (TCG) as a Cortex-A72, the Raspberry Pi 4's core.
//! The BPF bytecode is the same on every architecture; arm64's verifier, JIT and drivers are not.
//!
//! The guest boots from an initramfs and nothing else: Debian's arm64 userland (extracted by
//! `cargo xtask setup --kernels`, no package script run, so no emulation there), the kernel
//! modules the lab loads, the suites cross-built here, and the speaker's arm64 image unpacked as a
//! root of its own. The guest writes each suite's output into a directory the host shares (9p).
//!
//! The suites are amd64's VM's ([`kernels::SUITES`]): the programs through BPF_PROG_TEST_RUN,
//! with the DaemonSet's capabilities only, and the standalone speaker in the lab.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    arch::Arch,
    guest, image, kernels, setup,
    toolchain::{self, output},
};

/// Debian's arm64 userland and kernel, extracted: [`PACKAGES`] and what they depend on.
const ROOT: &str = "/var/cache/herald-vm/arm64";

/// The kernel, and the tools the lab runs (`tests/src/lab.rs`, `probe.rs`): busybox gives the
/// shell, mount and poweroff that an extracted root lacks.
const PACKAGES: &str = "linux-image-arm64,busybox-static,kmod,iproute2,util-linux,procps,ethtool,iputils-arping,iputils-ping,tcpdump,libcap2-bin";

/// Busybox's applets the guest uses where the extracted packages have no such program.
const APPLETS: [&str; 4] = ["sh", "mount", "umount", "poweroff"];

/// The modules the guest loads: the lab's, then the shared directory's (virtio PCI, 9p).
const MODULES: [&str; 8] =
    ["veth", "bridge", "8021q", "sch_ingress", "cls_bpf", "virtio_pci", "9pnet_virtio", "9p"];

/// What the lab never needs from the extracted root (the kernel is booted from outside).
const LEFT_OUT: [&str; 6] =
    ["boot", "lib/modules", "usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache"];

/// The tests package's helpers the suites run (`workspace_bin`), beside the speaker.
const HELPERS: [&str; 2] = ["herald-verify", "herald-deny-bpf"];

/// A bound on a hung guest, far above a run's few minutes.
const GUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Extracts [`PACKAGES`] into [`ROOT`] and indexes its modules (`setup --kernels`); again when
/// [`PACKAGES`] changed.
pub fn setup() -> anyhow::Result<()> {
    let root = Path::new(ROOT);
    let stamp = root.join(".herald-packages");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == PACKAGES) {
        return Ok(());
    }
    eprintln!("setup: Debian's arm64 kernel and userland for the arm64 VM into {ROOT}");
    let _ = std::fs::remove_dir_all(root);
    setup::extract(Arch::Arm64, PACKAGES, &[], root)?;
    let release = kernel_release(root)?;
    toolchain::run(Command::new("depmod").arg("-b").arg(root).arg(&release))?;
    Ok(std::fs::write(stamp, PACKAGES)?)
}

/// `6.1.0-50-arm64` from the root's /boot/vmlinuz-6.1.0-50-arm64.
fn kernel_release(root: &Path) -> anyhow::Result<String> {
    std::fs::read_dir(root.join("boot"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_owned))
        .next()
        .with_context(|| format!("no kernel in {}/boot: run `cargo xtask setup --kernels`", root.display()))
}

/// Runs [`kernels::SUITES`] on arm64's kernel with the speaker of the arm64 image in `speaker_image` (an
/// archive `cargo xtask image` wrote).
pub fn run(speaker_image: &Path) -> anyhow::Result<()> {
    let root = Path::new(ROOT);
    let release = kernel_release(root)?;
    let built = guest::build(Arch::Arm64, kernels::SUITES)?;
    let work = std::env::temp_dir().join(format!("herald-arm64-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let result = boot(root, &release, &built, speaker_image, &work);
    let _ = std::fs::remove_dir_all(&work);
    let failed = result.with_context(|| format!("on arm64's Linux {release}"))?;
    if !failed.is_empty() {
        bail!("on arm64's Linux {release}: {} failed (output above)", failed.join(", "));
    }
    Ok(())
}

fn boot(
    root: &Path,
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
    cpio(root, &root_entries(root, release)?, &mut initrd_file)?;
    cpio(&stage, &all_entries(&stage)?, &mut initrd_file)?;
    drop(initrd_file);

    let start = Instant::now();
    eprintln!("kernels: {} suites on arm64's Linux {release} (a VM, emulated: several minutes)", built.len());
    let console = work.join("console");
    let mut qemu = Command::new("qemu-system-aarch64")
        .args(["-machine", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "3G"])
        .args(["-accel", "tcg,thread=multi", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(root.join("boot").join(format!("vmlinuz-{release}")))
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
        strip(&b.binary, &herald.join("deps").join(b.suite.name))?;
    }
    for helper in HELPERS {
        strip(&Arch::Arm64.bin_dir("debug").join(helper), &herald.join(helper))?;
    }
    image::unpack(speaker_image, Arch::Arm64, &herald.join("image"))?;
    write_script(&herald.join("herald-speaker"), SPEAKER)?;
    let script = guest::script(built, |b| format!("/herald/deps/{}", b.suite.name), "/out");
    std::fs::write(herald.join("run.sh"), script)?;
    write_script(&stage.join("init"), INIT)?;
    // The users the packages' scripts would have made: base-passwd's root, tcpdump's own (it
    // drops to it after opening the capture).
    std::fs::create_dir_all(stage.join("etc"))?;
    std::fs::write(stage.join("etc/passwd"), PASSWD)?;
    std::fs::write(stage.join("etc/group"), GROUP)?;
    std::fs::create_dir_all(stage.join("bin"))?;
    for applet in APPLETS {
        let present = ["bin", "sbin", "usr/bin", "usr/sbin"]
            .iter()
            .any(|d| Path::new(ROOT).join(d).join(applet).exists());
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

/// The root's entries for the initramfs: everything but [`LEFT_OUT`], then the modules
/// [`MODULES`] need with the module index, each after its parent directories.
fn root_entries(root: &Path, release: &str) -> anyhow::Result<Vec<String>> {
    let mut entries = BTreeSet::new();
    walk(root, Path::new(""), &mut entries)?;
    let modules = Path::new("lib/modules").join(release);
    let mut wanted: Vec<PathBuf> = std::fs::read_dir(root.join(&modules))?
        .filter_map(|e| {
            e.ok()?.file_name().to_str().filter(|n| n.starts_with("modules.")).map(|n| modules.join(n))
        })
        .collect();
    for module in MODULES {
        // `insmod /var/cache/herald-vm/arm64/lib/modules/6.1.0-50-arm64/kernel/net/802/stp.ko`
        let said = output(Command::new("modprobe").arg("-d").arg(root).args([
            "-S",
            release,
            "--show-depends",
            module,
        ]))?;
        for line in said.lines() {
            let path = line.split_whitespace().nth(1).context("modprobe --show-depends")?;
            let inside = Path::new(path).strip_prefix(root).context("a module outside the root")?;
            wanted.push(inside.to_owned());
        }
    }
    for path in wanted {
        for ancestor in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            entries.insert(ancestor.display().to_string());
        }
    }
    Ok(entries.into_iter().collect())
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
