//! The host's network interfaces, gateways and on-link routes (IPv4 and IPv6), read once into
//! plain data so that the decisions in [`crate::carriers`] can be tested without a host.

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
    /// The main table's routes without a gateway, in the kernel's order.
    pub on_link: Vec<OnLink>,
}

/// A route without a gateway: `dst` is on the link of `iface`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnLink {
    pub iface: String,
    pub dst: IpNet,
    pub metric: u32,
}

/// At most this many MACs go into the membership identity.
const MAX_OWN_MACS: usize = 16;

impl Host {
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// Of the interfaces named in `among`, the one the kernel reaches `address` through: the
    /// on-link route with the longest prefix, then the lowest metric, then the first listed.
    /// `None` if no such route holds it through any of them.
    pub fn route_via<'a>(&self, address: IpAddr, among: &[&'a str]) -> Option<&'a str> {
        let best = self
            .on_link
            .iter()
            .enumerate()
            .filter(|(_, r)| r.dst.contains(&address) && among.contains(&r.iface.as_str()))
            .min_by_key(|(order, r)| (std::cmp::Reverse(r.dst.prefix_len()), r.metric, *order))?;
        among.iter().copied().find(|name| *name == best.1.iface)
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

/// Reads the interfaces of the current network namespace (those `exclusions` name marked so),
/// its routes' gateways and its on-link routes.
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
    let (mut gateways, mut on_link) = (parse_proc_route(&routes), parse_proc_route_on_link(&routes));
    // Absent where IPv6 is off.
    if let Ok(routes) = std::fs::read_to_string("/proc/net/ipv6_route") {
        gateways.extend(parse_proc_ipv6_route(&routes));
        on_link.extend(parse_proc_ipv6_route_on_link(&routes));
    }
    Ok(Host { interfaces: by_name.into_values().collect(), gateways, on_link })
}

/// Route flags, as `/proc` prints them (`linux/route.h`, `linux/ipv6_route.h`).
const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;
const RTF_REJECT: u32 = 0x200;

/// Whether `flags` (hex) are those of a usable route with no gateway.
fn on_link_flags(flags: &str) -> bool {
    u32::from_str_radix(flags, 16).is_ok_and(|f| f & RTF_UP != 0 && f & (RTF_GATEWAY | RTF_REJECT) == 0)
}

/// The on-link routes in `/proc/net/route` (IPv4).
pub fn parse_proc_route_on_link(text: &str) -> Vec<OnLink> {
    let v4 = |hex: &str| u32::from_str_radix(hex, 16).ok().map(|n| Ipv4Addr::from(n.to_ne_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (iface, dst, flags, metric, mask) =
                (cols.first()?, cols.get(1)?, cols.get(3)?, cols.get(6)?, cols.get(7)?);
            if !on_link_flags(flags) {
                return None;
            }
            let prefix = u32::from(v4(mask)?).count_ones() as u8;
            let dst = IpNet::new(v4(dst)?.into(), prefix).ok()?;
            Some(OnLink { iface: iface.to_string(), dst, metric: metric.parse().ok()? })
        })
        .collect()
}

/// The on-link routes in `/proc/net/ipv6_route` (link-local ones left out: no address Herald
/// announces is link-local).
pub fn parse_proc_ipv6_route_on_link(text: &str) -> Vec<OnLink> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (dst, prefix, metric, flags, iface) =
                (cols.first()?, cols.get(1)?, cols.get(5)?, cols.get(8)?, cols.get(9)?);
            if !on_link_flags(flags) || u128::from_str_radix(cols.get(4)?, 16).ok()? != 0 {
                return None;
            }
            let dst = Ipv6Addr::from(u128::from_str_radix(dst, 16).ok()?);
            let dst = IpNet::new(dst.into(), u8::from_str_radix(prefix, 16).ok()?).ok()?;
            let metric = u32::from_str_radix(metric, 16).ok()?;
            let link_local = matches!(dst.addr(), IpAddr::V6(a) if a.is_unicast_link_local());
            (!link_local).then(|| OnLink { iface: iface.to_string(), dst, metric })
        })
        .collect()
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
        assert_eq!(
            parse_proc_ipv6_route_on_link(text),
            vec![OnLink { iface: "eth0".into(), dst: "2001:db8::/64".parse().unwrap(), metric: 256 }]
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_route_on_link() {
        // Two interfaces in 192.0.2.0/24, eth1's route first but at a higher metric; a default
        // route; a reject route.
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                    eth1\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                    eth0\t80EF0000\t00000000\t0201\t0\t0\t0\t0000FFFF\n";
        let routes = parse_proc_route_on_link(text);
        let net: IpNet = "192.0.2.0/24".parse().unwrap();
        assert_eq!(
            routes,
            vec![
                OnLink { iface: "eth1".into(), dst: net, metric: 100 },
                OnLink { iface: "eth0".into(), dst: net, metric: 0 },
            ]
        );
        let host = Host { on_link: routes, ..Host::default() };
        let vip: IpAddr = Ipv4Addr::new(192, 0, 2, 10).into();
        assert_eq!(host.route_via(vip, &["eth0", "eth1"]), Some("eth0"), "the lower metric");
        assert_eq!(host.route_via(vip, &["eth1"]), Some("eth1"));
        assert_eq!(host.route_via(Ipv4Addr::new(198, 51, 100, 1).into(), &["eth0", "eth1"]), None);
    }
}
