//! The images `cargo xtask image` builds (target/images; `cargo xtask test` builds them first),
//! loaded by podman as a user would: named from the archive, with the entrypoint, user and labels
//! the Dockerfile gives. podman runs with a throwaway store. Needs root.

use std::process::Command;

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
        let format = "{{.Config.User}}|{{json .Config.Entrypoint}}|{{index .Config.Labels \"org.opencontainers.image.version\"}}|{{.Os}}/{{.Architecture}}";
        let inspected = podman.run(&["image", "inspect", &reference, "--format", format]).unwrap();
        assert_eq!(inspected.trim(), format!("{user}|[\"/usr/local/bin/{name}\"]|{version}|linux/amd64"));
        // Exactly the binary, the libraries it loads and their packages' records: no shell.
        let files = layer_files(&archive(name));
        assert!(files.contains(&format!("usr/local/bin/{name}")), "{files:?}");
        let records = "var/lib/dpkg/status.d/";
        let others: Vec<&String> = files
            .iter()
            .filter(|f| {
                !f.ends_with('/') && **f != format!("usr/local/bin/{name}") && !f.starts_with(records)
            })
            .collect();
        assert!(others.iter().all(|f| f.starts_with("lib") && f.contains(".so")), "{others:?}");
        // glibc declared as distroless declares it, with this machine's version, for scanners.
        let libc6 = layer_file(&archive(name), "var/lib/dpkg/status.d/libc6");
        let version = Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libc6"]).output().unwrap();
        let version = String::from_utf8(version.stdout).unwrap();
        assert!(libc6.starts_with("Package: libc6\n"), "{libc6}");
        assert!(libc6.contains(&format!("\nVersion: {version}\n")), "{libc6}");
        assert!(libc6.contains("\nArchitecture: amd64\n") && libc6.contains("\nSource: glibc ("), "{libc6}");
    }
}

/// The image's one layer (docker's manifest.json in the archive names it), as a tar.
fn layer(archive: &std::path::Path) -> Vec<u8> {
    let read = |member: &str| {
        let out = Command::new("tar").arg("-xOf").arg(archive).arg(member).output().unwrap();
        assert!(out.status.success(), "{member} in {}", archive.display());
        out.stdout
    };
    let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    read(manifest[0]["Layers"][0].as_str().unwrap())
}

/// One file of the image's layer, as text.
fn layer_file(archive: &std::path::Path, path: &str) -> String {
    let mut tar = Command::new("tar")
        .args(["-xO", path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut tar.stdin.take().unwrap(), &layer(archive)).unwrap();
    String::from_utf8(tar.wait_with_output().unwrap().stdout).unwrap()
}

/// The files of the image's one layer.
fn layer_files(archive: &std::path::Path) -> Vec<String> {
    let layer = layer(archive);
    let mut tar = Command::new("tar")
        .arg("-t")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut tar.stdin.take().unwrap(), &layer).unwrap();
    let out = tar.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}
