//! The soak's short form, in CI: two minutes of faults drawn from a fixed seed (see
//! `herald_tests::soak`), every invariant checked. `cargo xtask soak` runs the long form.

use std::time::Duration;

use herald_tests::{root_or_skip, soak};

#[test]
fn two_minutes_of_faults_break_no_invariant() {
    if !root_or_skip("two_minutes_of_faults_break_no_invariant") {
        return;
    }
    let opts = soak::Options { duration: Duration::from_secs(120), seed: 22, nodes: 3 };
    let report = soak::run(&opts, |line| println!("{line}")).expect("the soak runs");
    println!("{} faults, seed {}\n{}", report.faults, opts.seed, report.table);
    assert!(report.faults >= 10, "only {} faults in two minutes", report.faults);
    assert!(report.broken.is_empty(), "broken invariants:\n{}", report.broken.join("\n"));
}
