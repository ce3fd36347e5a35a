//! The images `cargo xtask image` builds (target/images; `cargo xtask test` builds them first):
//! one archive per image whose index lists linux/amd64 and linux/arm64, loaded by podman as a
//! user would (named from the archive, with the entrypoint, user and labels the Dockerfile
//! gives), and each platform's layer read. podman runs with a throwaway store. Needs root.

use std::{path::Path, process::Command};

use herald_tests::{
    podman::{Podman, archive},
    root_or_skip,
};

#[test]
fn podman_loads_and_names_both_images() {
    if !root_or_skip("podman_loads_and_names_both_images") {
        return;
    }
    let podman = Podman::new();
    let version = env!("CARGO_PKG_VERSION");
    for (name, user) in [("herald-speaker", "0"), ("herald-controller", "65532:65532")] {
        let reference = format!("docker.io/library/{name}:{version}");
        let loaded = podman.run(&["load", "-i", archive(name).to_str().unwrap()]).unwrap();
        assert!(loaded.contains(&format!("Loaded image: {reference}")), "{loaded}");
        // This machine's platform, picked from the index.
        assert_eq!(
            inspect(&podman, &reference),
            format!("{user}|[\"/usr/local/bin/{name}\"]|{version}|linux/amd64")
        );
        // The other platform, as a user readies an arm64 node's image from here.
        let other = format!("oci-archive:{}", archive(name).display());
        let pulled = podman.run(&["pull", "--platform", "linux/arm64", &other]).unwrap();
        // Its progress, then the image's ID.
        let id =
            pulled.lines().map(str::trim).find(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()));
        let id = id.unwrap_or_else(|| panic!("no image ID in {pulled}"));
        assert_eq!(inspect(&podman, id), format!("{user}|[\"/usr/local/bin/{name}\"]|{version}|linux/arm64"));
    }
}

/// User, entrypoint, version label and platform of a loaded image.
fn inspect(podman: &Podman, reference: &str) -> String {
    let format = "{{.Config.User}}|{{json .Config.Entrypoint}}|{{index .Config.Labels \"org.opencontainers.image.version\"}}|{{.Os}}/{{.Architecture}}";
    podman.run(&["image", "inspect", reference, "--format", format]).unwrap().trim().to_owned()
}

/// `skopeo copy --all --preserve-digests`, as a user pushes both platforms to a registry (here
/// to an OCI layout directory): the copy is named by the digest the archive's index.json gives,
/// so `image@sha256:...` from `cargo xtask image` names what the registry serves.
#[test]
fn skopeo_copies_both_platforms_under_the_archives_digest() {
    if !root_or_skip("skopeo_copies_both_platforms_under_the_archives_digest") {
        return;
    }
    let dir = Scratch(std::env::temp_dir().join(format!("herald-skopeo-{}", std::process::id())));
    for name in ["herald-speaker", "herald-controller"] {
        let layout: serde_json::Value =
            serde_json::from_slice(&member(&archive(name), "index.json")).unwrap();
        let digest = layout["manifests"][0]["digest"].as_str().unwrap().to_owned();
        let to = format!("oci:{}:{name}", dir.0.display());
        let from = format!("oci-archive:{}", archive(name).display());
        let out = Command::new("skopeo")
            .args(["copy", "--all", "--preserve-digests", "--quiet", &from, &to])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let raw = Command::new("skopeo").args(["inspect", "--raw", &to]).output().unwrap();
        let copied = format!("sha256:{}", sha256(&raw.stdout));
        assert_eq!(copied, digest, "{name}: the copy's index");
        let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        let platforms: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect();
        assert_eq!(platforms, ["amd64", "arm64"]);
    }
}

/// A directory removed when the test ends, passed or not.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha256(bytes: &[u8]) -> String {
    let out = piped("sha256sum", &[], bytes);
    String::from_utf8(out).unwrap().split_whitespace().next().unwrap_or_default().to_owned()
}

/// Each platform's layer: exactly its binary (built for it), the libraries it loads (that
/// architecture's) and their packages' records, glibc declared as distroless declares it, for
/// scanners; no shell.
#[test]
fn each_platform_holds_its_binary_its_libraries_and_their_records() {
    if !root_or_skip("each_platform_holds_its_binary_its_libraries_and_their_records") {
        return;
    }
    for name in ["herald-speaker", "herald-controller"] {
        for (arch, e_machine, libs) in
            [("amd64", 0x3e, "lib/x86_64-linux-gnu/"), ("arm64", 0xb7, "lib/aarch64-linux-gnu/")]
        {
            let layer = layer(&archive(name), arch);
            let files = files_of(&layer);
            let binary = format!("usr/local/bin/{name}");
            let elf = file_of(&layer, &binary);
            assert_eq!(elf.get(18), Some(&e_machine), "{name} {arch}: e_machine");
            let records = "var/lib/dpkg/status.d/";
            let others: Vec<&String> = files
                .iter()
                .filter(|f| !f.ends_with('/') && **f != binary && !f.starts_with(records))
                .collect();
            assert!(
                others.iter().any(|f| f.starts_with(libs) && f.contains("libc.so")),
                "{name} {arch}: {others:?}"
            );
            assert!(
                others.iter().all(|f| f.starts_with("lib") && f.contains(".so")),
                "{name} {arch}: {others:?}"
            );
            let libc6 = String::from_utf8(file_of(&layer, "var/lib/dpkg/status.d/libc6")).unwrap();
            assert!(libc6.starts_with("Package: libc6\nVersion: "), "{libc6}");
            assert!(libc6.contains(&format!("\nArchitecture: {arch}\n")), "{libc6}");
            assert!(libc6.contains("\nSource: glibc ("), "{libc6}");
        }
        // This machine's own libraries, at this machine's version.
        let libc6 =
            String::from_utf8(file_of(&layer(&archive(name), "amd64"), "var/lib/dpkg/status.d/libc6"))
                .unwrap();
        let version = Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libc6"]).output().unwrap();
        let version = String::from_utf8(version.stdout).unwrap();
        assert!(libc6.contains(&format!("\nVersion: {version}\n")), "{libc6}");
    }
}

/// A member of a tar archive on disk.
fn member(archive: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar").arg("-xOf").arg(archive).arg(member).output().unwrap();
    assert!(out.status.success(), "{member} in {}", archive.display());
    out.stdout
}

/// `arch`'s layer: index.json names the image index, which names a manifest per platform.
fn layer(archive: &Path, arch: &str) -> Vec<u8> {
    let blob = |digest: &serde_json::Value| {
        let digest = digest.as_str().unwrap().trim_start_matches("sha256:");
        member(archive, &format!("blobs/sha256/{digest}"))
    };
    let json = |bytes: Vec<u8>| -> serde_json::Value { serde_json::from_slice(&bytes).unwrap() };
    let layout = json(member(archive, "index.json"));
    let index = json(blob(&layout["manifests"][0]["digest"]));
    let platforms: Vec<&serde_json::Value> = index["manifests"].as_array().unwrap().iter().collect();
    let listed: Vec<&str> =
        platforms.iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(listed, ["amd64", "arm64"], "{}", archive.display());
    let descriptor = platforms.iter().find(|m| m["platform"]["architecture"] == arch).unwrap();
    let manifest = json(blob(&descriptor["digest"]));
    blob(&manifest["layers"][0]["digest"])
}

/// `tar` of `args` reading `layer` on its stdin.
fn tar(layer: &[u8], args: &[&str]) -> Vec<u8> {
    piped("tar", args, layer)
}

/// `program` of `args` reading `input` on its stdin, fed from a thread (what it writes meanwhile
/// may fill its stdout's pipe); its stdout.
fn piped(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut tar = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = tar.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = tar.wait_with_output().unwrap().stdout;
    feeder.join().unwrap().unwrap();
    out
}

fn file_of(layer: &[u8], path: &str) -> Vec<u8> {
    tar(layer, &["-xO", path])
}

fn files_of(layer: &[u8]) -> Vec<String> {
    String::from_utf8(tar(layer, &["-t"])).unwrap().lines().map(str::to_owned).collect()
}
