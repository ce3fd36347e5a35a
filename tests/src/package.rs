//! The Debian package in tests: where `cargo xtask deb` puts it, its files unpacked, its systemd
//! unit read, and a clean Debian root to install it into without changing that root.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::Context as _;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The Debian root `cargo xtask setup --package` makes once (xtask/src/setup.rs): minbase,
/// systemd and procps, as a Debian server has them.
pub const CLEAN_ROOT: &str = "/var/cache/herald-deb/bookworm";

/// The package of this version for `arch` (Debian's name), as `cargo xtask deb` names it.
pub fn deb(arch: &str) -> PathBuf {
    let name = format!("herald_{}-1_{arch}.deb", env!("CARGO_PKG_VERSION"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian").join(&name);
    assert!(
        path.is_file(),
        "no {}: run `cargo xtask deb` (`cargo xtask test` makes it first)",
        path.display()
    );
    path
}

/// A directory of this test process's, removed on drop (with whatever is mounted in it).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(what: &str) -> anyhow::Result<Self> {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("herald-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The package's files, unpacked as dpkg would place them (no scripts run).
pub fn extract(deb: &Path) -> anyhow::Result<Scratch> {
    let dir = Scratch::new("deb")?;
    let status = Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()).status()?;
    anyhow::ensure!(status.success(), "dpkg-deb -x {}: {status}", deb.display());
    Ok(dir)
}

/// Where the package puts its unit, from the root.
pub const UNIT: &str = "usr/lib/systemd/system/herald.service";

/// amd64's package unpacked, and its unit read.
pub fn unpacked() -> anyhow::Result<(Scratch, Unit)> {
    let files = extract(&deb("amd64"))?;
    let unit = Unit::read(&files.path().join(UNIT))?;
    Ok((files, unit))
}

/// `lower` seen through an overlay: what is written lands in a scratch directory, and `lower`
/// stays as it was. Unmounted and removed on drop.
pub struct Overlay {
    /// Removed after the unmount (fields drop after `drop`).
    _scratch: Scratch,
    merged: PathBuf,
}

impl Overlay {
    pub fn mount(lower: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(lower.is_dir(), "no {}: run `cargo xtask setup --package`", lower.display());
        let scratch = Scratch::new("root")?;
        let (upper, work, merged) =
            (scratch.path().join("upper"), scratch.path().join("work"), scratch.path().join("merged"));
        for dir in [&upper, &work, &merged] {
            std::fs::create_dir(dir)?;
        }
        let options =
            format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .with_context(|| format!("mounting an overlay of {}", lower.display()))?;
        Ok(Self { _scratch: scratch, merged })
    }

    pub fn merged(&self) -> &Path {
        &self.merged
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.merged, MntFlags::MNT_DETACH) {
            eprintln!("overlay at {} not unmounted: {e}", self.merged.display());
        }
    }
}

/// A systemd unit's `[Service]` settings (the last value of each key).
pub struct Unit {
    service: BTreeMap<String, String>,
}

/// Capabilities a unit of Herald's may name, and their bits.
const CAPABILITIES: [(&str, u32); 7] = [
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

impl Unit {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut section = "";
        let mut service = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if line.starts_with('[') {
                section = line;
            } else if section == "[Service]" {
                let (key, value) = line.split_once('=').with_context(|| format!("not a setting: {line}"))?;
                service.insert(key.to_owned(), value.to_owned());
            }
        }
        Ok(Self { service })
    }

    fn get(&self, key: &str) -> &str {
        self.service.get(key).map_or("", String::as_str)
    }

    /// `CapabilityBoundingSet=`, as written.
    pub fn capabilities(&self) -> Vec<&str> {
        self.get("CapabilityBoundingSet").split_whitespace().collect()
    }

    /// The bounding set as the kernel shows it (/proc/PID/status's `CapBnd`).
    pub fn capability_mask(&self) -> u64 {
        self.capabilities()
            .iter()
            .map(|name| {
                let bit = CAPABILITIES.iter().find(|(n, _)| n == name).map(|(_, bit)| *bit);
                1u64 << bit.unwrap_or_else(|| panic!("{name}: add it to CAPABILITIES"))
            })
            .sum()
    }

    /// setpriv's arguments that give a process what systemd gives the unit's: its bounding set
    /// (root keeps those of its capabilities, and no others), and NoNewPrivileges.
    pub fn setpriv(&self) -> Vec<String> {
        let caps: Vec<String> = self
            .capabilities()
            .iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        let mut args = vec![format!("--bounding-set=-all,{}", caps.join(",")), "--inh-caps=-all".to_owned()];
        if self.get("NoNewPrivileges") == "yes" {
            args.push("--no-new-privs".to_owned());
        }
        args
    }

    /// `ExecStart=`, its program taken from `files` (the unpacked package) and each argument in
    /// `paths` replaced by its path here.
    pub fn exec_start(&self, files: &Path, paths: &[(&str, &Path)]) -> Vec<String> {
        let mut argv = self.get("ExecStart").split_whitespace().map(str::to_owned);
        let program = argv.next().expect("ExecStart names a program");
        let program = files.join(program.trim_start_matches('/')).display().to_string();
        let args = argv.map(|arg| match paths.iter().find(|(from, _)| *from == arg) {
            Some((_, to)) => to.display().to_string(),
            None => arg,
        });
        std::iter::once(program).chain(args).collect()
    }

    /// `ExecReload=` for the main process `pid`.
    pub fn exec_reload(&self, pid: u32) -> Vec<String> {
        self.get("ExecReload").split_whitespace().map(|a| a.replace("$MAINPID", &pid.to_string())).collect()
    }
}
