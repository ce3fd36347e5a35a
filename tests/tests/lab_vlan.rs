//! 802.1Q tags, whatever the NIC does with them: the speaker answers a request only for the VLAN
//! its entry names (0 = untagged), and the reply carries the request's tag. Every datapath mode,
//! with VLAN offloads on (the kernel's default: tags travel beside the frames) and off (tags in
//! the frames). Needs root.
//!
//! The client sends tagged requests itself through a packet socket and reads the replies, whole,
//! from a capture (libpcap puts a tag that travelled beside a frame back in its place).

use std::{net::Ipv4Addr, time::Duration};

use herald_speaker::frame::{ARP_REPLY, Arp};
use herald_tests::{
    lab::{Lab, VlanOffload, format_mac},
    probe::{self, Capture},
    root_or_skip,
    speaker::{self, Speaker},
};

/// `--datapath` values and the program each attaches; `xdp` where XDP can know every VLAN.
fn modes() -> Vec<(&'static str, &'static str)> {
    let mut modes = speaker::datapaths();
    if herald_tests::kernel_at_least(6, 8) {
        modes.push(("xdp", speaker::XDP_BOUND));
    }
    modes
}
/// Answered untagged only.
const UNTAGGED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// Answered on VLAN 42 only.
const ON_42: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

/// One row: a request for `target` with `tag`, and the tag of the reply (`None`: no reply).
struct Row {
    target: Ipv4Addr,
    tag: Option<u16>,
    reply: Option<Option<u16>>,
}

const ROWS: &[Row] = &[
    Row { target: UNTAGGED, tag: None, reply: Some(None) },
    Row { target: UNTAGGED, tag: Some(42), reply: None },
    Row { target: UNTAGGED, tag: Some(43), reply: None },
    Row { target: ON_42, tag: Some(42), reply: Some(Some(42)) },
    Row { target: ON_42, tag: None, reply: None },
    Row { target: ON_42, tag: Some(43), reply: None },
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
         [[vip]]\naddress = \"{ON_42}\"\ninterface = \"eth0\"\nvlan = 42\n"
    );
    let speaker = Speaker::start(&mut lab, &node, &config, &["--datapath", mode]).expect("speaker");
    let attached = speaker.attached().expect("bpftool");
    assert!(
        attached.len() == 1 && attached[0].ends_with(program),
        "--datapath {mode}: expected {program} on eth0, found {attached:?}\n{}",
        speaker.log_text()
    );
    let capture = Capture::arp_frames(&lab.client).expect("capture");
    let mut wrong = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        // A requester address per row, so a late reply cannot pass for another row's.
        let asker = Ipv4Addr::new(203, 0, 113, 1 + i as u8);
        let request = Arp { vlan: row.tag, ..Arp::request(lab.client.mac, asker, row.target) };
        let seen = capture.mark();
        probe::send_frames(&lab.client, vec![request.to_bytes()]).expect("send");
        std::thread::sleep(Duration::from_millis(200));
        let replies: Vec<Vec<u8>> =
            probe::frames(&capture.lines_from(seen)).into_iter().filter(|f| is_reply_to(f, asker)).collect();
        let expected = row.reply.map(|tag| {
            Arp {
                eth_dst: lab.client.mac,
                eth_src: node.mac,
                vlan: tag,
                op: ARP_REPLY,
                sha: node.mac,
                spa: row.target,
                tha: lab.client.mac,
                tpa: asker,
            }
            .to_bytes()
        });
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

/// Whether `frame` is an ARP reply (tagged or not) addressed to `asker`.
fn is_reply_to(frame: &[u8], asker: Ipv4Addr) -> bool {
    let arp = match frame.get(12..14) {
        Some([0x81, 0x00]) => frame.get(18..),
        _ => frame.get(14..),
    };
    arp.is_some_and(|a| a.len() >= 28 && a[6..8] == [0, 2] && a[24..28] == asker.octets())
}

/// `got` is `want`, perhaps padded to Ethernet's minimum with zeros.
fn same_frame(got: &[u8], want: &[u8]) -> bool {
    got.len() >= want.len() && got[..want.len()] == *want && got[want.len()..].iter().all(|b| *b == 0)
}
