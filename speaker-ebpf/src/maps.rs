//! The maps the speaker fills and reads, and the globals it sets at load time.

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    ptr::write_volatile,
};

use crate::frame::{Ip6, Mac};
use aya_ebpf::{
    btf_maps::{Array, HashMap},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
};
use speaker_common::{
    ARP_MAP_CAPACITY, AddressEntry, ArpKey, ELSEWHERE_MAP_CAPACITY, Heartbeat, MacKey, NDP_MAP_CAPACITY,
    NdpKey, PEER_MAP_CAPACITY,
};

#[btf_map(name = "HERALD_ARP")]
pub static ARP: HashMap<ArpKey, AddressEntry, { ARP_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_NDP")]
pub static NDP: HashMap<NdpKey, AddressEntry, { NDP_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_HEARTBEAT")]
pub static HEARTBEAT: Array<Heartbeat, 1> = Array::new();

#[btf_map(name = "HERALD_PEERS")]
pub static PEERS: HashMap<MacKey, u32, { PEER_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_ELSEWHERE")]
pub static ELSEWHERE: HashMap<u32, u64, { ELSEWHERE_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_CONFLICTS")]
pub static CONFLICTS: Array<u64, 1> = Array::new();

/// Whether the speaker proved it is alive within the bound its last beat gave.
#[inline(always)]
pub fn heartbeat_fresh() -> bool {
    let Some(beat) = HEARTBEAT.get(0) else {
        return false;
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // A beat of 0 means "never"; a beat in the future (clock skew cannot happen on one host, but
    // be safe) is treated as stale too.
    beat.monotonic_ns != 0 && now >= beat.monotonic_ns && now - beat.monotonic_ns <= beat.dead_man_ns
}

/// Counts a claim on `entry`'s address by another host, at `claimed`: on the entry (with the
/// MAC and the time of the last one) and in the total the speaker polls.
#[inline(always)]
pub(crate) fn count_claim(entry: *mut AddressEntry, claimed: Mac) {
    // SAFETY: a live map value; `conflicts` is a naturally aligned u64 changed only atomically,
    // the MAC and the time are only written here (two claims at once may mix them: both are
    // foreign).
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).conflicts, 1);
        claimed.write(&raw mut (*entry).conflict_mac);
        write_volatile(&raw mut (*entry).conflict_ns, bpf_ktime_get_ns());
    }
    if let Some(total) = CONFLICTS.get_ptr_mut(0) {
        // SAFETY: a naturally aligned u64 in a live map value, changed only atomically.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(total, 1) };
    }
}

// Keys are built on the stack from whole 8-byte words: stored there a byte or two at a time,
// Linux 6.1's verifier refuses some of the stores without CAP_PERFMON (see `frame::Mac`).

/// Whether `mac` is another Herald speaker's.
#[inline(always)]
pub fn is_peer(mac: Mac) -> bool {
    // `MacKey`: the MAC, then 2 bytes of padding (zero).
    let key: u64 = mac.word();
    // SAFETY: a u64 has `MacKey`'s size (8) and at least its alignment (1).
    PEERS.get_ptr(unsafe { &*(&raw const key).cast::<MacKey>() }).is_some()
}

/// The drop count of `target` if another node announces it (a lookup and nothing more: on a LAN
/// most requests are for other hosts' addresses, and miss here).
#[inline(always)]
pub(crate) fn elsewhere(target: [u8; 4]) -> Option<*mut u64> {
    ELSEWHERE.get_ptr_mut(&u32::from_ne_bytes(target))
}

/// Counts one request dropped on `dropped`, an [`elsewhere`] count.
#[inline(always)]
pub(crate) fn count_drop(dropped: *mut u64) {
    // SAFETY: a naturally aligned u64 in a live map value, changed only atomically.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dropped, 1) };
}

/// The IPv4 entry of `target` on `ifindex` and `vlan`, if announced there.
#[inline(always)]
pub(crate) fn arp_entry(target: [u8; 4], ifindex: u32, vlan: u16) -> Option<*mut AddressEntry> {
    ARP.get_ptr_mut(&ArpKey::new(target, ifindex, vlan))
}

/// Counts one reply sent from `entry`.
#[inline(always)]
pub(crate) fn count_reply(entry: *mut AddressEntry) {
    // SAFETY: `replies` is a naturally aligned u64 inside a live map value, changed only
    // atomically.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).replies, 1) };
}

/// The IPv6 entry of `target` on `ifindex` and `vlan`, if announced there.
#[inline(always)]
pub fn ndp_entry(target: Ip6, ifindex: u32, vlan: u16) -> Option<*mut AddressEntry> {
    // `NdpKey`: the address, the ifindex, the VLAN, then 2 bytes of padding (zero).
    let [a, b] = target.words();
    let key: [u64; 3] = [a, b, u64::from(ifindex) | (u64::from(vlan) << 32)];
    const _: () = assert!(size_of::<NdpKey>() == 24 && align_of::<NdpKey>() <= 8);
    // SAFETY: as the assertion above; the words are laid out as `NdpKey`'s fields (little
    // endian, as BPF is here).
    NDP.get_ptr_mut(unsafe { &*(&raw const key).cast::<NdpKey>() })
}
