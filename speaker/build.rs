//! Finds Herald's BPF objects, which `cargo xtask build` makes with the eBPF toolchain, and hands
//! their paths to `include_bytes!`. Without them the speaker cannot be built: say what to run.

use std::path::PathBuf;

/// The objects, by the variable that carries each path into the build.
const OBJECTS: [(&str, &str); 2] =
    [("HERALD_BPF_OBJECT", "herald"), ("HERALD_BPF_META_OBJECT", "herald-meta")];

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_BPF_DIR");
    let dir = match std::env::var_os("HERALD_BPF_DIR") {
        Some(path) => PathBuf::from(path),
        None => {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
            manifest.join("../target/bpf/bpfel-unknown-none/release")
        }
    };
    for (variable, name) in OBJECTS {
        let object = dir.join(name);
        if !object.is_file() {
            panic!(
                "\n\nHerald's BPF object is missing: {}\n\
                 It is built by the eBPF toolchain, not by this build. Run:\n\n    \
                 cargo xtask build      (after `cargo xtask setup` on a new machine)\n\n",
                object.display()
            );
        }
        let object = object.canonicalize().expect("object path");
        println!("cargo:rerun-if-changed={}", object.display());
        println!("cargo:rustc-env={variable}={}", object.display());
    }
}
