//! Herald's Neighbor Discovery responder, run by the kernel on frames we hand it
//! (BPF_PROG_TEST_RUN), at both hooks (XDP and TC ingress): every RFC 4861 §7.1.1 rule that
//! makes a solicitation invalid, each kind of solicitation answered (§7.2.4), with the exact
//! bytes out and every checksum recomputed here, independently of the program. Needs root (CI
//! runs it as root).

use std::net::Ipv6Addr;

use rand::RngExt as _;

use herald_speaker::clock::monotonic_ns;
use herald_tests::{
    ndp::{self, Packet, icmpv6_checksum, link_addr_option, solicited_node},
    root_or_skip, seeded,
    test_run::{BOUND_NS, Fixture, Hook, LO, Verdict},
};
use speaker_common::NdpKey;

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xaa, 0x1200);
const VIP_VLAN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 42, 0, 0, 0xaa, 0x1200);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const NODE_MAC: [u8; 6] = [0x02, 0x4e, 0x4f, 0x44, 0x45, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0x1e, 0x47, 0x00, 0x01];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Both programs, VIP answered untagged and VIP_VLAN on VLAN 42, with a fresh heartbeat.
fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.insert_ndp(NdpKey::new(VIP.octets(), LO, 0), NODE_MAC);
    f.insert_ndp(NdpKey::new(VIP_VLAN.octets(), LO, 42), NODE_MAC);
    f
}

/// A multicast solicitation for `target` from CLIENT.
fn solicitation(target: Ipv6Addr) -> Packet {
    ndp::solicitation(CLIENT_MAC, CLIENT, target)
}

/// The Advertisement §7.2.4 prescribes in answer to `ns`, from NODE_MAC: to the soliciting
/// node with Solicited and Override, or to all nodes with Override only for a DAD probe; the
/// target link-layer option; the solicitation's padding (and any longer options) left as link
/// padding after it.
fn advertisement_for(ns: &Packet) -> Vec<u8> {
    let dad = ns.src == Ipv6Addr::UNSPECIFIED;
    let (eth_dst, dst, flags) =
        if dad { ([0x33, 0x33, 0, 0, 0, 1], ALL_NODES, 0x20) } else { (ns.eth_src, ns.src, 0x60) };
    let na = Packet {
        eth_dst,
        eth_src: NODE_MAC,
        vlan: ns.vlan,
        hop_limit: 255,
        next_header: 58,
        src: ns.target,
        dst,
        kind: 136,
        code: 0,
        flags: [flags, 0, 0, 0],
        target: ns.target,
        options: link_addr_option(2, NODE_MAC),
        checksum_error: 0,
        padding: 0,
    };
    let mut out = na.to_bytes();
    // A solicitation longer than the Advertisement keeps its length: its tail is padding now.
    let ns_len = ns.to_bytes().len();
    if ns_len > out.len() {
        let tail = ns.to_bytes()[out.len()..].to_vec();
        out.extend(tail);
    }
    out
}

#[test]
fn answers_solicitations_for_announced_addresses() {
    if !root_or_skip("answers_solicitations_for_announced_addresses") {
        return;
    }
    for hook in Hook::ALL {
        let f = fixture();
        let ns = solicitation(VIP);
        f.assert_answer(hook, "multicast solicitation", &ns.to_bytes(), &advertisement_for(&ns));

        // Unreachability detection: unicast to the address at our MAC, often without options;
        // the frame grows by the target link-layer option.
        let nud = Packet { eth_dst: NODE_MAC, dst: VIP, options: vec![], ..ns.clone() };
        f.assert_answer(hook, "unicast solicitation (NUD)", &nud.to_bytes(), &advertisement_for(&nud));

        // Duplicate Address Detection: from ::, without options, answered to all nodes, S=0.
        let dad = Packet { src: Ipv6Addr::UNSPECIFIED, options: vec![], ..ns.clone() };
        f.assert_answer(hook, "DAD probe", &dad.to_bytes(), &advertisement_for(&dad));

        // A nonce option (RFC 3971 §5.3.2, 8 bytes) besides the source address: the reply's
        // option takes the first's place, the rest stays as padding.
        let mut two = ns.clone();
        two.options.extend([14, 1, 1, 2, 3, 4, 5, 6]);
        f.assert_answer(hook, "two options", &two.to_bytes(), &advertisement_for(&two));

        let padded = Packet { padding: 10, ..ns.clone() };
        f.assert_answer(hook, "link padding", &padded.to_bytes(), &advertisement_for(&padded));

        let tagged = Packet { vlan: Some(42), ..solicitation(VIP_VLAN) };
        f.assert_answer(hook, "tagged, on its VLAN", &tagged.to_bytes(), &advertisement_for(&tagged));
        let entry = f.ndp_entry(NdpKey::new(VIP.octets(), LO, 0));
        assert_eq!(entry.replies, 5, "{hook:?}: replies counted on the entry");
    }
}

#[test]
fn passes_every_solicitation_rfc_4861_calls_invalid_and_every_other_packet() {
    if !root_or_skip("passes_every_solicitation_rfc_4861_calls_invalid_and_every_other_packet") {
        return;
    }
    let ns = solicitation(VIP);
    let (_, group_mac) = solicited_node(VIP);
    let cases: Vec<(&str, Packet)> = vec![
        ("hop limit 64 (from off link)", Packet { hop_limit: 64, ..ns.clone() }),
        ("code 1", Packet { code: 1, ..ns.clone() }),
        ("checksum wrong", Packet { checksum_error: 1, ..ns.clone() }),
        ("target multicast", Packet { target: ALL_NODES, ..ns.clone() }),
        ("an option of length 0", Packet { options: vec![1, 0, 0, 0, 0, 0, 0, 0], ..ns.clone() }),
        ("options longer than the message", Packet { options: vec![1, 2, 0, 0, 0, 0, 0, 0], ..ns.clone() }),
        ("DAD probe with a source link-layer option", Packet { src: Ipv6Addr::UNSPECIFIED, ..ns.clone() }),
        (
            "DAD probe not to the solicited-node group",
            Packet { src: Ipv6Addr::UNSPECIFIED, options: vec![], dst: VIP, eth_dst: NODE_MAC, ..ns.clone() },
        ),
        ("not announced", solicitation(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xbb, 0x1200))),
        ("announced on another VLAN", Packet { vlan: Some(7), ..ns.clone() }),
        ("untagged, announced only tagged", solicitation(VIP_VLAN)),
        (
            "to another node's solicited-node MAC",
            Packet { eth_dst: [0x33, 0x33, 0xff, 1, 2, 3], ..ns.clone() },
        ),
        ("unicast to another MAC", Packet { dst: VIP, eth_dst: CLIENT_MAC, ..ns.clone() }),
        ("from a group MAC", Packet { eth_src: group_mac, ..ns.clone() }),
        ("an advertisement", Packet { kind: 136, ..ns.clone() }),
        ("a router solicitation", Packet { kind: 133, ..ns.clone() }),
        ("a hop-by-hop header first", Packet { next_header: 0, ..ns.clone() }),
        ("UDP", Packet { next_header: 17, ..ns.clone() }),
        ("six options (longer than checked)", {
            let mut long = ns.clone();
            for _ in 0..5 {
                long.options.extend([14, 1, 0, 0, 0, 0, 0, 0]);
            }
            long
        }),
    ];
    for hook in Hook::ALL {
        let f = fixture();
        for (name, packet) in &cases {
            f.assert_pass(hook, name, &packet.to_bytes());
        }
        // The IPv6 version field is not 6.
        let mut bytes = ns.to_bytes();
        bytes[14] = 0x40;
        f.assert_pass(hook, "IP version 4 in an IPv6 header", &bytes);
        assert_eq!(f.ndp_entry(NdpKey::new(VIP.octets(), LO, 0)).replies, 0, "{hook:?}: nothing answered");
    }
}

#[test]
fn a_cut_short_solicitation_passes_at_every_length() {
    if !root_or_skip("a_cut_short_solicitation_passes_at_every_length") {
        return;
    }
    let f = fixture();
    for hook in Hook::ALL {
        for ns in [solicitation(VIP), Packet { vlan: Some(42), ..solicitation(VIP_VLAN) }] {
            let full = ns.to_bytes();
            // The kernel runs no program on less than an Ethernet header (see xdp_program.rs).
            for len in 14..full.len() {
                f.assert_pass(hook, &format!("{len} of {} bytes", full.len()), &full[..len]);
            }
            // The whole frame is answered: the cut-off points above were the only reason to pass.
            assert_eq!(f.run(hook, &full).unwrap().0, Verdict::Answer, "{hook:?}");
        }
    }
}

#[test]
fn a_stale_heartbeat_stops_the_answers() {
    if !root_or_skip("a_stale_heartbeat_stops_the_answers") {
        return;
    }
    let mut f = fixture();
    f.beat(monotonic_ns().saturating_sub(BOUND_NS + 1_000_000_000));
    for hook in Hook::ALL {
        f.assert_pass(hook, "dead-man tripped", &solicitation(VIP).to_bytes());
    }
}

/// The program against an independent model of RFC 4861's rules, over solicitations mutated at
/// random (most with their checksum made right again, so that the other rules are reached):
/// it answers exactly when the model says so, with the model's bytes, and passes everything
/// else unchanged.
#[test]
fn mutated_solicitations_match_the_model() {
    if !root_or_skip("mutated_solicitations_match_the_model") {
        return;
    }
    let mut f = fixture();
    let ns = solicitation(VIP);
    let seeds = [
        ns.to_bytes(),
        Packet { vlan: Some(42), ..solicitation(VIP_VLAN) }.to_bytes(),
        Packet { eth_dst: NODE_MAC, dst: VIP, options: vec![], ..ns.clone() }.to_bytes(),
        Packet { src: Ipv6Addr::UNSPECIFIED, options: vec![], ..ns.clone() }.to_bytes(),
    ];
    let mut rng = seeded(0x51f1_5eed_0000_0006);
    let (mut answered, mut passed) = (0, 0);
    for i in 0..6000 {
        if i % 500 == 0 {
            f.beat_now();
        }
        let mut frame = seeds[i % seeds.len()].clone();
        for _ in 0..rng.random_range(0..3) {
            let at = rng.random_range(0..frame.len());
            frame[at] = match rng.random_range(0..4) {
                0 => 0,
                1 => 0xff,
                2 => frame[at].wrapping_add(1),
                _ => rng.random_range(0..=255u8),
            };
        }
        if rng.random_range(0..4) > 0 {
            fix_checksum(&mut frame);
        }
        if rng.random_range(0..8) == 0 {
            frame.truncate(14 + rng.random_range(0..frame.len() - 13));
        }
        let hook = Hook::ALL[i % 2];
        match model(&frame) {
            Some(reply) => {
                f.assert_answer(hook, &format!("frame {i} {frame:02x?}"), &frame, &reply);
                answered += 1;
            }
            None => {
                f.assert_pass(hook, &format!("frame {i} {frame:02x?}"), &frame);
                passed += 1;
            }
        }
    }
    assert!(answered > 500 && passed > 500, "both paths exercised: {answered} answered, {passed} passed");
}

/// Where the IPv6 header starts and the VLAN, for an IPv6 frame untagged or behind one tag.
fn ipv6_at(frame: &[u8]) -> Option<(usize, u16)> {
    match frame.get(12..14)? {
        [0x86, 0xdd] => Some((14, 0)),
        [0x81, 0x00] if frame.get(16..18)? == [0x86, 0xdd] => {
            Some((18, u16::from_be_bytes([frame[14], frame[15]]) & 0xfff))
        }
        _ => None,
    }
}

fn addr(bytes: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap())
}

/// Rewrites the ICMPv6 checksum of `frame` as its header says the message lies, if it can.
fn fix_checksum(frame: &mut [u8]) {
    let Some((l3, _)) = ipv6_at(frame) else { return };
    let Some(ip) = frame.get(l3..l3 + 40) else { return };
    let (src, dst) = (addr(&ip[8..24]), addr(&ip[24..40]));
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let Some(message) = frame.get_mut(l3 + 40..l3 + 40 + len) else { return };
    if len < 4 {
        return;
    }
    message[2..4].copy_from_slice(&[0, 0]);
    let checksum = icmpv6_checksum(src, dst, message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
}

/// What the program must do with `frame` given the fixture's entries: the Advertisement, or
/// `None` (pass).
fn model(frame: &[u8]) -> Option<Vec<u8>> {
    let (l3, vlan) = ipv6_at(frame)?;
    let ip = frame.get(l3..l3 + 40)?;
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ip[0] >> 4 != 6 || ip[6] != 58 || ip[7] != 255 || !(24..=64).contains(&len) {
        return None;
    }
    let msg = frame.get(l3 + 40..l3 + 40 + len)?;
    let (src, dst, target) = (addr(&ip[8..24]), addr(&ip[24..40]), addr(&msg[8..24]));
    if msg[0] != 135 || msg[1] != 0 || icmpv6_checksum(src, dst, msg) != 0 || target.is_multicast() {
        return None;
    }
    let (mut at, mut source_link_addr) = (24, false);
    while at < len {
        let (kind, units) = (msg[at], usize::from(*msg.get(at + 1)?));
        if units == 0 {
            return None;
        }
        source_link_addr |= kind == 1;
        at += units * 8;
    }
    if at != len {
        return None;
    }
    let (group, group_mac) = solicited_node(target);
    let to_group = dst == group && frame[..6] == group_mac;
    let dad = src == Ipv6Addr::UNSPECIFIED;
    if dad && (source_link_addr || !to_group) {
        return None;
    }
    let known = (target == VIP && vlan == 0) || (target == VIP_VLAN && vlan == 42);
    let to_us = !dad && dst == target && frame[..6] == NODE_MAC;
    if !known || !(to_group || to_us) || frame[6] & 1 == 1 {
        return None;
    }
    // The reply: 32 bytes of message; a frame without room grows by 8 zeroed bytes.
    let mut out = frame.to_vec();
    if out.len() < l3 + 40 + 32 {
        out.extend([0; 8]);
    }
    let (eth_dst, to, flags) = if dad {
        ([0x33, 0x33, 0, 0, 0, 1], ALL_NODES, 0x20)
    } else {
        (<[u8; 6]>::try_from(&frame[6..12]).unwrap(), src, 0x60)
    };
    out[..6].copy_from_slice(&eth_dst);
    out[6..12].copy_from_slice(&NODE_MAC);
    out[l3..l3 + 8].copy_from_slice(&[0x60, 0, 0, 0, 0, 32, 58, 255]);
    out[l3 + 8..l3 + 24].copy_from_slice(&target.octets());
    out[l3 + 24..l3 + 40].copy_from_slice(&to.octets());
    let m = l3 + 40;
    out[m..m + 8].copy_from_slice(&[136, 0, 0, 0, flags, 0, 0, 0]);
    out[m + 24..m + 32].copy_from_slice(&link_addr_option(2, NODE_MAC));
    let checksum = icmpv6_checksum(target, to, &out[m..m + 32]);
    out[m + 2..m + 4].copy_from_slice(&checksum.to_be_bytes());
    Some(out)
}
