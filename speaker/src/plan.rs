//! Pure decisions: which (address, interface, VLAN) entries a configuration asks for on this
//! host, and what must change to get from the entries in the map to those.

use std::{collections::BTreeSet, net::Ipv4Addr};

use speaker_common::ArpKey;

use crate::{
    config::{Config, ConfigError},
    election,
    host::{Host, Interface},
};

/// One entry of the responder map: answer for `addr` on `ifindex` (VLAN `vlan`) with `mac`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Announcement {
    pub addr: Ipv4Addr,
    pub ifindex: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
    pub ifname: String,
}

impl Announcement {
    pub fn key(&self) -> ArpKey {
        ArpKey::new(self.addr.octets(), self.ifindex, self.vlan)
    }
}

/// The announcements `config` asks for on `host`, or the first reason it cannot be served.
/// Addresses whose `nodes` leave this node out are skipped.
///
/// Refuses addresses that would make Herald answer for something the host already owns or
/// routes through: an address configured on any local interface, or a gateway of the interface
/// it would be announced on.
pub fn resolve(config: &Config, host: &Host) -> Result<BTreeSet<Announcement>, ConfigError> {
    let mut out = BTreeSet::new();
    for (i, vip) in config.vips.iter().enumerate() {
        // An address this node may never announce needs nothing of this host: the same file
        // can then serve every node, whatever interfaces each has.
        if !vip.nodes.is_empty() && !vip.nodes.contains(&config.node) {
            continue;
        }
        let refuse = |field: &str, value: String, reason: String| ConfigError::Field {
            field: format!("vip[{i}].{field}"),
            value,
            reason,
        };
        if let Some(owner) = host.interfaces.iter().find(|it| it.addrs.iter().any(|n| n.addr == vip.address))
        {
            let reason = format!(
                "is configured on interface {}; the kernel already answers for it, Herald will not",
                owner.name
            );
            return Err(refuse("address", vip.address.to_string(), reason));
        }
        let interfaces: Vec<&Interface> = match &vip.interface {
            Some(name) => {
                let it = host.interface(name).ok_or_else(|| {
                    refuse("interface", format!("{name:?}"), "no such interface on this host".into())
                })?;
                vec![it]
            }
            None => {
                let found: Vec<_> = host
                    .interfaces
                    .iter()
                    .filter(|it| it.addrs.iter().any(|n| n.contains(vip.address)))
                    .collect();
                if found.is_empty() {
                    let reason = "no interface has a subnet that holds it; name one with `interface`";
                    return Err(refuse("address", vip.address.to_string(), reason.into()));
                }
                found
            }
        };
        for it in interfaces {
            let mac = match it.mac {
                Some(mac) if !it.loopback && !it.noarp => mac,
                _ => {
                    let reason = "cannot answer ARP (loopback, NOARP or no Ethernet address)";
                    return Err(refuse("interface", format!("{:?}", it.name), reason.into()));
                }
            };
            if host.gateways.iter().any(|(gw_if, gw)| *gw_if == it.name && *gw == vip.address) {
                let reason = format!("is a gateway of interface {}; Herald will not answer for it", it.name);
                return Err(refuse("address", vip.address.to_string(), reason));
            }
            out.insert(Announcement {
                addr: vip.address,
                ifindex: it.index,
                vlan: vip.vlan,
                mac,
                ifname: it.name.clone(),
            });
        }
    }
    Ok(out)
}

/// The part of `resolved` (every announcement the config asks of this host) that this node
/// makes. Without a cluster: all of it. With one: what it wins among the live members, nothing
/// before it has joined (`alive` is `None`), and in quorum mode nothing while fewer than a
/// majority of the configured members are alive.
pub fn elected(
    config: &Config,
    resolved: &BTreeSet<Announcement>,
    alive: Option<&BTreeSet<String>>,
) -> BTreeSet<Announcement> {
    let Some(cluster) = &config.cluster else {
        return resolved.clone();
    };
    let Some(alive) = alive else {
        return BTreeSet::new();
    };
    if cluster.quorum && !election::has_quorum(alive.len(), cluster.configured_members()) {
        return BTreeSet::new();
    }
    let mine = election::mine(&config.node, &config.vips, alive);
    resolved.iter().filter(|a| mine.contains(&a.addr)).cloned().collect()
}

/// What to change to get from `current` to `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub withdraw: Vec<Announcement>,
    pub announce: Vec<Announcement>,
}

/// Entries to withdraw and to announce; entries in both sets are left alone (their counters
/// and their place in the map are kept).
pub fn diff(current: &BTreeSet<Announcement>, desired: &BTreeSet<Announcement>) -> Diff {
    Diff {
        withdraw: current.difference(desired).cloned().collect(),
        announce: desired.difference(current).cloned().collect(),
    }
}

/// The interfaces (index, name) that carry at least one announcement.
pub fn interfaces(announcements: &BTreeSet<Announcement>) -> BTreeSet<(u32, String)> {
    announcements.iter().map(|a| (a.ifindex, a.ifname.clone())).collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
