//! `cargo xtask bench failover --nodes N`: N real speakers in the lab, ten addresses each on
//! average, shared by MetalLB's election; owners SIGKILLed one after another while the client
//! asks for each of the victim's addresses every 10 ms. Beside it, the membership simulation
//! (`bench membership`) on the same cluster, the same addresses and the same victims: the
//! simulation checked against real kernels and sockets.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use herald_speaker::cluster::liveness::BEAT_EVERY;
use herald_tests::{
    checker::Answers,
    cluster, failover,
    lab::{Host, Lab, format_mac},
    loss, series,
    speaker::{self, Speaker},
};
use nix::{sys::signal::Signal, unistd::Pid};
use rand::RngExt as _;

use super::{conditions, failover::Stats, membership};

/// Addresses per node, on average.
const PER_NODE: usize = 10;
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// Probing after a kill: the kill comes 200 ms in, and up to a beat period later.
const WINDOW: Duration = Duration::from_secs(3);
const KILL_AFTER: Duration = Duration::from_millis(200);
/// A bound on a failure to settle, not a figure.
const SETTLE: Duration = Duration::from_secs(60);
/// What a watcher logs when it finds the member it watches failed, and what an heir logs when
/// told (`speaker/src/cluster/task.rs`).
const FOUND: &str = "a member missed its heartbeats and the probes";
const TOLD: &str = "a member failed, by its watcher's word";

/// The addresses of a lab of `nodes` nodes: 198.51.100.1 and on, answered on eth0 (the lab's
/// subnet, 192.0.2.0/24, has no room for them beside the nodes).
fn addresses(nodes: usize) -> Vec<IpAddr> {
    (1..=nodes * PER_NODE).map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8))).collect()
}

pub fn run(nodes: usize, kills: usize, rest: Duration) -> anyhow::Result<()> {
    anyhow::ensure!((3..=25).contains(&nodes), "--nodes {nodes}: the lab runs 3 to 25 speakers");
    let names: Vec<String> = (0..nodes).map(membership::name).collect();
    let vips = addresses(nodes);
    println!(
        "cargo xtask bench failover --nodes {nodes} --runs {kills} --soak {} ({})",
        rest.as_secs(),
        conditions()
    );
    println!(
        "{nodes} speakers (defaults) on a bridge of veth pairs, sharing {} addresses by MetalLB's election.\n\
         At rest for {} s: what each node sends (all of it: SWIM, liveness, neighbour discovery) and its\n\
         speaker's CPU. Then {kills} times an owner's speaker is SIGKILLed, at a random phase of its beats,\n\
         while the client asks for each of its addresses every {} ms; takeover: from the kill to the\n\
         first reply from that address's new owner. Beside it, the membership simulation of the same\n\
         cluster, addresses and victims (no loss; its takeover: until each heir's view lets the\n\
         victim go).\n",
        vips.len(),
        rest.as_secs(),
        PROBE_EVERY.as_millis()
    );
    let lab_row = lab(&names, &vips, kills, rest).context("the lab")?;
    let sim = membership::simulate(nodes, &vips, kills).context("the simulation")?;
    let sim_row = Row {
        takeovers: sim
            .iter()
            .flat_map(|o| &o.takeovers)
            .map(|ms| Duration::from_secs_f64(ms / 1e3))
            .collect(),
        packets: sim.iter().map(|o| o.rest_packets).sum::<f64>() / sim.len() as f64,
        bytes: (
            sim.iter().map(|o| o.rest).sum::<f64>() / sim.len() as f64,
            sim.iter().map(|o| o.rest_busiest).fold(0.0, f64::max),
        ),
        cpu: None,
        stages: Vec::new(),
    };
    println!(
        "  {:<30} {:>26} {:>9} {:>12} {:>20} {:>16}",
        "", "takeover p50 / p99 / max", "samples", "at rest: pkt/s", "kB/s mean / busiest", "CPU mean / max"
    );
    lab_row.print(&format!("lab, {nodes} real speakers"));
    sim_row.print("simulation, same cluster");
    println!(
        "  (lab samples: one per address of each victim; the simulation's: one per heir. The lab's\n   \
         packets count everything a node sent; the simulation's only the membership protocol's.)"
    );
    println!("\n  in the lab, from the kill (speakers' logs; p50 / p99 / max):");
    let stages: [(&str, Stage); 4] = [
        ("the watcher finds the victim failed", |s| s.found),
        ("the heir's view lets it go (simulated)", |s| s.told),
        ("the heir's map answers for it", |s| s.announced),
        ("the client's first reply", |s| Some(s.reply)),
    ];
    for (label, stage) in stages {
        println!("    {label:<40} {}", Stats::of(lab_row.stages.iter().map(stage)));
    }
    Ok(())
}

/// One stage of a lab takeover, read from its [`Stages`].
type Stage = fn(&Stages) -> Option<Duration>;

/// One lab takeover, stage by stage, each from the kill.
struct Stages {
    /// The victim's watcher logged it failed.
    found: Option<Duration>,
    /// The address's heir logged it failed (on the watcher's word, or as the watcher).
    told: Option<Duration>,
    /// The heir logged the address in its map ("announcing").
    announced: Option<Duration>,
    /// The client got its first reply from the heir.
    reply: Duration,
}

/// When a speaker's `log` first says `message` after `since` (both on the captures' clock).
fn logged_after(log: &str, message: &str, since: f64) -> Option<f64> {
    log.lines().filter(|l| l.contains(message)).filter_map(speaker::log_time).find(|at| *at > since)
}

/// One row of the table.
struct Row {
    takeovers: Vec<Duration>,
    /// Each lab takeover's stages (none for the simulation).
    stages: Vec<Stages>,
    /// Per node per second at rest, mean.
    packets: f64,
    /// Bytes per node per second at rest: mean, busiest node.
    bytes: (f64, f64),
    /// Each speaker's share of one CPU at rest: mean, busiest.
    cpu: Option<(f64, f64)>,
}

impl Row {
    fn print(&self, label: &str) {
        let stats = Stats::of(self.takeovers.iter().copied().map(Some));
        let cpu = self.cpu.map_or("-".to_owned(), |(mean, max)| format!("{mean:.1}% / {max:.1}%"));
        println!(
            "  {label:<30} {} {:>9} {:>12.0} {:>10.1} / {:>7.1} {cpu:>16}",
            stats,
            self.takeovers.len(),
            self.packets,
            self.bytes.0 / 1e3,
            self.bytes.1 / 1e3
        );
    }
}

fn lab(names: &[String], vips: &[IpAddr], kills: usize, rest: Duration) -> anyhow::Result<Row> {
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut lab = Lab::new(&all)?;
    let config = |lab: &Lab, node: &Host| {
        let mut text = cluster::config_with(lab, node, "", &[]);
        for vip in vips {
            text += &format!("[[vip]]\naddress = \"{vip}\"\ninterface = \"eth0\"\n");
        }
        text
    };
    let nodes = lab.nodes.clone();
    let mut speakers = Vec::new();
    for node in &nodes {
        let text = config(&lab, node);
        speakers.push(Speaker::start(&mut lab, node, &text, &[])?);
    }
    let owners: Vec<[u8; 6]> = vips.iter().map(|v| lab.node(cluster::elected(*v, &all)).mac).collect();
    settle(&lab, vips, &owners).context("every address answered by its owner alone")?;

    // At rest.
    let sent = || lab.nodes.iter().map(loss::sent_both).collect::<anyhow::Result<Vec<_>>>();
    let cpu = || speakers.iter().map(Speaker::cpu).collect::<anyhow::Result<Vec<_>>>();
    let (sent_before, cpu_before, started) = (sent()?, cpu()?, Instant::now());
    std::thread::sleep(rest);
    let (sent_after, cpu_after, took) = (sent()?, cpu()?, started.elapsed().as_secs_f64());
    let n = nodes.len() as f64;
    let packets =
        sent_after.iter().zip(&sent_before).map(|(a, b)| (a.0 - b.0) as f64 / took).sum::<f64>() / n;
    let bytes: Vec<f64> =
        sent_after.iter().zip(&sent_before).map(|(a, b)| (a.1 - b.1) as f64 / took).collect();
    let shares: Vec<f64> =
        cpu_after.iter().zip(&cpu_before).map(|(a, b)| (*a - *b).as_secs_f64() / took * 100.0).collect();

    let mut stages = Vec::new();
    let mut rng = herald_tests::seeded(nodes.len() as u64);
    for run in 0..kills {
        let victim = membership::victim(run, nodes.len());
        let owner = &nodes[victim];
        let alive: Vec<&str> = all.iter().copied().filter(|n| *n != owner.name).collect();
        let (mine, heirs): (Vec<IpAddr>, Vec<&str>) = vips
            .iter()
            .filter(|v| cluster::elected(**v, &all) == owner.name)
            .map(|v| (*v, cluster::elected(*v, &alive)))
            .unzip();
        if mine.is_empty() {
            continue;
        }
        settle(&lab, &mine, &vec![owner.mac; mine.len()])
            .with_context(|| format!("run {run}: {}'s addresses back to it", owner.name))?;
        let pid = speakers[victim].pid;
        // At a random phase of the victim's beats, as a crash comes: the time from its last beat
        // to the kill is part of the takeover.
        let phase = Duration::from_micros(rng.random_range(0..BEAT_EVERY.as_micros() as u64));
        let mut killed_at = 0.0;
        let count = (WINDOW.as_millis() / PROBE_EVERY.as_millis()) as usize;
        let probes = series::series_of(&lab.client, &mine, count, PROBE_EVERY, || {
            std::thread::sleep(KILL_AFTER + phase);
            killed_at = series::now();
            Ok(nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?)
        })?;
        let logs: Vec<String> = speakers.iter().map(Speaker::log_text).collect();
        let since = |at: Option<f64>| at.map(|at| Duration::from_secs_f64(at - killed_at));
        let found = logs.iter().filter_map(|log| logged_after(log, FOUND, killed_at)).reduce(f64::min);
        for ((vip, heir), probes) in mine.iter().zip(&heirs).zip(&probes) {
            let mac = lab.node(heir).mac;
            let reply = failover::first_reply(probes, mac, killed_at)
                .with_context(|| format!("run {run}: {vip} never answered by {heir}"))?;
            let log = &logs[nodes.iter().position(|n| n.name == *heir).context("heir")?];
            let told = logged_after(log, TOLD, killed_at).or_else(|| logged_after(log, FOUND, killed_at));
            let announced = logged_after(log, &format!("announcing address={vip} "), killed_at);
            stages.push(Stages {
                found: since(found),
                told: since(told),
                announced: since(announced),
                reply,
            });
        }
        lab.take_child(pid).context("speaker")?.wait()?;
        let text = config(&lab, owner);
        speakers[victim] = Speaker::start(&mut lab, owner, &text, &[])?;
    }
    Ok(Row {
        takeovers: stages.iter().map(|s| s.reply).collect(),
        stages,
        packets,
        bytes: (bytes.iter().sum::<f64>() / n, bytes.iter().copied().fold(0.0, f64::max)),
        cpu: Some((shares.iter().sum::<f64>() / n, shares.iter().copied().fold(0.0, f64::max))),
    })
}

/// Waits until each of `vips` is answered by its MAC in `macs` alone, twice in a row.
fn settle(lab: &Lab, vips: &[IpAddr], macs: &[[u8; 6]]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let probes = series::series_of(&lab.client, vips, 2, Duration::from_millis(50), || Ok(()))?;
        let wrong: Vec<String> = vips
            .iter()
            .zip(macs)
            .zip(&probes)
            .filter_map(|((vip, mac), probes)| {
                let answers = Answers::of(probes);
                let alone =
                    answers.unanswered == 0 && answers.doubled.is_empty() && answers.answerers == [*mac];
                (!alone).then(|| format!("{vip} (expected {} alone: {answers})", format_mac(*mac)))
            })
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < SETTLE, "after {SETTLE:?}: {}", wrong.join(", "));
        std::thread::sleep(Duration::from_millis(200));
    }
}
