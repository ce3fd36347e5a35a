//! IPv6 end to end in the lab: the speaker announces an IPv6 address beside an IPv4 one, the
//! client resolves it with its kernel's own Neighbor Discovery (`ping -6`, `ip -6 neigh`) at
//! every hook, the node joins the address's solicited-node group (`ip -6 maddr`, MLD reports
//! on the wire), and when the owner is killed the client's neighbour entry follows the heir's
//! unsolicited Advertisement, over a membership that runs on IPv6. Tagged solicitations are in
//! `lab_vlan`'s table (this kernel has no VLAN devices for the client to resolve through).
//! Needs root.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use herald_tests::{
    cluster::{KEY, PORT},
    lab::{Host, Lab, format_mac},
    ndp, poll,
    probe::{self, Capture},
    root_or_skip,
    speaker::{self, Speaker},
};
use nix::sys::signal::Signal;

const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);
/// Its solicited-node group, as `ip -6 maddr` and tcpdump print it.
const GROUP: &str = "ff02::1:ff00:200";
const BOUND: Duration = Duration::from_secs(4);

fn config(node: &str) -> String {
    format!(
        "node = \"{node}\"\n[gratuitous]\ncount = 3\ninterval_ms = 50\n\
         [[vip]]\naddress = \"{VIP4}\"\n[[vip]]\naddress = \"{VIP6}\"\n"
    )
}

/// The solicited-node groups `host` has joined on eth0.
fn groups(host: &Host) -> String {
    host.run("ip", &["-6", "maddr", "show", "dev", "eth0"]).unwrap()
}

/// Whether `frame` is an unsolicited Advertisement for `target` at `mac`: to all nodes, from
/// `mac`, Override set and Solicited not, `mac` in the target link-layer option, checksum right.
fn unsolicited_advertisement(frame: &[u8], target: Ipv6Addr, mac: [u8; 6]) -> bool {
    let Some(icmp) = frame.get(54..) else { return false };
    let src: [u8; 16] = frame[22..38].try_into().unwrap();
    let dst: [u8; 16] = frame[38..54].try_into().unwrap();
    frame[..6] == [0x33, 0x33, 0, 0, 0, 1]
        && frame[6..12] == mac
        && frame[12..14] == [0x86, 0xdd]
        && frame[21] == 255
        && icmp.len() == 32
        && icmp[0] == 136
        && icmp[4] == 0x20
        && icmp[8..24] == target.octets()
        && icmp[24..] == [&[2, 1][..], &mac].concat()
        && ndp::icmpv6_checksum(src.into(), dst.into(), icmp) == 0
}

/// Both families answered by the node at every hook a veth gets: XDP bound to the device
/// (Linux >= 6.8) and TC, with the kernel's default offloads. (XDP reading tags in the frame is
/// for devices on a bus: `xdp_ndp` runs it through BPF_PROG_TEST_RUN.)
#[test]
fn dual_stack_answered_at_every_hook() {
    if !root_or_skip("dual_stack_answered_at_every_hook") {
        return;
    }
    for (mode, program) in speaker::datapaths() {
        let mut lab = Lab::new(&["node-a"]).expect("lab");
        let node = lab.node("node-a").clone();
        let advertisements = Capture::ndp_frames(&lab.client).unwrap();
        let reports = Capture::mld_reports(&node).unwrap();
        let speaker =
            Speaker::start(&mut lab, &node, &config("node-a"), &["--datapath", mode]).expect("speaker");
        let attached = speaker.attached().unwrap();
        assert!(
            attached.len() == 1 && attached[0].ends_with(program),
            "--datapath {mode}: expected {program}, found {attached:?}\n{}",
            speaker.log_text()
        );
        let context = format!("--datapath {mode}");

        // The client's kernel resolves the address to the node; IPv4 as well.
        let resolved = probe::resolve6(&lab.client, VIP6).unwrap();
        assert_eq!(
            resolved,
            Some(node.mac),
            "{context}: {VIP6} resolved to {resolved:02x?}\n{}",
            speaker.log_text()
        );
        assert_eq!(probe::arping(&lab.client, VIP4, 1).unwrap(), [node.mac], "{context}");
        // The node's own IPv6 address is still its kernel's: its solicitations pass.
        lab.client.run("ping", &["-6", "-c", "1", "-W", "2", &node.addr6.to_string()]).unwrap();

        // The group is joined, and said so on the wire for snooping switches.
        assert!(groups(&node).contains(GROUP), "{context}: {}", groups(&node));
        let joined = poll::until(BOUND, || reports.lines_from(0).iter().any(|l| l.contains(GROUP)));
        assert!(joined.is_some(), "{context}: no MLD report for {GROUP}: {:#?}", reports.lines_from(0));

        // The burst at start: three unsolicited Advertisements.
        let frames = probe::frames(&advertisements.stop().unwrap());
        let sent = frames.iter().filter(|f| unsolicited_advertisement(f, VIP6, node.mac)).count();
        assert_eq!(sent, 3, "{context}: unsolicited Advertisements for {VIP6}: {frames:02x?}");

        let status = speaker.status().unwrap();
        let line = status.lines().find(|l| l.starts_with(&VIP6.to_string())).expect("the address in status");
        let replies: u64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(replies >= 1, "{context}: {status}");

        // /metrics says the same, each family under its protocol.
        let metrics = node.run("curl", &["-sf", "http://127.0.0.1:7472/metrics"]).unwrap();
        let value = |name: &str| herald_tests::kube_lab::metric(&metrics, name);
        let labels =
            |protocol, ip: &str| format!("protocol=\"{protocol}\",ip=\"{ip}\",interface=\"eth0\",vlan=\"0\"");
        let (arp, ndp) = (labels("arp", &VIP4.to_string()), labels("ndp", &VIP6.to_string()));
        assert_eq!(value(&format!("herald_replies_total{{{ndp}}}")), replies as f64, "{context}: {metrics}");
        // The hook is the program's name without `herald_`.
        let hook = program.split_once("herald_").map_or(program, |(_, name)| name);
        for family in [&arp, &ndp] {
            let announced = format!("herald_announced{{{family},node=\"node-a\",hook=\"{hook}\"}}");
            assert_eq!(value(&announced), 1.0, "{context}: {metrics}");
        }
        let sent = |protocol| value(&format!("herald_gratuitous_sent_total{{protocol=\"{protocol}\"}}"));
        assert!(sent("arp") >= 3.0 && sent("ndp") >= 3.0, "{context}: the bursts: {metrics}");
        let both = value("herald_gratuitous_arp_sent_total");
        assert_eq!(both, sent("arp") + sent("ndp"), "{context}: the deprecated name counts both: {metrics}");
        let age = value("herald_heartbeat_age_seconds");
        assert!(age < value("herald_dead_man_seconds"), "{context}: the dead-man tripped: {metrics}");

        // Withdrawn on exit: no more answers, the group left.
        assert!(speaker.stop(&mut lab).unwrap().success());
        assert_eq!(probe::resolve6(&lab.client, VIP6).unwrap(), None, "{context}: answered after exit");
        assert!(!groups(&node).contains(GROUP), "{context}: still in the group: {}", groups(&node));
        drop(reports);
    }
}

/// A cluster of three whose membership runs over IPv6: the elected node answers for the IPv6
/// address; SIGKILL it, and the client's neighbour entry moves to the heir's MAC on the heir's
/// unsolicited Advertisement, with no solicitation from the client (no waiting for NUD).
#[test]
fn owner_killed_client_follows_the_unsolicited_advertisement() {
    if !root_or_skip("owner_killed_client_follows_the_unsolicited_advertisement") {
        return;
    }
    let names = ["node-a", "node-b", "node-c"];
    let mut lab = Lab::new(&names).expect("lab");
    let nodes = lab.nodes.clone();
    let mut speakers = Vec::new();
    for node in &nodes {
        let peers: Vec<String> = nodes
            .iter()
            .filter(|n| n.name != node.name)
            .map(|n| format!("\"[{}]:{PORT}\"", n.addr6))
            .collect();
        let text = format!(
            "{}[cluster]\nbind = \"[{}]:{PORT}\"\npeers = [{}]\nkey = \"{KEY}\"\n",
            config(&node.name),
            node.addr6,
            peers.join(", ")
        );
        speakers.push(Speaker::start(&mut lab, node, &text, &["--dead-man-ms", "1000"]).expect("speaker"));
    }
    let elected = |alive: &[&str]| -> Host {
        let name = herald_speaker::election::owner(VIP6, alive.iter().copied()).expect("a candidate");
        nodes.iter().find(|n| n.name == name).unwrap().clone()
    };
    let owner = elected(&names);
    let settled = poll::until(BOUND, || probe::resolve6(&lab.client, VIP6).unwrap() == Some(owner.mac));
    assert!(settled.is_some(), "{VIP6} not resolved to {}'s {}", owner.name, format_mac(owner.mac));
    let status = speakers[0].status().unwrap();
    assert!(status.contains("members (3 alive)"), "{status}");

    let victim = speakers.iter().position(|s| s.host.name == owner.name).unwrap();
    speakers[victim].signal(Signal::SIGKILL).unwrap();
    lab.take_child(speakers[victim].pid).unwrap().wait().unwrap();
    let alive: Vec<&str> = names.iter().copied().filter(|n| *n != owner.name).collect();
    let heir = elected(&alive);
    let followed = poll::until(BOUND, || probe::neighbour6(&lab.client, VIP6).unwrap() == Some(heir.mac));
    assert!(
        followed.is_some(),
        "the client's entry for {VIP6} stayed {:02x?}, not {}'s {}",
        probe::neighbour6(&lab.client, VIP6).unwrap(),
        heir.name,
        format_mac(heir.mac)
    );
    // And the heir answers solicitations too.
    assert_eq!(probe::resolve6(&lab.client, VIP6).unwrap(), Some(heir.mac));
}

/// One node announces 2,500 IPv6 addresses, each in a group of its own: more than one socket
/// may hold at the kernel's default `optmem_max` (about 365 groups with 6.1's, 2,340 with
/// 128 kB). Every group is joined, the last address resolves, and on exit every group is left.
#[test]
fn thousands_of_ipv6_addresses_join_every_group() {
    if !root_or_skip("thousands_of_ipv6_addresses_join_every_group") {
        return;
    }
    const COUNT: u16 = 2_500;
    // 2001:db8::1:0 onwards: distinct last 24 bits, so distinct groups.
    let address = |i: u16| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, i);
    let mut text = String::from("node = \"node-a\"\n");
    for i in 0..COUNT {
        text.push_str(&format!("[[vip]]\naddress = \"{}\"\n", address(i)));
    }
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let speaker = Speaker::start(&mut lab, &node, &text, &[]).expect("speaker");
    let ours = |host: &Host| groups(host).lines().filter(|l| l.contains("ff02::1:ff01:")).count();
    let joined = poll::until(Duration::from_secs(30), || ours(&node) == usize::from(COUNT));
    assert!(joined.is_some(), "{} of {COUNT} groups joined\n{}", ours(&node), speaker.log_text());
    let last = address(COUNT - 1);
    assert_eq!(probe::resolve6(&lab.client, last).unwrap(), Some(node.mac), "{last} not answered");
    assert!(speaker.stop(&mut lab).unwrap().success());
    assert_eq!(ours(&node), 0, "groups left joined after exit");
}
