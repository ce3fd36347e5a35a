//! Writes Herald's CRDs (MetalLB's `metallb.io/v1beta1` kinds) to a directory: `cargo xtask crds`
//! runs it on `deploy/crds`.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: herald-crdgen DIR");
        return ExitCode::FAILURE;
    };
    for (file, crd) in herald_kube::crd::definitions() {
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, herald_kube::crd::to_yaml(&crd)) {
            eprintln!("herald-crdgen: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
