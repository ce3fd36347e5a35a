//! `herald-verify`: loads the speaker's main object and has the kernel verify every program in
//! it, as the test fixture does, then exits (non-zero, with the verifier's log, if one is
//! refused). `xdp_program.rs` runs it with the DaemonSet's capabilities only: without
//! CAP_PERFMON the verifier is stricter (no variable packet offsets, Spectre hardening) than for
//! the tests, which run as root.

fn main() {
    let _programs = herald_tests::test_run::Fixture::new();
    println!("every program verified");
}
