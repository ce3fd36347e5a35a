//! podman with a throwaway store (and runc, the runtime under test), as the image and runtime
//! tests use it: the store is reset and removed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The images `cargo xtask image` builds, by name (target/images).
pub fn archive(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/images/{name}-{}.oci.tar", env!("CARGO_PKG_VERSION")));
    assert!(path.is_file(), "{} is not built: run `cargo xtask image --lab`", path.display());
    path
}

pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("herald-podman-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("podman store");
        Self { dir }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"]);
        cmd
    }

    /// Runs podman with `args`, whatever it answers.
    pub fn output(&self, args: &[&str]) -> std::io::Result<Output> {
        self.command().args(args).output()
    }

    /// Runs podman with `args`; its output, or an error with it.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.output(args)?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        anyhow::ensure!(out.status.success(), "podman {args:?}: {text}");
        Ok(text)
    }

    pub fn store(&self) -> &Path {
        &self.dir
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.output(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.output(&["system", "reset", "--force"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
