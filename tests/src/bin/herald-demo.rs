//! The demo, run by `cargo xtask demo` once everything is built: three speakers on a LAN of
//! network namespaces share three addresses; the owner of one is killed and the client sees
//! another node take over.

use std::time::Duration;

use anyhow::Context as _;
use herald_tests::{
    cluster::{self, VIPS},
    failover,
    lab::{Lab, format_mac},
};
use nix::{sys::signal::Signal, unistd::Pid};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    println!(
        "\n== lab: a bridge; node-a, node-b, node-c at 192.0.2.1-3; a client at 192.0.2.100 (network namespaces)"
    );
    let mut lab = Lab::new(&NAMES)?;
    for node in &lab.nodes {
        println!("   {} has MAC {}", node.name, format_mac(node.mac));
    }
    println!("\n== each node runs herald-speaker; node-a's config:\n");
    println!("{}", cluster::config(&lab, lab.node("node-a"), ""));
    let speakers = cluster::start(&mut lab, "", &[])?;

    println!("== the client asks who has each address (arping; no node has them configured):");
    for vip in VIPS {
        let owner = lab.node(cluster::elected(vip, &NAMES));
        cluster::wait_for_owner(&lab, vip, owner.mac, Duration::from_secs(10))?;
        println!("   {vip} is at {} = {}", format_mac(owner.mac), owner.name);
    }
    let vip = VIPS[0];
    let old = lab.node(cluster::elected(vip, &NAMES)).clone();
    println!("\n== {}: herald-speaker status", old.name);
    let victim = speakers.iter().find(|s| s.host.name == old.name).context("owner's speaker")?;
    print!("{}", victim.status()?);

    let alive: Vec<&str> = NAMES.iter().copied().filter(|n| *n != old.name).collect();
    let new = lab.node(cluster::elected(vip, &alive)).clone();
    println!("\n== kill -9 the speaker on {} (it owns {vip}); the client probes every 10 ms", old.name);
    failover::resolve(&lab, vip.into());
    let pid = Pid::from_raw(victim.pid as i32);
    let took = failover::measure(&lab, vip.into(), new.mac, Duration::from_secs(3), || {
        Ok(nix::sys::signal::kill(pid, Signal::SIGKILL)?)
    })?;
    let ms = |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3));
    println!("   first reply from {} after {}", new.name, ms(took.reply));
    println!("   the client's neighbour entry for {vip} moved to {} after {}", new.name, ms(took.neighbour));
    let entry = lab.client.run("ip", &["neigh", "show", &vip.to_string(), "dev", "eth0"])?;
    println!("   client$ ip neigh show {vip}\n   {}", entry.trim());

    println!("\n== {}: herald-speaker status", new.name);
    let survivor = speakers.iter().find(|s| s.host.name == new.name).context("new owner's speaker")?;
    print!("{}", survivor.status()?);
    Ok(())
}
