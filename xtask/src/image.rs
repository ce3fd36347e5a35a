//! `cargo xtask image [--release]`: Herald's two images as OCI image archives, built without a
//! container engine from the binaries `cargo xtask build` makes: each binary (stripped of debug
//! information) and exactly the shared libraries it loads, nothing else (no shell). The archive
//! is an OCI image layout (oci-layout, index.json, blobs) plus docker's manifest.json, so
//! `ctr images import`, `podman load` and `docker load` all read it and name the image.
//!
//! Reproducible: every byte is a function of the binaries and the commit (entries sorted, owners
//! 0, times the commit's time, JSON keys sorted), so two builds of one commit give one digest.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::toolchain::{self, output, root};

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
}

/// Herald's images.
pub const PRODUCT: [Spec; 2] = [
    // Root in the container for the host's bpffs; the DaemonSet grants three capabilities only.
    Spec {
        name: "herald-speaker",
        description: "Herald's speaker: answers ARP for announced addresses",
        user: "0",
    },
    Spec {
        name: "herald-controller",
        description: "Herald's controller: LoadBalancer addresses from MetalLB-compatible pools",
        user: "65532:65532",
    },
];

/// The lab nodes' pod sandbox (containerd's `sandbox_image`), so that nothing is pulled.
pub const LAB_PAUSE: Spec =
    Spec { name: "herald-pause", description: "The lab's pod sandbox: sleeps until a signal", user: "65535" };

/// Where a built image is, and what it is called.
pub struct Built {
    pub archive: PathBuf,
    pub reference: String,
    /// The manifest's digest (`sha256:...`): what a registry or `image@digest` names.
    pub digest: String,
}

/// Sets up, builds the binaries, then both images; prints where they are and their digests.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    crate::setup::run(crate::setup::Extras::default())?;
    crate::build::run(&crate::build::Options { release: opts.release })?;
    let mut built = build(opts, &PRODUCT)?;
    if opts.lab {
        built.extend(build(opts, std::slice::from_ref(&LAB_PAUSE))?);
    }
    for image in built {
        println!("{}  {}  {}", image.archive.display(), image.reference, image.digest);
    }
    Ok(())
}

/// Builds `specs`' images from the binaries already built (`cargo xtask build [--release]`).
pub fn build(opts: &Options, specs: &[Spec]) -> anyhow::Result<Vec<Built>> {
    let profile = if opts.release { "release" } else { "debug" };
    let out = root().join(&opts.out);
    std::fs::create_dir_all(&out)?;
    let meta = Meta::of_checkout()?;
    specs
        .iter()
        .map(|spec| {
            let binary = root().join("target").join(profile).join(spec.name);
            let files = rootfs(&binary, spec.name)?;
            let (archive, digest) = archive(spec, &meta, &files)?;
            let reference = reference(spec.name, &meta.version);
            let path = out.join(format!("{}-{}.oci.tar", spec.name, meta.version));
            std::fs::write(&path, archive).with_context(|| format!("writing {}", path.display()))?;
            Ok(Built { archive: path, reference, digest })
        })
        .collect()
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

/// A file in the image: its absolute path there, contents, mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// `binary` as /usr/local/bin/`name` without its debug information, and each shared library
/// it loads at the path the dynamic loader looks for it.
fn rootfs(binary: &Path, name: &str) -> anyhow::Result<Vec<File>> {
    if !binary.is_file() {
        bail!("{} is not built: run `cargo xtask build`", binary.display());
    }
    let stripped = std::env::temp_dir().join(format!("herald-image-{}-{name}", std::process::id()));
    toolchain::run(Command::new("strip").args(["--strip-debug", "-o"]).arg(&stripped).arg(binary))?;
    let contents = std::fs::read(&stripped);
    let _ = std::fs::remove_file(&stripped);
    let mut files = vec![File { path: format!("/usr/local/bin/{name}"), contents: contents?, mode: 0o755 }];
    let libs = shared_libraries(&output(Command::new("ldd").arg(binary))?);
    for lib in &libs {
        let contents = std::fs::read(lib).with_context(|| format!("reading {lib}"))?;
        files.push(File { path: lib.clone(), contents, mode: 0o755 });
    }
    files.extend(package_records(&libs)?);
    Ok(files)
}

/// The Debian packages the libraries come from, declared as distroless images declare theirs
/// (`/var/lib/dpkg/status.d/PACKAGE`, a dpkg status stanza), so that image scanners (Trivy,
/// Grype) see glibc and its version.
fn package_records(libs: &[String]) -> anyhow::Result<Vec<File>> {
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
            Ok(File {
                path: format!("/var/lib/dpkg/status.d/{package}"),
                contents: record.into_bytes(),
                mode: 0o644,
            })
        })
        .collect()
}

/// The architecture an ELF binary was built for (its header's `e_machine`), as OCI names it.
fn architecture(elf: &[u8]) -> anyhow::Result<Arch> {
    match elf.get(18..20) {
        Some([0x3e, 0]) => Ok(Arch::Amd64),
        Some([0xb7, 0]) => Ok(Arch::ARM64),
        other => bail!("not an x86-64 or aarch64 ELF binary (e_machine {other:?})"),
    }
}

/// The paths `ldd` prints: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and the loader
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; not the kernel's vDSO.
pub fn shared_libraries(ldd: &str) -> Vec<String> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once(" => ").map_or(l, |(_, to)| to);
            path.split_whitespace().next().filter(|p| p.starts_with('/')).map(str::to_owned)
        })
        .collect()
}

/// The layer: `files` with their parent directories, sorted, owned by 0, dated `time`.
pub fn layer(files: &[File], time: u64) -> anyhow::Result<Vec<u8>> {
    let mut entries: BTreeMap<String, Option<&File>> = BTreeMap::new();
    for f in files {
        let path = f.path.trim_start_matches('/');
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            entries.entry(format!("{}/", d.display())).or_insert(None);
            dir = d.parent();
        }
        entries.insert(path.to_owned(), Some(f));
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (path, file) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(time);
        header.set_uid(0);
        header.set_gid(0);
        match file {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, &path, std::io::empty())?;
            }
            Some(f) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(f.mode);
                header.set_size(f.contents.len() as u64);
                tar.append_data(&mut header, &path, f.contents.as_slice())?;
            }
        }
    }
    Ok(tar.into_inner()?)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with sorted keys (oci-spec's maps are hash maps), so that the bytes are reproducible.
fn canonical(value: Result<Value, serde_json::Error>) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&value?)?)
}

/// The image archive and its manifest's digest.
fn archive(spec: &Spec, meta: &Meta, files: &[File]) -> anyhow::Result<(Vec<u8>, String)> {
    let layer = layer(files, meta.time)?;
    let layer_digest = sha256(&layer);
    let created = rfc3339(meta.time);
    let mut labels: BTreeMap<&str, String> = BTreeMap::from([
        ("org.opencontainers.image.title", spec.name.to_owned()),
        ("org.opencontainers.image.description", spec.description.to_owned()),
        ("org.opencontainers.image.version", meta.version.clone()),
        ("org.opencontainers.image.revision", meta.revision.clone()),
        ("org.opencontainers.image.created", created.clone()),
        ("org.opencontainers.image.licenses", "Apache-2.0".to_owned()),
    ]);
    if let Some(source) = &meta.source {
        labels.insert("org.opencontainers.image.source", source.clone());
    }
    let labels: std::collections::HashMap<String, String> =
        labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let config = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(architecture(&files[0].contents)?)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .user(spec.user)
                .entrypoint(vec![format!("/usr/local/bin/{}", spec.name)])
                .labels(labels.clone())
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{layer_digest}")])
                .build()?,
        )
        .build()?;
    let config = canonical(serde_json::to_value(&config))?;
    let config_digest = sha256(&config);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(MediaType::ImageConfig, config.len() as u64, sha_digest(&config_digest)?))
        .layers(vec![Descriptor::new(MediaType::ImageLayer, layer.len() as u64, sha_digest(&layer_digest)?)])
        .annotations(labels)
        .build()?;
    let manifest = canonical(serde_json::to_value(&manifest))?;
    let manifest_digest = sha256(&manifest);
    let reference = reference(spec.name, &meta.version);
    let mut descriptor =
        Descriptor::new(MediaType::ImageManifest, manifest.len() as u64, sha_digest(&manifest_digest)?);
    descriptor.set_annotations(Some(
        [
            ("org.opencontainers.image.ref.name".to_owned(), reference.clone()),
            ("io.containerd.image.name".to_owned(), reference),
        ]
        .into(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor])
        .build()?;
    // docker load before its containerd store reads this instead of the index.
    let docker = serde_json::json!([{
        "Config": format!("blobs/sha256/{config_digest}"),
        "RepoTags": [format!("{}:{}", spec.name, meta.version)],
        "Layers": [format!("blobs/sha256/{layer_digest}")],
    }]);
    let files = [
        ("oci-layout".to_owned(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json".to_owned(), canonical(serde_json::to_value(&index))?),
        ("manifest.json".to_owned(), serde_json::to_vec(&docker)?),
        (format!("blobs/sha256/{config_digest}"), config),
        (format!("blobs/sha256/{manifest_digest}"), manifest),
        (format!("blobs/sha256/{layer_digest}"), layer),
    ]
    .map(|(path, contents)| File { path, contents, mode: 0o644 });
    Ok((self::layer(&files, meta.time)?, format!("sha256:{manifest_digest}")))
}

fn sha_digest(hex: &str) -> anyhow::Result<oci_spec::image::Sha256Digest> {
    Ok(hex.parse()?)
}

/// `seconds` since 1970 as RFC 3339 UTC (civil-from-days, H. Hinnant's algorithm).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str) -> File {
        File { path: path.into(), contents: contents.as_bytes().to_vec(), mode: 0o755 }
    }

    #[test]
    fn a_layer_depends_on_its_files_only() {
        let a = [file("/usr/local/bin/x", "x"), file("/lib64/ld.so", "ld")];
        let b = [a[1].clone(), a[0].clone()];
        assert_eq!(layer(&a, 1_700_000_000).unwrap(), layer(&b, 1_700_000_000).unwrap());
        assert_ne!(layer(&a, 1_700_000_000).unwrap(), layer(&a, 1_700_000_001).unwrap());
        let entries: Vec<String> = tar::Archive::new(layer(&a, 0).unwrap().as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            entries,
            ["lib64/", "lib64/ld.so", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/x"]
        );
    }

    #[test]
    fn shared_libraries_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007efc5fd80000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007efc5fd4e000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007efc5d61e000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007efc5fd82000)\n";
        assert_eq!(
            shared_libraries(ldd),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn architecture_from_the_elf_header() {
        let mut elf = vec![0x7f, b'E', b'L', b'F'];
        elf.resize(20, 0);
        elf[18] = 0x3e;
        assert_eq!(architecture(&elf).unwrap(), Arch::Amd64);
        elf[18] = 0xb7;
        assert_eq!(architecture(&elf).unwrap(), Arch::ARM64);
        elf[18] = 0x28;
        assert!(architecture(&elf).is_err(), "32-bit ARM is not built");
        assert!(architecture(b"#!/bin/sh").is_err());
    }

    #[test]
    fn times_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_470_096), "2025-11-30T02:34:56Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
