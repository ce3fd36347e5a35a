//! The host's network interfaces and gateways (IPv4 and IPv6), read once into plain data so
//! that the decisions in [`crate::carriers`] can be tested without a host.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

use crate::exclusions::Exclusions;

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// Ethernet address; `None` for interfaces without one (lo, tun, ...).
    pub mac: Option<[u8; 6]>,
    /// Its addresses with their prefix lengths, both families.
    pub addrs: Vec<IpNet>,
    pub loopback: bool,
    pub noarp: bool,
    /// A port of a bond, bridge or team: its master answers for the link, not it.
    pub port: bool,
    /// Why Herald never announces on it, if it does not (see [`crate::exclusions`]).
    pub excluded: Option<String>,
}

/// The host as the speaker sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub interfaces: Vec<Interface>,
    /// Gateways of the routing tables (IPv4 and IPv6), by interface name.
    pub gateways: Vec<(String, IpAddr)>,
}

/// At most this many MACs go into the membership identity.
const MAX_OWN_MACS: usize = 16;

impl Host {
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The MACs this node may answer with: those of its interfaces but loopback and excluded
    /// ones (at most 16), for the other speakers to know its gratuitous ARP by.
    pub fn own_macs(&self) -> Vec<[u8; 6]> {
        let mut macs: Vec<[u8; 6]> = self
            .interfaces
            .iter()
            .filter(|it| !it.loopback && it.excluded.is_none())
            .filter_map(|it| it.mac)
            .collect();
        macs.sort();
        macs.dedup();
        macs.truncate(MAX_OWN_MACS);
        macs
    }
}

/// Reads the interfaces of the current network namespace (those `exclusions` name marked so)
/// and its routes' gateways.
pub fn discover(exclusions: &Exclusions) -> std::io::Result<Host> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    for ifa in getifaddrs()? {
        let entry = by_name.entry(ifa.interface_name.clone()).or_insert_with(|| Interface {
            name: ifa.interface_name.clone(),
            index: nix::net::if_::if_nametoindex(ifa.interface_name.as_str()).unwrap_or(0),
            mac: None,
            addrs: Vec::new(),
            loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            noarp: ifa.flags.contains(InterfaceFlags::IFF_NOARP),
            port: false,
            excluded: exclusions.why(&ifa.interface_name),
        });
        let Some(address) = ifa.address else { continue };
        if let Some(link) = address.as_link_addr() {
            entry.mac = link.addr().filter(|mac| *mac != [0; 6]);
        } else if let Some(sin) = address.as_sockaddr_in() {
            let prefix = ifa
                .netmask
                .and_then(|m| m.as_sockaddr_in().map(|m| u32::from(m.ip()).count_ones() as u8))
                .unwrap_or(32);
            entry.addrs.extend(IpNet::new(sin.ip().into(), prefix));
        } else if let Some(sin6) = address.as_sockaddr_in6() {
            let prefix = ifa
                .netmask
                .and_then(|m| m.as_sockaddr_in6().map(|m| u128::from(m.ip()).count_ones() as u8))
                .unwrap_or(128);
            entry.addrs.extend(IpNet::new(sin6.ip().into(), prefix));
        }
    }
    let ports = crate::netlink::ports()?;
    for it in by_name.values_mut() {
        it.port = ports.contains(&it.index);
    }
    let routes = std::fs::read_to_string("/proc/net/route")?;
    let mut gateways = parse_proc_route(&routes);
    // Absent where IPv6 is off.
    if let Ok(routes) = std::fs::read_to_string("/proc/net/ipv6_route") {
        gateways.extend(parse_proc_ipv6_route(&routes));
    }
    Ok(Host { interfaces: by_name.into_values().collect(), gateways })
}

/// The gateways in `/proc/net/route` (IPv4; addresses in host byte order as hex).
pub fn parse_proc_route(text: &str) -> Vec<(String, IpAddr)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let iface = cols.next()?;
            let gateway = u32::from_str_radix(cols.nth(1)?, 16).ok()?;
            // The kernel prints the network-order u32 as a native-endian number.
            let gateway = Ipv4Addr::from(gateway.to_ne_bytes());
            (!gateway.is_unspecified()).then(|| (iface.to_owned(), gateway.into()))
        })
        .collect()
}

/// The gateways in `/proc/net/ipv6_route`: the next hop (fifth column, 32 hex digits) of each
/// route that has one, by its device (the last column).
pub fn parse_proc_ipv6_route(text: &str) -> Vec<(String, IpAddr)> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (hop, iface) = (cols.get(4)?, cols.get(9)?);
            let hop = Ipv6Addr::from(u128::from_str_radix(hop, 16).ok()?);
            (!hop.is_unspecified()).then(|| (iface.to_string(), hop.into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                    eth1\t00007198\tFE6433C6\t0003\t0\t0\t0\t0000FFFF\n";
        assert_eq!(
            parse_proc_route(text),
            vec![
                ("eth0".into(), Ipv4Addr::new(192, 0, 2, 1).into()),
                ("eth1".into(), Ipv4Addr::new(198, 51, 100, 254).into())
            ]
        );
    }

    #[test]
    fn proc_ipv6_route() {
        let text = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 \
                    00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                    00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                    20010db80000000000000000000000fe 00000400 00000001 00000000 00000003     eth0\n\
                    fe800000000000000000000000000000 40 00000000000000000000000000000000 00 \
                    00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1\n";
        assert_eq!(parse_proc_ipv6_route(text), vec![("eth0".into(), "2001:db8::fe".parse().unwrap())]);
    }
}
