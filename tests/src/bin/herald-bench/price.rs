//! The price of fast takeovers, printed after the failover table: with 0, 1 and 5% of the
//! packets each node receives lost, how often a live owner loses an address (a spurious
//! takeover) and how many packets each node sends a second; Herald beside tuned keepalived in
//! the same lab. Loss comes from iptables (`herald_tests::loss`): this kernel has no netem.

use std::time::Duration;

use anyhow::Context as _;
use herald_tests::{
    cluster::{self, VIPS},
    keepalived::{self, Timing},
    lab::Lab,
    loss,
};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
const LOSSES: [f64; 3] = [0.0, 1.0, 5.0];

pub fn run(soak: Duration) -> anyhow::Result<()> {
    println!(
        "Three nodes at rest for {} s per row, each dropping the given share of the IP packets it receives.",
        soak.as_secs()
    );
    println!(
        "  {:<36} {:>6} {:>16} {:>12} {:>16}",
        "", "loss", "spurious moves", "per hour", "packets/s/node"
    );
    for percent in LOSSES {
        let row = herald(percent, soak).with_context(|| format!("Herald at {percent}% loss"))?;
        row.print("Herald, defaults (3 addresses)", percent, soak);
    }
    for percent in LOSSES {
        let row = vrrp(percent, soak).with_context(|| format!("keepalived at {percent}% loss"))?;
        row.print("keepalived VRRPv3 0.1 s (1 address)", percent, soak);
    }
    println!(
        "  (a spurious move: a live owner's address taken over, Herald's owners_failed plus SWIM's; VRRP: a\n   \
         backup entering MASTER state. Packets: all a node sent, mean of the three and the busiest.)"
    );
    Ok(())
}

struct Row {
    spurious: u64,
    sent: Vec<u64>,
}

impl Row {
    fn print(&self, label: &str, percent: f64, soak: Duration) {
        let hours = soak.as_secs_f64() / 3600.0;
        let per_s: Vec<f64> = self.sent.iter().map(|n| *n as f64 / soak.as_secs_f64()).collect();
        let mean = per_s.iter().sum::<f64>() / per_s.len().max(1) as f64;
        let max = per_s.iter().copied().fold(0.0, f64::max);
        let pps = format!("{mean:.0} (max {max:.0})");
        let rate = self.spurious as f64 / hours;
        println!("  {label:<36} {:>5}% {:>16} {rate:>12.1} {pps:>16}", percent, self.spurious);
    }
}

fn herald(percent: f64, soak: Duration) -> anyhow::Result<Row> {
    let mut lab = Lab::new(&NAMES)?;
    let speakers = cluster::start(&mut lab, "", &[])?;
    for vip in VIPS {
        let owner = lab.node(cluster::elected(vip, &NAMES)).mac;
        cluster::wait_for_owner(&lab, vip, owner, Duration::from_secs(20))?;
    }
    let changes = || -> anyhow::Result<u64> {
        speakers.iter().map(|s| counter(&s.status()?, "ownership_changes")).sum()
    };
    let mut row = soak_at(&lab, percent, soak, changes)?;
    // Each spurious takeover is counted twice, gained then given back (a half-done one counts).
    row.spurious = row.spurious.div_ceil(2);
    Ok(row)
}

fn vrrp(percent: f64, soak: Duration) -> anyhow::Result<Row> {
    let mut lab = Lab::new(&NAMES)?;
    let vip = VIPS[0];
    let master = cluster::elected(vip, &NAMES);
    let mut order: Vec<&str> = vec![master];
    order.extend(NAMES.iter().copied().filter(|n| *n != master));
    keepalived::start(&mut lab, vip, &order, Timing::Tuned)?;
    cluster::wait_for_owner(&lab, vip, lab.node(master).mac, Duration::from_secs(20))?;
    let masters = |lab: &Lab| -> u64 {
        let logs = NAMES.iter().map(|n| lab.workdir.join(format!("keepalived-{n}.log")));
        let text: String = logs.filter_map(|p| std::fs::read_to_string(p).ok()).collect();
        text.matches("Entering MASTER STATE").count() as u64
    };
    soak_at(&lab, percent, soak, || Ok(masters(&lab)))
}

/// Sets `percent` loss on every node, and measures what `spurious` counts and what each node
/// sends over `soak`.
fn soak_at(
    lab: &Lab,
    percent: f64,
    soak: Duration,
    spurious: impl Fn() -> anyhow::Result<u64>,
) -> anyhow::Result<Row> {
    for node in &lab.nodes {
        loss::set(node, percent)?;
    }
    let sent = || lab.nodes.iter().map(loss::sent).collect::<anyhow::Result<Vec<u64>>>();
    let (before, sent_before) = (spurious()?, sent()?);
    std::thread::sleep(soak);
    let (after, sent_after) = (spurious()?, sent()?);
    let sent = sent_after.iter().zip(sent_before).map(|(a, b)| a - b).collect();
    Ok(Row { spurious: after - before, sent })
}

/// The value of `name=N` in a status report's counters.
fn counter(status: &str, name: &str) -> anyhow::Result<u64> {
    let key = format!(" {name}=");
    let at = status.find(&key).with_context(|| format!("{name} in the status:\n{status}"))? + key.len();
    let digits: String = status[at..].chars().take_while(char::is_ascii_digit).collect();
    Ok(digits.parse()?)
}
