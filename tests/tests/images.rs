//! The images `cargo xtask image` builds (target/images; `cargo xtask test` builds them first),
//! loaded by podman as a user would: named from the archive, with the entrypoint, user and labels
//! the Dockerfile gives. podman runs with a throwaway store. Needs root.

use std::{path::PathBuf, process::Command};

use herald_tests::root_or_skip;

fn archive(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/images/{name}-{}.oci.tar", env!("CARGO_PKG_VERSION")));
    assert!(path.is_file(), "{} is not built: run `cargo xtask image --lab`", path.display());
    path
}

/// podman with its store in `dir`.
fn podman(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("podman")
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("podman");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "podman {args:?}: {text}");
    text
}

#[test]
fn podman_loads_and_names_both_images() {
    if !root_or_skip("podman_loads_and_names_both_images") {
        return;
    }
    let store = tempdir();
    let version = env!("CARGO_PKG_VERSION");
    for (name, user) in [("herald-speaker", "0"), ("herald-controller", "65532:65532")] {
        let reference = format!("docker.io/library/{name}:{version}");
        let loaded = podman(&store, &["load", "-i", archive(name).to_str().unwrap()]);
        assert!(loaded.contains(&format!("Loaded image: {reference}")), "{loaded}");
        let format = "{{.Config.User}}|{{json .Config.Entrypoint}}|{{index .Config.Labels \"org.opencontainers.image.version\"}}|{{.Os}}/{{.Architecture}}";
        let inspected = podman(&store, &["image", "inspect", &reference, "--format", format]);
        assert_eq!(inspected.trim(), format!("{user}|[\"/usr/local/bin/{name}\"]|{version}|linux/amd64"));
        // Exactly the binary and the libraries it loads: no shell.
        let files = layer_files(&archive(name));
        assert!(files.contains(&format!("usr/local/bin/{name}")), "{files:?}");
        let others: Vec<&String> =
            files.iter().filter(|f| !f.ends_with('/') && **f != format!("usr/local/bin/{name}")).collect();
        assert!(others.iter().all(|f| f.starts_with("lib") && f.contains(".so")), "{others:?}");
    }
    let _ = Command::new("podman")
        .arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs", "system", "reset", "--force"])
        .output();
    let _ = std::fs::remove_dir_all(&store);
}

/// The files of the image's one layer (docker's manifest.json in the archive names it).
fn layer_files(archive: &std::path::Path) -> Vec<String> {
    let read = |member: &str| {
        let out = Command::new("tar").arg("-xOf").arg(archive).arg(member).output().unwrap();
        assert!(out.status.success(), "{member} in {}", archive.display());
        out.stdout
    };
    let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let layer = read(manifest[0]["Layers"][0].as_str().unwrap());
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

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-podman-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
