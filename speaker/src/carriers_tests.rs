use super::*;
use ipnet::IpNet;

fn iface(name: &str, index: u32, net: Option<([u8; 4], u8)>) -> Interface {
    Interface {
        name: name.into(),
        index,
        mac: Some([2, 0, 0, 0, 0, index as u8]),
        addrs: net
            .map(|(a, p)| IpNet::new(std::net::Ipv4Addr::from(a).into(), p).unwrap())
            .into_iter()
            .collect(),
        loopback: false,
        noarp: false,
        port: false,
        excluded: crate::exclusions::Exclusions::default().why(name),
    }
}

fn v4(a: [u8; 4]) -> std::net::IpAddr {
    std::net::Ipv4Addr::from(a).into()
}

/// A node with one of each kind of interface.
fn host() -> Host {
    let lo = Interface { loopback: true, mac: None, ..iface("lo", 1, Some(([127, 0, 0, 1], 8))) };
    let bond_port = Interface { port: true, ..iface("eno2", 3, None) };
    let noarp = Interface { noarp: true, ..iface("wg0", 5, Some(([198, 51, 100, 1], 24))) };
    let no_mac = Interface { mac: None, ..iface("ipip0", 8, Some(([100, 64, 0, 1], 24))) };
    Host {
        interfaces: vec![
            lo,
            iface("eth0", 2, Some(([192, 0, 2, 1], 24))),
            bond_port,
            iface("cali1234", 4, Some(([192, 0, 2, 77], 24))),
            noarp,
            iface("br0", 6, Some(([203, 0, 113, 1], 24))),
            iface("eth1", 7, Some(([198, 18, 0, 1], 24))),
            no_mac,
        ],
        gateways: vec![("eth0".into(), v4([192, 0, 2, 254])), ("eth1".into(), v4([198, 18, 0, 254]))],
        on_link: Vec::new(),
    }
}

fn names(result: Result<BTreeSet<Announcement>, Refusal>) -> Vec<String> {
    result.unwrap().into_iter().map(|a| a.ifname).collect()
}

fn named(list: &[&str]) -> Interfaces {
    Interfaces::Named(list.iter().map(|n| n.to_string()).collect())
}

#[test]
fn by_subnet_skips_container_interfaces() {
    assert_eq!(names(carriers(&host(), [192, 0, 2, 10].into(), 0, &Interfaces::Subnet)), ["eth0"]);
    assert_eq!(names(carriers(&host(), [203, 0, 113, 10].into(), 0, &Interfaces::Subnet)), ["br0"]);
}

#[test]
fn named_interfaces_whatever_their_subnet() {
    assert_eq!(names(carriers(&host(), [203, 0, 113, 10].into(), 0, &named(&["eth0", "absent"]))), ["eth0"]);
}

#[test]
fn the_entry_says_where_and_how() {
    let got = carriers(&host(), [203, 0, 113, 10].into(), 9, &named(&["eth1"])).unwrap();
    let want = Announcement {
        addr: [203, 0, 113, 10].into(),
        ifindex: 7,
        vlan: 9,
        mac: [2, 0, 0, 0, 0, 7],
        ifname: "eth1".into(),
    };
    assert_eq!(got, BTreeSet::from([want]));
}

#[test]
fn refusals_say_why() {
    let h = host();
    let err =
        |addr: [u8; 4], wanted: &Interfaces| carriers(&h, addr.into(), 0, wanted).unwrap_err().to_string();
    let cases = [
        ([198, 51, 100, 9], Interfaces::Subnet, "no interface has a subnet that holds it (wg0 is NOARP)"),
        (
            [192, 0, 2, 10],
            named(&["eno2", "lo", "eth9"]),
            "none of the interfaces eno2, eth9, lo can carry it \
             (eth9 does not exist, eno2 is a bond, bridge or team port, lo is loopback)",
        ),
        (
            [100, 64, 0, 9],
            Interfaces::Subnet,
            "no interface has a subnet that holds it (ipip0 has no Ethernet address)",
        ),
        (
            [192, 0, 2, 10],
            named(&["cali1234"]),
            "none of the interfaces cali1234 can carry it (cali1234 is a container or proxy interface (cali*))",
        ),
        ([198, 18, 1, 1], Interfaces::Subnet, "no interface has a subnet that holds it"),
        (
            [192, 0, 2, 1],
            Interfaces::Subnet,
            "it is configured on interface eth0; the kernel answers for it, Herald will not",
        ),
        // Wherever it is asked for: the host's own address on another interface.
        (
            [198, 18, 0, 1],
            named(&["eth0"]),
            "it is configured on interface eth1; the kernel answers for it, Herald will not",
        ),
        (
            [192, 0, 2, 254],
            Interfaces::Subnet,
            "it is a gateway of interface eth0; Herald will not answer for it",
        ),
        // A gateway of any interface, not only of the one it would be announced on.
        (
            [198, 18, 0, 254],
            named(&["eth0"]),
            "it is a gateway of interface eth1; Herald will not answer for it",
        ),
    ];
    for (addr, wanted, want) in cases {
        assert_eq!(err(addr, &wanted), want, "{addr:?} on {wanted:?}");
    }
}

/// IPv6 as IPv4: by subnet, never for an address the host has or that is its router.
#[test]
fn ipv6_by_subnet_and_refusals() {
    let mut h = host();
    let eth0 = h.interfaces.iter_mut().find(|i| i.name == "eth0").unwrap();
    eth0.addrs.push("2001:db8::1/64".parse().unwrap());
    eth0.addrs.push("fe80::1/64".parse().unwrap());
    h.gateways.push(("eth0".into(), "2001:db8::fe".parse().unwrap()));
    let v6 = |a: &str| a.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(names(carriers(&h, v6("2001:db8::10"), 0, &Interfaces::Subnet)), ["eth0"]);
    let refusal = |a: &str| carriers(&h, v6(a), 0, &Interfaces::Subnet).unwrap_err().to_string();
    assert_eq!(refusal("2001:db8::1"), Refusal::Local("eth0".into()).to_string());
    assert_eq!(refusal("2001:db8::fe"), Refusal::Gateway("eth0".into()).to_string());
    assert!(refusal("2001:db8:1::10").starts_with("no interface has a subnet"));
}

/// kube-proxy in IPVS mode binds every LoadBalancer address to its dummy `kube-ipvs0` (NOARP,
/// down) on every node, kube-router to `kube-dummy-if`: those addresses are announced as any
/// other. The host's own address stays refused, and so does one on loopback.
#[test]
fn addresses_a_service_proxy_binds_are_announced() {
    let mut h = host();
    let vip = [192, 0, 2, 240];
    let proxy = |name: &str, index: u32, noarp: bool| Interface {
        noarp,
        mac: None,
        ..iface(name, index, Some((vip, 32)))
    };
    h.interfaces.push(proxy("kube-ipvs0", 20, true));
    h.interfaces.push(proxy("kube-dummy-if", 21, false));
    // A NOARP dummy of another name (some proxies' own): a proxy's too.
    h.interfaces.push(proxy("lb0", 22, true));
    assert_eq!(names(carriers(&h, vip.into(), 0, &Interfaces::Subnet)), ["eth0"]);
    assert_eq!(names(carriers(&h, vip.into(), 0, &named(&["eth0"]))), ["eth0"]);
    // On loopback (a direct-return backend's address): the kernel's.
    h.interfaces.push(Interface { loopback: true, ..proxy("lo", 1, true) });
    assert_eq!(carriers(&h, vip.into(), 0, &Interfaces::Subnet).unwrap_err(), Refusal::Local("lo".into()));
}

#[test]
fn by_subnet_one_interface_per_link_the_routes() {
    // eth0 and eth2 both on 192.0.2.0/24 (two NICs on one LAN): one answers, the one the
    // kernel's route uses, else the first by index.
    let mut h = host();
    h.interfaces.push(iface("eth2", 9, Some(([192, 0, 2, 2], 24))));
    let net: IpNet = "192.0.2.0/24".parse().unwrap();
    let route = |iface: &str, metric| crate::host::OnLink { iface: iface.into(), dst: net, metric };
    let by_subnet = |h: &Host| names(carriers(h, [192, 0, 2, 10].into(), 0, &Interfaces::Subnet));
    assert_eq!(by_subnet(&h), ["eth0"], "no route: the first by index");
    h.on_link = vec![route("eth0", 100), route("eth2", 0)];
    assert_eq!(by_subnet(&h), ["eth2"], "the lower metric");
    h.on_link.push(crate::host::OnLink {
        iface: "eth0".into(),
        dst: "192.0.2.0/28".parse().unwrap(),
        metric: 500,
    });
    assert_eq!(by_subnet(&h), ["eth0"], "the longer prefix");
    // Named: every one named answers.
    assert_eq!(names(carriers(&h, [192, 0, 2, 10].into(), 0, &named(&["eth0", "eth2"]))), ["eth0", "eth2"]);
}
