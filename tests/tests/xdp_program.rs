//! Herald's responder, run by the kernel on frames we hand it (BPF_PROG_TEST_RUN), at both of
//! its hooks (XDP and TC ingress): each case states the exact verdict and the exact bytes that
//! come out. Needs root (CI runs it as root).

use std::net::Ipv4Addr;

use rand::RngExt as _;

use herald_speaker::{
    clock::monotonic_ns,
    frame::{ARP_REPLY, Arp, BROADCAST},
};
use herald_tests::{
    root_or_skip, seeded,
    test_run::{BOUND_NS, Fixture, Hook, LO, Verdict},
};
use speaker_common::ArpKey;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const VIP_VLAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
const NODE_MAC: [u8; 6] = [0x02, 0x4e, 0x4f, 0x44, 0x45, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0x1e, 0x47, 0x00, 0x01];
const OTHER_MAC: [u8; 6] = [0x02, 0x07, 0x07, 0x07, 0x07, 0x07];
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// An address another node announces (a Service proxy bound it here too).
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 240);

/// Both programs, VIP answered untagged and VIP_VLAN on VLAN 42, ELSEWHERE's requests dropped,
/// with a fresh heartbeat.
fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.insert(ArpKey::new(VIP.octets(), LO, 0), NODE_MAC);
    f.insert(ArpKey::new(VIP_VLAN.octets(), LO, 42), NODE_MAC);
    f.insert_elsewhere(ELSEWHERE);
    f
}

fn request(target: Ipv4Addr) -> Arp {
    Arp::request(CLIENT_MAC, CLIENT_IP, target)
}

/// The reply RFC 826 prescribes to `req`, from NODE_MAC.
fn reply_to(req: &Arp) -> Arp {
    Arp {
        eth_dst: req.sha,
        eth_src: NODE_MAC,
        vlan: req.vlan,
        op: ARP_REPLY,
        sha: NODE_MAC,
        spa: req.tpa,
        tha: req.sha,
        tpa: req.spa,
    }
}

fn with(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = request(VIP).to_bytes();
    f(&mut bytes);
    bytes
}

#[test]
fn answers_requests_for_announced_addresses() {
    if !root_or_skip("answers_requests_for_announced_addresses") {
        return;
    }
    for hook in Hook::ALL {
        let f = fixture();
        let req = request(VIP);
        f.assert_answer(hook, "broadcast request", &req.to_bytes(), &reply_to(&req).to_bytes());

        let unicast = Arp { eth_dst: NODE_MAC, ..req };
        f.assert_answer(
            hook,
            "request unicast to our MAC",
            &unicast.to_bytes(),
            &reply_to(&unicast).to_bytes(),
        );

        // An ARP probe (RFC 5227, sender 0.0.0.0) is answered too: it defends the address.
        let probe = Arp { spa: Ipv4Addr::UNSPECIFIED, ..req };
        f.assert_answer(hook, "ARP probe", &probe.to_bytes(), &reply_to(&probe).to_bytes());

        // Ethernet padding to 60 bytes stays as it was.
        let mut padded = req.to_bytes();
        padded.resize(60, 0xaa);
        let mut padded_reply = reply_to(&req).to_bytes();
        padded_reply.resize(60, 0xaa);
        f.assert_answer(hook, "padded request", &padded, &padded_reply);

        let tagged = Arp { vlan: Some(42), ..request(VIP_VLAN) };
        f.assert_answer(
            hook,
            "request on VLAN 42, tag kept",
            &tagged.to_bytes(),
            &reply_to(&tagged).to_bytes(),
        );

        let replies = |key: ArpKey| f.entry(key).replies;
        assert_eq!(replies(ArpKey::new(VIP.octets(), LO, 0)), 4, "{hook:?}: each reply counted on its entry");
        assert_eq!(replies(ArpKey::new(VIP_VLAN.octets(), LO, 42)), 1, "{hook:?}");
    }
}

#[test]
fn passes_everything_else_unchanged() {
    if !root_or_skip("passes_everything_else_unchanged") {
        return;
    }
    let f = fixture();
    let req = request(VIP);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("IPv4 EtherType", with(|b| b[12..14].copy_from_slice(&[0x08, 0x00]))),
        ("IPv6 EtherType", with(|b| b[12..14].copy_from_slice(&[0x86, 0xdd]))),
        ("ARP reply", Arp { op: ARP_REPLY, ..req }.to_bytes()),
        ("op 3 (RARP request)", Arp { op: 3, ..req }.to_bytes()),
        ("gratuitous ARP request", Arp { spa: VIP, ..req }.to_bytes()),
        ("gratuitous ARP reply", Arp { spa: VIP, op: ARP_REPLY, eth_dst: BROADCAST, ..req }.to_bytes()),
        ("request for another address", request(Ipv4Addr::new(192, 0, 2, 201)).to_bytes()),
        ("request for a node's own address", request(Ipv4Addr::new(192, 0, 2, 1)).to_bytes()),
        ("unicast request to another MAC", Arp { eth_dst: OTHER_MAC, ..req }.to_bytes()),
        ("multicast destination", Arp { eth_dst: [0x01, 0, 0x5e, 0, 0, 1], ..req }.to_bytes()),
        ("group sender hardware address", Arp { sha: [0x01, 0, 0x5e, 0, 0, 1], ..req }.to_bytes()),
        ("group Ethernet source", Arp { eth_src: [0x03, 0, 0, 0, 0, 1], ..req }.to_bytes()),
        ("htype 6 (IEEE 802)", with(|b| b[15] = 6)),
        ("ptype IPv6", with(|b| b[16..18].copy_from_slice(&[0x86, 0xdd]))),
        ("hlen 8", with(|b| b[18] = 8)),
        ("plen 16", with(|b| b[19] = 16)),
        ("untagged request, entry only on VLAN 42", request(VIP_VLAN).to_bytes()),
        ("VLAN 42 request, entry only untagged", Arp { vlan: Some(42), ..req }.to_bytes()),
        ("VLAN 43 request, entry on VLAN 42", Arp { vlan: Some(43), ..request(VIP_VLAN) }.to_bytes()),
        ("two 802.1Q tags (QinQ)", qinq(0x8100)),
        ("802.1ad outer tag", qinq(0x88a8)),
        ("802.1Q tag around IPv4", {
            let mut b = Arp { vlan: Some(42), ..request(VIP_VLAN) }.to_bytes();
            b[16..18].copy_from_slice(&[0x08, 0x00]);
            b
        }),
    ];
    for hook in Hook::ALL {
        for (name, frame) in &cases {
            f.assert_pass(hook, name, frame);
        }
    }
    assert_eq!(f.entry(ArpKey::new(VIP.octets(), LO, 0)).replies, 0, "nothing passed was counted");
}

/// A request for VIP_VLAN behind two tags: outer `outer_tpid` VLAN 7, inner 802.1Q VLAN 42.
fn qinq(outer_tpid: u16) -> Vec<u8> {
    let inner = Arp { vlan: Some(42), ..request(VIP_VLAN) }.to_bytes();
    let mut b = inner[..12].to_vec();
    b.extend_from_slice(&outer_tpid.to_be_bytes());
    b.extend_from_slice(&7u16.to_be_bytes());
    b.extend_from_slice(&inner[12..]);
    b
}

#[test]
fn truncated_frames_pass_at_every_length() {
    if !root_or_skip("truncated_frames_pass_at_every_length") {
        return;
    }
    let f = fixture();
    for hook in Hook::ALL {
        for full in [request(VIP).to_bytes(), Arp { vlan: Some(42), ..request(VIP_VLAN) }.to_bytes()] {
            for len in 0..full.len() {
                let frame = &full[..len];
                if len < 14 {
                    // The kernel refuses to run a program on less than an Ethernet header (a
                    // driver never delivers such a frame), so there is no verdict to check.
                    assert!(f.run(hook, frame).is_err(), "{hook:?}: the kernel ran a {len}-byte frame");
                } else {
                    f.assert_pass(hook, &format!("{len} of {} bytes", full.len()), frame);
                }
            }
            // The whole frame is answered: the cut-off points above were the only reason to pass.
            assert_eq!(f.run(hook, &full).unwrap().0, Verdict::Answer, "{hook:?}");
        }
    }
}

#[test]
fn stale_heartbeat_stops_answers() {
    if !root_or_skip("stale_heartbeat_stops_answers") {
        return;
    }
    let mut f = fixture();
    let req = request(VIP);
    for hook in Hook::ALL {
        let now = monotonic_ns();
        f.beat(now - BOUND_NS - 100_000_000);
        f.assert_pass(hook, "heartbeat older than the bound", &req.to_bytes());
        f.beat(0);
        f.assert_pass(hook, "no heartbeat ever", &req.to_bytes());
        f.beat(now + 60_000_000_000);
        f.assert_pass(hook, "heartbeat from the future", &req.to_bytes());
        f.beat(now - BOUND_NS / 2);
        f.assert_answer(hook, "heartbeat within the bound", &req.to_bytes(), &reply_to(&req).to_bytes());
    }
}

/// Requests for an address another node announces are dropped, whatever their VLAN or
/// destination MAC, so that this node's kernel never answers them (kube-proxy in IPVS mode binds
/// the address here too); while the speaker is alive only, and never what announces rather than
/// asks.
#[test]
fn drops_requests_for_addresses_another_node_announces() {
    if !root_or_skip("drops_requests_for_addresses_another_node_announces") {
        return;
    }
    for hook in Hook::ALL {
        let mut f = fixture();
        let req = request(ELSEWHERE);
        f.assert_drop(hook, "broadcast request", &req.to_bytes());
        f.assert_drop(hook, "request on VLAN 42", &Arp { vlan: Some(42), ..req }.to_bytes());
        f.assert_drop(
            hook,
            "unicast to another MAC (a cache refresh)",
            &Arp { eth_dst: OTHER_MAC, ..req }.to_bytes(),
        );
        f.assert_drop(hook, "ARP probe", &Arp { spa: Ipv4Addr::UNSPECIFIED, ..req }.to_bytes());
        assert_eq!(f.dropped(ELSEWHERE), 4, "{hook:?}: each drop counted");
        f.assert_pass(hook, "the owner's gratuitous ARP", &Arp { spa: ELSEWHERE, ..req }.to_bytes());
        f.assert_pass(hook, "a reply", &Arp { op: ARP_REPLY, ..req }.to_bytes());
        f.assert_pass(hook, "from a group address", &Arp { sha: [0x01, 0, 0x5e, 0, 0, 1], ..req }.to_bytes());
        f.assert_pass(hook, "another address", &request(Ipv4Addr::new(203, 0, 113, 241)).to_bytes());
        // Announced here and listed as elsewhere (a moment of a takeover): answered.
        f.insert_elsewhere(VIP);
        let mine = request(VIP);
        f.assert_answer(hook, "announced here", &mine.to_bytes(), &reply_to(&mine).to_bytes());
        // A hung speaker's node lets its kernel answer again (fail open).
        f.beat(monotonic_ns() - BOUND_NS - 100_000_000);
        f.assert_pass(hook, "heartbeat older than the bound", &req.to_bytes());
        assert_eq!(f.dropped(ELSEWHERE), 4, "{hook:?}: passes are not counted");
    }
}

/// The program against an independent model of what it must do, over frames mutated at random
/// from valid requests: it answers or drops exactly when the model says so, answers with the
/// model's bytes, and passes everything else unchanged.
#[test]
fn mutated_frames_match_the_model() {
    if !root_or_skip("mutated_frames_match_the_model") {
        return;
    }
    let mut f = fixture();
    let seeds = [
        request(VIP).to_bytes(),
        Arp { vlan: Some(42), ..request(VIP_VLAN) }.to_bytes(),
        Arp { eth_dst: NODE_MAC, ..request(VIP) }.to_bytes(),
        request(ELSEWHERE).to_bytes(),
    ];
    let mut rng = seeded(0x9e37_79b9_7f4a_7c15);
    let (mut answered, mut passed, mut dropped) = (0, 0, 0);
    for i in 0..6000 {
        if i % 500 == 0 {
            f.beat_now();
        }
        let mut frame = seeds[i % seeds.len()].clone();
        for _ in 0..rng.random_range(0..4) {
            let at = rng.random_range(0..frame.len());
            // Mostly flip to values that matter (0, 1, 0xff, neighbours), sometimes anything.
            frame[at] = match rng.random_range(0..4) {
                0 => 0,
                1 => 0xff,
                2 => frame[at].wrapping_add(1),
                _ => rng.random_range(0..=255u8),
            };
        }
        let cut = rng.random_range(0..8);
        if cut < 2 {
            frame.truncate(14 + rng.random_range(0..frame.len() - 13));
        }
        // Alternately through each hook: both must agree with the model.
        let hook = Hook::ALL[i % 2];
        let name = format!("frame {i} {frame:02x?}");
        match model(&frame) {
            Expect::Answer(reply) => {
                f.assert_answer(hook, &name, &frame, &reply);
                answered += 1;
            }
            Expect::Drop => {
                f.assert_drop(hook, &name, &frame);
                dropped += 1;
            }
            Expect::Pass => {
                f.assert_pass(hook, &name, &frame);
                passed += 1;
            }
        }
    }
    assert!(
        answered > 500 && passed > 500 && dropped > 200,
        "every path exercised: {answered} answered, {dropped} dropped, {passed} passed"
    );
}

/// What the model says the program does with a frame.
enum Expect {
    Answer(Vec<u8>),
    Drop,
    Pass,
}

/// What the program must do with `frame` given Fixture's entries.
fn model(frame: &[u8]) -> Expect {
    let Some(reply) = answer_model(frame) else {
        return if drop_model(frame) { Expect::Drop } else { Expect::Pass };
    };
    Expect::Answer(reply)
}

/// Whether `frame` is a request, from a unicast sender, for ELSEWHERE, on any VLAN.
fn drop_model(frame: &[u8]) -> bool {
    let l2 = match frame.get(12..14) {
        Some([0x08, 0x06]) => 14,
        Some([0x81, 0x00]) if frame.get(16..18) == Some(&[0x08, 0x06]) => 18,
        _ => return false,
    };
    let Some(arp) = frame.get(l2..l2 + 28) else { return false };
    let (sha, spa, tpa) = (&arp[8..14], &arp[14..18], &arp[24..28]);
    arp[..8] == [0, 1, 8, 0, 6, 4, 0, 1]
        && spa != tpa
        && sha[0] & 1 == 0
        && frame[6] & 1 == 0
        && tpa == ELSEWHERE.octets()
}

/// The reply to `frame` given Fixture's entries, or `None`.
fn answer_model(frame: &[u8]) -> Option<Vec<u8>> {
    let tpid = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    let (l2, vlan) = match tpid {
        0x0806 => (14, 0),
        0x8100 if frame.get(16..18)? == [0x08, 0x06] => {
            (18, u16::from_be_bytes(frame[14..16].try_into().ok()?) & 0xfff)
        }
        _ => return None,
    };
    let arp = frame.get(l2..l2 + 28)?;
    if arp[..8] != [0, 1, 8, 0, 6, 4, 0, 1] {
        return None;
    }
    let (sha, spa, tpa) = (&arp[8..14], &arp[14..18], &arp[24..28]);
    let tpa_ip = Ipv4Addr::new(tpa[0], tpa[1], tpa[2], tpa[3]);
    let known = (tpa_ip == VIP && vlan == 0) || (tpa_ip == VIP_VLAN && vlan == 42);
    let to_us = frame[..6] == BROADCAST || frame[..6] == NODE_MAC;
    if !known || !to_us || spa == tpa || sha[0] & 1 == 1 || frame[6] & 1 == 1 {
        return None;
    }
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(sha);
    out[6..12].copy_from_slice(&NODE_MAC);
    let a = l2;
    out[a + 7] = 2;
    out[a + 8..a + 14].copy_from_slice(&NODE_MAC);
    out[a + 14..a + 18].copy_from_slice(tpa);
    out[a + 18..a + 24].copy_from_slice(sha);
    out[a + 24..a + 28].copy_from_slice(spa);
    Some(out)
}

/// The speaker runs with CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW only (deploy/'s DaemonSet):
/// every program must verify with those, where the verifier is stricter than for root.
#[test]
fn programs_verify_with_the_daemonsets_capabilities_only() {
    if !root_or_skip("programs_verify_with_the_daemonsets_capabilities_only") {
        return;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set=-all,+bpf,+net_admin,+net_raw", "--inh-caps=-all"])
        .arg(herald_tests::workspace_bin("herald-verify"))
        .output()
        .expect("setpriv runs");
    assert!(
        out.status.success(),
        "refused without CAP_PERFMON/CAP_SYS_ADMIN: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
