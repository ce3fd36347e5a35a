//! What an image holds for one architecture: the binary without its debug information, exactly
//! the shared libraries it loads, and the records of the Debian packages they come from.
//!
//! The host's libraries are the build machine's own (`ldd`, `dpkg-query`). Another
//! architecture's come from Debian's packages for it, extracted by `cargo xtask setup` under
//! [`runtime_dir`] with the packages themselves kept beside them: its own dynamic loader, run by
//! qemu-user, says which libraries the binary loads, and the packages' control files declare them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use oci_spec::image::Arch as OciArch;

use crate::{
    arch::Arch,
    toolchain::{self, output},
};

/// A file in the image: its absolute path there, contents, mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// Debian's runtime libraries of `arch` (libc6, libgcc-s1), extracted with their packages kept
/// in `var/cache/apt/archives`, for architectures other than the host's.
pub fn runtime_dir(arch: Arch) -> PathBuf {
    PathBuf::from("/var/cache/herald-images").join(arch.name())
}

/// The Debian packages [`runtime_dir`] holds: what a Rust binary of the workspace loads.
pub const RUNTIME_PACKAGES: &str = "libc6,libgcc-s1";

/// `binary` (built for `arch`) as /usr/local/bin/`name` without its debug information, and each
/// shared library it loads at the path the dynamic loader looks for it.
pub fn rootfs(arch: Arch, binary: &Path, name: &str) -> anyhow::Result<Vec<File>> {
    if !binary.is_file() {
        let how = if arch == Arch::host() { String::new() } else { format!(" --arch {}", arch.name()) };
        bail!("{} is not built: run `cargo xtask build{how}`", binary.display());
    }
    let stripped = std::env::temp_dir().join(format!("herald-image-{}-{name}", std::process::id()));
    let strip = format!("{}strip", arch.binutils_prefix());
    toolchain::run(Command::new(strip).args(["--strip-debug", "-o"]).arg(&stripped).arg(binary))?;
    let contents = std::fs::read(&stripped);
    let _ = std::fs::remove_file(&stripped);
    let contents = contents?;
    let built_for = architecture(&contents)?;
    if built_for.to_string() != arch.name() {
        bail!("{} is built for {built_for}, not {}", binary.display(), arch.name());
    }
    let mut files = vec![File { path: format!("/usr/local/bin/{name}"), contents, mode: 0o755 }];
    if arch == Arch::host() {
        let libs = shared_libraries(&output(Command::new("ldd").arg(binary))?, Path::new("/"));
        files.extend(read_all(Path::new("/"), &libs)?);
        files.extend(host_package_records(&libs)?);
    } else {
        let root = runtime_dir(arch);
        let loader = root.join(loader(arch));
        if !loader.exists() {
            bail!("no {} runtime at {}: run `cargo xtask setup`", arch.name(), root.display());
        }
        // `ldd` of that architecture: its loader lists what it would load, under qemu-user.
        let qemu = format!("qemu-{}", qemu_arch(arch));
        let listed = output(Command::new(qemu).arg("-L").arg(&root).arg(&loader).arg("--list").arg(binary))?;
        let libs = shared_libraries(&listed, &root);
        files.extend(read_all(&root, &libs)?);
        files.extend(extracted_package_records(&root, &libs)?);
    }
    Ok(files)
}

/// The dynamic loader's path (`PT_INTERP`) of `arch`'s binaries.
fn loader(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "lib64/ld-linux-x86-64.so.2",
        Arch::Arm64 => "lib/ld-linux-aarch64.so.1",
    }
}

fn qemu_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "aarch64",
    }
}

/// Each of `libs` (absolute paths in the image), read from under `root`, symbolic links followed.
fn read_all(root: &Path, libs: &[String]) -> anyhow::Result<Vec<File>> {
    libs.iter()
        .map(|lib| {
            let from = root.join(lib.trim_start_matches('/'));
            let contents = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            Ok(File { path: lib.clone(), contents, mode: 0o755 })
        })
        .collect()
}

/// The Debian packages the host's libraries come from, declared as distroless images declare
/// theirs (`/var/lib/dpkg/status.d/PACKAGE`, a dpkg status stanza), so that image scanners
/// (Trivy, Grype) see glibc and its version.
fn host_package_records(libs: &[String]) -> anyhow::Result<Vec<File>> {
    let mut packages = std::collections::BTreeSet::new();
    for lib in libs {
        // `libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6`
        let owner = output(Command::new("dpkg-query").arg("-S").arg(lib)).with_context(|| {
            format!("which Debian package holds {lib} (images are built on Debian or Ubuntu)")
        })?;
        let package = owner.split(':').next().context("dpkg-query -S")?.trim().to_owned();
        packages.insert(package);
    }
    let format = "Package: ${Package}\nVersion: ${Version}\nArchitecture: ${Architecture}\n\
                  Source: ${source:Package} (${source:Version})\nStatus: install ok installed\n";
    packages
        .into_iter()
        .map(|package| {
            let record = output(Command::new("dpkg-query").args(["-W", "-f", format, &package]))?;
            Ok(status_file(&package, record))
        })
        .collect()
}

/// The same records for libraries extracted under `root`, from the packages kept there.
fn extracted_package_records(root: &Path, libs: &[String]) -> anyhow::Result<Vec<File>> {
    let archives = root.join("var/cache/apt/archives");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&archives)
        .with_context(|| format!("reading {}", archives.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    // Each package's file list, read once for all the libraries.
    let listings = debs
        .into_iter()
        .map(|deb| {
            let listing = output(Command::new("dpkg-deb").arg("--contents").arg(&deb))?;
            Ok((deb, listing))
        })
        .collect::<anyhow::Result<Vec<(PathBuf, String)>>>()?;
    let mut records = std::collections::BTreeMap::new();
    for lib in libs {
        let (holder, _) = listings
            .iter()
            .find(|(_, listing)| holds(listing, lib))
            .with_context(|| format!("no package in {} holds {lib}", archives.display()))?;
        let control = output(Command::new("dpkg-deb").arg("--field").arg(holder))?;
        let record =
            status_record(&control).with_context(|| format!("the control file of {}", holder.display()))?;
        records.insert(record.0, record.1);
    }
    Ok(records.into_iter().map(|(package, record)| status_file(&package, record)).collect())
}

fn status_file(package: &str, record: String) -> File {
    File { path: format!("/var/lib/dpkg/status.d/{package}"), contents: record.into_bytes(), mode: 0o644 }
}

/// Whether `dpkg-deb --contents` lists `path` (`-rwxr-xr-x root/root 123 2026-01-01 12:00
/// ./lib/aarch64-linux-gnu/libc.so.6`, a link with ` -> target` after it).
pub fn holds(listing: &str, path: &str) -> bool {
    listing.lines().any(|l| {
        let name = l.split_whitespace().nth(5).unwrap_or_default();
        name.strip_prefix('.') == Some(path)
    })
}

/// (package, its dpkg status stanza) from a package's control file, in the shape
/// [`host_package_records`] writes: the source named with its version.
pub fn status_record(control: &str) -> anyhow::Result<(String, String)> {
    let field = |name: &str| {
        control.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim().to_owned())
    };
    let package = field("Package").context("no Package")?;
    let version = field("Version").context("no Version")?;
    let architecture = field("Architecture").context("no Architecture")?;
    // `Source: gcc-12`, or `Source: gcc-12 (12.2.0-14)` when it differs from the package's.
    let source = field("Source").unwrap_or_else(|| package.clone());
    let source = if source.contains('(') { source } else { format!("{source} ({version})") };
    let record = format!(
        "Package: {package}\nVersion: {version}\nArchitecture: {architecture}\nSource: {source}\n\
         Status: install ok installed\n"
    );
    Ok((package, record))
}

/// The architecture an ELF binary was built for (its header's `e_machine`), as OCI names it.
pub fn architecture(elf: &[u8]) -> anyhow::Result<OciArch> {
    match elf.get(18..20) {
        Some([0x3e, 0]) => Ok(OciArch::Amd64),
        Some([0xb7, 0]) => Ok(OciArch::ARM64),
        other => bail!("not an x86-64 or aarch64 ELF binary (e_machine {other:?})"),
    }
}

/// The paths a loader's `--list` (`ldd`) prints: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6
/// (0x...)` and the loader `/lib64/ld-linux-x86-64.so.2 (0x...)`; not the kernel's vDSO. Run
/// under qemu-user with `-L root`, the loader names itself under `root`: that prefix goes.
pub fn shared_libraries(ldd: &str, root: &Path) -> Vec<String> {
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once(" => ").map_or(l, |(_, to)| to);
            let path = path.split_whitespace().next().filter(|p| p.starts_with('/'))?;
            let inside = path.strip_prefix(root).filter(|p| p.starts_with('/')).unwrap_or(path);
            Some(inside.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_libraries_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007efc5fd80000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007efc5fd4e000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007efc5d61e000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007efc5fd82000)\n";
        assert_eq!(
            shared_libraries(ldd, Path::new("/")),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn shared_libraries_from_another_architectures_loader() {
        // What `qemu-aarch64 -L /var/cache/herald-images/arm64 .../ld-linux-aarch64.so.1 --list`
        // printed for the speaker.
        let listed = "\t (0x0000005502850000)\n\
                      \tlibgcc_s.so.1 => /lib/aarch64-linux-gnu/libgcc_s.so.1 (0x0000005504900000)\n\
                      \tlibc.so.6 => /lib/aarch64-linux-gnu/libc.so.6 (0x00000055049f0000)\n\
                      \t/lib/ld-linux-aarch64.so.1 => /var/cache/herald-images/arm64/lib/ld-linux-aarch64.so.1 (0x0000005500000000)\n";
        assert_eq!(
            shared_libraries(listed, Path::new("/var/cache/herald-images/arm64")),
            [
                "/lib/aarch64-linux-gnu/libgcc_s.so.1",
                "/lib/aarch64-linux-gnu/libc.so.6",
                "/lib/ld-linux-aarch64.so.1"
            ]
        );
    }

    #[test]
    fn which_package_holds_a_library() {
        let listing = "drwxr-xr-x root/root         0 2026-04-27 10:00 ./lib/aarch64-linux-gnu/\n\
                       -rw-r--r-- root/root   1651472 2026-04-27 10:00 ./lib/aarch64-linux-gnu/libc.so.6\n\
                       lrwxrwxrwx root/root         0 2026-04-27 10:00 ./lib/ld-linux-aarch64.so.1 -> aarch64-linux-gnu/ld-linux-aarch64.so.1\n";
        assert!(holds(listing, "/lib/aarch64-linux-gnu/libc.so.6"));
        assert!(holds(listing, "/lib/ld-linux-aarch64.so.1"));
        assert!(!holds(listing, "/lib/aarch64-linux-gnu/libm.so.6"));
        assert!(!holds(listing, "/lib/aarch64-linux-gnu"), "a directory is not a library");
    }

    #[test]
    fn a_status_record_from_a_control_file() {
        let control = "Package: libgcc-s1\nSource: gcc-12\nVersion: 12.2.0-14+deb12u1\n\
                       Architecture: arm64\nMulti-Arch: same\nDescription: GCC support library\n";
        let (package, record) = status_record(control).unwrap();
        assert_eq!(package, "libgcc-s1");
        assert_eq!(
            record,
            "Package: libgcc-s1\nVersion: 12.2.0-14+deb12u1\nArchitecture: arm64\n\
             Source: gcc-12 (12.2.0-14+deb12u1)\nStatus: install ok installed\n"
        );
        let rebuilt = "Package: x\nSource: y (1.0-1)\nVersion: 1.0-1+b1\nArchitecture: arm64\n";
        assert!(status_record(rebuilt).unwrap().1.contains("Source: y (1.0-1)\n"));
        assert!(status_record("Package: x\n").is_err());
    }

    #[test]
    fn architecture_from_the_elf_header() {
        let mut elf = vec![0x7f, b'E', b'L', b'F'];
        elf.resize(20, 0);
        elf[18] = 0x3e;
        assert_eq!(architecture(&elf).unwrap(), OciArch::Amd64);
        elf[18] = 0xb7;
        assert_eq!(architecture(&elf).unwrap(), OciArch::ARM64);
        elf[18] = 0x28;
        assert!(architecture(&elf).is_err(), "32-bit ARM is not built");
        assert!(architecture(b"#!/bin/sh").is_err());
    }
}
