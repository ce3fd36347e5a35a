use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::*;
use crate::{
    config,
    explain::render,
    host::{Interface, OnLink},
};

/// sha256 order for this address: node-c, node-b, node-a (see election_tests.rs).
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const FILE: &str = "/etc/herald/herald.toml";

fn config(node: &str, extra: &str) -> Config {
    let cluster = "[cluster]\nbind = \"192.0.2.1:7946\"\npeers = [\"192.0.2.2:7946\", \"192.0.2.3:7946\"]\nkey = \"0123456789abcdef\"\n";
    config::parse(&format!("node = \"{node}\"\n{cluster}[[vip]]\naddress = \"{VIP}\"\n{extra}")).unwrap()
}

fn host() -> Host {
    let net: IpNet = "192.0.2.1/24".parse().unwrap();
    Host {
        interfaces: vec![Interface {
            name: "eth0".into(),
            index: 2,
            mac: Some([2, 0, 0, 0, 0, 2]),
            addrs: vec![net],
            loopback: false,
            noarp: false,
            port: false,
            excluded: None,
        }],
        gateways: Vec::new(),
        on_link: vec![OnLink { iface: "eth0".into(), dst: net.trunc(), metric: 0 }],
    }
}

fn entry(conflicts: u64, conflict_ns: u64) -> pinned::Entry {
    pinned::Entry {
        addr: VIP.into(),
        ifindex: 2,
        vlan: 0,
        mac: [2, 0, 0, 0, 0, 2],
        replies: 5,
        conflicts,
        conflict_ns,
        conflict_mac: [2, 0, 0, 0, 0, 0x99],
    }
}

fn running(alive: &[&str], entries: Vec<pinned::Entry>) -> Running {
    Running {
        alive: Some(alive.iter().map(|n| n.to_string()).collect()),
        entries,
        silent: None,
        not_announced: Vec::new(),
        now_ns: 1_000 * 1_000_000_000,
    }
}

fn chain(config: &Config, running: &Running, address: IpAddr) -> Vec<Link> {
    explain(config, FILE, Ok(&host()), Ok(running), address)
}

fn cause(links: &[Link]) -> Option<(&'static str, String)> {
    links.iter().find(|l| !l.holds).map(|l| (l.what, l.lines.join("\n")))
}

#[test]
fn the_owner_answering_holds_end_to_end() {
    let links = chain(
        &config("node-c", ""),
        &running(&["node-a", "node-b", "node-c"], vec![entry(0, 0)]),
        VIP.into(),
    );
    assert_eq!(cause(&links), None, "{}", render(&links));
    let text = render(&links);
    assert!(text.contains("1. node-c\n") && text.contains("3. node-a\n"), "{text}");
    assert!(text.contains("node-c answers for 192.0.2.10 (5 requests answered)"), "{text}");
}

#[test]
fn another_owner_is_named_and_sent_to() {
    let links = chain(&config("node-a", ""), &running(&["node-a", "node-b", "node-c"], vec![]), VIP.into());
    assert_eq!(cause(&links), None, "{}", render(&links));
    assert!(render(&links).contains("node-c answers, not node-a"), "{}", render(&links));
}

#[test]
fn each_broken_link_is_named() {
    let all = ["node-a", "node-b", "node-c"];
    let recent_claim = entry(2, 990 * 1_000_000_000);
    let old_claim = entry(2, 10 * 1_000_000_000);
    let silent = Running {
        silent: Some("its XDP programs answer nothing: 3.2 s ago (bound 2.0 s)".into()),
        ..running(&all, vec![entry(0, 0)])
    };
    let refused = Running {
        not_announced: vec!["not announced: 192.0.2.10 (eth0): the map is full; trying again".into()],
        ..running(&all, vec![])
    };
    let other: IpAddr = Ipv4Addr::new(192, 0, 2, 99).into();
    let elsewhere: IpAddr = Ipv4Addr::new(203, 0, 113, 10).into();
    let far = config::parse(&format!("node = \"node-c\"\n[[vip]]\naddress = \"{elsewhere}\"\n")).unwrap();
    let cases: Vec<(&str, Config, Running, IpAddr, &str, &str)> = vec![
        (
            "not configured",
            config("node-c", ""),
            running(&all, vec![]),
            other,
            "config",
            "not among the [[vip]] addresses",
        ),
        (
            "nodes leave it out",
            config("node-c", "nodes = [\"node-a\"]\n"),
            running(&all, vec![]),
            VIP.into(),
            "this node",
            "leave node-c out",
        ),
        (
            "no interface carries it",
            far,
            running(&[], vec![]),
            elsewhere,
            "interfaces",
            "no interface of node-c can carry it",
        ),
        (
            "no quorum",
            config("node-c", ""),
            running(&["node-c"], vec![]),
            VIP.into(),
            "members",
            "no majority",
        ),
        ("dead-man", config("node-c", ""), silent, VIP.into(), "dead-man", "answer nothing"),
        ("not in the map", config("node-c", ""), refused, VIP.into(), "map", "the map is full"),
        (
            "a recent claim",
            config("node-c", ""),
            running(&all, vec![recent_claim]),
            VIP.into(),
            "other hosts",
            "02:00:00:00:00:99",
        ),
    ];
    for (what, config, running, address, link, says) in cases {
        let links = chain(&config, &running, address);
        let (broken, text) =
            cause(&links).unwrap_or_else(|| panic!("{what}: nothing broken:\n{}", render(&links)));
        assert_eq!(broken, link, "{what}:\n{}", render(&links));
        assert!(text.contains(says), "{what}: expected {says:?}:\n{}", render(&links));
    }
    // An old claim is history.
    let links = chain(&config("node-c", ""), &running(&all, vec![old_claim]), VIP.into());
    assert_eq!(cause(&links), None, "{}", render(&links));
    // No speaker.
    let links = explain(&config("node-c", ""), FILE, Ok(&host()), Err("no speaker runs".into()), VIP.into());
    assert_eq!(cause(&links).unwrap().0, "speaker");
}
