//! Finds Herald's XDP object, which `cargo xtask build` makes with the eBPF toolchain, and
//! hands its path to `include_bytes!`. Without it the speaker cannot be built: say what to run.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_BPF_OBJECT");
    let object = match std::env::var_os("HERALD_BPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
            manifest.join("../target/bpf/bpfel-unknown-none/release/herald")
        }
    };
    if !object.is_file() {
        panic!(
            "\n\nHerald's XDP object is missing: {}\n\
             It is built by the eBPF toolchain, not by this build. Run:\n\n    \
             cargo xtask build      (after `cargo xtask setup` on a new machine)\n\n",
            object.display()
        );
    }
    let object = object.canonicalize().expect("object path");
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rustc-env=HERALD_BPF_OBJECT={}", object.display());
}
