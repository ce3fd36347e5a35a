//! Several speakers as a cluster in the lab: configs, start-up, and who answers what.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
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

/// The config of `node` in a cluster of all of `lab`'s nodes; `extra` goes into `[cluster]`.
pub fn config(lab: &Lab, node: &Host, extra: &str) -> String {
    let peers: Vec<String> =
        lab.nodes.iter().filter(|n| n.name != node.name).map(|n| format!("\"{}:{PORT}\"", n.addr)).collect();
    let mut text = format!(
        "node = \"{}\"\n[gratuitous]\ncount = 3\ninterval_ms = 50\n\
         [cluster]\nbind = \"{}:{PORT}\"\npeers = [{}]\nkey = \"{KEY}\"\n{extra}\n",
        node.name,
        node.addr,
        peers.join(", ")
    );
    for vip in VIPS {
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
pub fn elected<'a>(vip: Ipv4Addr, alive: &[&'a str]) -> &'a str {
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
