use std::collections::BTreeMap;

use herald_kube::{crd::IPAddressPoolSpec, pool::Pool};
use ipnet::IpNet;

use super::*;
use crate::{
    candidates::{Node, Traffic},
    election,
    host::Interface,
    kubernetes::decide::LoadBalancer,
};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// Two Services (an IPv4 and an IPv6 one) from one pool, every node a candidate.
fn snapshot() -> Snapshot {
    let service = |key: &str, address: &str| LoadBalancer {
        key: key.into(),
        addresses: vec![address.parse().unwrap()],
        traffic: Traffic { ready_endpoint_nodes: ["node-a".to_string()].into(), ..Default::default() },
        ..Default::default()
    };
    let spec = IPAddressPoolSpec {
        addresses: vec!["192.0.2.0/24".into(), "2001:db8::/64".into()],
        ..Default::default()
    };
    Snapshot {
        services: vec![service("default/web", "192.0.2.240"), service("default/six", "2001:db8::240")],
        nodes: NODES.iter().map(|n| Node { name: n.to_string(), ..Default::default() }).collect(),
        pools: vec![(Pool::from_spec("lan", &spec).unwrap(), Default::default())],
        pool_labels: BTreeMap::from([("lan".to_string(), Default::default())]),
        advertisements: vec![("all".into(), Default::default())],
    }
}

/// A node with eth0 on the LAN and kube-proxy's `kube-ipvs0` holding both Service addresses.
fn host() -> Host {
    let iface = |name: &str, index: u32, nets: &[&str]| Interface {
        name: name.into(),
        index,
        mac: Some([2, 0, 0, 0, 0, index as u8]),
        addrs: nets.iter().map(|n| n.parse::<IpNet>().unwrap()).collect(),
        loopback: false,
        noarp: false,
        port: false,
        excluded: crate::exclusions::Exclusions::default().why(name),
    };
    let ipvs = Interface {
        noarp: true,
        mac: None,
        ..iface("kube-ipvs0", 9, &["192.0.2.240/32", "2001:db8::240/128"])
    };
    Host {
        interfaces: vec![iface("eth0", 2, &["192.0.2.1/24", "2001:db8::1/64"]), ipvs],
        gateways: Vec::new(),
        on_link: Vec::new(),
    }
}

/// IPv6 needs nothing of this (`elsewhere` holds IPv4 addresses only): a kernel answers a
/// solicitation only on the interface that holds the address, never on eth0 for kube-ipvs0's.
#[test]
fn the_owner_answers_and_the_others_drop_its_ipv4_requests() {
    let alive: Alive = NODES.iter().map(|n| n.to_string()).collect();
    let web: IpAddr = "192.0.2.240".parse().unwrap();
    let owner = election::owner(web, NODES).unwrap();
    for node in NODES {
        let share = own_share(&mut Default::default(), &snapshot(), &alive, &host(), node);
        let answers: BTreeSet<IpAddr> =
            share.announce.iter().filter(|a| a.addr.is_ipv4()).map(|a| a.addr).collect();
        if node == owner {
            assert_eq!(answers, BTreeSet::from([web]), "{node}: the owner answers, on eth0");
            assert!(share.announce.iter().all(|a| a.ifname == "eth0"), "{node}: {:?}", share.announce);
            assert!(share.elsewhere.is_empty(), "{node}: {:?}", share.elsewhere);
        } else {
            assert!(answers.is_empty(), "{node}: {answers:?}");
            assert_eq!(share.elsewhere, BTreeSet::from([Ipv4Addr::new(192, 0, 2, 240)]), "{node}");
            assert_eq!(share.elsewhere_on, BTreeSet::from([(2, "eth0".to_string())]), "{node}");
        }
    }
    // An address nobody may announce (no candidate alive) is nobody's to drop: the kernels
    // answer, as before Herald (fail open).
    let nobody: Alive = BTreeSet::new();
    assert!(own_share(&mut Default::default(), &snapshot(), &nobody, &host(), "node-a").elsewhere.is_empty());
}
