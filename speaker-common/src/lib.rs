//! What Herald's XDP program and its userspace speaker must agree on: map names, the layout of
//! map keys and values, and the load-time globals.
//!
//! Every type here is `#[repr(C)]`, plain integers and byte arrays only (no `bool`, enum or
//! `Option`), with explicit padding, so both sides see the same bytes and BTF describes them.
//! Addresses are kept in wire order (`[u8; 4]`), so neither side converts byte order.
#![no_std]

/// The XDP program that answers ARP requests for announced IPv4 addresses.
pub const ARP_PROGRAM: &str = "herald_arp";
/// A program that passes every frame. The lab puts it on the far end of veth pairs (native-mode
/// XDP_TX on veth needs a program on the peer) and the bench uses it as the baseline.
pub const PASS_PROGRAM: &str = "herald_pass";

/// Responder map for IPv4: [`ArpKey`] -> [`ArpEntry`]. IPv6 NDP will get a map of its own
/// (keyed by a 16-byte address) and a path of its own in the program.
pub const ARP_MAP: &str = "HERALD_ARP";
/// One-slot array holding the speaker's last heartbeat, as [`Heartbeat`].
pub const HEARTBEAT_MAP: &str = "HERALD_HEARTBEAT";
/// Capacity of [`ARP_MAP`].
pub const ARP_MAP_CAPACITY: u32 = 65_536;

/// Load-time global: how old (in ns of `CLOCK_MONOTONIC`) the heartbeat may be before the
/// program stops answering and passes every frame.
pub const DEAD_MAN_GLOBAL: &str = "HERALD_DEAD_MAN_NS";
/// Default dead-man bound: 2 s.
pub const DEFAULT_DEAD_MAN_NS: u64 = 2_000_000_000;

/// Key of [`ARP_MAP`]: answer for `addr` on frames received on `ifindex` with 802.1Q `vlan`
/// (0 for untagged frames).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArpKey {
    /// IPv4 address, wire order.
    pub addr: [u8; 4],
    pub ifindex: u32,
    /// VLAN id (12 bits), 0 when untagged.
    pub vlan: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<ArpKey>() == 12);

impl ArpKey {
    pub const fn new(addr: [u8; 4], ifindex: u32, vlan: u16) -> Self {
        Self { addr, ifindex, vlan, _pad: 0 }
    }
}

/// Value of [`ARP_MAP`]: the MAC to answer with, and how many replies the program sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpEntry {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Replies sent for this key; only the program increments it (atomically).
    pub replies: u64,
}
const _: () = assert!(size_of::<ArpEntry>() == 16);

impl ArpEntry {
    pub const fn new(mac: [u8; 6]) -> Self {
        Self { mac, _pad: [0; 2], replies: 0 }
    }
}

/// Value of [`HEARTBEAT_MAP`]'s only slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// `CLOCK_MONOTONIC` in ns when the speaker last proved it is alive; 0 = never.
    pub monotonic_ns: u64,
    /// The dead-man bound the program was loaded with, for `herald-speaker status` and bpftool
    /// readers. The program itself reads the load-time global.
    pub dead_man_ns: u64,
    /// The speaker's process id, so readers can tell a dead speaker from a live one.
    pub pid: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Heartbeat>() == 24);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers and byte arrays with explicit padding; every bit
    // pattern is valid.
    unsafe impl aya::Pod for super::ArpKey {}
    unsafe impl aya::Pod for super::ArpEntry {}
    unsafe impl aya::Pod for super::Heartbeat {}
}
