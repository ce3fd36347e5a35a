//! Several speakers as a cluster in the lab: configs, start-up, and who answers what.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{
    lab::{Host, Lab},
    speaker::Speaker,
};

/// The lab cluster's shared key.
pub const KEY: &str = "herald-lab-shared-key-0123456789";
pub const PORT: u16 = 7946;
/// The addresses the lab cluster announces.
pub const VIPS: [Ipv4Addr; 3] =
    [Ipv4Addr::new(192, 0, 2, 200), Ipv4Addr::new(192, 0, 2, 201), Ipv4Addr::new(192, 0, 2, 202)];

/// The IPv6 address the failover bench announces besides.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);

/// The config of `node` in a cluster of all of `lab`'s nodes, announcing [`VIPS`]; `extra` goes
/// into `[cluster]`.
pub fn config(lab: &Lab, node: &Host, extra: &str) -> String {
    config_with(lab, node, extra, &VIPS.map(IpAddr::from))
}

/// [`config`] announcing `vips`.
pub fn config_with(lab: &Lab, node: &Host, extra: &str, vips: &[IpAddr]) -> String {
    let peers: Vec<String> =
        lab.nodes.iter().filter(|n| n.name != node.name).map(|n| format!("\"{}:{PORT}\"", n.addr)).collect();
    let mut text = format!(
        "node = \"{}\"\n[gratuitous]\ncount = 3\ninterval_ms = 50\n\
         [cluster]\nbind = \"{}:{PORT}\"\npeers = [{}]\nkey = \"{KEY}\"\n{extra}\n",
        node.name,
        node.addr,
        peers.join(", ")
    );
    for vip in vips {
        text += &format!("[[vip]]\naddress = \"{vip}\"\n");
    }
    text
}

/// Starts a speaker on every node; returns them in node order once all are ready.
pub fn start(lab: &mut Lab, extra: &str, args: &[&str]) -> anyhow::Result<Vec<Speaker>> {
    let nodes = lab.nodes.clone();
    nodes.iter().map(|node| Speaker::start(lab, node, &config(lab, node, extra), args)).collect()
}

/// The node the election gives `vip` to among `alive` (by name).
pub fn elected<'a>(vip: impl Into<IpAddr>, alive: &[&'a str]) -> &'a str {
    herald_speaker::election::owner(vip, alive.iter().copied()).expect("a candidate")
}

/// The distinct MACs that answer `vip` within two broadcast probes.
pub fn answering(lab: &Lab, vip: Ipv4Addr) -> anyhow::Result<BTreeSet<[u8; 6]>> {
    Ok(crate::probe::arping(&lab.client, vip, 2)?.into_iter().collect())
}

/// Waits until `vip` is answered by `mac` alone; returns how long that took.
pub fn wait_for_owner(lab: &Lab, vip: Ipv4Addr, mac: [u8; 6], timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let seen = answering(lab, vip)?;
        if seen == BTreeSet::from([mac]) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{vip}: answered by {seen:02x?} after {timeout:?}, expected only {mac:02x?}");
        }
    }
}

/// Waits until the client resolves `vip` to `mac` by Neighbor Discovery; returns how long that
/// took.
pub fn wait_for_owner6(
    lab: &Lab,
    vip: Ipv6Addr,
    mac: [u8; 6],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let seen = crate::probe::resolve6(&lab.client, vip)?;
        if seen == Some(mac) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{vip}: resolved to {seen:02x?} after {timeout:?}, expected {mac:02x?}");
        }
    }
}
