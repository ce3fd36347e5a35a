//! The soak: a cluster of speakers in the lab, faults drawn at random (from a seed, so a run
//! reproduces) one after another, while a client asks for every address every 20 ms. Each
//! fault is judged on what the client saw ([`judge`]): requests answered by two MACs outside a
//! partition's window, silences longer than [`judge::BOUND`], addresses not answered by their
//! owner alone within [`judge::BOUND`] of the fault's end. `cargo xtask soak` runs it;
//! `tests/tests/soak.rs` runs a short one in CI.
//!
//! Standalone mode, the real XDP programs, membership over the lab's LAN. (The faults of
//! Kubernetes mode, API server and controller restarts, Service churn and pool edits, are not
//! drawn here yet.)

pub mod faults;
pub mod judge;

use std::{
    fmt::Write as _,
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
use crate::{cluster, lab::Lab, series};

/// The speakers' run-loop bound, as deploy/ sets it.
pub const ARGS: &[&str] = &["--dead-man-ms", "1000"];
const EVERY: Duration = Duration::from_millis(20);
/// Asked before a fault, and after its end.
const BEFORE: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_secs(2);

pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    pub nodes: usize,
}

pub struct Report {
    pub table: Table,
    /// Each broken invariant: the fault (kind, victim, number, seed), the address, what broke.
    pub broken: Vec<String>,
    pub faults: usize,
}

/// Runs the soak; `progress` gets a line per fault.
pub fn run(opts: &Options, mut progress: impl FnMut(&str)) -> anyhow::Result<Report> {
    anyhow::ensure!((3..=5).contains(&opts.nodes), "3 to 5 nodes");
    let names: Vec<String> = (0..opts.nodes).map(|i| format!("node-{}", (b'a' + i as u8) as char)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut lab = Lab::new(&names)?;
    let mut speakers = cluster::start(&mut lab, "", ARGS)?;
    let owner = |vip| cluster::elected(vip, &names);
    for vip in cluster::VIPS {
        cluster::wait_for_owner(&lab, vip, lab.node(owner(vip)).mac, Duration::from_secs(10))
            .context("the cluster's first owners")?;
    }
    let mut rng = crate::seeded(opts.seed);
    let mut report = Report { table: Table::default(), broken: Vec::new(), faults: 0 };
    let end = Instant::now() + opts.duration;
    while Instant::now() < end {
        let kind = Kind::ALL[rng.random_range(0..Kind::ALL.len())];
        let vip = cluster::VIPS[rng.random_range(0..cluster::VIPS.len())];
        // Mostly an owner: what a fault there does is the question.
        let victim = match rng.random_bool(2.0 / 3.0) {
            true => names.iter().position(|n| *n == owner(vip)).unwrap_or(0),
            false => rng.random_range(0..names.len()),
        };
        let hold = Duration::from_millis(rng.random_range(500..3000));
        report.faults += 1;
        let number = report.faults;

        let stop = Arc::new(AtomicBool::new(false));
        let probers: Vec<_> = cluster::VIPS
            .iter()
            .map(|vip| {
                let (client, stop, vip) = (lab.client.clone(), stop.clone(), *vip);
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
        let done = faults::inflict(&mut lab, &mut speakers, victim, kind, hold, ARGS);
        let ended = series::now();
        std::thread::sleep(AFTER);
        stop.store(true, Ordering::Relaxed);
        let probes: Vec<_> = probers
            .into_iter()
            .map(|p| p.join().map_err(|_| anyhow::anyhow!("a prober panicked"))?)
            .collect::<anyhow::Result<_>>()?;
        done.with_context(|| format!("fault #{number}: {} on {}", kind.name(), names[victim]))?;

        let fault = Fault {
            kind: kind.name(),
            victim: names[victim].into(),
            began,
            ended,
            partition: kind.partition(),
        };
        let mut line = format!("#{number} {} on {} for {hold:?}:", kind.name(), names[victim]);
        let mut outcomes = Vec::new();
        for (vip, probes) in cluster::VIPS.iter().zip(&probes) {
            let outcome = judge::judge(probes, lab.node(owner(*vip)).mac, &fault);
            let broken = outcome.broken();
            let _ = write!(
                line,
                " {vip} {}",
                if broken.is_empty() { "ok".to_owned() } else { broken.join(", ") }
            );
            if !broken.is_empty() {
                let answers = crate::checker::Answers::of(probes);
                report.broken.push(format!(
                    "fault #{number} (seed {}): {} on {} from {began:.3} to {ended:.3}, {vip}: {}; {answers}\n{}",
                    opts.seed,
                    kind.name(),
                    names[victim],
                    broken.join(", "),
                    logs_between(&speakers, began - 1.0, ended + AFTER.as_secs_f64())
                ));
            }
            outcomes.push(outcome);
        }
        report.table.add(&fault, &outcomes);
        progress(&line);
    }
    Ok(report)
}

/// What the speakers logged from `from` to `to` (seconds since the epoch), debug lines aside.
fn logs_between(speakers: &[crate::speaker::Speaker], from: f64, to: f64) -> String {
    let mut out = String::new();
    for s in speakers {
        let _ = writeln!(out, "--- {}:", s.host.name);
        for line in s.log_text().lines().filter(|l| !l.contains(" DEBUG ")) {
            let at = line.get(..27).and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
            if at.is_some_and(|t| (from..=to).contains(&(t.as_microsecond() as f64 / 1e6))) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}
