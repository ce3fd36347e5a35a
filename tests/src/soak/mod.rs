//! The soak: a cluster of speakers in the lab, faults drawn at random (from a seed, so a run
//! reproduces) one after another, while a client asks for every address every 20 ms. Each
//! fault is judged on what the client saw ([`judge`]): requests answered by two MACs outside a
//! partition's window, silences longer than [`judge::BOUND`], addresses not answered by their
//! owner alone within [`judge::BOUND`] of the fault's end; and, in Kubernetes mode, on whether
//! any Service's address changed. `cargo xtask soak` runs it; `tests/tests/soak.rs` runs a
//! short one of each mode in CI.
//!
//! Standalone mode ([`standalone`]): the real XDP programs, membership over the lab's LAN, the
//! node faults. Kubernetes mode ([`kube`]): the real API server, controller-manager and
//! herald-controller, three LoadBalancer Services, the node faults and the control plane's.

pub mod faults;
pub mod judge;
pub mod kube;
pub mod standalone;

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rand::RngExt as _;

use self::{
    faults::Kind,
    judge::{Fault, Table},
};
use crate::{lab::Lab, series};

const EVERY: Duration = Duration::from_millis(20);
/// Asked before a fault, and after its end.
const BEFORE: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_secs(2);

pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    pub nodes: usize,
    /// Kubernetes mode (else standalone).
    pub kubernetes: bool,
}

pub struct Report {
    pub table: Table,
    /// Each broken invariant: the fault (kind, victim, number, seed), the address, what broke.
    pub broken: Vec<String>,
    pub faults: usize,
    /// What was soaked, for the report's first line.
    pub described: &'static str,
}

/// A cluster under soak.
pub trait Soaked {
    /// What it is, in a few words.
    fn describe(&self) -> &'static str;
    fn lab(&self) -> &Lab;
    /// Its nodes' names, in order.
    fn names(&self) -> &[String];
    /// The addresses it announces, each with its owner's MAC when every node is up.
    fn addresses(&self) -> Vec<(Ipv4Addr, [u8; 6])>;
    /// The faults it can be dealt.
    fn kinds(&self) -> &'static [Kind];
    /// Does `kind` (to node `victim`, if done to a node) for `hold`, then undoes it.
    fn inflict(&mut self, victim: usize, kind: Kind, hold: Duration) -> anyhow::Result<()>;
    /// What changed that must not have (a Service's address), in words.
    fn changed(&mut self) -> anyhow::Result<Vec<String>>;
    /// Each speaker's log so far, by node.
    fn logs(&self) -> Vec<(String, String)>;
}

/// Runs the soak; `progress` gets a line per fault.
pub fn run(opts: &Options, progress: impl FnMut(&str)) -> anyhow::Result<Report> {
    anyhow::ensure!((3..=5).contains(&opts.nodes), "3 to 5 nodes");
    let names: Vec<String> = (0..opts.nodes).map(|i| format!("node-{}", (b'a' + i as u8) as char)).collect();
    match opts.kubernetes {
        false => soak(&mut standalone::Standalone::start(&names)?, opts, progress),
        true => soak(&mut kube::Kube::start(&names)?, opts, progress),
    }
}

fn soak(cluster: &mut impl Soaked, opts: &Options, mut progress: impl FnMut(&str)) -> anyhow::Result<Report> {
    let names = cluster.names().to_vec();
    let addresses = cluster.addresses();
    let mut rng = crate::seeded(opts.seed);
    let mut report =
        Report { table: Table::default(), broken: Vec::new(), faults: 0, described: cluster.describe() };
    let end = Instant::now() + opts.duration;
    while Instant::now() < end {
        let kinds = cluster.kinds();
        let kind = kinds[rng.random_range(0..kinds.len())];
        let (_, owner_mac) = addresses[rng.random_range(0..addresses.len())];
        // Mostly an owner: what a fault there does is the question.
        let owner = names.iter().position(|n| cluster.lab().node(n).mac == owner_mac).unwrap_or(0);
        let victim = match rng.random_bool(2.0 / 3.0) {
            true => owner,
            false => rng.random_range(0..names.len()),
        };
        let hold = Duration::from_millis(rng.random_range(500..3000));
        report.faults += 1;
        let number = report.faults;
        let on = if kind.on_a_node() { names[victim].as_str() } else { "the control plane" };

        let stop = Arc::new(AtomicBool::new(false));
        let probers: Vec<_> = addresses
            .iter()
            .map(|(vip, _)| {
                let (client, stop, vip) = (cluster.lab().client.clone(), stop.clone(), *vip);
                std::thread::spawn(move || {
                    series::series_during(&client, vip, EVERY, || {
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        std::thread::sleep(BEFORE);
        let began = series::now();
        let done = cluster.inflict(victim, kind, hold);
        let ended = series::now();
        std::thread::sleep(AFTER);
        stop.store(true, Ordering::Relaxed);
        let probes: Vec<_> = probers
            .into_iter()
            .map(|p| p.join().map_err(|_| anyhow::anyhow!("a prober panicked"))?)
            .collect::<anyhow::Result<_>>()?;
        done.with_context(|| format!("fault #{number}: {} on {on}", kind.name()))?;

        let fault = Fault { kind: kind.name(), victim: on.into(), began, ended, partition: kind.partition() };
        let mut line = format!("#{number} {} on {on} for {hold:?}:", kind.name());
        let mut outcomes = Vec::new();
        let logs = || logs_between(&cluster.logs(), began - 1.0, ended + AFTER.as_secs_f64());
        for ((vip, owner_mac), probes) in addresses.iter().zip(&probes) {
            let outcome = judge::judge(probes, *owner_mac, &fault);
            let broken = outcome.broken();
            let _ = write!(
                line,
                " {vip} {}",
                if broken.is_empty() { "ok".to_owned() } else { broken.join(", ") }
            );
            if !broken.is_empty() {
                let answers = crate::checker::Answers::of(probes);
                report.broken.push(format!(
                    "fault #{number} (seed {}): {} on {on} from {began:.3} to {ended:.3}, {vip}: {}; {answers}\n{}",
                    opts.seed,
                    kind.name(),
                    broken.join(", "),
                    logs()
                ));
            }
            outcomes.push(outcome);
        }
        let changed = cluster.changed()?;
        for change in &changed {
            let _ = write!(line, " {change}");
            report.broken.push(format!(
                "fault #{number} (seed {}): {} on {on}: {change}",
                opts.seed,
                kind.name()
            ));
        }
        report.table.add(&fault, &outcomes, changed.len());
        progress(&line);
    }
    Ok(report)
}

/// What the speakers logged (`logs`, by node) from `from` to `to` (seconds since the epoch),
/// debug lines aside.
fn logs_between(logs: &[(String, String)], from: f64, to: f64) -> String {
    let mut out = String::new();
    for (node, text) in logs {
        let _ = writeln!(out, "--- {node}:");
        for line in text.lines().filter(|l| !l.contains(" DEBUG ")) {
            if crate::speaker::log_time(line).is_some_and(|t| (from..=to).contains(&t)) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}
