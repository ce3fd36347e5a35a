//! The soak's short form, in CI: two minutes of faults drawn from a fixed seed in each mode (see
//! `herald_tests::soak`), every invariant checked. `cargo xtask soak` runs the long form.

use std::time::Duration;

use herald_tests::{apiserver, root_or_skip, soak};

fn two_minutes(kubernetes: bool) {
    let opts = soak::Options { duration: Duration::from_secs(120), seed: 22, nodes: 3, kubernetes };
    let report = soak::run(&opts, |line| println!("{line}")).expect("the soak runs");
    println!("{}: {} faults, seed {}\n{}", report.described, report.faults, opts.seed, report.table);
    assert!(report.faults >= 10, "only {} faults in two minutes", report.faults);
    assert!(report.broken.is_empty(), "broken invariants:\n{}", report.broken.join("\n"));
}

#[test]
fn two_minutes_of_faults_break_no_invariant() {
    if !root_or_skip("two_minutes_of_faults_break_no_invariant") {
        return;
    }
    two_minutes(false);
}

/// Kubernetes mode: the node faults and the control plane's; no Service's address changes.
#[test]
fn two_minutes_of_faults_in_kubernetes_mode_break_no_invariant() {
    let test = "two_minutes_of_faults_in_kubernetes_mode_break_no_invariant";
    if !root_or_skip(test) || !apiserver::available_or_skip(test) {
        return;
    }
    two_minutes(true);
}
