//! Frames as the programs see them: header layouts, field values in wire order, and the one
//! bounds check every access goes through.

use core::ptr::{read_unaligned, write_unaligned};

// Header fields are compared in wire order, against constants swapped at compile time.
pub const ETH_P_ARP: u16 = 0x0806u16.to_be();
pub const ETH_P_8021Q: u16 = 0x8100u16.to_be();
pub const ETH_P_IP: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6: u16 = 0x86ddu16.to_be();
pub const ARPHRD_ETHER: u16 = 1u16.to_be();
pub const ARPOP_REQUEST: u16 = 1u16.to_be();
pub const ARPOP_REPLY: u16 = 2u16.to_be();
/// The VLAN id in a TCI (host order); the rest is priority and DEI.
pub const VLAN_VID_MASK: u16 = 0x0fff;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: u16,
}
pub const ETH_HLEN: usize = size_of::<EthHdr>();
/// Where the source MAC is in an Ethernet header.
pub const ETH_SRC: usize = 6;
const _: () = assert!(ETH_HLEN == 14);

/// What follows the Ethernet header's EtherType 0x8100.
#[repr(C)]
pub struct VlanHdr {
    pub tci: u16,
    pub proto: u16,
}
pub const VLAN_HLEN: usize = size_of::<VlanHdr>();
/// Where the ARP body starts behind one 802.1Q tag.
pub const TAGGED_HLEN: usize = ETH_HLEN + VLAN_HLEN;

/// ARP for Ethernet and IPv4 (RFC 826), as it sits in the frame.
#[repr(C)]
pub struct ArpEth {
    pub htype: u16,
    pub ptype: u16,
    pub hlen: u8,
    pub plen: u8,
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}
const _: () = assert!(size_of::<ArpEth>() == 28);

/// The fixed IPv6 header (RFC 8200).
#[repr(C)]
pub struct Ipv6Hdr {
    /// Version (4 bits), traffic class, flow label.
    pub vtc_flow: [u8; 4],
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
pub const IPV6_HLEN: usize = size_of::<Ipv6Hdr>();
const _: () = assert!(IPV6_HLEN == 40);

/// A Neighbor Solicitation or Advertisement (RFC 4861 §4.3, §4.4) up to its options.
#[repr(C)]
pub struct NeighborMsg {
    pub kind: u8,
    pub code: u8,
    pub checksum: u16,
    /// An Advertisement's R, S and O flags in the first byte; reserved in a Solicitation.
    pub flags: [u8; 4],
    pub target: [u8; 16],
}
pub const ND_LEN: usize = size_of::<NeighborMsg>();
const _: () = assert!(ND_LEN == 24);

/// A link-layer address option (RFC 4861 §4.6.1) for Ethernet: `len` counts 8 bytes.
#[repr(C)]
pub struct LinkAddrOpt {
    pub kind: u8,
    pub len: u8,
    pub mac: [u8; 6],
}
pub const LINK_ADDR_OPT_LEN: usize = size_of::<LinkAddrOpt>();
const _: () = assert!(LINK_ADDR_OPT_LEN == 8);

/// The bytes of one frame, `[start, end)` in the program's address space, as the hook hands
/// them over (`data`, `data_end`).
#[derive(Clone, Copy)]
pub struct Frame {
    start: usize,
    end: usize,
}

impl Frame {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// A pointer to a `T` at `offset`, if the whole `T` lies inside the frame.
    #[inline(always)]
    pub fn at<T>(&self, offset: usize) -> Option<*mut T> {
        if self.start + offset + size_of::<T>() > self.end {
            return None;
        }
        Some((self.start + offset) as *mut T)
    }
}

#[inline(always)]
pub fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

#[inline(always)]
pub fn is_broadcast(mac: &[u8; 6]) -> bool {
    mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5] == 0xff
}

/// Byte-wise comparison, the one in the crate: `==` on arrays may become a `bcmp` call, which
/// BPF does not have.
#[inline(always)]
pub fn bytes_eq<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    let mut differ = 0;
    for i in 0..N {
        differ |= a[i] ^ b[i];
    }
    differ == 0
}

/// A MAC address held in registers, to move one between packet and map value without a copy on
/// the stack: copied byte by byte into a stack slot, Linux 6.1's verifier refuses the second
/// byte without CAP_PERFMON ("attempt to corrupt spilled pointer on stack": it takes the first
/// byte for a spilled register). Each part is one integer load or store, which LLVM neither
/// spills byte by byte nor merges into a memmove (whose pointer subtraction is refused too).
#[derive(Clone, Copy)]
pub struct Mac {
    head: u32,
    tail: u16,
}

impl Mac {
    #[inline(always)]
    pub const fn new(bytes: [u8; 6]) -> Self {
        let [a, b, c, d, e, f] = bytes;
        Self { head: u32::from_ne_bytes([a, b, c, d]), tail: u16::from_ne_bytes([e, f]) }
    }

    /// # Safety
    /// `from` points at 6 readable bytes.
    #[inline(always)]
    pub unsafe fn read(from: *const [u8; 6]) -> Self {
        let from = from.cast::<u8>();
        // SAFETY: as the caller vouches; arrays of bytes need no alignment.
        unsafe { Self { head: read_unaligned(from.cast()), tail: read_unaligned(from.add(4).cast()) } }
    }

    /// # Safety
    /// `to` points at 6 writable bytes.
    #[inline(always)]
    pub unsafe fn write(self, to: *mut [u8; 6]) {
        let to = to.cast::<u8>();
        // SAFETY: as the caller vouches; arrays of bytes need no alignment.
        unsafe {
            write_unaligned(to.cast(), self.head);
            write_unaligned(to.add(4).cast(), self.tail);
        }
    }
}

impl Mac {
    /// The address in the low 6 bytes of a word, in memory order (little endian).
    #[inline(always)]
    pub fn word(self) -> u64 {
        u64::from(self.head) | (u64::from(self.tail) << 32)
    }

    /// The bytes, for the log statements.
    #[inline(always)]
    pub fn bytes(self) -> [u8; 6] {
        let [a, b, c, d] = self.head.to_ne_bytes();
        let [e, f] = self.tail.to_ne_bytes();
        [a, b, c, d, e, f]
    }
}

impl PartialEq for Mac {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        (self.head ^ other.head) | (self.tail ^ other.tail) as u32 == 0
    }
}

/// An IPv6 address held in registers, for the reason [`Mac`] is.
#[derive(Clone, Copy)]
pub struct Ip6([u64; 2]);

impl Ip6 {
    #[inline(always)]
    pub const fn new(bytes: [u8; 16]) -> Self {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = bytes;
        Self([u64::from_ne_bytes([a, b, c, d, e, f, g, h]), u64::from_ne_bytes([i, j, k, l, m, n, o, p])])
    }

    /// # Safety
    /// `from` points at 16 readable bytes.
    #[inline(always)]
    pub unsafe fn read(from: *const [u8; 16]) -> Self {
        let from = from.cast::<u8>();
        // SAFETY: as the caller vouches; arrays of bytes need no alignment.
        unsafe { Self([read_unaligned(from.cast()), read_unaligned(from.add(8).cast())]) }
    }

    /// Its two words, in memory order.
    #[inline(always)]
    pub fn words(self) -> [u64; 2] {
        self.0
    }

    /// # Safety
    /// `to` points at 16 writable bytes.
    #[inline(always)]
    pub unsafe fn write(self, to: *mut [u8; 16]) {
        let to = to.cast::<u8>();
        // SAFETY: as the caller vouches; arrays of bytes need no alignment.
        unsafe {
            write_unaligned(to.cast(), self.0[0]);
            write_unaligned(to.add(8).cast(), self.0[1]);
        }
    }
}
