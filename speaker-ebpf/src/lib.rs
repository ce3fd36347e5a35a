//! Herald's XDP programs.
//!
//! `herald_arp` answers ARP requests for the IPv4 addresses held in [`ARP`] straight from the
//! driver, and passes every other frame to the kernel byte for byte unchanged. It fails open:
//! anything it does not fully understand is passed, never dropped or aborted. It answers only
//! while the speaker's heartbeat is fresh (the dead-man switch), so a killed or hung speaker
//! cannot keep an address alive.
//!
//! `herald_pass` passes everything: the peer-side program that native-mode XDP_TX on veth
//! needs, and the baseline of the benchmarks.
//!
//! IPv6 NDP will get its own map and its own path off the EtherType switch in [`try_arp`].
#![no_std]
#![no_main]
// `atomic_xadd`: BPF has an atomic add, but `core` offers `AtomicU64::fetch_add` only on targets
// with compare-and-swap.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic_xadd is the BPF atomic add")]

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    ptr::read_volatile,
};

use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_TX},
    btf_maps::{Array, HashMap},
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use speaker_common::{ARP_MAP_CAPACITY, ArpEntry, ArpKey, DEFAULT_DEAD_MAN_NS, Heartbeat};

#[btf_map(name = "HERALD_ARP")]
static ARP: HashMap<ArpKey, ArpEntry, { ARP_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_HEARTBEAT")]
static HEARTBEAT: Array<Heartbeat, 1> = Array::new();

/// Dead-man bound in ns, set by the speaker at load time (`speaker_common::DEAD_MAN_GLOBAL`).
#[unsafe(no_mangle)]
static HERALD_DEAD_MAN_NS: u64 = DEFAULT_DEAD_MAN_NS;

// Header fields are compared in wire order, against constants swapped at compile time.
const ETH_P_ARP: u16 = 0x0806u16.to_be();
const ETH_P_8021Q: u16 = 0x8100u16.to_be();
const ETH_P_IP: u16 = 0x0800u16.to_be();
const ARPHRD_ETHER: u16 = 1u16.to_be();
const ARPOP_REQUEST: u16 = 1u16.to_be();
const ARPOP_REPLY: u16 = 2u16.to_be();
const VLAN_VID_MASK: u16 = 0x0fff;

#[repr(C)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    proto: u16,
}
const ETH_HLEN: usize = size_of::<EthHdr>();
const _: () = assert!(ETH_HLEN == 14);

#[repr(C)]
struct VlanHdr {
    tci: u16,
    proto: u16,
}
const VLAN_HLEN: usize = size_of::<VlanHdr>();

/// ARP for Ethernet and IPv4 (RFC 826), as it sits in the frame.
#[repr(C)]
struct ArpEth {
    htype: u16,
    ptype: u16,
    hlen: u8,
    plen: u8,
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
}
const _: () = assert!(size_of::<ArpEth>() == 28);

#[xdp]
pub fn herald_arp(ctx: XdpContext) -> u32 {
    try_arp(&ctx).unwrap_or(XDP_PASS)
}

#[xdp]
pub fn herald_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// The verdict for one frame; `None` (pass) for anything that is not ours to answer.
#[inline(always)]
fn try_arp(ctx: &XdpContext) -> Option<u32> {
    // SAFETY: `ptr_at` checked the bounds; packet data is at least 2-byte aligned.
    let eth = unsafe { &*ptr_at::<EthHdr>(ctx, 0)? };
    match eth.proto {
        ETH_P_ARP => answer::<ETH_HLEN>(ctx, 0),
        ETH_P_8021Q => {
            // One 802.1Q tag. Behind a second tag (QinQ) the inner EtherType is not ARP: pass.
            // SAFETY: as above.
            let vlan = unsafe { &*ptr_at::<VlanHdr>(ctx, ETH_HLEN)? };
            if vlan.proto != ETH_P_ARP {
                return None;
            }
            answer::<{ ETH_HLEN + VLAN_HLEN }>(ctx, u16::from_be(vlan.tci) & VLAN_VID_MASK)
        }
        // 802.1ad outer tags, IPv4, IPv6 (NDP comes here later) and everything else.
        _ => None,
    }
}

/// Answers the ARP request that starts at offset `L2`, in place, if it asks for an address in
/// [`ARP`] on this interface and VLAN.
#[inline(always)]
fn answer<const L2: usize>(ctx: &XdpContext, vlan: u16) -> Option<u32> {
    // One bounds check covers the Ethernet header, the tag if any, and the whole ARP body.
    let arp = ptr_at::<ArpEth>(ctx, L2)?.cast_mut();
    let eth = ptr_at::<EthHdr>(ctx, 0)?.cast_mut();
    // SAFETY: `ptr_at` checked that both lie inside the packet; they do not overlap.
    let (arp, eth) = unsafe { (&mut *arp, &mut *eth) };

    if arp.htype != ARPHRD_ETHER
        || arp.ptype != ETH_P_IP
        || arp.hlen != 6
        || arp.plen != 4
        || arp.op != ARPOP_REQUEST
    {
        return None;
    }
    // Gratuitous ARP (sender = target) announces, it does not ask.
    if u32::from_ne_bytes(arp.spa) == u32::from_ne_bytes(arp.tpa) {
        return None;
    }
    // Never send a reply to a group address.
    if is_group(&arp.sha) || is_group(&eth.src) {
        return None;
    }

    let key = ArpKey::new(arp.tpa, ctx.ingress_ifindex() as u32, vlan);
    let entry = ARP.get_ptr_mut(&key)?;
    // SAFETY: map values stay valid for the whole program run; `mac` is only written by the
    // speaker, `replies` only through an atomic below.
    let mac = unsafe { (*entry).mac };
    if !(is_broadcast(&eth.dst) || mac_eq(&eth.dst, &mac)) {
        return None;
    }
    if !heartbeat_fresh() {
        return None;
    }

    // Rewrite the request into the reply (RFC 826): to the requester, from us. The fields are
    // read to the stack with volatile loads: otherwise LLVM turns the packet-to-packet copies
    // into a memmove, whose pointer subtraction the verifier refuses without CAP_PERFMON (the
    // speaker runs with CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW only).
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
    Some(XDP_TX)
}

/// Whether the speaker proved it is alive within the dead-man bound.
#[inline(always)]
fn heartbeat_fresh() -> bool {
    // SAFETY: read through a volatile load so the value set at load time is used, not the
    // compile-time default.
    let bound = unsafe { read_volatile(&HERALD_DEAD_MAN_NS) };
    let Some(beat) = HEARTBEAT.get(0) else {
        return false;
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // A beat of 0 means "never"; a beat in the future (clock skew cannot happen on one host, but
    // be safe) is treated as stale too.
    beat.monotonic_ns != 0 && now >= beat.monotonic_ns && now - beat.monotonic_ns <= bound
}

/// A pointer to a `T` at `offset` in the packet, if the whole `T` lies inside it.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

#[inline(always)]
fn is_broadcast(mac: &[u8; 6]) -> bool {
    mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5] == 0xff
}

/// Byte-wise comparison: `==` on arrays may become a `bcmp` call, which BPF does not have.
#[inline(always)]
fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5]) == 0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // verifier: unreachable in a loaded program; the verifier rejects unbounded code.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
