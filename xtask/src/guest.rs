//! What the VMs of the kernel matrix share: the test suites they run, built for the guest's
//! architecture, the script that runs them one after the other inside, and the verdict read back
//! from the files that script writes into a directory the host shares with the guest.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::{
    arch::Arch,
    toolchain::{self, cargo},
};

/// A test suite (`tests/tests/NAME.rs`) built: its executable.
#[derive(Clone)]
pub struct Built {
    pub suite: &'static str,
    pub binary: PathBuf,
}

/// Builds `suites` for `arch` now and returns their executables (cargo prints the paths).
pub fn build(arch: Arch, suites: &[&'static str]) -> anyhow::Result<Vec<Built>> {
    let mut cmd = cargo();
    cmd.args(["test", "--no-run", "--package", "herald-tests"]).args(arch.cargo_target());
    for suite in suites {
        cmd.args(["--test", suite]);
    }
    let out = cmd.output().context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test suites: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stderr);
    suites
        .iter()
        .map(|&suite| {
            let binary = executable(&text, suite)
                .with_context(|| format!("cargo named no executable of {suite}:\n{text}"))?;
            Ok(Built { suite, binary: toolchain::root().join(binary) })
        })
        .collect()
}

/// The path cargo prints for `suite`: `  Executable tests/lab_vlan.rs
/// (target/debug/deps/lab_vlan-0123abcd)`.
pub fn executable<'t>(cargo_says: &'t str, suite: &str) -> Option<&'t str> {
    cargo_says.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Executable tests/")?.strip_prefix(suite)?.strip_prefix(".rs (")?;
        rest.strip_suffix(')')
    })
}

/// What the guest runs before the suites: the modules the lab uses (Debian builds them as
/// modules), and CI=true so that nothing skips.
const PRELUDE: &str = "set -u\n\
    for m in veth bridge 8021q sch_ingress cls_bpf; do modprobe $m; done\n\
    export CI=true\n";

/// The script that runs each suite (its executable at `binary_of(suite)` in the guest), its
/// output into `out/SUITE.log` and its exit status into `out/results`.
pub fn script(built: &[Built], binary_of: impl Fn(&Built) -> String, out: &str) -> String {
    let mut script = String::from(PRELUDE);
    for b in built {
        script += &format!(
            "{bin} --test-threads=1 > {out}/{name}.log 2>&1; echo \"{name} $?\" >> {out}/results\n",
            bin = binary_of(b),
            name = b.suite,
        );
    }
    script
}

/// The suites that failed (after printing their output), read from `out` after the guest ran
/// [`script`]; an error when the guest ran none (with `console`, what it printed).
pub fn failures(built: &[Built], out: &Path, console: &Path) -> anyhow::Result<Vec<&'static str>> {
    let results = std::fs::read_to_string(out.join("results")).unwrap_or_default();
    if results.is_empty() {
        let console = std::fs::read_to_string(console).unwrap_or_default();
        bail!("the VM ran no suite:\n{console}");
    }
    let mut failed = Vec::new();
    for b in built {
        let name = b.suite;
        if !results.lines().any(|l| l == format!("{name} 0")) {
            let log = std::fs::read_to_string(out.join(format!("{name}.log"))).unwrap_or_default();
            eprintln!("---- {name} in the guest ----\n{log}");
            failed.push(name);
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_from_cargos_words() {
        let said = "   Compiling herald-tests v0.1.0\n\
                    \x20 Executable tests/lab_ndp.rs (target/debug/deps/lab_ndp-0123abcd)\n\
                    \x20 Executable tests/lab.rs (target/debug/deps/lab-4567)\n";
        assert_eq!(executable(said, "lab_ndp"), Some("target/debug/deps/lab_ndp-0123abcd"));
        assert_eq!(executable(said, "lab"), Some("target/debug/deps/lab-4567"), "not lab_ndp's");
        assert_eq!(executable(said, "lab_vlan"), None);
    }

    #[test]
    fn a_script_runs_each_suite_and_records_its_status() {
        let built = [
            Built { suite: "xdp_program", binary: "x".into() },
            Built { suite: "lab_ndp", binary: "y".into() },
        ];
        let script = script(&built, |b| format!("/g/{}", b.suite), "/out");
        assert!(script.starts_with(PRELUDE));
        assert!(script.ends_with(
            "/g/xdp_program --test-threads=1 > /out/xdp_program.log 2>&1; echo \"xdp_program $?\" >> /out/results\n\
             /g/lab_ndp --test-threads=1 > /out/lab_ndp.log 2>&1; echo \"lab_ndp $?\" >> /out/results\n"
        ));
    }
}
