//! 802.1Q tags, whatever the NIC does with them: the speaker answers an ARP request or a
//! Neighbor Solicitation only for the VLAN its entry names (0 = untagged), and the reply carries
//! the request's tag. Every datapath mode, with VLAN offloads on (the kernel's default: tags
//! travel beside the frames) and off (tags in the frames). Needs root.
//!
//! The client sends tagged requests itself through a packet socket and reads the replies, whole,
//! from a capture (libpcap puts a tag that travelled beside a frame back in its place).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use herald_speaker::frame::{ARP_REPLY, Arp};
use herald_tests::{
    lab::{Lab, VlanOffload, format_mac},
    ndp,
    probe::{self, Capture},
    root_or_skip,
    speaker::{self, Speaker},
};

/// `--datapath` values and the program each attaches; `xdp` where XDP can know every VLAN.
fn modes() -> Vec<(&'static str, &'static str)> {
    speaker::datapaths()
}
/// Answered untagged only.
const UNTAGGED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// Answered on VLAN 42 only.
const ON_42: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
/// The same for IPv6: answered untagged only, and on VLAN 42 only.
const UNTAGGED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);
const ON_42_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x42, 0, 0, 0, 0, 0x200);

/// One row: a request for `target` with `tag`, and the tag of the reply (`None`: no reply).
struct Row {
    target: IpAddr,
    tag: Option<u16>,
    reply: Option<Option<u16>>,
}

const fn row(target: IpAddr, tag: Option<u16>, reply: Option<Option<u16>>) -> Row {
    Row { target, tag, reply }
}

const ROWS: &[Row] = &[
    row(IpAddr::V4(UNTAGGED), None, Some(None)),
    row(IpAddr::V4(UNTAGGED), Some(42), None),
    row(IpAddr::V4(UNTAGGED), Some(43), None),
    row(IpAddr::V4(ON_42), Some(42), Some(Some(42))),
    row(IpAddr::V4(ON_42), None, None),
    row(IpAddr::V4(ON_42), Some(43), None),
    row(IpAddr::V6(UNTAGGED6), None, Some(None)),
    row(IpAddr::V6(UNTAGGED6), Some(42), None),
    row(IpAddr::V6(ON_42_6), Some(42), Some(Some(42))),
    row(IpAddr::V6(ON_42_6), None, None),
    row(IpAddr::V6(ON_42_6), Some(43), None),
];

#[test]
fn vlan_table() {
    if !root_or_skip("vlan_table") {
        return;
    }
    let mut failures = Vec::new();
    for offload in [VlanOffload::On, VlanOffload::Off] {
        for (mode, program) in modes() {
            failures.extend(run(offload, mode, program));
        }
    }
    assert!(failures.is_empty(), "{} wrong answers:\n{}", failures.len(), failures.join("\n"));
}

/// The rows that went wrong in one configuration.
fn run(offload: VlanOffload, mode: &str, program: &str) -> Vec<String> {
    let mut lab = Lab::with_vlan_offload(&["node-a"], offload).expect("lab");
    let node = lab.node("node-a").clone();
    let config = format!(
        "node = \"node-a\"\n[gratuitous]\ncount = 0\n\
         [[vip]]\naddress = \"{UNTAGGED}\"\ninterface = \"eth0\"\n\
         [[vip]]\naddress = \"{ON_42}\"\ninterface = \"eth0\"\nvlan = 42\n\
         [[vip]]\naddress = \"{UNTAGGED6}\"\ninterface = \"eth0\"\n\
         [[vip]]\naddress = \"{ON_42_6}\"\ninterface = \"eth0\"\nvlan = 42\n"
    );
    let speaker = Speaker::start(&mut lab, &node, &config, &["--datapath", mode]).expect("speaker");
    let attached = speaker.attached().expect("bpftool");
    assert!(
        attached.len() == 1 && attached[0].ends_with(program),
        "--datapath {mode}: expected {program} on eth0, found {attached:?}\n{}",
        speaker.log_text()
    );
    let capture = Capture::answer_frames(&lab.client).expect("capture");
    let mut wrong = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        // A requester address per row, so a late reply cannot pass for another row's.
        let (request, expected, asker) = exchange(row, i as u8, lab.client.mac, node.mac);
        let seen = capture.mark();
        probe::send_frames(&lab.client, vec![request]).expect("send");
        std::thread::sleep(Duration::from_millis(200));
        let replies: Vec<Vec<u8>> =
            probe::frames(&capture.lines_from(seen)).into_iter().filter(|f| is_reply_to(f, asker)).collect();
        let ok = match &expected {
            None => replies.is_empty(),
            Some(want) => replies.len() == 1 && same_frame(&replies[0], want),
        };
        if !ok {
            let want = expected.map_or("no reply".into(), |w| format!("{w:02x?}"));
            wrong.push(format!(
                "{mode}, VLAN offload {offload:?}: request for {} tagged {:?}: expected {want}, got {replies:02x?} (node {})",
                row.target,
                row.tag,
                format_mac(node.mac)
            ));
        }
    }
    wrong
}

/// The request of `row` (the `i`th) from the client at `client`, the reply expected from the node
/// at `node` (if any), and the address the request came from.
fn exchange(row: &Row, i: u8, client: [u8; 6], node: [u8; 6]) -> (Vec<u8>, Option<Vec<u8>>, IpAddr) {
    match row.target {
        IpAddr::V4(target) => {
            let asker = Ipv4Addr::new(203, 0, 113, 1 + i);
            let request = Arp { vlan: row.tag, ..Arp::request(client, asker, target) };
            let reply = row.reply.map(|tag| {
                let arp = Arp {
                    eth_dst: client,
                    eth_src: node,
                    vlan: tag,
                    op: ARP_REPLY,
                    sha: node,
                    spa: target,
                    tha: client,
                    tpa: asker,
                };
                arp.to_bytes()
            });
            (request.to_bytes(), reply, asker.into())
        }
        IpAddr::V6(target) => {
            let asker = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1 + u16::from(i));
            let request = ndp::Packet { vlan: row.tag, ..ndp::solicitation(client, asker, target) };
            let reply = row.reply.map(|tag| {
                ndp::Packet {
                    eth_dst: client,
                    eth_src: node,
                    vlan: tag,
                    src: target,
                    dst: asker,
                    kind: 136,
                    flags: [0x60, 0, 0, 0],
                    options: ndp::link_addr_option(2, node),
                    ..request.clone()
                }
                .to_bytes()
            });
            (request.to_bytes(), reply, asker.into())
        }
    }
}

/// Whether `frame` is an ARP reply or a Neighbor Advertisement (tagged or not) addressed to
/// `asker`.
fn is_reply_to(frame: &[u8], asker: IpAddr) -> bool {
    let (ethertype, body) = match frame.get(12..14) {
        Some([0x81, 0x00]) => (frame.get(16..18), frame.get(18..)),
        _ => (frame.get(12..14), frame.get(14..)),
    };
    let Some(body) = body else { return false };
    match (ethertype, asker) {
        (Some([0x08, 0x06]), IpAddr::V4(a)) => {
            body.len() >= 28 && body[6..8] == [0, 2] && body[24..28] == a.octets()
        }
        (Some([0x86, 0xdd]), IpAddr::V6(a)) => {
            body.len() >= 41 && body[40] == 136 && body[24..40] == a.octets()
        }
        _ => false,
    }
}

/// `got` is `want`, perhaps padded to Ethernet's minimum with zeros.
fn same_frame(got: &[u8], want: &[u8]) -> bool {
    got.len() >= want.len() && got[..want.len()] == *want && got[want.len()..].iter().all(|b| *b == 0)
}
