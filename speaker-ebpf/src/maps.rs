//! The maps the speaker fills and reads, and the globals it sets at load time.

use core::ptr::read_volatile;

use aya_ebpf::{
    btf_maps::{Array, HashMap},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
};
use speaker_common::{
    ARP_MAP_CAPACITY, ArpEntry, ArpKey, DEFAULT_DEAD_MAN_NS, Heartbeat, MacKey, NDP_MAP_CAPACITY, NdpKey,
    PEER_MAP_CAPACITY,
};

#[btf_map(name = "HERALD_ARP")]
pub static ARP: HashMap<ArpKey, ArpEntry, { ARP_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_NDP")]
pub static NDP: HashMap<NdpKey, ArpEntry, { NDP_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_HEARTBEAT")]
pub static HEARTBEAT: Array<Heartbeat, 1> = Array::new();

#[btf_map(name = "HERALD_PEERS")]
pub static PEERS: HashMap<MacKey, u32, { PEER_MAP_CAPACITY as usize }> = HashMap::new();

#[btf_map(name = "HERALD_CONFLICTS")]
pub static CONFLICTS: Array<u64, 1> = Array::new();

/// Dead-man bound in ns, set by the speaker at load time (`speaker_common::DEAD_MAN_GLOBAL`).
#[unsafe(no_mangle)]
static HERALD_DEAD_MAN_NS: u64 = DEFAULT_DEAD_MAN_NS;

/// Whether the speaker proved it is alive within the dead-man bound.
#[inline(always)]
pub fn heartbeat_fresh() -> bool {
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

/// Whether `mac` is another Herald speaker's.
#[inline(always)]
pub fn is_peer(mac: [u8; 6]) -> bool {
    PEERS.get_ptr(&MacKey::new(mac)).is_some()
}
