//! What Herald's XDP program and its userspace speaker must agree on: map names, the layout of
//! map keys and values, and the load-time globals.
//!
//! Every type here is `#[repr(C)]`, plain integers and byte arrays only (no `bool`, enum or
//! `Option`), with explicit padding, so both sides see the same bytes and BTF describes them.
//! Addresses are kept in wire order (`[u8; 4]`), so neither side converts byte order.
#![no_std]

/// The responder at XDP, answering ARP requests and Neighbor Solicitations for announced
/// addresses, for devices that leave 802.1Q tags in the frames (rx VLAN offload off).
pub const XDP_PROGRAM: &str = "herald_xdp";
/// The same responder for devices that may strip tags: it asks the driver for a stripped tag
/// (the XDP RX-metadata kfunc, kernel >= 6.8), so it is loaded bound to one device. It lives in
/// an object of its own ([`META_OBJECT_NAME`]): a kernel without the kfunc cannot load the
/// main object otherwise.
pub const XDP_META_PROGRAM: &str = "herald_xdp_meta";
/// The same responder at TC ingress (clsact), where the kernel shows a stripped tag in
/// `__sk_buff`: for devices whose driver cannot tell XDP about stripped tags.
pub const TC_PROGRAM: &str = "herald_tc";
/// A program that passes every frame. The lab puts it on the far end of veth pairs (native-mode
/// XDP_TX on veth needs a program on the peer) and the bench uses it as the baseline.
pub const PASS_PROGRAM: &str = "herald_pass";
/// The names earlier releases gave the responders (they served NDP too, under ARP's name):
/// what such a release left attached is Herald's, to take over or remove, never another's.
pub const EARLIER_PROGRAMS: [&str; 3] = ["herald_arp", "herald_arp_meta", "herald_arp_tc"];
/// The earlier name of [`TC_PROGRAM`], as a filter an earlier release left carries it.
pub const EARLIER_TC_PROGRAM: &str = EARLIER_PROGRAMS[2];

/// Whether a program the kernel holds, by the name it keeps, is one of Herald's responders, of
/// this release or an earlier one.
pub fn is_herald_program(name: &str) -> bool {
    [XDP_PROGRAM, XDP_META_PROGRAM, TC_PROGRAM].contains(&name) || EARLIER_PROGRAMS.contains(&name)
}

/// The file name of the object that holds [`XDP_META_PROGRAM`].
pub const META_OBJECT_NAME: &str = "herald-meta";

/// Responder map for IPv4: [`ArpKey`] -> [`AddressEntry`].
pub const ARP_MAP: &str = "HERALD_ARP";
/// Responder map for IPv6 (Neighbor Discovery): [`NdpKey`] -> [`AddressEntry`], the same value as
/// for IPv4 (the MAC to answer with, and the counters).
pub const NDP_MAP: &str = "HERALD_NDP";
/// Capacity of [`NDP_MAP`].
pub const NDP_MAP_CAPACITY: u32 = 65_536;
/// One-slot array holding the speaker's last heartbeat, as [`Heartbeat`].
pub const HEARTBEAT_MAP: &str = "HERALD_HEARTBEAT";
/// Capacity of [`ARP_MAP`].
pub const ARP_MAP_CAPACITY: u32 = 65_536;
/// The MACs of the other Herald speakers of the cluster: [`MacKey`] -> `u32` (unused). Their
/// gratuitous ARP for an address (a takeover) is not a conflict.
pub const PEER_MAP: &str = "HERALD_PEERS";
/// Capacity of [`PEER_MAP`]: a thousand nodes with up to four announcing interfaces each (the
/// speaker keeps it to the members', and those gone lately).
pub const PEER_MAP_CAPACITY: u32 = 4096;
/// The IPv4 addresses Herald announces from another node, whose ARP requests this node drops
/// while its speaker is alive: kube-proxy in IPVS mode (and kube-router) bind every Service
/// address on every node, and a kernel that answers ARP for any local address (`arp_ignore` 0,
/// the default) would answer beside the owner. The address in wire order, as a `u32` ->
/// requests dropped (`u64`, only the program increments it). IPv6 needs no such map: a kernel
/// answers a Neighbor Solicitation only on the interface that holds the address.
pub const ELSEWHERE_MAP: &str = "HERALD_ELSEWHERE";
/// Capacity of [`ELSEWHERE_MAP`].
pub const ELSEWHERE_MAP_CAPACITY: u32 = 65_536;
/// One-slot array: every conflict the program counted on any entry, so that the speaker learns
/// of new ones by reading one `u64` rather than the whole of [`ARP_MAP`].
pub const CONFLICT_MAP: &str = "HERALD_CONFLICTS";

/// Load-time global of aya-log: the most verbose level the program logs at (0: nothing, 1:
/// error, 2: warn, 3: info, 4: debug). Statements above it are pruned by the verifier.
pub const LOG_LEVEL_GLOBAL: &str = "AYA_LOG_LEVEL";

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

/// Key of [`NDP_MAP`]: answer Neighbor Solicitations for `addr` on frames received on `ifindex`
/// with 802.1Q `vlan` (0 for untagged frames).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NdpKey {
    /// IPv6 address, wire order.
    pub addr: [u8; 16],
    pub ifindex: u32,
    /// VLAN id (12 bits), 0 when untagged.
    pub vlan: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<NdpKey>() == 24);

impl NdpKey {
    pub const fn new(addr: [u8; 16], ifindex: u32, vlan: u16) -> Self {
        Self { addr, ifindex, vlan, _pad: 0 }
    }
}

/// Value of [`ARP_MAP`] and [`NDP_MAP`]: the MAC to answer with, how many replies the program sent, and the
/// claims of other hosts on the address it saw.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressEntry {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Replies sent for this key; only the program increments it (atomically).
    pub replies: u64,
    /// ARP replies and gratuitous ARP on this key's interface and VLAN that give this address
    /// another MAC than `mac` (and not a Herald peer's): someone else claims it. Only the
    /// program increments it (atomically).
    pub conflicts: u64,
    /// `CLOCK_MONOTONIC` in ns of the last such claim; 0 = none.
    pub conflict_ns: u64,
    /// The MAC the last such claim gave.
    pub conflict_mac: [u8; 6],
    pub _pad2: [u8; 2],
}
const _: () = assert!(size_of::<AddressEntry>() == 40);

impl AddressEntry {
    pub const fn new(mac: [u8; 6]) -> Self {
        Self {
            mac,
            _pad: [0; 2],
            replies: 0,
            conflicts: 0,
            conflict_ns: 0,
            conflict_mac: [0; 6],
            _pad2: [0; 2],
        }
    }
}

/// Key of [`PEER_MAP`]: a MAC address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacKey {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<MacKey>() == 8);

impl MacKey {
    pub const fn new(mac: [u8; 6]) -> Self {
        Self { mac, _pad: [0; 2] }
    }
}

/// Value of [`HEARTBEAT_MAP`]'s only slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// `CLOCK_MONOTONIC` in ns when the speaker last proved it is alive; 0 = never.
    pub monotonic_ns: u64,
    /// How long this beat holds: past `monotonic_ns + dead_man_ns` the programs stop answering
    /// and pass every frame. Whoever beats says how long (the membership thread of a cluster
    /// member beats often and briefly, a speaker alone seldom and for longer).
    pub dead_man_ns: u64,
    /// The speaker's process id, so readers can tell a dead speaker from a live one.
    pub pid: u32,
    /// How many addresses [`ELSEWHERE_MAP`] holds: while none, the programs skip its lookup (a
    /// read of this slot costs next to nothing; a hash lookup on every request for another
    /// host's address does not).
    pub elsewhere: u32,
}
const _: () = assert!(size_of::<Heartbeat>() == 24);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers and byte arrays with explicit padding; every bit
    // pattern is valid.
    unsafe impl aya::Pod for super::ArpKey {}
    unsafe impl aya::Pod for super::NdpKey {}
    unsafe impl aya::Pod for super::AddressEntry {}
    unsafe impl aya::Pod for super::Heartbeat {}
    unsafe impl aya::Pod for super::MacKey {}
}
