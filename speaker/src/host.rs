//! The host's network interfaces and IPv4 gateways, read once into plain data so that the
//! decisions in [`crate::plan`] can be tested without a host.

use std::{collections::BTreeMap, net::Ipv4Addr};

use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

/// An IPv4 address with its prefix length, as configured on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// Ethernet address; `None` for interfaces without one (lo, tun, ...).
    pub mac: Option<[u8; 6]>,
    pub addrs: Vec<Ipv4Net>,
    pub loopback: bool,
    pub noarp: bool,
    /// A port of a bond or bridge: its master answers for the link, not it.
    pub port: bool,
}

/// The host as the speaker sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub interfaces: Vec<Interface>,
    /// IPv4 gateways of the routing table, by interface name.
    pub gateways: Vec<(String, Ipv4Addr)>,
}

/// Name prefixes of the interfaces container runtimes and CNI plugins make.
pub const CONTAINER_PREFIXES: &[&str] = &[
    "veth",
    "cni",
    "flannel",
    "cali",
    "docker",
    "kube-ipvs",
    "kube-bridge",
    "cilium",
    "lxc",
    "vxlan",
    "tunl",
    "weave",
    "genev",
    "nodelocaldns",
    "tap",
    "virbr",
];

/// At most this many MACs go into the membership identity.
const MAX_OWN_MACS: usize = 16;

impl Interface {
    /// An interface a container runtime or CNI plugin made, whatever its subnet.
    pub fn is_container(&self) -> bool {
        CONTAINER_PREFIXES.iter().any(|p| self.name.starts_with(p))
    }
}

impl Host {
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The MACs this node may answer with: those of its interfaces but loopback and container
    /// interfaces (at most 16), for the other speakers to know its gratuitous ARP by.
    pub fn own_macs(&self) -> Vec<[u8; 6]> {
        let mut macs: Vec<[u8; 6]> = self
            .interfaces
            .iter()
            .filter(|it| !it.loopback && !it.is_container())
            .filter_map(|it| it.mac)
            .collect();
        macs.sort();
        macs.dedup();
        macs.truncate(MAX_OWN_MACS);
        macs
    }
}

/// Reads the interfaces of the current network namespace and its IPv4 routes.
pub fn discover() -> std::io::Result<Host> {
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
        });
        let Some(address) = ifa.address else { continue };
        if let Some(link) = address.as_link_addr() {
            entry.mac = link.addr().filter(|mac| *mac != [0; 6]);
        } else if let Some(sin) = address.as_sockaddr_in() {
            let prefix = ifa
                .netmask
                .and_then(|m| m.as_sockaddr_in().map(|m| u32::from(m.ip()).count_ones() as u8))
                .unwrap_or(32);
            entry.addrs.push(Ipv4Net { addr: sin.ip(), prefix });
        }
    }
    let ports = crate::netlink::ports()?;
    for it in by_name.values_mut() {
        it.port = ports.contains(&it.index);
    }
    let routes = std::fs::read_to_string("/proc/net/route")?;
    Ok(Host { interfaces: by_name.into_values().collect(), gateways: parse_proc_route(&routes) })
}

/// The gateways in `/proc/net/route` (IPv4; addresses in host byte order as hex).
pub fn parse_proc_route(text: &str) -> Vec<(String, Ipv4Addr)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let iface = cols.next()?;
            let gateway = u32::from_str_radix(cols.nth(1)?, 16).ok()?;
            // The kernel prints the network-order u32 as a native-endian number.
            let gateway = Ipv4Addr::from(gateway.to_ne_bytes());
            (!gateway.is_unspecified()).then(|| (iface.to_owned(), gateway))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains() {
        let net = Ipv4Net { addr: [192, 0, 2, 1].into(), prefix: 24 };
        assert!(net.contains([192, 0, 2, 200].into()));
        assert!(!net.contains([192, 0, 3, 1].into()));
        let host = Ipv4Net { addr: [192, 0, 2, 1].into(), prefix: 32 };
        assert!(!host.contains([192, 0, 2, 2].into()));
        let all = Ipv4Net { addr: [192, 0, 2, 1].into(), prefix: 0 };
        assert!(all.contains([203, 0, 113, 9].into()));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                    eth1\t00007198\tFE6433C6\t0003\t0\t0\t0\t0000FFFF\n";
        assert_eq!(
            parse_proc_route(text),
            vec![("eth0".into(), [192, 0, 2, 1].into()), ("eth1".into(), [198, 51, 100, 254].into())]
        );
    }
}
