//! `cargo xtask bench membership`: the whole membership protocol simulated in process, as the
//! speakers run it (SWIM with Herald's settings, the liveness protocol's heartbeats and probes,
//! what each member heard, glued as the speaker's task glues them), from 3 to 1,000 nodes sharing
//! 10,000 addresses by MetalLB's election, over a simulated LAN with delay and loss. One owner is
//! killed after a time at rest; the figures are the time until each of its heirs takes over, live
//! members found failed (spurious takeovers), and the bytes each node sends at rest and during
//! the churn after the kill.

mod node;
mod sim;
mod succession;
#[cfg(test)]
mod tests;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use herald_speaker::{
    cluster::liveness::{BEAT_EVERY, CONFIRM, SUSPECT_AFTER},
    config::Timers,
    election::WATCHERS,
};

pub use self::sim::Outcome;
use self::sim::{DELAY_US, Design, FRAME, Params, Sim};

const SIZES: [usize; 6] = [3, 10, 100, 250, 500, 1000];
const ADDRESSES: usize = 10_000;
const LOSSES: [f64; 3] = [0.0, 0.01, 0.05];
/// The speaker's design, and candidates whose per-node cost does not grow with the cluster.
const DESIGNS: [Design; 3] = [Design::Heirs, Design::Ring { k: 1 }, Design::Ring { k: 2 }];
/// Simulated time at rest before the kill.
const REST: Duration = Duration::from_secs(3);
/// Simulated time after the kill over which the bytes during churn are counted.
const CHURN: Duration = Duration::from_secs(2);
/// Kills per row (a different victim each), and takeovers at least: the heirs of one kill share
/// the moment its failure is found, so kills, not heirs, make the spread.
const KILLS: usize = 10;
const SAMPLES: usize = 30;

/// `only`: that cluster size alone.
pub fn run(only: Option<usize>) -> anyhow::Result<()> {
    let t = Timers::default();
    let nodes = only.map(|n| format!(" --nodes {n}")).unwrap_or_default();
    println!("cargo xtask bench membership{nodes} ({})", super::conditions());
    println!(
        "\nThe speakers' membership simulated in process: SWIM (probe {:?}, rtt {:?}, suspect {:?}) and the\n\
         liveness protocol (beat every {BEAT_EVERY:?}, probe after {SUSPECT_AFTER:?}, confirm {CONFIRM:?}), {ADDRESSES} addresses\n\
         shared by MetalLB's election; one-way delay {}-{} µs, loss as given. After {} s at rest one owner\n\
         is SIGKILLed, {KILLS} times or more per row; takeover: from the kill until each of its heirs lets\n\
         it go (p99 over the heirs of all kills); spurious: live owners an heir let go, over all runs;\n\
         bytes on the wire ({FRAME} bytes of headers each): per node per second at rest (mean, busiest)\n\
         and over the {} s after the kill. Designs: heirs, each owner beats to every heir of its addresses\n\
         (the speaker before the ring); ring k, each node beats to the next k on a ring, which tell its\n\
         heirs (the speaker: ring {WATCHERS}).\n",
        t.probe_period,
        t.probe_rtt,
        t.suspect,
        DELAY_US.0,
        DELAY_US.1,
        REST.as_secs(),
        CHURN.as_secs()
    );
    println!(
        "  {:>5} {:>10} {:>5} {:>8} {:>20} {:>13} {:>8} {:>9} {:>19} {:>10} {:>7}",
        "nodes",
        "design",
        "loss",
        "beats to",
        "takeover p50/p99 ms",
        "samples",
        "spurious",
        "SWIM ms",
        "rest kB/s mean/max",
        "churn kB/s",
        "wall s"
    );
    for n in SIZES.into_iter().filter(|n| only.is_none_or(|o| o == *n)) {
        let sides = succession::sides(n, ADDRESSES);
        for design in DESIGNS {
            let beats_to = match design {
                Design::Heirs => sides.iter().map(|s| s.heirs.len()).sum::<usize>() as f64 / n as f64,
                Design::Ring { k } => k.min(n - 1) as f64,
            };
            for loss in LOSSES {
                let started = Instant::now();
                let mut runs: Vec<Outcome> = Vec::new();
                while runs.iter().map(|o| o.takeovers.len()).sum::<usize>() < SAMPLES || runs.len() < KILLS {
                    let run = runs.len();
                    let seed = ((n as u64) << 16) ^ (loss * 1000.0) as u64 ^ ((run as u64) << 40);
                    let params = Params { design, loss, seed, rest: REST, churn: CHURN };
                    let victim = victim(run, n);
                    runs.push(Sim::new(&sides, params).run(Some(victim))?);
                }
                row(n, design, beats_to, loss, &runs, started.elapsed());
            }
        }
    }
    Ok(())
}

/// The node killed in run `run` of a cluster of `n` nodes (named as [`succession::name`] names
/// them): spread over the cluster, the same in the simulation and in the lab.
pub fn victim(run: usize, n: usize) -> usize {
    (run * 7919 + n / 2) % n
}

/// The speaker's design simulated on the lab's cluster: `nodes` nodes named `node-0`, `node-1`,
/// ... sharing `addresses`, no loss, [`victim`] killed in each of `kills` runs. What
/// `bench failover --nodes` sets beside the real speakers.
pub fn simulate(nodes: usize, addresses: &[IpAddr], kills: usize) -> anyhow::Result<Vec<Outcome>> {
    let sides = succession::sides_of(nodes, addresses.iter().copied());
    (0..kills)
        .map(|run| {
            let seed = ((nodes as u64) << 16) ^ ((run as u64) << 40);
            let params =
                Params { design: Design::Ring { k: WATCHERS }, loss: 0.0, seed, rest: REST, churn: CHURN };
            Sim::new(&sides, params).run(Some(victim(run, nodes)))
        })
        .collect()
}

/// Node `i`'s name, in the simulation and in `bench failover --nodes`.
pub fn name(i: usize) -> String {
    succession::name(i)
}

/// Prints one row of the table.
fn row(n: usize, design: Design, beats_to: f64, loss: f64, runs: &[Outcome], wall: Duration) {
    let mut takeovers: Vec<f64> = runs.iter().flat_map(|o| o.takeovers.iter().copied()).collect();
    let mut swim: Vec<f64> = runs.iter().map(|o| o.swim_agreed).collect();
    let of = |f: fn(&Outcome) -> f64| super::median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let (rest, busiest, churn) = (of(|o| o.rest), of(|o| o.rest_busiest), of(|o| o.churn));
    let design = match design {
        Design::Heirs => "heirs".to_owned(),
        Design::Ring { k } => format!("ring {k}"),
    };
    println!(
        "  {n:>5} {design:>10} {:>4.0}% {beats_to:>8.1} {:>9.0} / {:>8.0} {:>6} in {:>3} {:>8} {:>9.0} {:>10.1} / {:>6.1} {:>10.1} {:>7.1}",
        loss * 100.0,
        super::median(&mut takeovers),
        percentile(&mut takeovers, 0.99),
        takeovers.len(),
        runs.len(),
        runs.iter().map(|o| o.spurious).sum::<u64>(),
        super::median(&mut swim),
        rest / 1e3,
        busiest / 1e3,
        churn / 1e3,
        wall.as_secs_f64(),
    );
}

/// The `q` quantile of `values` (nearest rank; sorted in place).
fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
