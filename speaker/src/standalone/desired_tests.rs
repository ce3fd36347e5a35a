use super::*;
use crate::{config::parse, host::Interface};

const MAC0: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn iface(name: &str, index: u32, mac: Option<[u8; 6]>, addrs: &[([u8; 4], u8)]) -> Interface {
    Interface {
        name: name.into(),
        index,
        mac,
        addrs: addrs
            .iter()
            .map(|&(a, p)| ipnet::IpNet::new(std::net::Ipv4Addr::from(a).into(), p).unwrap())
            .collect(),
        loopback: name == "lo",
        noarp: false,
        port: false,
        excluded: None,
    }
}

fn host() -> Host {
    Host {
        interfaces: vec![
            iface("lo", 1, None, &[([127, 0, 0, 1], 8)]),
            iface("eth0", 2, Some(MAC0), &[([192, 0, 2, 1], 24)]),
            iface("eth1", 3, Some(MAC1), &[([198, 51, 100, 1], 24)]),
            iface("eth2", 4, Some(MAC1), &[([198, 51, 100, 2], 25)]),
        ],
        gateways: vec![("eth0".into(), std::net::Ipv4Addr::new(192, 0, 2, 254).into())],
        on_link: Vec::new(),
    }
}

fn resolve_str(text: &str) -> Result<BTreeSet<Announcement>, String> {
    resolve(&parse(text).unwrap(), &host()).map_err(|e| e.to_string())
}

fn ann(addr: [u8; 4], ifindex: u32, vlan: u16, mac: [u8; 6], ifname: &str) -> Announcement {
    Announcement { addr: addr.into(), ifindex, vlan, mac, ifname: ifname.into() }
}

#[test]
fn named_interface() {
    let got =
        resolve_str("node = \"a\"\n[[vip]]\naddress = \"203.0.113.5\"\ninterface = \"eth1\"\nvlan = 9\n");
    assert_eq!(got.unwrap(), BTreeSet::from([ann([203, 0, 113, 5], 3, 9, MAC1, "eth1")]));
}

#[test]
fn interface_by_subnet() {
    let got = resolve_str("node = \"a\"\n[[vip]]\naddress = \"192.0.2.10\"\n").unwrap();
    assert_eq!(got, BTreeSet::from([ann([192, 0, 2, 10], 2, 0, MAC0, "eth0")]));
    // Two interfaces whose subnets hold the address: one announces it (with no route through
    // either, the first by index; see `carriers`).
    let got = resolve_str("node = \"a\"\n[[vip]]\naddress = \"198.51.100.20\"\n").unwrap();
    let ifaces: Vec<_> = got.iter().map(|a| a.ifname.as_str()).collect();
    assert_eq!(ifaces, ["eth1"]);
}

#[test]
fn no_subnet_holds_it() {
    assert_eq!(
        resolve_str("node = \"a\"\n[[vip]]\naddress = \"203.0.113.5\"\n").unwrap_err(),
        "vip[0].address = 203.0.113.5: no interface has a subnet that holds it"
    );
}

#[test]
fn unknown_interface() {
    assert_eq!(
        resolve_str("node = \"a\"\n[[vip]]\naddress = \"192.0.2.10\"\ninterface = \"eth9\"\n").unwrap_err(),
        "vip[0].address = 192.0.2.10: none of the interfaces eth9 can carry it (eth9 does not exist)"
    );
}

#[test]
fn refuses_local_address() {
    assert_eq!(
        resolve_str("node = \"a\"\n[[vip]]\naddress = \"198.51.100.2\"\ninterface = \"eth0\"\n").unwrap_err(),
        "vip[0].address = 198.51.100.2: it is configured on interface eth2; the kernel answers for it, Herald will not"
    );
}

#[test]
fn refuses_gateway() {
    assert_eq!(
        resolve_str("node = \"a\"\n[[vip]]\naddress = \"192.0.2.254\"\n").unwrap_err(),
        "vip[0].address = 192.0.2.254: it is a gateway of interface eth0; Herald will not answer for it"
    );
}

#[test]
fn refuses_interfaces_without_arp() {
    assert_eq!(
        resolve_str("node = \"a\"\n[[vip]]\naddress = \"192.0.2.10\"\ninterface = \"lo\"\n").unwrap_err(),
        "vip[0].address = 192.0.2.10: none of the interfaces lo can carry it (lo is loopback)"
    );
}

#[test]
fn elected_by_membership_and_quorum() {
    // From sha256: for 192.0.2.10 the order is node-c, node-b, node-a (see election_tests.rs).
    let text = "node = \"node-a\"\n[cluster]\nbind = \"192.0.2.1:7946\"\n\
                peers = [\"192.0.2.2:7946\", \"192.0.2.3:7946\"]\nkey = \"0123456789abcdef\"\n\
                [[vip]]\naddress = \"192.0.2.10\"\n";
    let config = parse(text).unwrap();
    let resolved = resolve(&config, &host()).unwrap();
    let alive = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert!(elected(&config, &resolved, None).is_empty(), "not joined yet: nothing");
    let alone = parse("node = \"node-a\"\n[[vip]]\naddress = \"192.0.2.10\"\n").unwrap();
    assert_eq!(elected(&alone, &resolved, None), resolved, "no cluster: everything");
    assert!(elected(&config, &resolved, Some(&alive(&["node-a", "node-b", "node-c"]))).is_empty());
    assert!(elected(&config, &resolved, Some(&alive(&["node-a", "node-b"]))).is_empty());
    // Three members: quorum by default.
    assert!(elected(&config, &resolved, Some(&alive(&["node-a"]))).is_empty(), "1 of 3 is no quorum");
    assert_eq!(elected(&config, &resolved, Some(&alive(&["node-a", "node-x"]))), resolved);

    let no_quorum = parse(&text.replace("[[vip]]", "quorum = false\n[[vip]]")).unwrap();
    assert_eq!(elected(&no_quorum, &resolved, Some(&alive(&["node-a"]))), resolved, "alone: everything");
}

#[test]
fn addresses_for_other_nodes_need_nothing_here() {
    // 203.0.113.5 is on no subnet of this host: fine, as only node-z may announce it.
    let text = "node = \"node-a\"\n[[vip]]\naddress = \"203.0.113.5\"\nnodes = [\"node-z\"]\n\
                [[vip]]\naddress = \"192.0.2.10\"\nnodes = [\"node-a\", \"node-z\"]\n";
    let got = resolve_str(text).unwrap();
    assert_eq!(got, BTreeSet::from([ann([192, 0, 2, 10], 2, 0, MAC0, "eth0")]));
    let mine = text.replace("node-z\"]\n\n", "node-a\"]\n\n").replace("[\"node-z\"]", "[\"node-a\"]");
    assert!(resolve_str(&mine).unwrap_err().contains("203.0.113.5"), "listed for this node: checked");
}
