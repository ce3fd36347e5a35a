//! IPv6 Neighbor Discovery frames as the wire carries them, built here independently of the
//! programs (for the BPF_PROG_TEST_RUN tests and the XDP bench).

use std::net::Ipv6Addr;

/// An ICMPv6 message in an IPv6 packet in an Ethernet frame, as the wire carries it.
#[derive(Clone, Debug)]
pub struct Packet {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub vlan: Option<u16>,
    pub hop_limit: u8,
    pub next_header: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// ICMPv6 type, code, the 4 bytes after the checksum, the target, then the options.
    pub kind: u8,
    pub code: u8,
    pub flags: [u8; 4],
    pub target: Ipv6Addr,
    pub options: Vec<u8>,
    /// Added to the right checksum (0: right).
    pub checksum_error: u16,
    /// Bytes after the IPv6 payload (link padding).
    pub padding: usize,
}

/// The solicited-node group of `target` (RFC 4291 §2.7.1) and its MAC.
pub fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let t = target.octets();
    let group = Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]]);
    (group, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
}

/// A multicast solicitation for `target` from `src` at `mac`, with its source link-layer option.
pub fn solicitation(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Packet {
    let (group, group_mac) = solicited_node(target);
    Packet {
        eth_dst: group_mac,
        eth_src: mac,
        vlan: None,
        hop_limit: 255,
        next_header: 58,
        src,
        dst: group,
        kind: 135,
        code: 0,
        flags: [0; 4],
        target,
        options: link_addr_option(1, mac),
        checksum_error: 0,
        padding: 0,
    }
}

pub fn link_addr_option(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut out = vec![kind, 1];
    out.extend(mac);
    out
}

/// The Internet checksum (RFC 1071) of the ICMPv6 `message` from `src` to `dst`, with the
/// IPv6 pseudo-header (RFC 8200 §8.1).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    bytes.extend(src.octets());
    bytes.extend(dst.octets());
    bytes.extend((message.len() as u32).to_be_bytes());
    bytes.extend([0, 0, 0, 58]);
    bytes.extend(message);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Packet {
    pub fn message(&self) -> Vec<u8> {
        let mut m = vec![self.kind, self.code, 0, 0];
        m.extend(self.flags);
        m.extend(self.target.octets());
        m.extend(&self.options);
        let checksum = icmpv6_checksum(self.src, self.dst, &m).wrapping_add(self.checksum_error);
        m[2..4].copy_from_slice(&checksum.to_be_bytes());
        m
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(self.eth_dst);
        out.extend(self.eth_src);
        if let Some(vlan) = self.vlan {
            out.extend([0x81, 0x00]);
            out.extend(vlan.to_be_bytes());
        }
        out.extend([0x86, 0xdd]);
        let message = self.message();
        out.extend([0x60, 0, 0, 0]);
        out.extend((message.len() as u16).to_be_bytes());
        out.extend([self.next_header, self.hop_limit]);
        out.extend(self.src.octets());
        out.extend(self.dst.octets());
        out.extend(message);
        out.extend(std::iter::repeat_n(0, self.padding));
        out
    }
}
