//! Which of this host's interfaces may carry an address, in both modes: those asked for by name,
//! or those whose subnet holds it; never a bond, bridge or team port, a NOARP interface,
//! loopback, an interface without an Ethernet address, or an excluded one (container and proxy
//! interfaces, MetalLB's `metallb-excludel2`: whatever their subnets, they are not the LAN's).
//! By subnet, one interface answers: the one the kernel routes the address through, so that a
//! node with two interfaces on one LAN is not heard with two MACs (ARP flux). Interfaces asked
//! for by name all answer. An address the host has configured, or that is a gateway of any of its interfaces, is
//! refused: the kernel or a router already answers for it. Except where a Service proxy put it:
//! kube-proxy in IPVS mode binds every LoadBalancer address to `kube-ipvs0` on every node, and
//! kube-router to `kube-dummy-if`; those addresses are the ones Herald is there to announce.

use std::{collections::BTreeSet, fmt, net::IpAddr};

use crate::{
    announcement::Announcement,
    host::{Host, Interface},
};

/// Where an address is to be answered for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Interfaces {
    /// The interface whose subnet holds the address (of several, the one its route uses).
    Subnet,
    /// These interfaces, whatever their subnets.
    Named(BTreeSet<String>),
}

/// Why no interface of the host carries an address; says it of "it", the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The host has the address on `0`: the kernel answers for it.
    Local(String),
    /// The address is a gateway of interface `0`.
    Gateway(String),
    /// Nothing carries it; each interface that was considered, with why it cannot.
    NoCarrier { wanted: Interfaces, refused: Vec<(String, String)> },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Local(it) => {
                write!(f, "it is configured on interface {it}; the kernel answers for it, Herald will not")
            }
            Refusal::Gateway(it) => {
                write!(f, "it is a gateway of interface {it}; Herald will not answer for it")
            }
            Refusal::NoCarrier { wanted, refused } => {
                match wanted {
                    Interfaces::Subnet => f.write_str("no interface has a subnet that holds it")?,
                    Interfaces::Named(names) => {
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        write!(f, "none of the interfaces {} can carry it", names.join(", "))?
                    }
                }
                if !refused.is_empty() {
                    let why: Vec<String> =
                        refused.iter().map(|(name, why)| format!("{name} {why}")).collect();
                    write!(f, " ({})", why.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// Why `it` cannot answer ARP for an address, if it cannot.
pub fn unusable(it: &Interface) -> Option<String> {
    let why = if it.loopback {
        "is loopback"
    } else if it.noarp {
        "is NOARP"
    } else if it.port {
        "is a bond, bridge or team port"
    } else if it.mac.is_none() {
        "has no Ethernet address"
    } else {
        return it.excluded.clone();
    };
    Some(why.to_owned())
}

/// Whether an address on `it` is the host's own, which the kernel answers for: not when a
/// Service proxy put it there (an excluded interface, or a NOARP one that is not loopback, such
/// as kube-proxy's `kube-ipvs0` dummy).
fn holds_as_own(it: &Interface) -> bool {
    it.loopback || (it.excluded.is_none() && !it.noarp)
}

/// The announcements that carry `address` (VLAN `vlan`) on `host`, or why there are none.
pub fn carriers(
    host: &Host,
    address: IpAddr,
    vlan: u16,
    wanted: &Interfaces,
) -> Result<BTreeSet<Announcement>, Refusal> {
    let local = |it: &&Interface| holds_as_own(it) && it.addrs.iter().any(|n| n.addr() == address);
    if let Some(it) = host.interfaces.iter().find(local) {
        return Err(Refusal::Local(it.name.clone()));
    }
    if let Some((ifname, _)) = host.gateways.iter().find(|(_, gw)| *gw == address) {
        return Err(Refusal::Gateway(ifname.clone()));
    }
    let mut refused = Vec::new();
    let chosen: Vec<&Interface> = match wanted {
        Interfaces::Named(names) => names
            .iter()
            .filter_map(|name| {
                let it = host.interface(name);
                if it.is_none() {
                    refused.push((name.clone(), "does not exist".to_owned()));
                }
                it
            })
            .collect(),
        Interfaces::Subnet => {
            host.interfaces.iter().filter(|it| it.addrs.iter().any(|n| n.contains(&address))).collect()
        }
    };
    let mut usable = Vec::new();
    for it in chosen {
        match unusable(it) {
            None => usable.push(it),
            Some(why) => refused.push((it.name.clone(), why)),
        }
    }
    if *wanted == Interfaces::Subnet && usable.len() > 1 {
        usable = vec![one_per_link(host, address, &usable)];
    }
    // Usable means it has a MAC.
    let out: BTreeSet<Announcement> = usable
        .into_iter()
        .filter_map(|it| {
            let mac = it.mac?;
            Some(Announcement { addr: address, ifindex: it.index, vlan, mac, ifname: it.name.clone() })
        })
        .collect();
    if out.is_empty() {
        return Err(Refusal::NoCarrier { wanted: wanted.clone(), refused });
    }
    Ok(out)
}

/// Of several interfaces whose subnets hold `address`, the one the kernel sends to it through
/// (or, with no on-link route through any, the first by index): the one whose MAC the LAN
/// would learn anyway.
fn one_per_link<'a>(host: &Host, address: IpAddr, usable: &[&'a Interface]) -> &'a Interface {
    let names: Vec<&str> = usable.iter().map(|it| it.name.as_str()).collect();
    let routed = host.route_via(address, &names);
    let first = usable.iter().min_by_key(|it| it.index).expect("several");
    usable.iter().find(|it| Some(it.name.as_str()) == routed).unwrap_or(first)
}

#[cfg(test)]
#[path = "carriers_tests.rs"]
mod tests;
