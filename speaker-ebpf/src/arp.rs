//! The responder, whichever hook runs it: what to do with one frame. An ARP request for an
//! address in [`ARP`] on the interface and VLAN it came in on is answered; an ARP reply or
//! gratuitous ARP that gives such an address another host's MAC is counted as a conflict;
//! everything else passes on untouched. Statements at each decision go to aya-log, at the level
//! the speaker loaded the program with (`--xdp-log`); the verifier prunes the others.

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{EbpfContext, helpers::bpf_ktime_get_ns};
use aya_log_ebpf::{debug, info, warn};
use speaker_common::{ArpEntry, ArpKey};

use crate::{
    frame::{
        ARPHRD_ETHER, ARPOP_REPLY, ARPOP_REQUEST, ArpEth, ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, EthHdr,
        Frame, TAGGED_HLEN, VLAN_VID_MASK, VlanHdr, is_broadcast, is_group, mac_eq,
    },
    maps::{ARP, CONFLICTS, heartbeat_fresh, is_peer},
};

/// Where a frame's 802.1Q tag is.
#[derive(Clone, Copy)]
pub enum Tag {
    /// In the frame, if it has one.
    InFrame,
    /// Beside it, with this TCI (host order): the device or the stack stripped it. The frame
    /// itself must then be untagged.
    Beside(u16),
}

/// A request this node answers: only [`decide`] makes one.
pub struct Answer {
    /// The entry it asked for: a live map value.
    entry: *mut ArpEntry,
    /// Where its ARP body starts: [`ETH_HLEN`], or [`TAGGED_HLEN`] behind a tag in the frame.
    l2: usize,
}

/// Whether `frame` may be an ARP request, whatever became of its tag: its EtherType is ARP
/// (untagged, or its tag stripped) or 802.1Q. Everything else passes at once.
#[inline(always)]
pub fn may_be_arp(frame: Frame) -> bool {
    // SAFETY: `at` checked the bounds; packet data is at least 2-byte aligned.
    frame.at::<EthHdr>(0).is_some_and(|eth| matches!(unsafe { (*eth).proto }, ETH_P_ARP | ETH_P_8021Q))
}

/// What to do with `frame`, received on `ifindex` with its tag where `tag` says: `None` passes
/// it on untouched.
#[inline(always)]
pub fn decide<C: EbpfContext>(ctx: &C, frame: Frame, ifindex: u32, tag: Tag) -> Option<Answer> {
    // SAFETY: `at` checked the bounds; packet data is at least 2-byte aligned.
    let eth = unsafe { &*frame.at::<EthHdr>(0)? };
    match (tag, eth.proto) {
        (Tag::InFrame, ETH_P_ARP) => arp::<ETH_HLEN, C>(ctx, frame, ifindex, 0),
        (Tag::InFrame, ETH_P_8021Q) => {
            // One 802.1Q tag. Behind a second tag (QinQ) the inner EtherType is not ARP: pass.
            // SAFETY: as above.
            let vlan = unsafe { &*frame.at::<VlanHdr>(ETH_HLEN)? };
            if vlan.proto != ETH_P_ARP {
                return None;
            }
            arp::<TAGGED_HLEN, C>(ctx, frame, ifindex, u16::from_be(vlan.tci) & VLAN_VID_MASK)
        }
        // A stripped tag and an untagged frame; a stripped tag and one in the frame is QinQ.
        (Tag::Beside(tci), ETH_P_ARP) => arp::<ETH_HLEN, C>(ctx, frame, ifindex, tci & VLAN_VID_MASK),
        // 802.1ad outer tags, IPv4, IPv6 (NDP comes here later) and everything else.
        _ => None,
    }
}

/// The ARP body at `L2`, on VLAN `vlan`.
#[inline(always)]
fn arp<const L2: usize, C: EbpfContext>(ctx: &C, frame: Frame, ifindex: u32, vlan: u16) -> Option<Answer> {
    // One bounds check covers the Ethernet header, the tag if any, and the whole ARP body.
    // SAFETY: `at` checked that both lie inside the packet.
    let arp = unsafe { &*frame.at::<ArpEth>(L2)? };
    let eth = unsafe { &*frame.at::<EthHdr>(0)? };
    if arp.htype != ARPHRD_ETHER || arp.ptype != ETH_P_IP || arp.hlen != 6 || arp.plen != 4 {
        return None;
    }
    let gratuitous = u32::from_ne_bytes(arp.spa) == u32::from_ne_bytes(arp.tpa);
    match arp.op {
        ARPOP_REQUEST if !gratuitous => request::<L2, C>(ctx, eth, arp, ifindex, vlan),
        // A reply, or a gratuitous ARP (sender = target): it announces, it does not ask.
        ARPOP_REQUEST | ARPOP_REPLY => {
            claim(ctx, arp, ifindex, vlan);
            None
        }
        _ => None,
    }
}

/// A request: answered if its target is announced here, to broadcast or to our MAC, from a
/// unicast sender, while the speaker is alive.
#[inline(always)]
fn request<const L2: usize, C: EbpfContext>(
    ctx: &C,
    eth: &EthHdr,
    arp: &ArpEth,
    ifindex: u32,
    vlan: u16,
) -> Option<Answer> {
    let target = arp.tpa;
    // Never send a reply to a group address.
    if is_group(&arp.sha) || is_group(&eth.src) {
        debug!(ctx, "pass: request for {:i} from a group address", target);
        return None;
    }
    let Some(entry) = ARP.get_ptr_mut(&ArpKey::new(target, ifindex, vlan)) else {
        debug!(ctx, "pass: {:i} on VLAN {} is not announced on interface {}", target, vlan, ifindex);
        return None;
    };
    // SAFETY: map values stay valid for the whole program run; `mac` is only written by the
    // speaker.
    let mac = unsafe { (*entry).mac };
    if !(is_broadcast(&eth.dst) || mac_eq(&eth.dst, &mac)) {
        debug!(ctx, "pass: request for {:i} sent to another MAC, {:mac}", target, eth.dst);
        return None;
    }
    if !heartbeat_fresh() {
        warn!(ctx, "pass: request for {:i}: dead-man tripped, the speaker's heartbeat is stale", target);
        return None;
    }
    debug!(ctx, "answer: {:i} on VLAN {} is at {:mac}, to {:mac}", target, vlan, mac, arp.sha);
    Some(Answer { entry, l2: L2 })
}

/// A claim on an address (a reply or a gratuitous ARP): counted on the entry when it is one we
/// announce here and the claimed MAC is neither ours nor another Herald speaker's.
#[inline(always)]
fn claim<C: EbpfContext>(ctx: &C, arp: &ArpEth, ifindex: u32, vlan: u16) {
    let address = arp.spa;
    let Some(entry) = ARP.get_ptr_mut(&ArpKey::new(address, ifindex, vlan)) else {
        return;
    };
    // SAFETY: a plain read inside the bounds checked by the caller.
    let claimed = unsafe { read_volatile(&arp.sha) };
    // SAFETY: map values stay valid for the whole program run.
    if mac_eq(&claimed, unsafe { &(*entry).mac }) {
        return;
    }
    if is_peer(claimed) {
        debug!(ctx, "pass: {:i} claimed by {:mac}, a Herald speaker taking over", address, claimed);
        return;
    }
    // SAFETY: as above; `conflicts` is a naturally aligned u64 changed only atomically, the MAC
    // and the time are only written here (two claims at once may mix them: both are foreign).
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).conflicts, 1);
        write_volatile(&raw mut (*entry).conflict_mac, claimed);
        write_volatile(&raw mut (*entry).conflict_ns, bpf_ktime_get_ns());
    }
    if let Some(total) = CONFLICTS.get_ptr_mut(0) {
        // SAFETY: a naturally aligned u64 in a live map value, changed only atomically.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(total, 1) };
    }
    info!(ctx, "conflict: {:i} on VLAN {} claimed by {:mac}", address, vlan, claimed);
}

/// Rewrites the request of `answer` into its reply (RFC 826: to the requester, from the entry's
/// MAC), in place, and counts it on the entry. `None` only where the frame is shorter than the
/// answer found it, which cannot happen, but the verifier needs the check.
#[inline(always)]
pub fn reply(frame: Frame, answer: &Answer) -> Option<()> {
    if answer.l2 == ETH_HLEN {
        reply_at::<ETH_HLEN>(frame, answer.entry)
    } else {
        reply_at::<TAGGED_HLEN>(frame, answer.entry)
    }
}

/// [`reply`] with the ARP body at `L2`; `entry` is the answer's (a live map value).
#[inline(always)]
fn reply_at<const L2: usize>(frame: Frame, entry: *mut ArpEntry) -> Option<()> {
    let arp = frame.at::<ArpEth>(L2)?;
    let eth = frame.at::<EthHdr>(0)?;
    // SAFETY: `at` checked that both lie inside the packet; they do not overlap. Map values stay
    // valid for the whole program run.
    let (arp, eth, mac) = unsafe { (&mut *arp, &mut *eth, (*entry).mac) };
    // The fields are read to the stack with volatile loads: otherwise LLVM turns the
    // packet-to-packet copies into a memmove, whose pointer subtraction the verifier refuses
    // without CAP_PERFMON (the speaker runs with CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW only).
    // SAFETY: plain reads of fields inside the bounds checked above.
    let (requester_mac, requester_ip, vip) =
        unsafe { (read_volatile(&arp.sha), read_volatile(&arp.spa), read_volatile(&arp.tpa)) };
    eth.dst = requester_mac;
    eth.src = mac;
    arp.op = ARPOP_REPLY;
    arp.sha = mac;
    arp.spa = vip;
    arp.tha = requester_mac;
    arp.tpa = requester_ip;
    // SAFETY: `replies` is a naturally aligned u64 inside a live map value.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).replies, 1) };
    Some(())
}

/// [`reply_at`] for a request whose tag was stripped: the reply carries the tag in the frame.
/// The caller made room with `bpf_xdp_adjust_head(-4)`, so the frame now holds 4 free bytes, the
/// request's MACs and EtherType, and its ARP body at [`TAGGED_HLEN`]; the MACs are rewritten
/// anyway, so only the EtherType 0x8100 and the TCI go in between. Nothing is written unless the
/// whole tagged reply fits.
#[inline(always)]
pub fn reply_tagged(frame: Frame, answer: &Answer, tci: u16) -> Option<()> {
    let eth = frame.at::<EthHdr>(0)?;
    let vlan = frame.at::<VlanHdr>(ETH_HLEN)?;
    frame.at::<ArpEth>(TAGGED_HLEN)?;
    reply_at::<TAGGED_HLEN>(frame, answer.entry)?;
    // SAFETY: `at` checked the bounds.
    unsafe {
        (*eth).proto = ETH_P_8021Q;
        (*vlan).tci = tci.to_be();
    }
    Some(())
}
