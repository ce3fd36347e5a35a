use std::time::Duration;

use herald_speaker::cluster::liveness::{BEAT_EVERY, CONFIRM, SUSPECT_AFTER};

use super::{
    sim::{DELAY_US, Design, Params, Sim},
    succession::sides,
};

const DESIGNS: [Design; 3] = [Design::Heirs, Design::Ring { k: 1 }, Design::Ring { k: 2 }];

fn params(design: Design, loss: f64) -> Params {
    Params { design, loss, seed: 7, rest: Duration::from_secs(1), churn: Duration::from_millis(500) }
}

/// Every heir of a killed owner lets it go within the protocol's bound (a beat, the wait before
/// the probes, their time, and the network's delays, all in simulated time), and no live member
/// is found failed.
#[test]
fn every_heir_of_a_killed_owner_takes_over_in_time() {
    let sides = sides(10, 1000);
    for design in DESIGNS {
        let outcome = Sim::new(&sides, params(design, 0.0)).run(Some(3)).unwrap();
        assert_eq!(outcome.takeovers.len(), sides[3].heirs.len(), "{design:?}: {outcome:?}");
        let bound =
            (BEAT_EVERY + SUSPECT_AFTER + CONFIRM).as_secs_f64() * 1e3 + 5.0 * DELAY_US.1 as f64 / 1e3;
        assert!(outcome.takeovers.iter().all(|t| *t <= bound), "{design:?}: over {bound} ms: {outcome:?}");
        assert_eq!(outcome.spurious, 0, "{design:?}: {outcome:?}");
        assert!(outcome.swim_agreed > 0.0 && outcome.rest > 0.0, "{design:?}: {outcome:?}");
    }
}

/// A cut between an owner and each of its heirs and watchers costs probes, not a takeover: the
/// other members answer for it. Cut from everyone, it is found failed, and the count shows it.
#[test]
fn a_cut_link_costs_a_probe_an_isolated_owner_a_takeover() {
    let n = 20;
    let sides = sides(n, 40);
    let owner = (0..n).find(|&i| (1..4).contains(&sides[i].heirs.len())).expect("an owner with few heirs");
    // Its watchers on the ring.
    let watchers = [(owner + 1) % n, (owner + 2) % n];
    for design in DESIGNS {
        let mut sim = Sim::new(&sides, params(design, 0.01));
        for &other in sides[owner].heirs.iter().chain(&watchers) {
            sim.cut(owner, other);
        }
        let outcome = sim.run(None).unwrap();
        assert_eq!(outcome.spurious, 0, "{design:?}: {outcome:?}");
        let mut sim = Sim::new(&sides, params(design, 0.01));
        for other in (0..n).filter(|&i| i != owner) {
            sim.cut(owner, other);
        }
        let outcome = sim.run(None).unwrap();
        assert!(outcome.spurious >= sides[owner].heirs.len() as u64, "{design:?}: {outcome:?}");
    }
}
