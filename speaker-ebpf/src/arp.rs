//! ARP for the addresses in [`ARP`]: a request for one on the interface and VLAN it came in on
//! is answered; a request for one in [`ELSEWHERE`](crate::maps::ELSEWHERE) (another node
//! answers it) is dropped, so that this node's kernel does not answer too; an ARP reply or
//! gratuitous ARP that gives an announced address another host's MAC is counted as a conflict;
//! everything else passes on untouched. Statements at each decision go to aya-log, at the level
//! the speaker loaded the program with (`--xdp-log`); the verifier prunes the others.

use core::ptr::read_volatile;

use aya_ebpf::EbpfContext;
use speaker_common::AddressEntry;

use crate::{
    answer::{Answer, Kind, Verdict},
    frame::{
        ARPHRD_ETHER, ARPOP_REPLY, ARPOP_REQUEST, ArpEth, ETH_P_IP, EthHdr, Frame, Mac, bytes_eq,
        is_broadcast, is_group,
    },
    log::{debug, info, warn},
    maps::{arp_entry, count_claim, count_drop, count_reply, elsewhere, heartbeat_fresh, is_peer},
};

/// The ARP body at `L2`, on VLAN `vlan`; `None` passes it.
#[inline(always)]
pub(crate) fn decide<const L2: usize, C: EbpfContext>(
    ctx: &C,
    frame: Frame,
    ifindex: u32,
    vlan: u16,
) -> Option<Verdict> {
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
/// unicast sender, while the speaker is alive; dropped, while the speaker is alive, if another
/// node announces its target.
#[inline(always)]
fn request<const L2: usize, C: EbpfContext>(
    ctx: &C,
    eth: &EthHdr,
    arp: &ArpEth,
    ifindex: u32,
    vlan: u16,
) -> Option<Verdict> {
    let target = arp.tpa;
    // Never send a reply to a group address.
    if is_group(&arp.sha) || is_group(&eth.src) {
        debug!(ctx, "pass: request for {:i} from a group address", target);
        return None;
    }
    let Some(entry) = arp_entry(target, ifindex, vlan) else {
        // The heartbeat only where a drop hangs on it: a hung speaker's node passes (fail open).
        if let Some(dropped) = elsewhere(target)
            && heartbeat_fresh()
        {
            count_drop(dropped);
            debug!(ctx, "drop: {:i} is announced by another node", target);
            return Some(Verdict::Drop);
        }
        debug!(ctx, "pass: {:i} on VLAN {} is not announced on interface {}", target, vlan, ifindex);
        return None;
    };
    // SAFETY: map values stay valid for the whole program run; `mac` is only written by the
    // speaker.
    let mac = unsafe { (*entry).mac };
    if !(is_broadcast(&eth.dst) || bytes_eq(&eth.dst, &mac)) {
        debug!(ctx, "pass: request for {:i} sent to another MAC, {:mac}", target, eth.dst);
        return None;
    }
    if !heartbeat_fresh() {
        warn!(ctx, "pass: request for {:i}: dead-man tripped, the speaker's heartbeat is stale", target);
        return None;
    }
    debug!(ctx, "answer: {:i} on VLAN {} is at {:mac}, to {:mac}", target, vlan, mac, arp.sha);
    Some(Verdict::Answer(Answer { entry, l2: L2, kind: Kind::Arp, grow: 0 }))
}

/// A claim on an address (a reply or a gratuitous ARP): counted on the entry when it is one we
/// announce here and the claimed MAC is neither ours nor another Herald speaker's.
#[inline(always)]
fn claim<C: EbpfContext>(ctx: &C, arp: &ArpEth, ifindex: u32, vlan: u16) {
    let address = arp.spa;
    let Some(entry) = arp_entry(address, ifindex, vlan) else {
        return;
    };
    // SAFETY: a read inside the bounds checked by the caller, and of a live map value.
    let (claimed, ours) = unsafe { (Mac::read(&arp.sha), Mac::read(&raw const (*entry).mac)) };
    if claimed == ours {
        return;
    }
    if is_peer(claimed) {
        debug!(ctx, "pass: {:i} claimed by {:mac}, a Herald speaker taking over", address, claimed.bytes());
        return;
    }
    count_claim(entry, claimed);
    info!(ctx, "conflict: {:i} on VLAN {} claimed by {:mac}", address, vlan, claimed.bytes());
}

/// Rewrites the request with its ARP body at `L2` into its reply (RFC 826: to the requester,
/// from the entry's MAC), in place; `entry` is the answer's (a live map value).
#[inline(always)]
pub(crate) fn reply_at<const L2: usize>(frame: Frame, entry: *mut AddressEntry) -> Option<()> {
    let arp = frame.at::<ArpEth>(L2)?;
    let eth = frame.at::<EthHdr>(0)?;
    // SAFETY: `at` checked that both lie inside the packet; they do not overlap. Map values stay
    // valid for the whole program run.
    let (arp, eth) = unsafe { (&mut *arp, &mut *eth) };
    // Addresses are read first (the rewrite overwrites them), into registers: see [`Mac`].
    // SAFETY: plain reads of fields inside the bounds checked above, and of a live map value.
    unsafe {
        let (mac, requester_mac) = (Mac::read(&raw const (*entry).mac), Mac::read(&arp.sha));
        let (requester_ip, vip) = (read_volatile(&arp.spa), read_volatile(&arp.tpa));
        requester_mac.write(&mut eth.dst);
        mac.write(&mut eth.src);
        arp.op = ARPOP_REPLY;
        mac.write(&mut arp.sha);
        arp.spa = vip;
        requester_mac.write(&mut arp.tha);
        arp.tpa = requester_ip;
    }
    count_reply(entry);
    Some(())
}
