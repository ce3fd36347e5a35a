//! `cargo xtask bench failover`: how long a client waits when the owner of an address dies,
//! for Herald and for keepalived, in the same lab with the same measurement.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::Context as _;
use herald_tests::{
    cluster::{self, VIP6, VIPS},
    failover::{self, Takeover},
    keepalived::{self, Timing},
    lab::{Host, Lab},
    speaker::Speaker,
};
use nix::{sys::signal::Signal, unistd::Pid};

use super::{conditions, plot, price};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
const SETTLE: Duration = Duration::from_secs(20);

/// How the owner fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Its daemon is SIGKILLed; the node stays on the LAN.
    Kill,
    /// Its switch port is cut; the daemon runs on.
    LinkDown,
}

pub fn run(runs: usize, soak: Duration) -> anyhow::Result<()> {
    let vip = VIPS[0];
    println!("cargo xtask bench failover --runs {runs} --soak {} ({})", soak.as_secs(), conditions());
    println!(
        "The owner of {vip} fails (its daemon SIGKILLed, or its switch port cut) while the client sends an ARP\n\
         request every 10 ms (for {VIP6}: a Neighbor Solicitation); three nodes on a bridge of veth pairs;\n\
         {runs} runs per row.\n"
    );
    use Failure::*;
    let rows = [
        ("Herald, defaults: SIGKILL", herald(vip.into(), runs, Kill).context("Herald, SIGKILL")?),
        ("Herald, defaults: link down", herald(vip.into(), runs, LinkDown).context("Herald, link down")?),
        (
            "keepalived VRRPv3 0.1 s (tuned): SIGKILL",
            vrrp(vip, runs, Timing::Tuned, Kill).context("keepalived tuned, SIGKILL")?,
        ),
        (
            "keepalived VRRPv3 0.1 s (tuned): link down",
            vrrp(vip, runs, Timing::Tuned, LinkDown).context("keepalived tuned, link down")?,
        ),
        (
            "keepalived VRRPv2 1 s (default): SIGKILL",
            vrrp(vip, runs, Timing::Default, Kill).context("keepalived default")?,
        ),
        ("Herald, defaults: SIGKILL, IPv6 (NDP)", herald(VIP6.into(), runs, Kill).context("Herald, IPv6")?),
    ];
    println!("  {:<46} {:^26} {:^26}", "", "to first reply, new owner", "to client's neighbour entry");
    println!(
        "  {:<46} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "who answers, how the owner fails", "p50", "p99", "max", "p50", "p99", "max"
    );
    for (label, takeovers) in &rows {
        let reply = Stats::of(takeovers.iter().map(|t| t.reply));
        let neigh = Stats::of(takeovers.iter().map(|t| t.neighbour));
        println!("  {label:<46} {reply} {neigh}");
    }
    let ms = |d: &Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let series: Vec<(String, Vec<f64>)> = rows
        .iter()
        .map(|(label, t)| (label.to_string(), t.iter().filter_map(|t| ms(&t.reply)).collect()))
        .collect();
    let title = format!("The owner fails: time to the first reply from the new owner ({runs} runs per row)");
    plot::save(
        "failover-takeover",
        &plot::strips(&title, "ms (log scale), each run a dot, the median marked", &series, true),
    )?;
    let stats = |i: usize| Stats::of(rows[i].1.iter().map(|t| t.reply));
    for (herald, tuned, how) in [(0, 2, "SIGKILL"), (1, 3, "link down")] {
        let (h, k) = (stats(herald), stats(tuned));
        if let (Some(h50), Some(h99), Some(k50), Some(k99)) = (h.p50, h.p99, k.p50, k.p99) {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "\n  {how}: Herald p50 {:.0} ms / p99 {:.0} ms, tuned keepalived {:.0} / {:.0} ms: Herald {} at p50 and {} at p99.",
                ms(h50),
                ms(h99),
                ms(k50),
                ms(k99),
                if h50 < k50 { "ahead" } else { "behind" },
                if h99 < k99 { "ahead" } else { "behind" },
            );
        }
    }
    println!("  (targets: Herald p50 under 120 ms and p99 under 200 ms, ahead of tuned keepalived at both)");
    println!("  (after a SIGKILL the dead node's XDP program answers on until its dead-man bound, 2 s, and");
    println!(
        "   the dead keepalived's kernel for as long as the address stays: first reply is the fair figure)\n"
    );
    super::flood::run(runs.min(5))?;
    price::run(soak)
}

fn herald(vip: IpAddr, runs: usize, failure: Failure) -> anyhow::Result<Vec<Takeover>> {
    let mut lab = Lab::new(&NAMES)?;
    let config = |lab: &Lab, node: &Host| cluster::config_with(lab, node, "", &[vip]);
    let nodes = lab.nodes.clone();
    let mut speakers = Vec::new();
    for node in &nodes {
        let text = config(&lab, node);
        speakers.push(Speaker::start(&mut lab, node, &text, &[])?);
    }
    let (old, new) = owners(&lab, vip);
    let mut out = Vec::new();
    for run in 0..runs {
        let settled = match vip {
            IpAddr::V4(v4) => cluster::wait_for_owner(&lab, v4, old.mac, SETTLE),
            IpAddr::V6(v6) => cluster::wait_for_owner6(&lab, v6, old.mac, SETTLE),
        };
        settled.with_context(|| {
            let logs: Vec<String> =
                speakers.iter().map(|s| format!("--- {}\n{}", s.host.name, s.log_text())).collect();
            format!("run {run}: the owner did not get its address back\n{}", logs.join("\n"))
        })?;
        failover::resolve(&lab, vip);
        let i = speakers.iter().position(|s| s.host.name == old.name).context("owner's speaker")?;
        let pid = speakers[i].pid;
        out.push(failover::measure(&lab, vip, new.mac, Duration::from_secs(3), || match failure {
            Failure::Kill => Ok(nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?),
            Failure::LinkDown => lab.set_port(&old, false),
        })?);
        match failure {
            Failure::Kill => {
                lab.take_child(pid).context("speaker")?.wait()?;
                let text = config(&lab, &old);
                speakers[i] = Speaker::start(&mut lab, &old, &text, &[])?;
            }
            Failure::LinkDown => lab.set_port(&old, true)?,
        }
        forget(&lab, vip)?;
    }
    Ok(out)
}

fn vrrp(vip: Ipv4Addr, runs: usize, timing: Timing, failure: Failure) -> anyhow::Result<Vec<Takeover>> {
    let mut lab = Lab::new(&NAMES)?;
    let (old, new) = owners(&lab, vip);
    // The same order of preference as Herald's election, so the same node takes over.
    let third = NAMES.iter().copied().find(|n| *n != old.name && *n != new.name).context("third node")?;
    let order = [old.name.as_str(), new.name.as_str(), third];
    let mut pids = keepalived::start(&mut lab, vip, &order, timing)?;
    let old_index = lab.nodes.iter().position(|n| n.name == old.name).context("owner")?;
    let window = match timing {
        Timing::Default => Duration::from_secs(8),
        Timing::Tuned => Duration::from_secs(3),
    };
    let mut out = Vec::new();
    for run in 0..runs {
        cluster::wait_for_owner(&lab, vip, old.mac, SETTLE).with_context(|| {
            let log = std::fs::read_to_string(lab.workdir.join(format!("keepalived-{}.log", old.name)));
            format!("run {run}: VRRP master; {}'s log:\n{}", old.name, log.unwrap_or_default())
        })?;
        failover::resolve(&lab, vip.into());
        out.push(failover::measure(&lab, vip.into(), new.mac, window, || match failure {
            Failure::Kill => keepalived::kill(&lab, &old),
            Failure::LinkDown => lab.set_port(&old, false),
        })?);
        match failure {
            Failure::Kill => {
                lab.take_child(pids[old_index]).context("keepalived")?.wait()?;
                // The dead node comes back as after a reboot: without the address keepalived had.
                let _ = old.output("ip", &["addr", "del", &format!("{vip}/32"), "dev", "eth0"]);
                pids[old_index] = keepalived::start_one(&mut lab, &old, vip, &order, timing)?;
            }
            Failure::LinkDown => lab.set_port(&old, true)?,
        }
        forget(&lab, vip)?;
    }
    Ok(out)
}

/// The owner of `vip` with all three nodes alive, and the one that takes over from it.
fn owners(lab: &Lab, vip: impl Into<IpAddr> + Copy) -> (Host, Host) {
    let old = cluster::elected(vip, &NAMES);
    let rest: Vec<&str> = NAMES.iter().copied().filter(|n| *n != old).collect();
    (lab.node(old).clone(), lab.node(cluster::elected(vip, &rest)).clone())
}

/// Drops the client's entry for `vip`, so the next run starts from a fresh resolution.
fn forget(lab: &Lab, vip: impl Into<IpAddr>) -> anyhow::Result<()> {
    let _ = lab.client.output("ip", &["neigh", "del", &vip.into().to_string(), "dev", "eth0"]);
    Ok(())
}

/// p50, p99 and max of a set of durations; runs where nothing was seen are counted apart.
pub(crate) struct Stats {
    p50: Option<Duration>,
    p99: Option<Duration>,
    max: Option<Duration>,
    missing: usize,
}

impl Stats {
    pub(crate) fn of(values: impl Iterator<Item = Option<Duration>>) -> Self {
        let (mut seen, mut missing) = (Vec::new(), 0);
        for v in values {
            match v {
                Some(d) => seen.push(d),
                None => missing += 1,
            }
        }
        seen.sort();
        let at = |q: f64| {
            (!seen.is_empty())
                .then(|| seen[((seen.len() as f64 * q).ceil() as usize).clamp(1, seen.len()) - 1])
        };
        Self { p50: at(0.5), p99: at(0.99), max: seen.last().copied(), missing }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3));
        write!(f, "{:>8} {:>8} {:>8}", ms(self.p50), ms(self.p99), ms(self.max))?;
        if self.missing > 0 {
            write!(f, " ({} runs: never)", self.missing)?;
        }
        Ok(())
    }
}
