//! A cluster member that stops, wholly or in part, falls silent before its heir answers, and is
//! replaced within the bound; when it comes back it takes its addresses back without two
//! answers. As a client asking every 20 ms sees it, with the real programs. Needs root.
//!
//! The silences asserted are loose (a loaded CI machine); the figures are printed, and
//! `cargo xtask bench failover` measures them.

use std::{net::Ipv4Addr, time::Duration};

use herald_tests::{
    checker::Answers,
    cluster::{self, VIPS},
    freeze::Frozen,
    lab::{Lab, format_mac},
    root_or_skip, series,
    speaker::Speaker,
};
use nix::sys::signal::Signal;

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// The run loop's bound.
const DEAD_MAN: Duration = Duration::from_millis(1000);
const ARGS: &[&str] = &["--dead-man-ms", "1000"];
const EVERY: Duration = Duration::from_millis(20);
/// Longer than any silence a takeover or a hand-back leaves, however loaded the machine.
const SILENCE: Duration = Duration::from_millis(1000);

fn setup() -> (Lab, Vec<Speaker>) {
    let mut lab = Lab::new(&NAMES).expect("lab");
    let speakers = cluster::start(&mut lab, "", ARGS).expect("speakers");
    for vip in VIPS {
        let owner = lab.node(cluster::elected(vip, &NAMES)).mac;
        cluster::wait_for_owner(&lab, vip, owner, Duration::from_secs(4)).expect("initial owner");
    }
    (lab, speakers)
}

/// The owner of `vip`, its heir, and the owner's speaker.
fn roles<'a>(lab: &Lab, speakers: &'a [Speaker], vip: Ipv4Addr) -> ([u8; 6], [u8; 6], &'a Speaker) {
    let owner = cluster::elected(vip, &NAMES);
    let others: Vec<&str> = NAMES.iter().copied().filter(|n| *n != owner).collect();
    let heir = cluster::elected(vip, &others);
    let speaker = speakers.iter().find(|s| s.host.name == owner).unwrap();
    (lab.node(owner).mac, lab.node(heir).mac, speaker)
}

/// One MAC at every request, the heir in the middle, the owner back at the end, and no silence
/// longer than `silence`.
fn assert_handed_over_and_back(
    answers: &Answers,
    owner: [u8; 6],
    heir: [u8; 6],
    silence: Duration,
    logs: &str,
) {
    println!("{answers}");
    assert!(answers.doubled.is_empty(), "two answers: {answers}\n{logs}");
    assert_eq!(
        answers.answerers,
        vec![owner, heir, owner],
        "the address should go from {} to its heir {} and back: {answers}\n{logs}",
        format_mac(owner),
        format_mac(heir)
    );
    assert!(answers.longest_silence() <= silence, "silent too long: {answers}\n{logs}");
}

fn logs(speakers: &[Speaker]) -> String {
    speakers.iter().map(|s| format!("--- {}:\n{}", s.host.name, s.log_text())).collect()
}

#[test]
fn a_frozen_owner_is_never_heard_beside_its_heir() {
    if !root_or_skip("a_frozen_owner_is_never_heard_beside_its_heir") {
        return;
    }
    let (lab, speakers) = setup();
    let vip = VIPS[0];
    let (owner, heir, frozen) = roles(&lab, &speakers, vip);
    let probes = series::series(&lab.client, vip, 150, EVERY, || {
        std::thread::sleep(Duration::from_millis(500));
        frozen.signal(Signal::SIGSTOP)?;
        std::thread::sleep(Duration::from_millis(1200));
        frozen.signal(Signal::SIGCONT)
    })
    .unwrap();
    let answers = Answers::of(&probes);
    assert_handed_over_and_back(&answers, owner, heir, SILENCE, &logs(&speakers));
    let status = frozen.status().unwrap();
    assert!(status.contains("fences=1"), "the owner saw it had been frozen:\n{status}");
}

#[test]
fn a_frozen_run_loop_is_taken_over_within_the_bound() {
    if !root_or_skip("a_frozen_run_loop_is_taken_over_within_the_bound") {
        return;
    }
    let (lab, speakers) = setup();
    let vip = VIPS[0];
    let (owner, heir, frozen) = roles(&lab, &speakers, vip);
    let frozen_at = std::cell::Cell::new(0.0);
    let probes = series::series(&lab.client, vip, 200, EVERY, || {
        std::thread::sleep(Duration::from_millis(500));
        // Its membership thread runs on: only the run loop is stuck.
        let stuck = Frozen::thread(frozen.pid)?;
        frozen_at.set(series::now());
        std::thread::sleep(DEAD_MAN + Duration::from_millis(1200));
        drop(stuck);
        Ok(())
    })
    .unwrap();
    let answers = Answers::of(&probes);
    // The owner answers on until the run loop's bound, then the heir: the silence in between
    // is the fence's and the takeover's, not the bound's.
    assert_handed_over_and_back(&answers, owner, heir, SILENCE, &logs(&speakers));
    // The run loop ticks ten times per bound: its last tick came up to a tenth of it before the
    // freeze.
    let (from, _) = answers.silences.first().copied().unwrap_or_default();
    let frozen_at = frozen_at.get();
    let tick = DEAD_MAN.as_secs_f64() / f64::from(herald_speaker::runtime::TICKS_PER_BOUND);
    assert!(
        from - frozen_at >= DEAD_MAN.as_secs_f64() - tick - 0.05,
        "the owner stopped answering {:.0} ms after its run loop froze, before the bound: {answers}",
        (from - frozen_at) * 1000.0
    );
    let status = frozen.status().unwrap();
    assert!(status.contains("fences=1"), "{status}");
}
