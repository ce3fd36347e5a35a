//! What the responder does besides answering, at both hooks (BPF_PROG_TEST_RUN): counting other
//! hosts' claims on announced addresses (ARP and Neighbor Discovery), and logging only at the
//! level it was loaded with.
//! Needs root.

use std::net::{Ipv4Addr, Ipv6Addr};

use herald_speaker::{
    clock::monotonic_ns,
    frame::{ARP_REPLY, Arp, BROADCAST},
};
use herald_tests::{
    ndp::{self, Packet, link_addr_option},
    root_or_skip,
    test_run::{Fixture, Hook, LO},
};
use speaker_common::{ArpKey, NdpKey};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const NODE_MAC: [u8; 6] = [0x02, 0x4e, 0x4f, 0x44, 0x45, 0x01];
const FOREIGN_MAC: [u8; 6] = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
const PEER_MAC: [u8; 6] = [0x02, 0x4e, 0x4f, 0x44, 0x45, 0x02];
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0x1e, 0x47, 0x00, 0x01];

/// A gratuitous ARP from `mac` for `ip`, on `vlan`.
fn gratuitous(mac: [u8; 6], ip: Ipv4Addr, vlan: Option<u16>) -> Vec<u8> {
    Arp { vlan, ..Arp::gratuitous(mac, ip, 0) }.to_bytes()
}

/// A reply from `mac` saying it has `ip`, to the client.
fn reply(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    Arp {
        eth_dst: CLIENT_MAC,
        eth_src: mac,
        vlan: None,
        op: ARP_REPLY,
        sha: mac,
        spa: ip,
        tha: CLIENT_MAC,
        tpa: Ipv4Addr::new(192, 0, 2, 100),
    }
    .to_bytes()
}

#[test]
fn claims_by_other_hosts_are_counted_on_the_entry() {
    if !root_or_skip("claims_by_other_hosts_are_counted_on_the_entry") {
        return;
    }
    for hook in Hook::ALL {
        let mut f = Fixture::new();
        let key = ArpKey::new(VIP.octets(), LO, 0);
        f.insert(key, NODE_MAC);
        f.add_peer(PEER_MAC);
        let not_counted: [(&str, Vec<u8>); 5] = [
            ("our own gratuitous ARP", gratuitous(NODE_MAC, VIP, None)),
            ("a Herald peer's gratuitous ARP (a takeover)", gratuitous(PEER_MAC, VIP, None)),
            ("a claim on another VLAN than the entry's", gratuitous(FOREIGN_MAC, VIP, Some(42))),
            (
                "a claim on an address not announced",
                gratuitous(FOREIGN_MAC, Ipv4Addr::new(192, 0, 2, 7), None),
            ),
            (
                "a broadcast reply from us",
                Arp { eth_dst: BROADCAST, ..Arp::request(NODE_MAC, VIP, VIP) }.to_bytes(),
            ),
        ];
        for (what, frame) in &not_counted {
            f.assert_pass(hook, what, frame);
        }
        assert_eq!(f.entry(key).conflicts, 0, "{hook:?}");
        assert_eq!(f.conflicts_total(), 0, "{hook:?}");

        let before = monotonic_ns();
        // Claims pass on untouched: the kernel and the other host sort out their own traffic.
        f.assert_pass(hook, "a foreign gratuitous ARP", &gratuitous(FOREIGN_MAC, VIP, None));
        let mut other = FOREIGN_MAC;
        other[5] = 0x01;
        f.assert_pass(hook, "a foreign host's reply", &reply(other, VIP));
        let entry = f.entry(key);
        assert_eq!(entry.conflicts, 2, "{hook:?}");
        assert_eq!(entry.conflict_mac, other, "{hook:?}: the last claim's MAC");
        assert!(entry.conflict_ns >= before && entry.conflict_ns <= monotonic_ns(), "{hook:?}: its time");
        assert_eq!(f.conflicts_total(), 2, "{hook:?}");
        assert_eq!(entry.replies, 0, "{hook:?}: nothing was answered");
    }
}

const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);

/// An unsolicited Advertisement from `mac` for `target`, with `option` (a target link-layer
/// option, or none) and `hop_limit`.
fn advertisement(mac: [u8; 6], target: Ipv6Addr, option: Option<[u8; 6]>, hop_limit: u8) -> Vec<u8> {
    Packet {
        eth_dst: [0x33, 0x33, 0, 0, 0, 1],
        eth_src: mac,
        hop_limit,
        dst: "ff02::1".parse().unwrap(),
        src: target,
        kind: 136,
        flags: [0x20, 0, 0, 0],
        options: option.map(|m| link_addr_option(2, m)).unwrap_or_default(),
        ..ndp::solicitation(mac, target, target)
    }
    .to_bytes()
}

/// As for ARP: an Advertisement that gives an announced IPv6 address another host's MAC (in its
/// target link-layer option, or as its sender without one) is counted; ours, a Herald peer's,
/// one for another address or with a hop limit below 255 are not. All pass on untouched.
#[test]
fn advertisements_by_other_hosts_are_counted_on_the_entry() {
    if !root_or_skip("advertisements_by_other_hosts_are_counted_on_the_entry") {
        return;
    }
    for hook in Hook::ALL {
        let mut f = Fixture::new();
        let key = NdpKey::new(VIP6.octets(), LO, 0);
        f.insert_ndp(key, NODE_MAC);
        f.add_peer(PEER_MAC);
        let other: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let not_counted: [(&str, Vec<u8>); 5] = [
            ("our own Advertisement", advertisement(NODE_MAC, VIP6, Some(NODE_MAC), 255)),
            ("a Herald peer's (a takeover)", advertisement(PEER_MAC, VIP6, Some(PEER_MAC), 255)),
            ("one for an address not announced", advertisement(FOREIGN_MAC, other, Some(FOREIGN_MAC), 255)),
            ("one routed here (hop limit 254)", advertisement(FOREIGN_MAC, VIP6, Some(FOREIGN_MAC), 254)),
            ("a Herald peer's without an option", advertisement(PEER_MAC, VIP6, None, 255)),
        ];
        for (what, frame) in &not_counted {
            f.assert_pass(hook, what, frame);
        }
        assert_eq!(f.ndp_entry(key).conflicts, 0, "{hook:?}");
        assert_eq!(f.conflicts_total(), 0, "{hook:?}");

        let before = monotonic_ns();
        f.assert_pass(
            hook,
            "a foreign Advertisement",
            &advertisement(FOREIGN_MAC, VIP6, Some(FOREIGN_MAC), 255),
        );
        let mut sender = FOREIGN_MAC;
        sender[5] = 0x01;
        f.assert_pass(hook, "a foreign one without an option", &advertisement(sender, VIP6, None, 255));
        let entry = f.ndp_entry(key);
        assert_eq!(entry.conflicts, 2, "{hook:?}");
        assert_eq!(entry.conflict_mac, sender, "{hook:?}: the last claim's MAC, its sender's");
        assert!(entry.conflict_ns >= before && entry.conflict_ns <= monotonic_ns(), "{hook:?}: its time");
        assert_eq!(f.conflicts_total(), 2, "{hook:?}");
    }
}

/// Logging costs nothing when off, and little below debug: with `--xdp-log off` the programs
/// come from the object without log statements, shorter than with debug by more than half (the
/// ARP path's statements are most of its code; the NDP path has none); with info, the verifier
/// prunes the debug statements, so the programs are shorter than with debug.
#[test]
fn log_statements_cost_only_at_their_level() {
    if !root_or_skip("log_statements_cost_only_at_their_level") {
        return;
    }
    let [off, info, debug] = [0, 3, 4].map(Fixture::with_log_level);
    for hook in Hook::ALL {
        let [off, info, debug] = [&off, &info, &debug].map(|f| f.translated_len(hook));
        eprintln!(
            "{hook:?}: bytes of instructions: {off} with logging off, {info} with info, {debug} with debug"
        );
        assert!(off > 0 && off * 2 < debug, "{hook:?}: {off} bytes off, {debug} with debug");
        assert!(off < info && info < debug, "{hook:?}: {off} off, {info} info, {debug} debug");
    }
}
