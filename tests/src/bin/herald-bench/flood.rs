//! The failover bench's rows under a flood: a hostile host floods the heir's membership port from
//! one core while a client asks for the owner's address every 20 ms. At rest, how fast it
//! floods, what the heir's membership thread spends, and whether the address moved; then the
//! owner SIGKILLed under the flood, and how long the heir takes. Beside the same without a flood,
//! in the same lab.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use anyhow::Context as _;
use herald_tests::{
    checker::Answers,
    cluster::{self, PORT, VIPS},
    failover,
    forge::{self, Flood},
    lab::{Host, Lab},
    probe,
    speaker::Speaker,
};
use nix::{sys::signal::Signal, unistd::Pid};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
const MALLORY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
const AT_REST: Duration = Duration::from_secs(10);
const ARGS: &[&str] = &["--dead-man-ms", "1000"];

/// One row: a flood (or none) and what it did.
struct Row {
    what: &'static str,
    rate: f64,
    /// The heir's membership thread's share of a CPU during the flood.
    cpu: f64,
    owners_failed: u64,
    /// Requests answered by another MAC than the owner's, or by two.
    misanswered: usize,
    takeovers: Vec<Option<Duration>>,
}

pub fn run(runs: usize) -> anyhow::Result<()> {
    let mut lab = Lab::new(&NAMES)?;
    let mallory = lab.add_other("mallory", MALLORY)?;
    let mut speakers = cluster::start(&mut lab, "", ARGS)?;
    let vip = VIPS[0];
    let owner = lab.node(cluster::elected(vip, &NAMES)).clone();
    let rest: Vec<&str> = NAMES.iter().copied().filter(|n| *n != owner.name).collect();
    let heir = lab.node(cluster::elected(vip, &rest)).clone();
    let (target, member) = (SocketAddrV4::new(heir.addr, PORT), SocketAddrV4::new(owner.addr, PORT));
    let mut rows = Vec::new();
    for flood in [None].into_iter().chain(Flood::ALL.map(Some)) {
        let what = flood.map_or("no flood", Flood::describe);
        let make = || flood.map(|f| f.maker(target, member, MALLORY));
        cluster::wait_for_owner(&lab, vip, owner.mac, Duration::from_secs(20)).context(what)?;
        let at =
            |speakers: &[Speaker], name: &str| speakers.iter().position(|s| s.host.name == name).unwrap();
        let failed = |speakers: &[Speaker]| -> anyhow::Result<u64> {
            speakers.iter().map(|s| s.counter("owners_failed")).sum()
        };
        let (failed_before, cpu_before) =
            (failed(&speakers)?, speakers[at(&speakers, &heir.name)].thread_cpu("membership")?);
        let mut rate = 0.0;
        let count = (AT_REST.as_millis() / 20) as usize;
        let probes = probe::series(&lab.client, vip, count, Duration::from_millis(20), || {
            if let Some(make) = make() {
                rate = forge::flood(&mallory, AT_REST, make).join().expect("flood")?.rate();
            }
            Ok(())
        })?;
        let cpu = speakers[at(&speakers, &heir.name)].thread_cpu("membership")? - cpu_before;
        let answers = Answers::of(&probes);
        let misanswered =
            probes.iter().filter(|p| p.replies.iter().any(|(_, mac)| *mac != owner.mac)).count()
                + answers.doubled.len();
        let owners_failed = failed(&speakers)? - failed_before;
        let mut takeovers = Vec::new();
        for _ in 0..runs {
            cluster::wait_for_owner(&lab, vip, owner.mac, Duration::from_secs(20)).context(what)?;
            failover::resolve(&lab, vip.into());
            let i = at(&speakers, &owner.name);
            let pid = speakers[i].pid;
            // The flood has run for about 0.8 s when the owner dies, and runs on past the window.
            let flooding = make().map(|make| forge::flood(&mallory, Duration::from_secs(4), make));
            std::thread::sleep(Duration::from_millis(500));
            let takeover = failover::measure(&lab, vip.into(), heir.mac, Duration::from_secs(3), || {
                Ok(nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?)
            })?;
            if let Some(flooding) = flooding {
                flooding.join().expect("flood")?;
            }
            takeovers.push(takeover.reply);
            lab.take_child(pid).context("speaker")?.wait()?;
            speakers[i] = restart(&mut lab, &owner)?;
        }
        let cpu = cpu.as_secs_f64() / AT_REST.as_secs_f64();
        rows.push(Row { what, rate, cpu, owners_failed, misanswered, takeovers });
    }
    print(&rows, runs);
    Ok(())
}

fn restart(lab: &mut Lab, node: &Host) -> anyhow::Result<Speaker> {
    let config = cluster::config(lab, node, "");
    Speaker::start(lab, node, &config, ARGS)
}

fn print(rows: &[Row], runs: usize) {
    println!(
        "Under a flood: a host floods the heir's membership port from one core, {}s at rest (a client asking\n\
         for the owner's address every 20 ms), then {runs} runs of the owner SIGKILLed 0.8 s into a 4 s flood.\n",
        AT_REST.as_secs()
    );
    println!(
        "  {:<50} {:>13} {:>11} {:>13} {:>12} {:>16} {:>8}",
        "flood", "datagrams/s", "heir's CPU", "owners failed", "misanswered", "takeover p50", "max"
    );
    for r in rows {
        let mut seen: Vec<Duration> = r.takeovers.iter().flatten().copied().collect();
        seen.sort();
        let ms =
            |d: Option<&Duration>| d.map_or("-".to_owned(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3));
        let never = r.takeovers.len() - seen.len();
        println!(
            "  {:<50} {:>13.0} {:>10.1}% {:>13} {:>12} {:>16} {:>8}{}",
            r.what,
            r.rate,
            r.cpu * 100.0,
            r.owners_failed,
            r.misanswered,
            ms(seen.get(seen.len().saturating_sub(1) / 2)),
            ms(seen.last()),
            if never > 0 { format!(" ({never} runs: never)") } else { String::new() }
        );
    }
    println!(
        "  (heir's CPU: its membership thread, user and system; owners failed: takeovers at rest, each a\n   \
         spurious one; misanswered: requests at rest answered by another MAC than the owner's, or two)\n"
    );
}
