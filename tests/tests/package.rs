//! The Debian package `cargo xtask deb` makes (target/debian; `cargo xtask test` makes it
//! first): installed by dpkg into a clean Debian root with systemd, its unit verified and
//! enabled there by systemd's own tools, and the speaker it holds answering ARP in the lab
//! under exactly the unit's capabilities, with readiness through sd_notify and a reload as the
//! unit sends it. Needs root.

use std::{
    net::Ipv4Addr,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use herald_tests::{
    lab::Lab,
    package::{CLEAN_ROOT, Overlay, UNIT, deb, extract, unpacked},
    probe::{assert_answers, assert_silent},
    root_or_skip,
    speaker::wait_for_log,
};

const VIP_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 210);
const VIP_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 211);

/// `program args` in the root `root` (chroot), stdout; panics with stderr on failure.
fn chroot(root: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new("chroot").arg(root).arg(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn installs_enables_and_purges_on_a_clean_debian() {
    if !root_or_skip("installs_enables_and_purges_on_a_clean_debian") {
        return;
    }
    let root = Overlay::mount(Path::new(CLEAN_ROOT)).unwrap();
    let merged = root.merged();
    std::fs::copy(deb("amd64"), merged.join("tmp/herald.deb")).unwrap();
    chroot(merged, "dpkg", &["-i", "/tmp/herald.deb"]);
    assert_eq!(chroot(merged, "dpkg-query", &["-W", "-f", "${Status}", "herald"]), "install ok installed");
    let conffiles = chroot(merged, "dpkg-query", &["-W", "-f", "${Conffiles}", "herald"]);
    assert!(conffiles.contains("/etc/herald/herald.toml"), "not a conffile: {conffiles}");
    // The binary runs on the clean root's libraries: the package's Depends are enough.
    let version = chroot(merged, "/usr/sbin/herald-speaker", &["--version"]);
    assert_eq!(version.trim(), format!("herald-speaker {}", env!("CARGO_PKG_VERSION")));

    // systemd's own checks of the unit, on that root: it parses, its commands exist (the
    // speaker, procps's kill), its dependencies resolve.
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--root"])
        .arg(merged)
        .arg("herald.service")
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        verify.status,
        String::from_utf8_lossy(&verify.stderr)
    );
    // Installed, not enabled (the shipped file announces nothing); enabling works.
    let wants = merged.join("etc/systemd/system/multi-user.target.wants/herald.service");
    assert!(!wants.exists(), "enabled at install");
    let enable =
        Command::new("systemctl").arg("--root").arg(merged).args(["enable", "herald"]).status().unwrap();
    assert!(enable.success() && wants.is_symlink());

    // An edited config survives a reinstall, and a purge leaves nothing behind.
    std::fs::write(merged.join("etc/herald/herald.toml"), "node = \"edited\"\n").unwrap();
    chroot(merged, "dpkg", &["-i", "/tmp/herald.deb"]);
    assert_eq!(
        std::fs::read_to_string(merged.join("etc/herald/herald.toml")).unwrap(),
        "node = \"edited\"\n"
    );
    chroot(merged, "dpkg", &["--purge", "herald"]);
    for gone in ["usr/sbin/herald-speaker", UNIT, "etc/herald"] {
        assert!(!merged.join(gone).exists(), "{gone} left after a purge");
    }
    assert!(!wants.is_symlink(), "the enablement left after a purge");
}

/// The unit's hardening, as systemd scores it (`systemd-analyze security`, 0 best to 10): the
/// bounding set is the three capabilities, and the score stays where the unit puts it.
#[test]
fn the_unit_keeps_three_capabilities_and_its_hardening() {
    if !root_or_skip("the_unit_keeps_three_capabilities_and_its_hardening") {
        return;
    }
    let (files, unit) = unpacked().unwrap();
    assert_eq!(unit.capabilities(), ["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW"]);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", "--root"])
        .arg(files.path())
        .arg("herald.service")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    let score: f64 = line.split(": ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    eprintln!("{line}");
    assert!(score <= 4.5, "the unit's exposure grew to {score}:\n{text}");
}

#[test]
fn answers_arp_under_the_units_capabilities() {
    if !root_or_skip("answers_arp_under_the_units_capabilities") {
        return;
    }
    let (files, unit) = unpacked().unwrap();
    let mut lab = Lab::new(&["node-a"]).unwrap();
    let node = lab.node("node-a").clone();
    let config = lab.workdir.join("herald.toml");
    let shipped = files.path().join("etc/herald/herald.toml");
    let with = |vips: &[Ipv4Addr]| {
        let mut text = std::fs::read_to_string(&shipped).unwrap() + "node = \"node-a\"\n";
        for vip in vips {
            text += &format!("[[vip]]\naddress = \"{vip}\"\n");
        }
        text
    };
    std::fs::write(&config, with(&[VIP_A])).unwrap();
    let notify_path = lab.workdir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();

    // The unit's ExecStart, its files where the lab has them, under its capability set and
    // NoNewPrivileges, with systemd's NOTIFY_SOCKET.
    let exec = unit.exec_start(files.path(), &[("/etc/herald/herald.toml", &config)]);
    let pin_dir = lab.pin_dir(&node);
    let state_dir = lab.workdir.join("run-herald");
    let log = lab.workdir.join("speaker.log");
    let mut argv: Vec<String> = unit.setpriv();
    argv.extend(["env".into(), format!("NOTIFY_SOCKET={}", notify_path.display())]);
    argv.extend(exec);
    argv.extend(["--pin-dir".into(), pin_dir.display().to_string()]);
    argv.extend(["--state-dir".into(), state_dir.display().to_string()]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let pid = lab.spawn(&node, "setpriv", &argv, Some(&log)).unwrap();

    let received = || -> String {
        let mut buf = [0; 256];
        let n = notify.recv(&mut buf).unwrap_or_else(|e| {
            panic!("no word on NOTIFY_SOCKET: {e}\n{}", std::fs::read_to_string(&log).unwrap_or_default())
        });
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(received(), "READY=1");
    // Exactly the unit's capabilities: bounding and effective.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = unit.capability_mask();
    for field in ["CapBnd", "CapEff"] {
        let value = status.lines().find_map(|l| l.strip_prefix(&format!("{field}:\t"))).unwrap();
        assert_eq!(u64::from_str_radix(value, 16).unwrap(), mask, "{field} of the speaker");
    }
    assert_answers(&lab, &node, VIP_A);
    assert_silent(&lab, VIP_B);

    // The unit's ExecReload, after an edit.
    std::fs::write(&config, with(&[VIP_A, VIP_B])).unwrap();
    let reload = unit.exec_reload(pid);
    assert!(Command::new(&reload[0]).args(&reload[1..]).status().unwrap().success());
    wait_for_log(pid, &log, "SIGHUP: config reloaded", Duration::from_secs(10)).unwrap();
    assert_answers(&lab, &node, VIP_B);

    // systemctl stop: SIGTERM, and the speaker says it is stopping.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert_eq!(received(), "STOPPING=1");
    let status = lab.take_child(pid).unwrap().wait().unwrap();
    assert!(status.success(), "{status}");
    assert_silent(&lab, VIP_A);
    let _ = std::fs::remove_file(PathBuf::from(&notify_path));
}

/// arm64's package, cross-built (`cargo xtask deb --arch arm64`): Debian's architecture, and
/// arm64's speaker inside.
#[test]
fn the_arm64_package_holds_the_arm64_speaker() {
    if !root_or_skip("the_arm64_package_holds_the_arm64_speaker") {
        return;
    }
    let deb = deb("arm64");
    let field = Command::new("dpkg-deb").arg("--field").arg(&deb).arg("Architecture").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&field.stdout).trim(), "arm64");
    let files = extract(&deb).unwrap();
    let elf = std::fs::read(files.path().join("usr/sbin/herald-speaker")).unwrap();
    // e_machine, at byte 18 of a little-endian ELF header: 183 is EM_AARCH64.
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183);
}
