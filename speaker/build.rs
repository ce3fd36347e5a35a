//! Finds Herald's BPF objects, which `cargo xtask build` makes with the eBPF toolchain, and hands
//! their paths to `include_bytes!`. Without them the speaker cannot be built: say what to run.

use std::path::PathBuf;

/// The objects, by the variable that carries each path into the build: the target directory of
/// their build (with log statements, and without: `--xdp-log off`) and the name.
const OBJECTS: [(&str, &str, &str); 4] = [
    ("HERALD_BPF_OBJECT", "bpf", "herald"),
    ("HERALD_BPF_META_OBJECT", "bpf", "herald-meta"),
    ("HERALD_BPF_QUIET_OBJECT", "bpf-quiet", "herald"),
    ("HERALD_BPF_QUIET_META_OBJECT", "bpf-quiet", "herald-meta"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    for (variable, build, name) in OBJECTS {
        let object = manifest.join("../target").join(build).join("bpfel-unknown-none/release").join(name);
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
