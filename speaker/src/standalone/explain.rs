//! `herald-speaker explain ADDRESS` without Kubernetes: the chain from the config file to the
//! answer on this node, over plain data (the config, the host's interfaces, what the running
//! speaker pinned and wrote to its state file), with the rules the speaker runs
//! ([`crate::carriers`], [`crate::election`]).

use std::{collections::BTreeSet, net::IpAddr};

use crate::{
    carriers::{Interfaces, carriers},
    config::Config,
    election,
    explain::{CLAIM_RECENT, Link},
    host::Host,
    pinned,
};

/// What a running speaker says: its members, its map's entries for the address, whether its
/// programs answer, and what it could not announce.
#[derive(Clone, Debug, Default)]
pub struct Running {
    /// The live members it sees (`None`: it has not joined yet, or runs without a cluster).
    pub alive: Option<BTreeSet<String>>,
    pub entries: Vec<pinned::Entry>,
    /// Why its programs answer nothing (the dead-man tripped, the speaker gone), if they do not.
    pub silent: Option<String>,
    /// Its `not announced:` lines.
    pub not_announced: Vec<String>,
    /// `CLOCK_MONOTONIC` now, to date claims.
    pub now_ns: u64,
}

/// The chain for `address` on this node: `config` (read from `file`), `host` (or why it could
/// not be read), and the running speaker (or why there is none).
pub fn explain(
    config: &Config,
    file: &str,
    host: Result<&Host, String>,
    running: Result<&Running, String>,
    address: IpAddr,
) -> Vec<Link> {
    let mut links = Vec::new();
    let me = &config.node;
    let vips: Vec<(usize, &crate::config::Vip)> =
        config.vips.iter().enumerate().filter(|(_, v)| v.address == address).collect();
    let Some(&(i, vip)) = vips.first() else {
        links.push(Link::broken(
            "config",
            vec![format!(
                "{address} is not among the [[vip]] addresses of {file}: Herald answers only for those"
            )],
        ));
        return links;
    };
    links.push(Link::holds("config", vec![format!("vip[{i}] of {file}")]));
    if !vip.nodes.is_empty() && !vip.nodes.contains(me) {
        links.push(Link::broken(
            "this node",
            vec![format!("vip[{i}].nodes = [{}] leave {me} out", vip.nodes.join(", "))],
        ));
        return links;
    }
    let wanted = match &vip.interface {
        Some(name) => Interfaces::Named(BTreeSet::from([name.clone()])),
        None => Interfaces::Subnet,
    };
    let carried = host.and_then(|h| carriers(h, address, vip.vlan, &wanted).map_err(|r| r.to_string()));
    match carried {
        Ok(on) => {
            let names: Vec<&str> = on.iter().map(|a| a.ifname.as_str()).collect();
            links.push(Link::holds("interfaces", vec![format!("{me} can carry it on {}", names.join(", "))]));
        }
        Err(why) => {
            links.push(Link::broken("interfaces", vec![format!("no interface of {me} can carry it: {why}")]));
            return links;
        }
    }
    let running = match running {
        Ok(running) => running,
        Err(why) => {
            links.push(Link::broken("speaker", vec![why]));
            return links;
        }
    };
    if let Some(cluster) = &config.cluster {
        let Some(alive) = &running.alive else {
            links.push(Link::broken("members", vec!["the speaker has not joined its cluster yet".into()]));
            return links;
        };
        if cluster.quorum && !election::has_quorum(alive.len(), cluster.configured_members()) {
            links.push(Link::broken(
                "members",
                vec![format!(
                    "{} of {} members alive, no majority: quorum mode announces nothing",
                    alive.len(),
                    cluster.configured_members()
                )],
            ));
            return links;
        }
        let mut order: Vec<&str> = alive
            .iter()
            .map(String::as_str)
            .filter(|n| vip.nodes.is_empty() || vip.nodes.iter().any(|a| a == n))
            .collect();
        order.sort_by_cached_key(|n| election::rank(n, address));
        let mut lines =
            vec![format!("as {me} sees the members, in election order (sha256 of node#{address}):")];
        lines.extend(order.iter().enumerate().map(|(i, n)| format!("{}. {n}", i + 1)));
        links.push(Link::holds("election", lines));
        if order.first() != Some(&me.as_str()) {
            let owner = order.first().copied().unwrap_or("nobody");
            links.push(Link::holds(
                "owner",
                vec![format!("{owner} answers, not {me}: run `herald-speaker explain {address}` there")],
            ));
            return links;
        }
    } else {
        links.push(Link::holds(
            "election",
            vec!["no cluster: this node announces every address of its file".into()],
        ));
    }
    if let Some(why) = &running.silent {
        links.push(Link::broken("dead-man", vec![why.clone()]));
        return links;
    }
    let here: Vec<&pinned::Entry> = running.entries.iter().filter(|e| e.addr == address).collect();
    if here.is_empty() {
        let mut lines = vec![format!("{me} is the owner, but its map holds no entry for {address}")];
        let prefix = format!("not announced: {address} ");
        lines.extend(running.not_announced.iter().filter(|l| l.starts_with(&prefix)).cloned());
        links.push(Link::broken("map", lines));
        return links;
    }
    let replies: u64 = here.iter().map(|e| e.replies).sum();
    links.push(Link::holds("map", vec![format!("{me} answers for {address} ({replies} requests answered)")]));
    for e in here.iter().filter(|e| {
        e.conflicts > 0 && u128::from(running.now_ns.saturating_sub(e.conflict_ns)) < CLAIM_RECENT.as_nanos()
    }) {
        let ago = running.now_ns.saturating_sub(e.conflict_ns) / 1_000_000_000;
        links.push(Link::broken(
            "other hosts",
            vec![format!(
                "another host, {}, claimed {address} {ago} s ago: clients may follow it",
                crate::frame::format_mac(e.conflict_mac)
            )],
        ));
    }
    links
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
