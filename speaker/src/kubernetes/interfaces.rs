//! Which of this host's interfaces carry an address the election gave it: those the
//! L2Advertisements name, or those whose subnet holds it; never a bond or bridge port, a NOARP
//! interface, loopback, or a container interface (whatever it is named, its subnet is not the
//! LAN's).

use std::{collections::BTreeSet, net::Ipv4Addr};

use super::decide::Interfaces;
use crate::{
    host::{Host, Interface},
    plan::Announcement,
};

/// Why `it` cannot answer ARP for a Service address, if it cannot.
pub fn unusable(it: &Interface) -> Option<&'static str> {
    if it.loopback {
        Some("loopback")
    } else if it.noarp {
        Some("NOARP")
    } else if it.port {
        Some("a bond or bridge port")
    } else if it.mac.is_none() {
        Some("no Ethernet address")
    } else if it.is_container() {
        Some("a container interface")
    } else {
        None
    }
}

/// The announcements that carry `address` on `host`, or why there are none (for the
/// announceFailed Event). An address the host has configured, or that is a gateway, is refused:
/// the kernel or a router already answers for it.
pub fn carriers(
    host: &Host,
    address: Ipv4Addr,
    wanted: &Interfaces,
) -> Result<BTreeSet<Announcement>, String> {
    if let Some(it) = host.interfaces.iter().find(|it| it.addrs.iter().any(|n| n.addr == address)) {
        return Err(format!("{address} is configured on interface {}; the kernel answers for it", it.name));
    }
    if let Some((ifname, _)) = host.gateways.iter().find(|(_, gw)| *gw == address) {
        return Err(format!("{address} is a gateway of interface {ifname}"));
    }
    let chosen: Vec<&Interface> = match wanted {
        Interfaces::Named(names) => host.interfaces.iter().filter(|it| names.contains(&it.name)).collect(),
        Interfaces::Subnet => {
            host.interfaces.iter().filter(|it| it.addrs.iter().any(|n| n.contains(address))).collect()
        }
    };
    let out: BTreeSet<Announcement> = chosen
        .iter()
        .filter(|it| unusable(it).is_none())
        .map(|it| Announcement {
            addr: address,
            ifindex: it.index,
            vlan: 0,
            mac: it.mac.expect("usable interfaces have one"),
            ifname: it.name.clone(),
        })
        .collect();
    if !out.is_empty() {
        return Ok(out);
    }
    let refused: Vec<String> =
        chosen.iter().filter_map(|it| Some(format!("{} is {}", it.name, unusable(it)?))).collect();
    let looked_for = match wanted {
        Interfaces::Named(names) => format!("none of the interfaces {names:?} can carry {address}"),
        Interfaces::Subnet => format!("no interface has a subnet that holds {address}"),
    };
    Err(if refused.is_empty() { looked_for } else { format!("{looked_for} ({})", refused.join(", ")) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Ipv4Net;

    fn iface(name: &str, index: u32, net: Option<([u8; 4], u8)>) -> Interface {
        Interface {
            name: name.into(),
            index,
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            addrs: net.map(|(a, p)| Ipv4Net { addr: a.into(), prefix: p }).into_iter().collect(),
            loopback: false,
            noarp: false,
            port: false,
        }
    }

    fn host() -> Host {
        let lo = Interface { loopback: true, mac: None, ..iface("lo", 1, Some(([127, 0, 0, 1], 8))) };
        let bond_port = Interface { port: true, ..iface("eno2", 3, None) };
        let noarp = Interface { noarp: true, ..iface("wg0", 5, Some(([198, 51, 100, 1], 24))) };
        Host {
            interfaces: vec![
                lo,
                iface("eth0", 2, Some(([192, 0, 2, 1], 24))),
                bond_port,
                iface("cali1234", 4, Some(([192, 0, 2, 77], 24))),
                noarp,
                iface("br0", 6, Some(([203, 0, 113, 1], 24))),
            ],
            gateways: vec![("eth0".into(), [192, 0, 2, 254].into())],
        }
    }

    fn names(result: Result<BTreeSet<Announcement>, String>) -> Vec<String> {
        result.unwrap().into_iter().map(|a| a.ifname).collect()
    }

    fn named(list: &[&str]) -> Interfaces {
        Interfaces::Named(list.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn by_subnet_skips_container_interfaces() {
        assert_eq!(names(carriers(&host(), [192, 0, 2, 10].into(), &Interfaces::Subnet)), ["eth0"]);
        assert_eq!(names(carriers(&host(), [203, 0, 113, 10].into(), &Interfaces::Subnet)), ["br0"]);
    }

    #[test]
    fn named_interfaces_whatever_their_subnet() {
        assert_eq!(names(carriers(&host(), [203, 0, 113, 10].into(), &named(&["eth0", "absent"]))), ["eth0"]);
    }

    #[test]
    fn refusals_say_why() {
        let h = host();
        let err = |addr: [u8; 4], wanted: &Interfaces| carriers(&h, addr.into(), wanted).unwrap_err();
        assert_eq!(
            err([198, 51, 100, 9], &Interfaces::Subnet),
            "no interface has a subnet that holds 198.51.100.9 (wg0 is NOARP)"
        );
        assert_eq!(
            err([192, 0, 2, 10], &named(&["eno2", "lo"])),
            "none of the interfaces {\"eno2\", \"lo\"} can carry 192.0.2.10 (lo is loopback, eno2 is a bond or bridge port)"
        );
        assert_eq!(
            err([198, 18, 0, 1], &Interfaces::Subnet),
            "no interface has a subnet that holds 198.18.0.1"
        );
        assert_eq!(
            err([192, 0, 2, 1], &Interfaces::Subnet),
            "192.0.2.1 is configured on interface eth0; the kernel answers for it"
        );
        assert_eq!(err([192, 0, 2, 254], &Interfaces::Subnet), "192.0.2.254 is a gateway of interface eth0");
    }
}
